"""Adversarial super-resolution (``--task restore --adversarial``): the sharpness measure, one training epoch that
writes the restore metrics and a restore checkpoint, and bad input."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ghostkit.cli import main
from ghostkit.engine.restore import RestoreMetrics, gradient_magnitude
from ghostkit.tasks.model import load_task_model
from ghostkit.tasks.restore import bicubic_upscale


def _textured(h: int, w: int, seed: int) -> torch.Tensor:
    """``3 x h x w`` in [0, 1] with detail at several scales."""
    g = torch.Generator().manual_seed(seed)
    x = sum(F.interpolate(torch.rand(1, 3, max(2, h // k), max(2, w // k), generator=g), size=(h, w),
                          mode="bilinear") for k in (1, 4))
    return (x[0] / 2).clamp(0, 1)


def test_sharpness_is_one_for_the_truth_and_below_one_for_bicubic() -> None:
    hr = torch.stack([_textured(48, 48, s) for s in range(3)])
    lr = F.interpolate(hr, scale_factor=0.25, mode="bicubic", align_corners=False, antialias=True)
    blurry = bicubic_upscale(lr, 4).clamp(0, 1)
    metrics = RestoreMetrics(scale=4)
    metrics.update({"image": hr.clone(), "baseline": blurry}, hr)
    values = metrics.compute()
    assert values["sharpness"] == pytest.approx(1.0, abs=1e-6)
    assert values["sharpness_baseline"] < 0.8  # bicubic loses the fine detail
    flat = torch.full((1, 1, 10, 10), 0.5)
    assert float(gradient_magnitude(flat)) == 0.0
    ramp = torch.linspace(0, 1, 10).repeat(10, 1)[None, None]
    assert float(gradient_magnitude(ramp)) == pytest.approx(1 / 9, rel=1e-5)  # Sobel / 8: the slope per pixel


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("srgan")
    for split, n in (("train", 4), ("val", 2)):
        (root / split).mkdir()
        for i in range(n):
            img = (_textured(64, 64, 10 * n + i) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
            Image.fromarray(img).save(root / split / f"{i}.png")
    return root


def test_adversarial_restore_trains_one_epoch(photos, tmp_path) -> None:
    out = tmp_path / "run"
    code = main(["train", "--task", "restore", "--adversarial", "--data", str(photos), "--scale", "4", "--imgsz", "32",
                 "--model", "ghostnet_050", "--width", "8", "--depth", "1", "--epochs", "1", "--batch", "64",
                 "--workers", "0", "--out", str(out)])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"psnr", "ssim", "psnr_baseline", "sharpness", "sharpness_baseline"} <= set(metrics)
    assert metrics["psnr"] > 10 and metrics["sharpness"] > 0
    header = (out / "metrics.csv").read_text().splitlines()[0]
    for key in ("train/d_loss", "train/pixel", "train/perceptual", "train/g_adv"):
        assert key in header, key
    raw = torch.load(out / "best.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    assert any(k.startswith("discriminator.") for k in raw)  # for --resume
    model = load_task_model(out / "best.ckpt")  # a plain restore model
    assert list(model.heads) == ["restore"] and model.heads["restore"].scale == 4
    with torch.no_grad():
        assert model(torch.rand(1, 3, 8, 8))["restore"]["image"].shape == (1, 3, 32, 32)


@pytest.mark.parametrize("args, message", [
    (["--task", "classify"], "--adversarial"),
    (["--task", "restore", "--ema"], "--ema"),
])
def test_adversarial_bad_input(args, message, tmp_path, capsys) -> None:
    capsys.readouterr()
    rc = main(["train", "--adversarial", "--epochs", "1", "--out", str(tmp_path / "r"), *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and message in err and len(err.splitlines()) == 1, err
