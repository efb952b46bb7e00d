"""Object detection: head options, COCO mAP (torchmetrics + faster-coco-eval) and plots for the engine.

metrics.json keys: ``map`` (COCO AP at IoU 0.50:0.95), ``map50``, ``map75``, ``mar100`` and ``per_class``
(``ap``, ``ap50``, ``recall`` of each class that has validation objects). The best checkpoint is the one with the
highest ``map``: COCO's primary metric, which also rewards tight boxes (``map50`` rises with it on every run we
made). Validation decodes with a 0.001 score threshold (COCO practice: low-scoring boxes only add to the tail of
the precision-recall curve), not the prediction threshold ``--conf``.
Head defaults follow the input size: :func:`ghostkit.tasks.detect.detect_head_config`.
"""

from __future__ import annotations

import math
import weakref
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchmetrics.detection import MeanAveragePrecision

from ..data.tasks import build_task_data
from ..errors import GhostkitError
from ..io import atomic_path
from ..tasks.detect import DEFAULT_ARCH, DETECT_ARCHS, detect_head_config
from .config import TrainConfig
from .spec import TaskData, TaskSpec, register_spec

__all__ = ["DetectMetrics", "DetectSpec", "plot_pr_curves", "plot_val_predictions"]

EVAL_CONF = 0.001


class DetectMetrics(nn.Module):
    """COCO mAP of ``head.postprocess``-ed outputs against the targets, both in network-input pixels.

    Besides ``compute()``'s values it keeps, for the plots, the precision-recall curves at IoU 0.5
    (``last_pr``: 101 recall points x classes) and the predictions on the first ``samples`` validation images
    (``last_samples``, boxes as fractions of the input size)."""

    def __init__(self, class_names: list[str], head: nn.Module, samples: int = 8) -> None:
        super().__init__()
        self.class_names = class_names
        # COCOeval's own (float64) thresholds: torchmetrics' float32 defaults move recall points that fall exactly on
        # a threshold (1/5 > float32(0.2)), so small validation sets would not give COCO's numbers
        # per-class values come from the precision and recall arrays of the one evaluation (as COCOeval's summary
        # computes the overall ones): torchmetrics' class_metrics would run COCOeval again for every class.
        # faster-coco-eval computes COCOeval's numbers in C++ (tests/test_detect.py checks them against pycocotools)
        self.map = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", backend="faster_coco_eval",
                                        class_metrics=False, extended_summary=True,
                                        iou_thresholds=np.linspace(0.5, 0.95, 10).tolist(),
                                        rec_thresholds=np.linspace(0.0, 1.0, 101).tolist())
        self._postprocess = head.postprocess  # a bound method: the head stays out of this module's state
        self._render_conf = float(getattr(head, "conf", 0.25))
        self.samples = samples
        self._samples: list[dict] = []
        self.last_samples: list[dict] = []
        self.last_pr: dict[str, list[float]] = {}

    def update(self, outputs: dict, targets: list[dict[str, torch.Tensor]]) -> None:
        preds = self._postprocess(outputs, None, conf=EVAL_CONF)
        gts = [{"boxes": t["boxes"].float(), "labels": t["labels"].long()} for t in targets]
        self.map.update(preds, gts)
        h, w = outputs["image_size"]
        scale = torch.tensor([w, h, w, h], dtype=torch.float32)
        for p, t in zip(preds, targets):
            if len(self._samples) >= self.samples or "index" not in t:
                break
            keep = p["scores"] >= self._render_conf
            self._samples.append({"index": int(t["index"]), "boxes": (p["boxes"][keep].float().cpu() / scale).tolist(),
                                  "scores": p["scores"][keep].tolist(), "labels": p["labels"][keep].tolist()})

    def compute(self) -> dict:
        r = self.map.compute()
        classes = [int(c) for c in r["classes"].flatten().tolist()]
        # precision: IoU thresholds x 101 recall points x classes x area ranges x max-dets, recall: the same without
        # the recall points; all areas, 100 detections; -1 where a class has no validation objects
        five = r["precision"].ndim == 5
        precision = r["precision"][:, :, :, 0, -1] if five else torch.zeros(10, 101, 0)
        recall = r["recall"][:, :, 0, -1] if five else torch.zeros(10, 0)
        per_class, pr = {}, {}
        for j, c in enumerate(classes):
            p, p50, rc = precision[:, :, j], precision[0, :, j], recall[:, j]
            if not 0 <= c < len(self.class_names) or j >= precision.shape[2] or not (p >= 0).any():
                continue  # no validation objects of this class: AP undefined
            ap50 = float(p50[p50 >= 0].mean()) if (p50 >= 0).any() else 0.0
            name = self.class_names[c]
            per_class[name] = {"ap": float(p[p >= 0].mean()), "ap50": ap50,
                               "recall": float(rc[rc >= 0].mean()) if (rc >= 0).any() else 0.0}
            pr[name] = p50.clamp(min=0).tolist()
        self.last_pr, self.last_samples = pr, self._samples
        return {
            # -1 (nothing to evaluate) reads as 0 so that the keys stay in [0, 1]
            "map": max(0.0, float(r["map"])),
            "map50": max(0.0, float(r["map_50"])),
            "map75": max(0.0, float(r["map_75"])),
            "mar100": max(0.0, float(r["mar_100"])),
            "per_class": per_class,
        }

    def reset(self) -> None:
        self.map.reset()
        self._samples = []


def plot_pr_curves(pr: dict[str, list[float]], per_class: dict, out: Path) -> Path:
    """Precision against recall at IoU 0.5 for each class (101 COCO recall points) and their mean."""
    from .plots import plt

    recall = torch.linspace(0, 1, 101).tolist()
    fig, ax = plt.subplots(figsize=(6, 5))
    for name, precision in pr.items():
        ax.plot(recall, precision, lw=1, label=f"{name} {per_class.get(name, {}).get('ap50', 0.0):.3f}")
    if len(pr) > 1:
        mean = torch.tensor(list(pr.values())).mean(0).tolist()
        ax.plot(recall, mean, lw=3, color="black", label=f"all {sum(mean) / len(mean):.3f}")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title="precision-recall, IoU 0.5")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8, ncol=1 + len(pr) // 20)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return out


def plot_val_predictions(dataset, samples: list[dict], class_names: list[str], out: Path, cell: int = 256) -> Path:
    """A grid of validation images with their predicted boxes (score >= the head's ``conf``)."""
    from PIL import Image

    from ..tasks.detect_results import draw_detections

    cols = min(4, len(samples))
    rows = math.ceil(len(samples) / cols)
    grid = Image.new("RGB", (cols * cell, rows * cell), (255, 255, 255))
    for k, s in enumerate(samples):
        image = dataset.load(s["index"])
        w, h = image.size
        boxes = torch.tensor(s["boxes"], dtype=torch.float32).reshape(-1, 4) * torch.tensor([w, h, w, h])
        drawn = draw_detections(image, {"boxes": boxes, "scores": torch.tensor(s["scores"]),
                                        "labels": torch.tensor(s["labels"], dtype=torch.int64)}, class_names)
        drawn.thumbnail((cell, cell))
        grid.paste(drawn, ((k % cols) * cell, (k // cols) * cell))
    with atomic_path(out) as tmp:
        grid.save(tmp)
    return out


class DetectSpec(TaskSpec):
    name = "detect"

    def __init__(self) -> None:
        # the plots need the validation images and the metric's curves; both are kept weakly between the calls
        self._val = lambda: None
        self._metric = lambda: None

    def build_data(self, cfg: TrainConfig) -> TaskData:
        data = build_task_data(self.name, cfg.data, cfg.imgsz, cfg.val_fraction, cfg.seed, epochs=cfg.epochs,
                               pretrained=bool(cfg.pretrained), crop_scale=cfg.crop_scale, flip=cfg.flip,
                               cache_mb=cfg.cache_mb)
        self.attach_data(data)
        return data

    def attach_data(self, data: TaskData) -> None:
        """The validation set whose images the plots draw on (``dataset.load(index)``), kept weakly."""
        self._val = weakref.ref(data.val)

    def head_config(self, cfg: TrainConfig, data: TaskData) -> dict:
        arch = cfg.head or DEFAULT_ARCH
        if arch not in DETECT_ARCHS:
            raise GhostkitError(f"--head must be one of {', '.join(DETECT_ARCHS)} for detection, got {arch!r}")
        if not 0 <= cfg.conf < 1:
            raise GhostkitError(f"--conf must be in [0, 1), got {cfg.conf}")
        if not 0 < cfg.iou <= 1:
            raise GhostkitError(f"--iou must be in (0, 1], got {cfg.iou}")
        if cfg.max_det < 1:
            raise GhostkitError(f"--max-det must be positive, got {cfg.max_det}")
        return {"num_classes": len(data.class_names[self.name]), "arch": arch, "conf": cfg.conf, "iou": cfg.iou,
                "max_det": cfg.max_det, **detect_head_config(arch, data.imgsz)}

    def metrics(self, class_names: list[str], cfg: TrainConfig, head: nn.Module) -> nn.Module:
        metric = DetectMetrics(class_names, head)
        self._metric = weakref.ref(metric)
        return metric

    def plots(self, values: dict, class_names: list[str], out_dir: Path) -> list[Path]:
        out = []
        metric = self._metric()
        if metric is not None and metric.last_pr:
            out.append(plot_pr_curves(metric.last_pr, values.get("per_class", {}), out_dir / "pr_curve.png"))
        val = self._val()
        if metric is not None and metric.last_samples and val is not None:
            out.append(plot_val_predictions(val, metric.last_samples, class_names, out_dir / "val_predictions.png"))
        return out


register_spec(DetectSpec())
