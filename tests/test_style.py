"""Style transfer: transform network, AdaIN head, losses, colour-matching baseline, data, CLI train / predict /
export, bad input. Tiny networks (width 4, one block, ghostnet_050 loss network), 32 px crops, one epoch."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from ghostkit.cli import main
from ghostkit.data.style import builtin_photos, load_style, load_styles, mosaic
from ghostkit.engine.style import StyleMetrics
from ghostkit.tasks import build_head
from ghostkit.tasks.model import load_task_model
from ghostkit.tasks.style import StyleHead, gram, loss_network, match_colour
from ghostkit.tasks.style_adain import AdaINHead, adain

TINY = ["--width", "4", "--depth", "1", "--model", "ghostnet_050", "--imgsz", "32", "--epochs", "1", "--batch", "4",
        "--workers", "0"]


def _photo_folder(root, sizes=((48, 40), (40, 52), (45, 37))) -> None:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        (root / split).mkdir(parents=True)
        for i, (h, w) in enumerate(sizes):
            yy, xx = np.mgrid[0:h, 0:w]
            base = np.stack([xx * 255 / w, yy * 255 / h, np.full((h, w), 90.0)], -1)
            img = np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / split / f"p{i}.png")


def _head(**kw) -> StyleHead:
    return StyleHead(width=4, depth=1, loss_model="ghostnet_050", **kw)


def test_output_has_the_photo_size_at_odd_sizes_and_above_max_size() -> None:
    head = _head(max_size=32).eval()
    for h, w in ((37, 45), (33, 64), (80, 50)):
        out = head(None, torch.rand(1, 3, h, w))["image"]
        assert out.shape == (1, 3, h, w)


def test_untrained_network_renders_the_colour_matched_photo_in_range() -> None:
    head = _head(style_size=(32, 32)).eval()
    head.set_style(load_style(None, 32))
    photos = torch.rand(2, 3, 32, 32) * 0.5
    with torch.no_grad():
        out = head(None, photos)["image"]
        assert torch.allclose(out, match_colour(photos, head.style), atol=2e-3)
        head.transform.net[-1].bias.fill_(50.0)  # a huge residual still gives colours in [0, 1]
        out = head(None, photos)["image"]
    assert float(out.min()) >= 0 and float(out.max()) <= 1


def test_loss_trains_the_transform_network_only() -> None:
    torch.manual_seed(0)
    head = _head().train()
    frozen = {k: v.clone() for k, v in head.loss_net.state_dict().items()}
    photos, style = torch.rand(2, 3, 32, 32), torch.rand(1, 3, 32, 40)
    opt = torch.optim.Adam([p for p in head.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for _ in range(15):
        terms = head.loss(head(None, photos), {"content": photos, "style": style})
        opt.zero_grad()
        terms["loss"].backward()
        opt.step()
        losses.append(float(terms["loss"].detach()))
    assert set(terms) == {"content", "style", "tv", "loss"}
    assert losses[-1] < losses[0]
    assert not head.loss_net.training
    assert all(torch.equal(frozen[k], v) for k, v in head.loss_net.state_dict().items())


def test_gram_is_size_independent_and_loss_network_is_reproducible() -> None:
    f = torch.rand(1, 8, 4, 4)
    assert torch.allclose(gram(f), gram(f.repeat(1, 1, 2, 2)), atol=1e-6)
    a, b = loss_network("ghostnet_050", 3), loss_network("ghostnet_050", 3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    c = loss_network("ghostnet_050", 4)
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values()))


def test_colour_matching_baseline_takes_the_style_mean_and_covariance() -> None:
    g = torch.Generator().manual_seed(0)
    photo = torch.rand(1, 3, 40, 40, generator=g) * 0.3 + 0.2
    style = torch.rand(1, 3, 30, 30, generator=g) * 0.4 + 0.4
    out = match_colour(photo, style)
    for x in (out, style):
        assert x.shape[:2] == (1, 3)
    assert torch.allclose(out.mean((2, 3)), style.mean((2, 3)), atol=2e-3)
    cov = lambda x: torch.cov(x.flatten(2)[0])  # noqa: E731
    assert torch.allclose(cov(out), cov(style), atol=2e-3)


def test_metrics_score_the_baseline_against_itself() -> None:
    photos, style = torch.rand(2, 3, 32, 32), torch.rand(1, 3, 32, 32)
    metrics = StyleMetrics()
    metrics.update({"image": match_colour(photos, style)}, {"content": photos, "style": style})
    values = metrics.compute()
    assert values["style_loss"] == pytest.approx(values["style_loss_baseline"], rel=1e-5)
    assert values["style_reduction"] == pytest.approx(0.0, abs=1e-5)
    metrics.reset()
    metrics.update({"image": photos}, {"content": photos, "style": style})
    assert metrics.compute()["content_loss"] == pytest.approx(0.0, abs=1e-6)
    assert metrics.compute()["ssim_content"] == pytest.approx(1.0, abs=1e-4)


def test_adain_takes_the_style_statistics_per_channel() -> None:
    g = torch.Generator().manual_seed(0)
    content, style = torch.rand(2, 5, 6, 7, generator=g), 3 * torch.rand(2, 5, 4, 4, generator=g) + 1
    out = adain(content, style)
    assert torch.allclose(out.mean((2, 3)), style.mean((2, 3)), atol=1e-4)
    assert torch.allclose(out.std((2, 3), unbiased=False), style.std((2, 3), unbiased=False), atol=1e-3)


def test_adain_head_trains_its_decoder_only_and_renders_any_style_at_any_size() -> None:
    torch.manual_seed(0)
    head = build_head("style", None, head="adain", loss_model="ghostnet_050", style_size=[32, 32])
    assert isinstance(head, AdaINHead) and head.train().loss_net.training is False
    frozen = {k: v.clone() for k, v in head.loss_net.state_dict().items()}
    photos, styles = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    opt = torch.optim.Adam([p for p in head.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(12):
        terms = head.loss(head(None, photos), {"content": photos, "style": styles})
        opt.zero_grad()
        terms["loss"].backward()
        opt.step()
        losses.append(float(terms["loss"].detach()))
    assert set(terms) == {"content", "style", "loss"} and losses[-1] < losses[0]
    assert all(torch.equal(frozen[k], v) for k, v in head.loss_net.state_dict().items())
    head.eval()
    photo = torch.rand(1, 3, 37, 45)
    head.set_style(load_style(None, 32))
    a = head(None, photo)["image"]
    head.set_style(torch.rand(3, 40, 50))
    b = head(None, photo)["image"]
    assert a.shape == b.shape == (1, 3, 37, 45) and float((a - b).abs().max()) > 1e-3


def test_style_set_folder_and_builtin(tmp_path) -> None:
    for i, size in enumerate(((40, 50), (64, 32))):
        Image.fromarray(np.full((*size, 3), 60 * i, dtype=np.uint8)).save(tmp_path / f"s{i}.png")
    (tmp_path / "broken.png").write_bytes(b"no image")
    with pytest.warns(UserWarning, match="1"):
        styles = load_styles(tmp_path, 32)
    assert styles.shape == (2, 3, 32, 32)
    assert load_styles(None, 32).shape == (8, 3, 32, 32)
    assert load_styles(tmp_path / "s0.png", 32).shape == (1, 3, 32, 32)


def test_style_images_grayscale_small_and_builtin(tmp_path) -> None:
    gray = tmp_path / "gray.png"
    Image.fromarray(np.arange(20 * 30, dtype=np.uint8).reshape(20, 30)).save(gray)
    style = load_style(gray, 64)  # grayscale → RGB, 20 px short side → scaled up to 64
    assert style.shape == (3, 64, 96)
    assert torch.equal(style[0], style[1])
    assert load_style(None, 32).shape == (3, 32, 32)
    assert np.asarray(mosaic(64)).shape == (64, 64, 3)


def test_builtin_photos_are_patch_folders(tmp_path) -> None:
    root = builtin_photos(tmp_path)
    assert len(list((root / "train").glob("*.png"))) == 40
    assert len(list((root / "val").glob("*.png"))) == 6
    assert builtin_photos(tmp_path) == root  # cached


@pytest.mark.slow
def test_train_predict_export(tmp_path, capsys) -> None:
    data, run = tmp_path / "data", tmp_path / "run"
    _photo_folder(data)
    style = tmp_path / "style.png"
    mosaic(48).save(style)
    assert main(["train", "--task", "style", "--data", str(data), "--style", str(style), *TINY, "--out",
                 str(run)]) == 0
    values = json.loads((run / "metrics.json").read_text())
    for key in ("content_loss", "style_loss", "ssim_content", "content_loss_baseline", "style_loss_baseline",
                "ssim_content_baseline", "style_reduction"):
        assert np.isfinite(values[key])
    # ghostkit val measures against the model's own style, not the data's default
    assert main(["val", "--weights", str(run / "best.ckpt"), "--data", str(data), "--workers", "0"]) == 0
    again = json.loads((run / "val" / "metrics.json").read_text())
    assert again["style_loss"] == pytest.approx(values["style_loss"], rel=1e-4)
    out = tmp_path / "pred"
    assert main(["predict", "--weights", str(run / "best.ckpt"), "--source", str(data / "val"), "--save",
                 str(out)]) == 0
    for i, (h, w) in enumerate(((48, 40), (40, 52), (45, 37))):
        assert Image.open(out / f"p{i}.png").size == (w, h)
        assert (out / f"p{i}_compare.png").is_file()
    # alpha 0 gives the photo back
    assert main(["predict", "--weights", str(run / "best.ckpt"), "--source", str(data / "val" / "p0.png"), "--save",
                 str(tmp_path / "a0"), "--alpha", "0"]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a0" / "p0.png")),
                          np.asarray(Image.open(data / "val" / "p0.png")))
    assert main(["export", "--weights", str(run / "best.ckpt"), "--format", "onnx"]) == 0
    from ghostkit.deploy.runtime import load_model_file

    onnx_model, torch_model = load_model_file(run / "best.onnx"), load_task_model(run / "best.ckpt")
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        diff = (onnx_model(x)["style"]["image"] - torch_model(x)["style"]["image"]).abs().max()
    assert float(diff) < 1e-3
    capsys.readouterr()
    assert main(["predict", "--weights", str(run / "best.ckpt"), "--source", str(data / "val"), "--style",
                 str(style)]) == 2
    assert "one style" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--style", "missing.png"], "no such image file"),
    (["--style", "{bad}"], "cannot read image"),
    (["--imgsz", "34"], "multiple of 4"),
    (["--style-weight", "-1"], "must not be negative"),
])
def test_cli_rejects_bad_style_options(tmp_path, capsys, args: list[str], message: str) -> None:
    data = tmp_path / "data"
    _photo_folder(data)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    args = [a.replace("{bad}", str(bad)) for a in args]
    code = main(["train", "--task", "style", "--data", str(data), *TINY, "--out", str(tmp_path / "run"), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("alpha", ["-0.1", "1.5"])
def test_cli_rejects_alpha_outside_0_1(tmp_path, capsys, alpha: str) -> None:
    code = main(["predict", "--weights", str(tmp_path / "x.ckpt"), "--source", str(tmp_path), "--alpha", alpha])
    err = capsys.readouterr().err
    assert code == 2 and "--alpha must be in [0, 1]" in err and "Traceback" not in err


@pytest.mark.slow
def test_adain_train_predict_any_style_export(tmp_path, capsys) -> None:
    data, run, styles = tmp_path / "data", tmp_path / "run", tmp_path / "styles"
    _photo_folder(data)
    styles.mkdir()
    mosaic(40, 20, seed=1).save(styles / "a.png")
    mosaic(48, 60, seed=2).save(styles / "b.png")
    assert main(["train", "--task", "style", "--head", "adain", "--data", str(data), "--style", str(styles),
                 *TINY, "--out", str(run)]) == 0
    values = json.loads((run / "metrics.json").read_text())
    assert all(np.isfinite(values[k]) for k in ("content_loss", "style_loss", "ssim_content", "style_reduction"))
    assert main(["val", "--weights", str(run / "best.ckpt"), "--data", str(data), "--workers", "0"]) == 0
    gray = tmp_path / "gray.png"
    Image.fromarray(np.tile(np.arange(40, dtype=np.uint8) * 6, (40, 1))).save(gray)
    outs = {}
    for name, style in (("a", styles / "a.png"), ("gray", gray)):  # a grayscale style is read as RGB
        assert main(["predict", "--weights", str(run / "best.ckpt"), "--source", str(data / "val"), "--save",
                     str(tmp_path / name), "--style", str(style), "--alpha", "0.8"]) == 0
        outs[name] = np.asarray(Image.open(tmp_path / name / "p1.png"), dtype=np.float32)
        assert outs[name].shape == (40, 52, 3)
    assert np.abs(outs["a"] - outs["gray"]).max() > 1  # the style image changes the result
    assert main(["export", "--weights", str(run / "best.ckpt"), "--format", "onnx"]) == 0
    from ghostkit.deploy.runtime import load_model_file

    onnx_model, torch_model = load_model_file(run / "best.onnx"), load_task_model(run / "best.ckpt")
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        diff = (onnx_model(x)["style"]["image"] - torch_model(x)["style"]["image"]).abs().max()
    assert float(diff) < 1e-3
    capsys.readouterr()
    assert main(["predict", "--weights", str(run / "best.onnx"), "--source", str(data / "val"), "--style",
                 str(styles / "a.png")]) == 2
    assert "PyTorch checkpoint" in capsys.readouterr().err
    for bad, message in ((tmp_path / "missing.png", "no such image file"), (data / "val", "no such image file")):
        assert main(["predict", "--weights", str(run / "best.ckpt"), "--source", str(data / "val"), "--style",
                     str(bad)]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["--head", "vgg"], "style heads are"),
    (["--head", "adain", "--style", "{empty}"], "no images in this folder"),
    (["--head", "adain", "--style", "{tiny}"], "too small to carry a texture"),
    (["--head", "adain", "--imgsz", "36"], "multiple of 8"),
])
def test_cli_rejects_bad_adain_options(tmp_path, capsys, args: list[str], message: str) -> None:
    data = tmp_path / "data"
    _photo_folder(data)
    (tmp_path / "empty").mkdir()
    Image.fromarray(np.zeros((10, 12, 3), dtype=np.uint8)).save(tmp_path / "tiny.png")
    args = [a.replace("{empty}", str(tmp_path / "empty")).replace("{tiny}", str(tmp_path / "tiny.png")) for a in args]
    code = main(["train", "--task", "style", "--data", str(data), *TINY, "--out", str(tmp_path / "run"), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
