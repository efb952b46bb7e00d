"""The classification recipe rule, the in-memory image cache, and what a run prints about them."""

from __future__ import annotations

import inspect
import json
import re

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torchvision.transforms import v2

import ghostkit
import ghostkit.data.cache as cache_module
import ghostkit.data.recipe as recipe_module
from ghostkit.cli import main
from ghostkit.data.cache import CachedImageDataset, decode_items, default_workers
from ghostkit.data.classify import build_classify_data, read_imagefolder
from ghostkit.data.images import read_image
from ghostkit.data.recipe import DataStats, choose_recipe, classify_transforms, data_stats, scaled_lr
from ghostkit.data.synthetic import load_digits, write_imagefolder
from ghostkit.data.tasks import inference_transform
from ghostkit.errors import GhostkitError
from ghostkit.tasks.classify import ClassifyHead


def _kinds(dataset) -> list[type]:
    return [type(t) for t in dataset.transform.transforms]


# ------------------------------------------------------------------------------------------------------ the rule


@pytest.mark.parametrize(
    "stats, epochs, pretrained, name, augment, imgsz",
    [
        (DataStats(28, True, 400), 10, False, "light", "none", 32),  # small grayscale scans, short run
        (DataStats(200, False, 500), 10, False, "light", "none", 224),  # large photos, but short from scratch
        (DataStats(200, False, 500), 30, False, "standard", "randaugment", 224),  # long run on enough photos
        (DataStats(200, False, 500), 10, True, "standard", "randaugment", 224),  # pretrained
        (DataStats(200, True, 500), 30, False, "standard", "none", 224),  # grayscale: no colour policy
        (DataStats(96, False, 40), 100, True, "medium", "none", 96),  # few images per class
        (DataStats(40, False, 1000), 100, True, "medium", "none", 64),  # small images, rounded up to 64
        (DataStats(32, False, 80), 30, False, "medium", "none", 32),  # long run on few small photos (textures)
        (DataStats(32, False, 80), 29, False, "light", "none", 32),  # the same one epoch short of a long run
        (DataStats(32, False, 80), 5, True, "medium", "none", 32),  # pretrained: not a short run from scratch
        (DataStats(500, False, 1000), 100, False, "standard", "randaugment", 224),  # capped at 224
    ],
)
def test_rule_picks_the_documented_recipe(stats, epochs, pretrained, name, augment, imgsz):
    r = choose_recipe(stats, epochs, pretrained)
    assert (r.name, r.auto_augment, r.imgsz, r.flip) == (name, augment, imgsz, False)
    expected = dict(light=recipe_module.LIGHT, medium=recipe_module.MEDIUM, standard=recipe_module.STANDARD)[name]
    assert (r.crop_scale, r.dropout, r.label_smoothing) == tuple(expected[k] for k in
                                                                 ("crop_scale", "dropout", "label_smoothing"))
    assert r.overridden == ()
    line = r.describe()
    assert line.startswith(f"recipe: {name} augmentation (") and f"{epochs} epochs" in line
    assert ("pretrained" if pretrained else "from scratch") in line and "flips off" in line


def test_options_override_the_rule_and_are_named():
    r = choose_recipe(DataStats(28, True, 400), 10, flip=True, dropout=0.3, auto_augment="trivial", crop_scale=0.5,
                      imgsz=48, label_smoothing=0.0)
    assert (r.flip, r.dropout, r.auto_augment, r.crop_scale, r.imgsz, r.label_smoothing) == (
        True, 0.3, "trivial", 0.5, 48, 0.0)
    assert set(r.overridden) == {"flip", "dropout", "auto_augment", "crop_scale", "imgsz", "label_smoothing"}
    assert "set by option" in r.describe() and "flips on" in r.describe()
    with pytest.raises(GhostkitError, match="crop-scale"):
        choose_recipe(DataStats(28, True, 400), 10, crop_scale=1.5)


def test_data_stats_reads_size_colour_and_counts():
    gray = [np.full((28, 30, 3), 7, np.uint8)] * 6
    stats = data_stats(gray, [0, 0, 0, 1, 1, 2])
    assert stats == DataStats(size=28, grayscale=True, per_class=2)
    colour = [torch.zeros(3, 64, 80, dtype=torch.uint8), torch.ones(3, 64, 80, dtype=torch.uint8)]
    colour[1][0] = 200
    assert data_stats(colour, [np.array([1.0, 1.0]), np.array([0.0, 1.0])]) == DataStats(64, False, 1)


def test_no_recipe_code_looks_at_data_names():
    for module in (recipe_module, cache_module):
        source = inspect.getsource(module)
        assert '"digits"' not in source and '"shapes"' not in source
    make = inspect.getsource(build_classify_data)
    body = make[make.index("def make("):make.index('if name == "digits"')]
    assert "name" not in body.replace("names", "").replace("is_multilabel", "")


def test_builtin_digits_get_the_same_recipe_as_the_same_images_in_a_folder(tmp_path):
    images, labels, names = load_digits(32)
    write_imagefolder(tmp_path / "train", images, labels, names)
    builtin = build_classify_data("digits", epochs=10)
    folder = build_classify_data(tmp_path, epochs=10)
    assert builtin.recipe == folder.recipe and builtin.recipe.name == "light"
    assert _kinds(builtin.train) == _kinds(folder.train)


def test_flips_are_off_by_default_and_on_with_the_option(tmp_path):
    images, labels, names = load_digits(32)
    write_imagefolder(tmp_path / "train", images[:60], labels[:60], names)
    assert v2.RandomHorizontalFlip not in _kinds(build_classify_data(tmp_path, epochs=100, pretrained=True).train)
    flipped = build_classify_data(tmp_path, flip=True)
    assert v2.RandomHorizontalFlip in _kinds(flipped.train) and flipped.recipe.flip


def test_learning_rate_follows_the_batch():
    assert scaled_lr(2e-3, 64, 64) == 2e-3
    assert scaled_lr(2e-3, 256, 64) == pytest.approx(4e-3)
    assert scaled_lr(4e-3, 64, 16) == pytest.approx(8e-3)
    assert scaled_lr(2e-3, 32, 64) == 2e-3  # not scaled down


# ------------------------------------------------------------------------------------------------------ the cache


def test_cache_returns_the_decoded_files_and_respects_its_limit(tmp_path):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (20 + i, 24, 3), dtype=np.uint8) for i in range(6)]
    write_imagefolder(tmp_path, images, [0, 1, 0, 1, 0, 1], ["a", "b"])
    items, _ = read_imagefolder(tmp_path)
    decoded = decode_items(items, limit_mb=1)
    assert decoded is not None and len(decoded) == len(items)
    for (path, _), tensor in zip(items, decoded, strict=True):
        assert tensor.dtype == torch.uint8 and tensor.shape[0] == 3
        assert torch.equal(tensor.permute(1, 2, 0), torch.from_numpy(np.asarray(read_image(path))))
    need = sum(t.numel() for t in decoded) / 2**20
    assert decode_items(items, limit_mb=need * 0.99) is None  # over the limit: nothing kept
    assert decode_items(items, limit_mb=0) is None
    data = build_classify_data(_folder(tmp_path), imgsz=32, cache_mb=1)
    files = build_classify_data(_folder(tmp_path), imgsz=32, cache_mb=0)
    assert isinstance(data.train, CachedImageDataset) and not isinstance(files.train, CachedImageDataset)
    torch.testing.assert_close(data.val[0][0], files.val[0][0])  # same pixels, same val transform


def _folder(tmp_path):
    root = tmp_path / "data"
    if not root.exists():
        rng = np.random.default_rng(1)
        write_imagefolder(root / "train", [rng.integers(0, 255, (30, 30, 3), dtype=np.uint8) for _ in range(8)],
                          [0, 1] * 4, ["a", "b"])
    return root


def test_default_workers_from_cores():
    assert default_workers(in_memory=True, cores=2) == 0
    assert default_workers(in_memory=False, cores=2) == 1
    assert default_workers(in_memory=True, cores=32) == 8
    assert default_workers(in_memory=False, cores=64) == 8


# ------------------------------------------------------------------------------------------------------ a run


def test_run_prints_its_recipe_and_data_time(tmp_path, capsys):
    images, labels, names = load_digits(32)
    write_imagefolder(tmp_path / "data" / "train", images[:80], labels[:80], names)
    out = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "data"), "--epochs", "1", "--model", "ghostnet_050", "--batch",
                 "32", "--flip", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"recipe: light augmentation \(small images, \d+ images per class, 1 epochs, from scratch, "
                     r"grayscale\): imgsz 32, crops 70%-100%, auto-augment none, flips on", printed)
    assert "flips on" in printed and "set by option: flip" in printed
    assert "training time: data loading" in printed and "compute" in printed
    saved = yaml.safe_load((out / "config.yaml").read_text())["train"]
    assert saved["flip"] is True and saved["imgsz"] == 32 and saved["dropout"] == 0.0
    assert saved["lr"] == 2e-3  # batch 32 is below the reference batch: the default rate


# ------------------------------------------------------------------------------------------ validation transform


def test_validation_and_prediction_see_the_whole_image():
    """An object at the border survives validation (no centre crop) and prediction prepares images identically."""
    image = np.zeros((64, 96, 3), np.uint8)
    image[:, :6] = 255  # a bar along the left border: 1/16 of the width
    tf = classify_transforms(32, train=False, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    out = tf(image)
    assert out.shape == (3, 32, 32)
    assert out[:, :, 0].min() > 0.9 and out[:, :, -1].max() < 0.1  # the border bar is kept, squeezed to 2 columns
    assert abs(float(out.mean()) - 6 / 96) < 0.01  # and nothing else: the whole image, resized
    predict_tf = inference_transform({"resize"}, (32, 32), [0.0] * 3, [1.0] * 3)
    torch.testing.assert_close(predict_tf(Image.fromarray(image)), out)
    assert ClassifyHead.preprocess == "resize"


# --------------------------------------------------------------------------- BatchNorm statistics, multi-label start


def test_bn_statistics_are_recomputed_from_the_first_training_batches():
    from ghostkit.engine.module import recompute_bn

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)).eval()
    bn = model[1]
    bn.running_mean.fill_(100.0)  # stale statistics of earlier weights
    images = torch.randn(20, 3, 8, 8) * 2 + 1
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, torch.zeros(20)), batch_size=4)
    assert recompute_bn(model, loader, images=7) == 2  # whole batches: 8 images
    with torch.no_grad():
        expected = model[0](images[:8]).mean((0, 2, 3))
    torch.testing.assert_close(bn.running_mean, expected)
    assert int(bn.num_batches_tracked) == 2 and bn.momentum == 0.1 and not model.training
    assert recompute_bn(model, loader, images=1000) == 5  # no more batches than the loader has


def test_a_run_validates_with_recomputed_bn_statistics(tmp_path):
    images, labels, names = load_digits(32)
    write_imagefolder(tmp_path / "data" / "train", images[:120], labels[:120], names)
    out = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "data"), "--epochs", "2", "--model", "ghostnet_050", "--batch",
                 "32", "--workers", "0", "--out", str(out)]) == 0
    state = torch.load(out / "last.ckpt", weights_only=True)
    assert state["global_step"] == 4  # 90 training images (30 split off for validation): 2 full batches per epoch
    # the running statistics come from the 2 batches before the last validation, not from the 4 training steps
    assert int(state["state_dict"]["model.backbone.bn1.num_batches_tracked"]) == 2


def test_multilabel_biases_start_at_the_label_frequencies(tmp_path):
    head = ClassifyHead([{"num_chs": 8}], 3, multilabel=True, prior=[0.1, 0.5, 0.0])
    torch.testing.assert_close(head.classifier.bias.sigmoid(), torch.tensor([0.1, 0.5, 1e-3]))
    with pytest.raises(ValueError, match="3 classes"):
        ClassifyHead([{"num_chs": 8}], 3, multilabel=True, prior=[0.1])
    # a run's head starts from its training labels' frequencies: a in all 30 images, b in 10
    rng = np.random.default_rng(0)
    folder = tmp_path / "data" / "images"
    folder.mkdir(parents=True)
    rows = ["filename,labels"]
    for i in range(30):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
        rows.append(f"{i}.png,{'a b' if i % 3 == 0 else 'a'}")
    (tmp_path / "data" / "train.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "run"
    assert main(["train", "--task", "multilabel", "--data", str(tmp_path / "data"), "--epochs", "1", "--model",
                 "ghostnet_050", "--batch", "8", "--workers", "0", "--out", str(out)]) == 0
    head_config = yaml.safe_load((out / "config.yaml").read_text())["model"]["heads"]["multilabel"]
    assert head_config["prior"] == pytest.approx([1.0, 10 / 24], abs=0.1)  # 24 training images after the val split
    # the decision threshold chosen on the training images is in the checkpoints, metrics.json and predictions
    chosen = head_config["threshold"]
    for name in ("best.ckpt", "last.ckpt"):
        assert torch.load(out / name, weights_only=True)["ghostkit"]["heads"]["multilabel"]["threshold"] == chosen
    assert json.loads((out / "metrics.json").read_text())["threshold"] == chosen
    predictor = ghostkit.load_model(out / "best.ckpt")
    result = predictor.predict([folder / "0.png"])[0]
    assert [x["class"] for x in result["labels"]] == [c for c, v in result["scores"].items() if v >= chosen]
    assert main(["train", "--task", "multilabel", "--data", str(tmp_path / "data"), "--threshold", "1.5",
                 "--out", str(tmp_path / "bad")]) == 2


def test_the_threshold_is_the_best_macro_f1_on_the_given_images():
    from ghostkit.engine.classify import choose_threshold

    class Scores(torch.nn.Module):  # the scores are the images' pixels (1 x 1 images, one channel per class)
        def __init__(self) -> None:
            super().__init__()
            self.unused = torch.nn.Parameter(torch.zeros(1))

        def forward(self, images: torch.Tensor) -> dict:
            return {"multilabel": torch.logit(images[:, :2, 0, 0])}

    # present classes score 0.4 and absent ones 0.12: thresholds 0.15-0.35 separate them; 0.5 predicts nothing
    items = [(torch.tensor([0.4, 0.12, 0.0]).view(3, 1, 1), torch.tensor([1.0, 0.0])),
             (torch.tensor([0.12, 0.4, 0.0]).view(3, 1, 1), torch.tensor([0.0, 1.0])),
             (torch.tensor([0.4, 0.4, 0.0]).view(3, 1, 1), torch.tensor([1.0, 1.0]))]
    assert choose_threshold(Scores(), items, "multilabel", batch=2) == 0.15
