"""Classification (single- and multi-label): torchmetrics metrics and plots for the engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchmetrics import classification as tmc

from ..data.recipe import STANDARD
from ..data.tasks import build_task_data
from .config import TrainConfig
from .spec import TaskData, TaskSpec, register_spec

__all__ = ["ClassifyMetrics", "MultilabelMetrics"]


class ClassifyMetrics(nn.Module):
    """top1, top5, f1_macro and per-class precision/recall (metrics.json keys), plus a confusion matrix."""

    def __init__(self, class_names: list[str]) -> None:
        super().__init__()
        n = len(class_names)
        self.class_names = class_names
        self.top1 = tmc.MulticlassAccuracy(n, top_k=1, average="micro")
        self.top5 = tmc.MulticlassAccuracy(n, top_k=min(5, n), average="micro")
        self.f1 = tmc.MulticlassF1Score(n, average="macro")
        self.precision = tmc.MulticlassPrecision(n, average=None)
        self.recall = tmc.MulticlassRecall(n, average=None)
        self.confusion = tmc.MulticlassConfusionMatrix(n)

    def update(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        for m in (self.top1, self.top5, self.f1, self.precision, self.recall, self.confusion):
            m.update(logits, targets)

    def compute(self) -> dict:
        prec, rec = self.precision.compute(), self.recall.compute()
        return {
            "top1": float(self.top1.compute()),
            "top5": float(self.top5.compute()),
            "f1_macro": float(self.f1.compute()),
            "per_class": {c: {"precision": float(p), "recall": float(r)}
                          for c, p, r in zip(self.class_names, prec, rec)},
            "confusion_matrix": self.confusion.compute().tolist(),
        }

    def reset(self) -> None:
        for m in self.children():
            m.reset()


class MultilabelMetrics(nn.Module):
    """map (macro average precision), f1_macro at ``threshold`` and per-class AP / F1."""

    def __init__(self, class_names: list[str], threshold: float = 0.5) -> None:
        super().__init__()
        n = len(class_names)
        self.class_names = class_names
        self.ap = tmc.MultilabelAveragePrecision(n, average=None)
        self.f1 = tmc.MultilabelF1Score(n, threshold=threshold, average=None)

    def update(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        self.ap.update(logits, targets.long())
        self.f1.update(logits.sigmoid(), targets.long())

    def compute(self) -> dict:
        ap, f1 = self.ap.compute(), self.f1.compute()
        return {
            "map": float(ap.nanmean()),
            "f1_macro": float(f1.mean()),
            "per_class": {c: {"ap": float(a), "f1": float(f)} for c, a, f in zip(self.class_names, ap, f1)},
        }

    def reset(self) -> None:
        for m in self.children():
            m.reset()


class ClassifySpec(TaskSpec):
    def __init__(self, multilabel: bool) -> None:
        self.name = "multilabel" if multilabel else "classify"
        self.multilabel = multilabel

    def build_data(self, cfg: TrainConfig) -> TaskData:
        return build_task_data(self.name, cfg.data, cfg.imgsz, cfg.val_fraction, cfg.seed,
                               auto_augment=cfg.auto_augment, random_erasing=cfg.random_erasing, epochs=cfg.epochs,
                               pretrained=bool(cfg.pretrained), flip=cfg.flip, crop_scale=cfg.crop_scale,
                               dropout=cfg.dropout, label_smoothing=cfg.label_smoothing, cache_mb=cfg.cache_mb)

    def head_config(self, cfg: TrainConfig, data: TaskData) -> dict:
        # a multi-task run builds no recipe: it regularises like the standard one
        dropout = STANDARD["dropout"] if cfg.dropout is None else cfg.dropout
        smoothing = STANDARD["label_smoothing"] if cfg.label_smoothing is None else cfg.label_smoothing
        config = {"num_classes": len(data.class_names[self.name]), "multilabel": self.multilabel,
                  "dropout": dropout, "label_smoothing": 0.0 if self.multilabel else smoothing}
        targets = getattr(data.train, "targets", None)
        if self.multilabel and targets and not isinstance(targets[0], dict):  # label frequencies: the biases' start
            config["prior"] = [round(float(f), 4) for f in np.asarray(targets, dtype=np.float32).mean(axis=0)]
        return config

    def metrics(self, class_names: list[str], cfg: TrainConfig, head: nn.Module) -> nn.Module:
        if self.multilabel:
            return MultilabelMetrics(class_names, cfg.threshold)
        return ClassifyMetrics(class_names)

    def plots(self, values: dict, class_names: list[str], out_dir: Path) -> list[Path]:
        if "confusion_matrix" not in values:
            return []
        from .plots import plot_confusion_matrix

        return [plot_confusion_matrix(values["confusion_matrix"], class_names, out_dir / "confusion_matrix.png")]


register_spec(ClassifySpec(multilabel=False))
register_spec(ClassifySpec(multilabel=True))
