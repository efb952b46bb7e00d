"""Classification (single- and multi-label): torchmetrics metrics and plots for the engine."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from torchmetrics import classification as tmc
from torchmetrics.functional import classification as tmf

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
    """map (macro average precision), f1_macro at ``threshold`` (also reported) and per-class AP / F1."""

    def __init__(self, class_names: list[str], threshold: float = 0.5) -> None:
        super().__init__()
        n = len(class_names)
        self.class_names, self.threshold = class_names, threshold
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
            "threshold": float(self.threshold),
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
        if self.multilabel:  # until the run chooses one on the training images (`calibrate`)
            config["threshold"] = 0.5 if cfg.threshold is None else cfg.threshold
        targets = getattr(data.train, "targets", None)
        if self.multilabel and targets and not isinstance(targets[0], dict):  # label frequencies: the biases' start
            config["prior"] = [round(float(f), 4) for f in np.asarray(targets, dtype=np.float32).mean(axis=0)]
        return config

    def metrics(self, class_names: list[str], cfg: TrainConfig, head: nn.Module) -> nn.Module:
        if self.multilabel:
            return MultilabelMetrics(class_names, getattr(head, "threshold", 0.5) if cfg.threshold is None
                                     else cfg.threshold)
        return ClassifyMetrics(class_names)

    def calibrate(self, model: nn.Module, data: TaskData, cfg: TrainConfig) -> dict[str, dict]:
        """Multi-label without ``--threshold``: the decision threshold chosen on the training images
        (`choose_threshold`) becomes the head's; returns the changed head configs ``{task: {"threshold": t}}``."""
        if not self.multilabel or cfg.threshold is not None or not hasattr(data.train, "items"):
            return {}
        train = copy.copy(data.train)
        train.transform = data.val.transform  # the images as validation and prediction see them
        threshold = choose_threshold(model, train, self.name, cfg.batch)
        model.heads[self.name].threshold = threshold
        return {self.name: {"threshold": threshold}}

    def plots(self, values: dict, class_names: list[str], out_dir: Path) -> list[Path]:
        if "confusion_matrix" not in values:
            return []
        from .plots import plot_confusion_matrix

        return [plot_confusion_matrix(values["confusion_matrix"], class_names, out_dir / "confusion_matrix.png")]


def choose_threshold(model: nn.Module, dataset, task: str, batch: int = 64) -> float:
    """The multi-label decision threshold (0.05, 0.10, ..., 0.95) of the highest macro F1 on `dataset` (the training
    images with the validation transform), by `model` in eval mode.

    Sigmoid scores are calibrated to the label frequencies: where a model is unsure, a present class scores near its
    frequency, below 0.5, and a threshold of 0.5 predicts no label. On the scenes set of benchmarks/recipe.py (10
    epochs, five classes in a quarter of the images each) the threshold chosen this way was 0.25: validation macro F1
    0.45 against 0.22 at 0.5 (the best threshold on the validation images was 0.20-0.25 too). A threshold tuned on
    the validation images would overstate the validation F1; the training images are the ones a run may use."""
    loader = DataLoader(dataset, batch_size=batch, shuffle=False, num_workers=0)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    scores, targets = [], []
    with torch.no_grad():
        for images, y in loader:
            scores.append(model(images.to(device))[task].float().sigmoid().cpu())
            targets.append(y.long())
    model.train(was_training)
    scores, targets = torch.cat(scores), torch.cat(targets)
    grid = [round(0.05 * k, 2) for k in range(1, 20)]
    f1 = [float(tmf.multilabel_f1_score(scores, targets, targets.shape[1], threshold=t, average="macro"))
          for t in grid]
    return grid[int(np.argmax(f1))]  # the lowest of equal scores


register_spec(ClassifySpec(multilabel=False))
register_spec(ClassifySpec(multilabel=True))
