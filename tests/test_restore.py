"""Image restoration: the ghost restoration head, degradations and data, PSNR / SSIM metrics, CLI errors, and a tiny
train → val → predict run."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ghostkit.cli import main
from ghostkit.data.restore import (
    Degradation,
    RestoreDataset,
    build_restore_data,
    load_photos,
    parse_noise,
    restore_collate,
)
from ghostkit.engine.restore import RestoreMetrics, rgb_to_y
from ghostkit.errors import GhostkitError
from ghostkit.tasks import build_head
from ghostkit.tasks.restore import RestoreHead, bicubic_upscale


def _smooth_image(h: int, w: int, seed: int) -> np.ndarray:
    """A uint8 H x W x 3 image with structure at several scales (upsampled noise), like a photo's."""
    g = torch.Generator().manual_seed(seed)
    x = sum(F.interpolate(torch.rand(1, 3, max(2, h // k), max(2, w // k), generator=g), size=(h, w), mode="bilinear")
            for k in (2, 8))
    return (x[0].permute(1, 2, 0) / 2 * 255).round().clamp(0, 255).to(torch.uint8).numpy()


def _write(folder, sizes: list[tuple[int, int]], seed: int = 0, prefix: str = "img") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(_smooth_image(h, w, seed + i)).save(folder / f"{prefix}{i}.png")


def _randomise(head: RestoreHead) -> RestoreHead:
    """Give the zero-initialised last conv weights, so that the network's residual is not zero."""
    torch.manual_seed(0)
    torch.nn.init.normal_(head.upsample[0].weight, std=0.05)
    return head


@pytest.mark.parametrize("scale", [1, 2, 3, 4])
def test_shapes_at_odd_sizes(scale: int) -> None:
    head = _randomise(build_head("restore", None, scale=scale, width=8, depth=2))
    x = torch.rand(2, 3, 17, 23)
    out = head(None, x)
    assert out["image"].shape == out["baseline"].shape == (2, 3, 17 * scale, 23 * scale)
    loss = head.loss(out, torch.rand(2, 3, 17 * scale, 23 * scale))["loss"]
    loss.backward()
    assert head.conv_first.weight.grad.abs().sum() > 0
    with torch.no_grad():
        res = head.eval().postprocess(head(None, x), [(17, 23)] * 2)
    assert len(res) == 2 and res[0]["image"].shape == (3, 17 * scale, 23 * scale)
    assert 0 <= float(res[0]["image"].min()) and float(res[0]["image"].max()) <= 1
    assert head.format_result(res[0], []) == {"size": [17 * scale, 23 * scale], "scale": scale}
    json.dumps(head.format_result(res[0], []))


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_untrained_model_returns_the_baseline_exactly(scale: int) -> None:
    head = RestoreHead(scale=scale, width=8, depth=1)
    x = torch.rand(1, 3, 20, 13)
    out = head(None, x)
    expected = x if scale == 1 else F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
    assert torch.equal(out["image"], expected) and torch.equal(out["baseline"], expected)


def test_tiled_inference_matches_whole_image() -> None:
    head = _randomise(RestoreHead(scale=2, width=8, depth=6, tile=64, tile_overlap=16)).eval()
    x = torch.rand(1, 3, 150, 170)
    with torch.no_grad():
        tiled = head(None, x)["image"]
        head.tile = 0
        whole = head(None, x)["image"]
    assert tiled.shape == (1, 3, 300, 340)
    assert (tiled - whole).abs().max() < 1e-5
    assert (whole - bicubic_upscale(x, 2)).abs().max() > 1e-2  # the residual is not trivially zero


def test_render_gives_image_and_comparison() -> None:
    head = RestoreHead(scale=3, width=8, depth=1).eval()
    image = Image.fromarray(_smooth_image(20, 30, 0))
    x = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)[None].float() / 255
    result = head.postprocess(head(None, x), [(20, 30)])[0]
    pictures = head.render(image, result, [])
    assert pictures[""].size == (90, 60) and pictures["compare"].size == (270, 60)


@pytest.mark.parametrize("bad", [dict(scale=5), dict(scale=0), dict(width=2), dict(depth=-1)])
def test_head_rejects_bad_options(bad: dict) -> None:
    with pytest.raises(GhostkitError):
        RestoreHead(**bad)


def test_parse_noise() -> None:
    assert parse_noise("25") == (25.0, 25.0)
    assert parse_noise("0-50") == (0.0, 50.0)
    assert parse_noise(15) == (15.0, 15.0)
    for bad in ("-5", "abc", "50-10", "10-", "300"):
        with pytest.raises(GhostkitError, match="--noise"):
            parse_noise(bad)


def test_degradation_downscales_adds_noise_and_is_reproducible() -> None:
    hr = torch.from_numpy(_smooth_image(48, 36, 1)).permute(2, 0, 1).float() / 255
    lr = Degradation(3, (0.0, 0.0))(hr)
    assert lr.shape == (3, 16, 12)
    assert torch.equal(lr, (lr * 255).round() / 255)  # 8-bit levels, as a saved image
    assert (lr - F.avg_pool2d(hr[None], 3)[0]).abs().mean() < 0.02
    noisy = Degradation(1, (25.0, 25.0))
    a, b = noisy(hr, torch.Generator().manual_seed(3)), noisy(hr, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and 0 <= a.min() and a.max() <= 1
    assert abs(float((a - hr).std()) - 25 / 255) < 0.02


def test_jpeg_degradation_is_lossy_deterministic_and_checked() -> None:
    hr = torch.rand(3, 48, 48)
    jpeg = Degradation(1, (0.0, 0.0), jpeg=20)
    a, b = jpeg(hr), jpeg(hr)
    assert torch.equal(a, b) and a.shape == hr.shape and not jpeg.identity
    assert 0.01 < float((a - hr).abs().mean()) < 0.3  # compression artefacts, but still the image
    assert float((Degradation(1, (0.0, 0.0), jpeg=95)(hr) - hr).abs().mean()) < float((a - hr).abs().mean())
    for bad in (-1, 101):
        with pytest.raises(GhostkitError, match="--jpeg"):
            Degradation.parse(2, "0", bad)


def test_metrics_y_channel_psnr_and_identical_baseline() -> None:
    target = torch.rand(2, 3, 40, 40) * 0.8
    metrics = RestoreMetrics(scale=2)
    metrics.update({"image": target + 0.01, "baseline": target.clone()}, target)
    values = metrics.compute()
    assert set(values) >= {"psnr", "ssim", "psnr_baseline", "psnr_rgb"}
    y_step = 0.01 * (65.481 + 128.553 + 24.966) / 255  # a +0.01 RGB offset moves BT.601 luma by this much
    assert values["psnr"] == pytest.approx(-20 * math.log10(y_step), abs=1e-3)
    assert values["psnr_rgb"] == pytest.approx(40.0, abs=1e-3)
    assert values["psnr_baseline"] == 100.0  # identical images: the cap, not inf
    assert values["psnr_baseline_rgb"] == 100.0
    assert values["ssim_baseline"] == pytest.approx(1.0, abs=1e-6)
    json.dumps(values, allow_nan=False)
    assert rgb_to_y(torch.ones(1, 3, 1, 1)).item() == pytest.approx(235 / 255)


def test_photos_split_is_disjoint() -> None:
    from sklearn.datasets import load_sample_images

    train, val = load_photos()
    assert [e.hr.shape for e in train] == [(320, 640, 3)] * 2 and [e.hr.shape for e in val] == [(107, 640, 3)] * 2
    for photo, t, v in zip(load_sample_images().images, train, val):
        assert np.array_equal(np.concatenate([t.hr, v.hr]), photo)  # top 75% to train, bottom 25% to validate
    data = build_restore_data("photos", Degradation(2, (0.0, 0.0)))
    lr, hr = data.train[0]
    assert lr.shape == (3, 24, 24) and hr.shape == (3, 48, 48)
    v1, v2 = data.val[1], data.val[1]
    assert v1[0].shape == (3, 53, 320) and v1[1].shape == (3, 106, 640) and torch.equal(v1[0], v2[0])
    images, targets = restore_collate([data.val[0], data.val[1]])
    assert images.shape == (2, 3, 53, 320) and targets["restore"].shape == (2, 3, 106, 640)


def test_paired_folders_align_crops(tmp_path) -> None:
    for split, n in (("train", 2), ("val", 1)):
        _write(tmp_path / split / "hr", [(64, 72)] * n, seed=10 * n)
        (tmp_path / split / "lr").mkdir()
        for p in sorted((tmp_path / split / "hr").iterdir()):
            hr = torch.from_numpy(np.array(Image.open(p))).permute(2, 0, 1).float()
            lr = F.avg_pool2d(hr[None], 2)[0].round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
            Image.fromarray(lr).save(tmp_path / split / "lr" / p.name)
    data = build_restore_data(tmp_path, Degradation(2, (0.0, 0.0)), patch=32)
    assert data.paired_scale == 2
    for lr, hr in [data.train[0], data.train[1], data.val[0]]:
        assert hr.shape[-2:] == (2 * lr.shape[-2], 2 * lr.shape[-1])
        assert (F.avg_pool2d(hr[None], 2)[0] - lr).abs().max() <= 1 / 255 + 1e-6  # same region, same flip


def test_data_errors_name_the_files(tmp_path) -> None:
    _write(tmp_path / "unpaired" / "train" / "hr", [(64, 64)] * 2)
    _write(tmp_path / "unpaired" / "train" / "lr", [(32, 32)], prefix="other")
    with pytest.raises(GhostkitError, match=r"lr/other0.png.*hr/img0.png"):
        build_restore_data(tmp_path / "unpaired", Degradation())
    _write(tmp_path / "small" / "train", [(100, 100), (100, 40)])
    _write(tmp_path / "small" / "val", [(64, 64)])
    with pytest.raises(GhostkitError, match=r"img1.png: 40 x 100 px is smaller than the 48 px training patch"):
        build_restore_data(tmp_path / "small", Degradation(2))
    _write(tmp_path / "tiny" / "train", [(100, 100)])
    _write(tmp_path / "tiny" / "val", [(20, 64)])
    with pytest.raises(GhostkitError, match=r"val/img0.png: 64 x 20 px is too small"):
        build_restore_data(tmp_path / "tiny", Degradation(2))
    _write(tmp_path / "mismatch" / "hr", [(64, 64)] * 2)
    _write(tmp_path / "mismatch" / "lr", [(32, 32), (30, 32)])
    with pytest.raises(GhostkitError, match=r"hr/img1.png: hr 64 x 64 px is not 1-4 x its lr 32 x 30 px"):
        build_restore_data(tmp_path / "mismatch", Degradation(2))
    with pytest.raises(GhostkitError, match="no such data folder"):
        build_restore_data(tmp_path / "missing", Degradation())


@pytest.mark.parametrize("args, message", [
    (["--scale", "5"], "--scale must be 1, 2, 3 or 4"),
    (["--noise", "-5"], "must not be negative"),
    (["--noise", "abc"], "--noise must be a sigma"),
    (["--scale", "1", "--noise", "0"], "nothing to restore"),
    (["--scale", "2", "--imgsz", "33"], "must be a multiple of --scale"),
])
def test_cli_rejects_bad_restore_options(tmp_path, capsys, args: list[str], message: str) -> None:
    code = main(["train", "--task", "restore", "--data", "photos", "--workers", "0", "--out", str(tmp_path / "run"),
                 *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_cli_rejects_pairs_of_another_scale(tmp_path, capsys) -> None:
    _write(tmp_path / "hr", [(192, 192)] * 3)
    _write(tmp_path / "lr", [(64, 64)] * 3)
    code = main(["train", "--task", "restore", "--data", str(tmp_path), "--scale", "2", "--workers", "0",
                 "--out", str(tmp_path / "run")])
    assert code == 2 and "pairs are x3, but --scale is 2" in capsys.readouterr().err


@pytest.mark.slow
def test_train_val_predict_end_to_end(tmp_path) -> None:
    data = tmp_path / "data"
    _write(data / "train", [(48, 48), (50, 44), (60, 60)])
    _write(data / "val", [(40, 40), (45, 42)], seed=7)
    run = tmp_path / "run"
    # scale 3 and noise: `ghostkit val` must re-create both from the checkpoint (it does not get the options)
    code = main(["train", "--task", "restore", "--data", str(data), "--scale", "3", "--noise", "10", "--epochs", "1",
                 "--batch", "64", "--imgsz", "36", "--width", "8", "--depth", "1", "--workers", "0",
                 "--out", str(run)])
    assert code == 0
    trained = json.loads((run / "metrics.json").read_text())
    assert {"psnr", "ssim", "psnr_baseline", "psnr_rgb"} <= set(trained) and trained["psnr"] > 20
    assert main(["val", "--weights", str(run / "best.ckpt"), "--data", str(data), "--workers", "0"]) == 0
    validated = json.loads((run / "val" / "metrics.json").read_text())
    assert validated == pytest.approx(trained, abs=1e-4)
    samples = sorted((run / "samples").glob("*.png"))
    assert [Image.open(p).size for p in samples] == [(13, 13), (13, 13)]  # the degraded validation inputs
    out = tmp_path / "pred"
    assert main(["predict", "--weights", str(run / "best.ckpt"), "--source", str(run / "samples"),
                 "--save", str(out)]) == 0
    assert Image.open(out / "sample_00.png").size == (39, 39)
    assert Image.open(out / "sample_00_compare.png").size == (117, 39)


def test_val_dataset_items_are_degraded_inputs() -> None:
    data = build_restore_data("photos", Degradation(4, (0.0, 0.0)))
    items = data.val.items
    assert len(items) == 2 and items[0][0].size == (160, 26) and [i for i, _ in items[::1]][1].size == (160, 26)
    assert isinstance(data.val, RestoreDataset) and data.val.crop == (26, 160)
