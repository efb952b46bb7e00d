"""Semantic segmentation: head options, torchmetrics metrics and plots for the engine.

metrics.json: ``miou`` (mean IoU over the classes present in the ground truth or the predictions), ``pixel_acc``
(pixels, 255 excluded) and ``per_class`` ``{name: {"iou"}}`` for those classes. Validation runs at the training size
(whole images resized, masks with nearest neighbours), as the Predictor sees them; the Predictor's masks are resized
back to each image's own size, with bounded memory (see ``tasks.segment.resize_argmax``).
"""

from __future__ import annotations

import math
import weakref
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import classification as tmc

from ..data.tasks import build_task_data
from ..errors import GhostkitError
from ..io import atomic_path
from ..tasks.segment import DEFAULT_HEAD, IGNORE_INDEX, SEGMENT_HEADS, color_palette, segment_head_config
from .config import TrainConfig
from .spec import TaskData, TaskSpec, register_spec

__all__ = ["SegmentMetrics", "SegmentSpec"]

_SAMPLES = 8  # (ground truth, prediction) pairs kept for val_overlays.png


class SegmentMetrics(nn.Module):
    """``update(logits B x C x H x W or {"out": ...}, masks B x H x W)``; ``compute()`` → miou, pixel_acc, per_class
    and the confusion matrix (for the plot; left out of metrics.json). The first few masks of an epoch stay in
    ``samples`` for the plots."""

    def __init__(self, class_names: list[str]) -> None:
        super().__init__()
        n = len(class_names)
        self.class_names = class_names
        # masks were checked when the data was read: skip torchmetrics' per-update value checks (slow on big masks)
        common = dict(ignore_index=IGNORE_INDEX, validate_args=False)
        self.iou = tmc.MulticlassJaccardIndex(n, average=None, zero_division=math.nan, **common)
        self.pixel_acc = tmc.MulticlassAccuracy(n, average="micro", **common)
        self.confusion = tmc.MulticlassConfusionMatrix(n, **common)
        self._pending: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.samples: list[tuple[torch.Tensor, torch.Tensor]] = []

    def update(self, outputs: torch.Tensor | dict, targets: torch.Tensor) -> None:
        logits = outputs["out"] if isinstance(outputs, dict) else outputs
        if logits.shape[-2:] != targets.shape[-2:]:
            logits = F.interpolate(logits, size=targets.shape[-2:], mode="bilinear", align_corners=False)
        preds = logits.argmax(1)
        for m in (self.iou, self.pixel_acc, self.confusion):
            m.update(preds, targets)
        for t, p in zip(targets[:_SAMPLES - len(self._pending)], preds):
            self._pending.append((t.to(torch.uint8).cpu(), p.to(torch.uint8).cpu()))

    def compute(self) -> dict:
        iou = self.iou.compute()
        present = ~torch.isnan(iou)
        self.samples = list(self._pending)
        return {
            "miou": float(iou[present].mean()) if present.any() else 0.0,
            "pixel_acc": float(self.pixel_acc.compute()),
            "per_class": {c: {"iou": float(v)} for c, v, ok in zip(self.class_names, iou, present) if ok},
            "confusion_matrix": self.confusion.compute().tolist(),
        }

    def reset(self) -> None:
        for m in (self.iou, self.pixel_acc, self.confusion):
            m.reset()
        self._pending = []


class SegmentSpec(TaskSpec):
    name = "segment"

    def __init__(self) -> None:
        self._metrics: weakref.ref | None = None  # the latest metrics module, whose samples plots() draws

    def build_data(self, cfg: TrainConfig) -> TaskData:
        head = cfg.head or DEFAULT_HEAD
        if head not in SEGMENT_HEADS:
            raise GhostkitError(f"--head must be one of {', '.join(SEGMENT_HEADS)} for segment, got {head!r}")
        return build_task_data(self.name, cfg.data, cfg.imgsz, cfg.val_fraction, cfg.seed, epochs=cfg.epochs,
                               pretrained=bool(cfg.pretrained), crop_scale=cfg.crop_scale, flip=cfg.flip)

    def head_config(self, cfg: TrainConfig, data: TaskData) -> dict:
        return {"num_classes": len(data.class_names[self.name]), "aux_loss": bool(cfg.aux_loss),
                "output_stride": cfg.output_stride, **segment_head_config(cfg.head or DEFAULT_HEAD, data.imgsz)}

    def metrics(self, class_names: list[str], cfg: TrainConfig, head: nn.Module) -> nn.Module:
        metrics = SegmentMetrics(class_names)
        self._metrics = weakref.ref(metrics)
        return metrics

    def plots(self, values: dict, class_names: list[str], out_dir: Path) -> list[Path]:
        from .plots import plot_confusion_matrix

        out = []
        if "confusion_matrix" in values and len(class_names) <= 60:
            out.append(plot_confusion_matrix(values["confusion_matrix"], class_names, out_dir / "confusion_matrix.png"))
        metrics = self._metrics() if self._metrics is not None else None
        if metrics is not None and metrics.samples:
            out.append(plot_mask_samples(metrics.samples, out_dir / "val_overlays.png"))
        return out


def plot_mask_samples(samples: list[tuple[torch.Tensor, torch.Tensor]], out: Path) -> Path:
    """Rows of validation masks: ground truth | prediction | errors (red: wrong, grey: ignored), VOC colours.

    The metrics only see masks (not images), so this shows the masks side by side rather than over the images.
    """
    import numpy as np
    from PIL import Image

    palette = np.asarray(color_palette(), dtype=np.uint8)
    scale = max(1, 128 // max(samples[0][0].shape))
    rows = []
    for target, pred in samples:
        t, p = target.numpy(), pred.numpy()
        err = np.zeros((*t.shape, 3), dtype=np.uint8)
        err[(t != p) & (t != IGNORE_INDEX)] = (230, 30, 30)
        err[t == IGNORE_INDEX] = (128, 128, 128)
        gap = np.full((t.shape[0], 2, 3), 255, dtype=np.uint8)
        rows.append(np.concatenate([palette[t], gap, palette[p], gap, err], axis=1))
        rows.append(np.full((2, rows[-1].shape[1], 3), 255, dtype=np.uint8))
    grid = np.concatenate(rows[:-1], axis=0).repeat(scale, 0).repeat(scale, 1)
    with atomic_path(out) as tmp:
        Image.fromarray(grid).save(tmp)
    return out


register_spec(SegmentSpec())
