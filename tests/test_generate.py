"""Image generation: Ghost-module generator, GhostNet discriminator, a tiny train → sample → export run, metrics and
bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import ghostkit
from ghostkit.cli import main
from ghostkit.engine.generate import ROTATIONS, FeatureNet, train_feature_classifier
from ghostkit.errors import GhostkitError
from ghostkit.tasks.generate import (
    GENERATE_DEFAULTS,
    Discriminator,
    GANModel,
    Generator,
    load_generator,
    r1_penalty,
)

CLASSES = ["bar", "ring"]  # sorted, as ImageFolder names classes


def _config(num_classes: int = 2, imgsz: int = 32, width: int = 8) -> dict:
    names = CLASSES[:num_classes]
    return {"format": 1, "task": "generate", "discriminator": {"model": "ghostnet_050"}, "class_names": names,
            "generator": {"imgsz": imgsz, "num_classes": len(names), "z_dim": 16, "width": width},
            "imgsz": [imgsz, imgsz]}


def _picture(kind: str, h: int, w: int, seed: int) -> np.ndarray:
    """A ring or a bar, jittered, on a dark background: two classes a tiny classifier can tell apart."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w] / max(h, w)
    cy, cx = 0.5 + rng.uniform(-0.1, 0.1, 2)
    if kind == "ring":
        r = np.hypot(yy - cy, xx - cx)
        mask = (r > 0.2) & (r < 0.3)
    else:
        mask = np.abs(xx - cx) < 0.08
    img = np.zeros((h, w, 3), np.uint8)
    img[mask] = rng.integers(150, 255, 3)
    return img


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """An ImageFolder of two classes, 8 images each, of mixed sizes (resized by the data layer)."""
    root = tmp_path_factory.mktemp("gen") / "data"
    for c, kind in enumerate(CLASSES):
        (root / kind).mkdir(parents=True)
        for i in range(8):
            h, w = (32, 32) if i % 2 else (40, 52)
            Image.fromarray(_picture(kind, h, w, 10 * c + i)).save(root / kind / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def run(folder, tmp_path_factory):
    """One tiny conditional training run (1 epoch), its feature classifier trained for 1 epoch."""
    out = tmp_path_factory.mktemp("gen") / "run"
    old = GENERATE_DEFAULTS["feature_epochs"]
    GENERATE_DEFAULTS["feature_epochs"] = 1
    try:
        rc = main(["train", "--task", "generate", "--data", str(folder), "--model", "ghostnet_050", "--epochs", "1",
                   "--batch", "8", "--width", "8", "--workers", "0", "--out", str(out)])
    finally:
        GENERATE_DEFAULTS["feature_epochs"] = old
    assert rc == 0
    return out


def test_generator_and_discriminator_shapes() -> None:
    torch.manual_seed(0)
    g = Generator(imgsz=32, num_classes=3, z_dim=16, width=8)
    z, y = torch.randn(4, 16), torch.tensor([0, 1, 2, 0])
    x = g(z, y)
    assert x.shape == (4, 3, 32, 32) and x.abs().max() <= 1
    # class-conditional BatchNorm (gain 1, bias 0 for every class at the start; as after training here): the class
    # changes the image for the same latent
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, nn.Embedding):
                m.weight.add_(torch.randn_like(m.weight) * 0.3)
    g.eval()
    assert not torch.allclose(g(z[:1], torch.tensor([0])), g(z[:1], torch.tensor([1])))
    d = Discriminator("ghostnet_050", num_classes=3)
    scores = d(x, y)
    assert scores.shape == (4,)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in d.modules())
    scores.sum().backward()
    assert all(p.grad is not None for p in g.parameters() if p.requires_grad)


def test_discriminator_sees_the_image_and_r1_is_twice_differentiable() -> None:
    torch.manual_seed(0)
    d = Discriminator("ghostnet_050", num_classes=0)
    x = torch.randn(6, 3, 32, 32)
    with torch.no_grad():
        scores = d(x)
    assert float(scores.std()) > 1e-3  # spectral norm has not washed the input out
    r1 = r1_penalty(d, x, None)
    assert float(r1.detach()) > 0
    r1.backward()  # second derivative through the squeeze-and-excite gates
    assert d.fc.parametrizations.weight.original.grad is not None


@pytest.mark.parametrize("imgsz", [24, 100])
def test_generator_size_must_be_a_power_of_two(imgsz: int) -> None:
    with pytest.raises(GhostkitError, match="power of two"):
        Generator(imgsz=imgsz)


def test_generate_is_deterministic_and_checks_classes() -> None:
    torch.manual_seed(0)
    model = GANModel(_config()).eval()
    a, b = model.generate(5, seed=3), model.generate(5, seed=3)
    assert a.dtype == np.uint8 and a.shape == (5, 32, 32, 3)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, model.generate(5, seed=4))
    assert model.class_indices(4).tolist() == [0, 1, 0, 1]
    assert model.class_indices(2, "ring").tolist() == [1, 1]
    with pytest.raises(GhostkitError, match="not one of the model's classes"):
        model.generate(2, classes="cat")
    with pytest.raises(GhostkitError, match="positive"):
        model.generate(0)
    unconditional = GANModel(_config(num_classes=0)).eval()
    assert unconditional.generate(2, seed=0).shape == (2, 32, 32, 3)
    with pytest.raises(GhostkitError, match="unconditional"):
        unconditional.generate(2, classes="ring")


def test_rotation_feature_classifier_for_unconditional_data(folder, tmp_path) -> None:
    from ghostkit.data.generate import build_generate_data

    data = build_generate_data(folder, 32, batch=4)
    net, acc = train_feature_classifier(data.train, [], 32, tmp_path / "f.ckpt", epochs=1, batch=8, log=lambda _: 0)
    features = FeatureNet(ghostkit.tasks.model.load_task_model(tmp_path / "f.ckpt"))
    assert features.class_names == ROTATIONS and 0 <= acc <= 1
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    assert features(x).shape == (3, features.num_features)
    assert torch.allclose(features.logits(x), net(x)["classify"], atol=1e-4)


def test_inception_features_from_a_local_file(tmp_path) -> None:
    """--fid-weights: torchvision's Inception-v3 layout read from a file (random weights here: no download)."""
    from torchvision.models import inception_v3

    from ghostkit.engine.generate import InceptionFeatures

    torch.manual_seed(0)
    torch.save(inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict(), tmp_path / "inc.pth")
    features = InceptionFeatures(tmp_path / "inc.pth")
    assert features(torch.rand(2, 3, 32, 32) * 2 - 1).shape == (2, 2048)
    torch.save(torch.nn.Linear(2, 2).state_dict(), tmp_path / "other.pth")
    with pytest.raises(GhostkitError, match="not torchvision Inception-v3 weights"):
        InceptionFeatures(tmp_path / "other.pth")


def test_train_writes_run_and_metrics(run) -> None:
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("fid", "kid", "class_acc"):
        assert key in metrics and np.isfinite(metrics[key])
    assert metrics["fid"] >= 0 and 0 <= metrics["class_acc"] <= 1
    for name in ("best.ckpt", "last.ckpt", "features.ckpt", "curves.png", "metrics.csv", "config.yaml",
                 "samples/epoch_001.png"):
        assert (run / name).is_file(), name
    header = (run / "metrics.csv").read_text().splitlines()[0]
    assert "train/g_loss" in header and "train/d_loss" in header


def test_checkpoint_round_trip(run) -> None:
    raw = torch.load(run / "best.ckpt", map_location="cpu", weights_only=True)
    model = load_generator(run / "best.ckpt")
    assert raw["ghostkit"]["class_names"] == CLASSES
    for name, value in model.state_dict().items():
        assert torch.equal(value, raw["state_dict"][f"model.{name}"]), name
    assert {"generator", "generator_ema", "discriminator"} <= {k.split(".")[0] for k in model.state_dict()}
    api_model = ghostkit.load_model(run / "best.ckpt")
    assert isinstance(api_model, GANModel)
    assert np.array_equal(api_model.generate(4, classes=["bar", "ring", "bar", "bar"], seed=1),
                          model.generate(4, classes=["bar", "ring", "bar", "bar"], seed=1))


def test_sampling_cli(run, tmp_path, capsys) -> None:
    out = tmp_path / "samples"
    assert main(["predict", "--weights", str(run / "best.ckpt"), "--num", "3", "--save", str(out), "--seed", "5"]) == 0
    for c in CLASSES:
        assert sorted(p.name for p in (out / c).iterdir()) == ["0.png", "1.png", "2.png"]
    assert Image.open(out / "grid.png").size[0] > 32
    again = tmp_path / "again"
    assert main(["predict", "--weights", str(run / "best.ckpt"), "--num", "3", "--save", str(again), "--seed", "5",
                 "--class", "bar"]) == 0
    assert not (again / "ring").exists()
    same = [np.asarray(Image.open(d / "bar" / "1.png")) for d in (again, out)]
    assert np.array_equal(*same)
    for args, message in ((["--num", "2", "--class", "cat"], "cat"), (["--num", "0"], "--num"),
                          (["--num", "-3"], "--num"), (["--source", str(out / "grid.png")], "generative model")):
        capsys.readouterr()
        assert main(["predict", "--weights", str(run / "best.ckpt"), "--save", str(tmp_path / "x"), *args]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1


def test_onnx_export_matches_pytorch(run, tmp_path) -> None:
    import onnxruntime as ort

    out = tmp_path / "g.onnx"
    assert main(["export", "--weights", str(run / "best.ckpt"), "--out", str(out), "--dynamic"]) == 0
    model = load_generator(run / "best.ckpt")
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["latent", "labels"]
    z = torch.randn(5, model.z_dim, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([1, 0, 1, 1, 0])
    got = session.run(["images"], {"latent": z.numpy(), "labels": y.numpy()})[0]
    with torch.no_grad():
        ref = (model.generator_ema(z, y) + 1) / 2
    assert got.shape == (5, 3, 32, 32)
    assert np.abs(got - ref.numpy()).max() < 1e-4
    meta = json.loads(session.get_modelmeta().custom_metadata_map["ghostkit"])
    assert meta["class_names"] == CLASSES


def test_unconditional_flat_folder_and_nan_stop(run, tmp_path, capsys) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(8):
        Image.fromarray(_picture("ring", 32, 32, i)).save(flat / f"{i}.png")

    import lightning as L

    class Poison(L.Callback):  # the generator's weights turn NaN in the second epoch, as a diverged run's do
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if trainer.current_epoch == 1:
                with torch.no_grad():
                    module.model.generator.fc.weight.fill_(float("nan"))

    poison = Poison()
    out = tmp_path / "run"
    with pytest.raises(GhostkitError, match="epoch 2.*last good checkpoint"):
        ghostkit.train(task="generate", data=str(flat), model="ghostnet_050", epochs=2, batch=4, width=8, workers=0,
                       out=str(out), fid_features=str(run / "features.ckpt"), callbacks=[poison])
    model = load_generator(out / "last.ckpt")  # the epoch-1 checkpoint, intact
    assert not model.conditional
    assert all(torch.isfinite(p).all() for p in model.parameters())
    metrics_csv = (out / "metrics.csv").read_text()
    assert "val/fid" in metrics_csv and "val/class_acc" not in metrics_csv
    samples = tmp_path / "s"
    assert main(["predict", "--weights", str(out / "last.ckpt"), "--num", "2", "--save", str(samples)]) == 0
    assert sorted(p.name for p in samples.iterdir()) == ["0.png", "1.png", "grid.png"]


def test_bad_input(folder, tmp_path, capsys) -> None:
    few = tmp_path / "few"
    few.mkdir()
    for i in range(3):
        Image.fromarray(_picture("bar", 32, 32, i)).save(few / f"{i}.png")
    mixed = tmp_path / "mixed"
    (mixed / "a").mkdir(parents=True)
    Image.fromarray(_picture("bar", 32, 32, 0)).save(mixed / "a" / "0.png")
    Image.fromarray(_picture("bar", 32, 32, 1)).save(mixed / "1.png")
    cases = [
        (["--data", str(few), "--batch", "8"], "fewer than one batch"),
        (["--data", str(mixed)], "both images and sub-folders"),
        (["--data", str(folder), "--imgsz", "48", "--batch", "8"], "power of two"),
        (["--data", str(tmp_path / "nowhere")], "no such data folder"),
        (["--data", str(folder), "--task", "generate,classify"], "cannot be combined"),
    ]
    for args, message in cases:
        capsys.readouterr()
        rc = main(["train", "--task", "generate", "--epochs", "1", "--workers", "0", "--model", "ghostnet_050",
                   "--out", str(tmp_path / "r"), *args])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and message in err and len(err.splitlines()) == 1, (args, err)


def test_class_reaches_the_generator_from_the_start_and_d_has_a_class_head() -> None:
    """The class embedding joined to the latent makes the class change an untrained generator's image (the
    conditional BatchNorm gains start equal for every class); the discriminator's auxiliary class head reads the
    same features as its real/fake score."""
    torch.manual_seed(0)
    g = Generator(imgsz=32, num_classes=3, z_dim=16, width=8, class_dim=8).eval()
    z = torch.randn(2, 16)
    a, b = g(z, torch.tensor([0, 0])), g(z, torch.tensor([1, 1]))
    assert (a - b).abs().mean() > 1e-3
    assert Generator(imgsz=32, num_classes=0, z_dim=16, width=8, class_dim=8).class_embed is None
    d = Discriminator("ghostnet_050", num_classes=3)
    h = d.features(torch.rand(4, 3, 32, 32) * 2 - 1)
    logits = d.class_logits(h)
    assert logits.shape == (4, 3) and float(logits.detach().std(0).mean()) > 1e-2  # the head sees the images apart
    assert d.score(h, torch.tensor([0, 1, 2, 0])).shape == (4,)
    assert Discriminator("ghostnet_050", num_classes=0).classifier is None
