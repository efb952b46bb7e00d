"""Image restoration (super-resolution, denoising): head options and PSNR / SSIM metrics for the engine.

Metrics follow the super-resolution literature: PSNR and SSIM on the luma (Y, ITU-R BT.601 studio range, as
MATLAB's ``rgb2ycbcr``) of outputs clamped to [0, 1], after cropping ``scale`` px off every border, averaged per
image. ``psnr_rgb`` is the same PSNR on the three RGB channels (the convention of colour denoising papers), and
``psnr_baseline_rgb`` the baseline's. ``psnr_baseline`` / ``ssim_baseline`` score what the model starts from:
the bicubic upscale of the input (super-resolution) or the noisy input itself (denoising); the head returns it
next to its output (``outputs["baseline"]``), since the targets hold only the clean image. A
per-image PSNR is capped at 100 dB so that identical images give a finite value (metrics.json stays valid JSON).

``sharpness`` (and ``sharpness_baseline``): a no-reference measure of detail that needs no download, the mean
gradient magnitude of the output's luma (Sobel) divided by that of the clean target, over the whole set: 1 is as
sharp as the truth, bicubic upscaling scores below 1, oversharpening or hallucinated texture above 1. PSNR rewards
blur where the detail is uncertain; this shows what adversarial training (``--adversarial``) buys back for it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from ..data.restore import Degradation, RestoreDataset, parse_noise
from ..data.tasks import build_task_data
from ..errors import GhostkitError
from .config import TrainConfig
from .spec import TaskData, TaskSpec, register_spec

__all__ = ["RestoreMetrics", "RestoreSpec", "gradient_magnitude", "rgb_to_y"]

MAX_PSNR = 100.0
# BT.601 luma for RGB in [0, 1], studio range (16..235)/255: the convention of SR papers and MATLAB's rgb2ycbcr
_Y_WEIGHTS = (65.481 / 255, 128.553 / 255, 24.966 / 255)
_Y_OFFSET = 16 / 255


def gradient_magnitude(x: torch.Tensor) -> torch.Tensor:
    """``B x 1 x H x W`` → ``B``: mean Sobel gradient magnitude per image (valid positions only)."""
    k = x.new_tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]]) / 8
    g = F.conv2d(x, torch.stack([k, k.T])[:, None])
    return g.pow(2).sum(1).sqrt().mean((1, 2))


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """``B x 3 x H x W`` RGB in [0, 1] → ``B x 1 x H x W`` BT.601 luma in [16/255, 235/255]."""
    w = x.new_tensor(_Y_WEIGHTS).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True) + _Y_OFFSET


class RestoreMetrics(nn.Module):
    """``psnr``, ``ssim`` (Y channel), ``psnr_rgb``, ``sharpness``, and the baseline's ``psnr_baseline``,
    ``ssim_baseline``, ``psnr_baseline_rgb``, ``sharpness_baseline``.

    ``update(outputs, targets)``: the head's ``{"image", "baseline"}`` (``B x 3 x H x W``) and the clean targets.
    """

    def __init__(self, scale: int) -> None:
        super().__init__()
        self.border = scale
        psnr = dict(data_range=1.0, dim=(1, 2, 3), reduction="none")  # per image, averaged in compute
        self.psnr, self.psnr_rgb, self.psnr_baseline, self.psnr_baseline_rgb = (
            PeakSignalNoiseRatio(**psnr) for _ in range(4))
        self.ssim = StructuralSimilarityIndexMeasure(data_range=1.0)
        self.ssim_baseline = StructuralSimilarityIndexMeasure(data_range=1.0)
        self.sharp = MeanMetric()  # summed gradient magnitudes: output, baseline, target (see the module docstring)
        self.sharp_baseline = MeanMetric()
        self.sharp_target = MeanMetric()

    def _crop(self, x: torch.Tensor) -> torch.Tensor:
        b = self.border
        return x[..., b:-b, b:-b] if b and min(x.shape[-2:]) > 2 * b else x

    def update(self, outputs: dict[str, torch.Tensor], targets: torch.Tensor) -> None:
        target = self._crop(targets.float())
        pred = self._crop(outputs["image"].detach().float().clamp(0, 1))
        base = self._crop(outputs["baseline"].detach().float().clamp(0, 1))
        ty, py, by = rgb_to_y(target), rgb_to_y(pred), rgb_to_y(base)
        self.psnr.update(py, ty)
        self.psnr_rgb.update(pred, target)
        self.psnr_baseline.update(by, ty)
        self.psnr_baseline_rgb.update(base, target)
        self.ssim.update(py, ty)
        self.ssim_baseline.update(by, ty)
        self.sharp.update(gradient_magnitude(py))
        self.sharp_baseline.update(gradient_magnitude(by))
        self.sharp_target.update(gradient_magnitude(ty))

    def compute(self) -> dict:
        def mean_psnr(m: PeakSignalNoiseRatio) -> float:
            return float(m.compute().clamp(max=MAX_PSNR).mean())

        truth = self.sharp_target.compute().clamp_min(1e-12)  # flat targets: no detail to match

        return {
            "psnr": mean_psnr(self.psnr),
            "ssim": float(self.ssim.compute()),
            "psnr_baseline": mean_psnr(self.psnr_baseline),
            "ssim_baseline": float(self.ssim_baseline.compute()),
            "psnr_rgb": mean_psnr(self.psnr_rgb),
            "psnr_baseline_rgb": mean_psnr(self.psnr_baseline_rgb),
            "sharpness": float(self.sharp.compute() / truth),
            "sharpness_baseline": float(self.sharp_baseline.compute() / truth),
        }

    def reset(self) -> None:
        for m in self.children():
            m.reset()


class RestoreSpec(TaskSpec):
    """``--task restore``: ``--scale`` 1..4, ``--noise`` sigma or range, ``--width`` / ``--depth`` of the network,
    ``--imgsz`` the training patch in high-resolution px. Images stay in [0, 1] (mean 0, std 1)."""

    name = "restore"

    def __init__(self) -> None:
        self._data = None  # the last data built, for metrics() (see there)

    def build_data(self, cfg: TrainConfig) -> TaskData:
        data = build_task_data(self.name, cfg.data, cfg.imgsz, cfg.val_fraction, cfg.seed, scale=cfg.scale,
                               noise=cfg.noise, jpeg=cfg.jpeg)
        self.attach_data(data)
        return data

    def attach_data(self, data: TaskData) -> None:
        self._data = data.source

    def head_config(self, cfg: TrainConfig, data: TaskData) -> dict:
        if cfg.pretrained and not cfg.adversarial:  # adversarial: the perceptual network's (engine/sr_gan.py)
            raise GhostkitError("--pretrained loads backbone weights, but restore models have no backbone")
        if cfg.imgsz is not None and cfg.imgsz % cfg.scale:
            raise GhostkitError(f"--imgsz (the training patch, {cfg.imgsz} px) must be a multiple of --scale "
                                f"{cfg.scale}")
        paired = getattr(self._data, "paired_scale", None)
        if paired is not None and paired != cfg.scale:
            raise GhostkitError(f"{cfg.data}: the lr/ + hr/ pairs are x{paired}, but --scale is {cfg.scale}")
        return {"scale": cfg.scale, "width": cfg.width or 32, "depth": cfg.depth or 6, "noise": str(cfg.noise),
                "jpeg": cfg.jpeg}

    def metrics(self, class_names: list[str], cfg: TrainConfig, head: nn.Module) -> nn.Module:
        # `ghostkit val` builds the data from default options, not the model's scale and noise: re-target the
        # validation set to the model (a no-op when training, where they agree)
        val = getattr(self._data, "val", None)
        if isinstance(val, RestoreDataset):
            if val.paired_scale is not None and val.paired_scale != head.scale:
                raise GhostkitError(f"{cfg.data}: the lr/ + hr/ pairs are x{val.paired_scale}, but the model is "
                                    f"x{head.scale}")
            val.configure(Degradation(head.scale, parse_noise(head.noise), head.jpeg))
        return RestoreMetrics(head.scale)


register_spec(RestoreSpec())
