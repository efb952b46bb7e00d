"""The one LightningModule: task logic comes from the TaskModel's heads and the task's spec; the loop is Lightning's."""

from __future__ import annotations

import math
import random

import lightning as L
import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import update_bn
from torchvision.transforms import v2

from ..tasks.model import TaskModel
from .config import TrainConfig
from .spec import combined_score

__all__ = ["BN_IMAGES", "TaskModule"]

# training images (whole batches) whose BatchNorm statistics replace the running ones before each validation
BN_IMAGES = 128


class TaskModule(L.LightningModule):
    """Trains a :class:`TaskModel`; ``metrics`` maps task → metric module (``update``, ``compute``, ``reset``).

    Checkpoints carry the model config under ``"ghostkit"`` (so ``best.ckpt`` alone rebuilds the model) and the
    Python / NumPy / torch RNG states, so that ``--resume`` continues the same random stream.
    """

    def __init__(self, model: TaskModel, cfg: TrainConfig, metrics: dict[str, nn.Module],
                 monitors: dict[str, str] | None = None) -> None:
        super().__init__()
        self.model, self.cfg = model, cfg
        self.metrics = nn.ModuleDict(metrics)
        self.monitors = monitors or {}  # task → primary metric key, averaged into "score" in multi-task runs
        self.last_metrics: dict[str, dict] = {}
        self.last_score: float | None = None
        self.batch_mix = None
        self.distiller = None  # a ghostkit.engine.distill.Distiller (--teacher); not a submodule, so never saved
        if cfg.task == "classify" and (cfg.mixup > 0 or cfg.cutmix > 0):
            n = model.heads["classify"].num_classes
            mixes = ([v2.MixUp(alpha=cfg.mixup, num_classes=n)] if cfg.mixup > 0 else []) + (
                [v2.CutMix(alpha=cfg.cutmix, num_classes=n)] if cfg.cutmix > 0 else [])
            self.batch_mix = v2.RandomChoice(mixes)
        if cfg.freeze_backbone and model.backbone is not None:
            self.model.backbone.requires_grad_(False)

    def on_train_epoch_start(self) -> None:
        # Lightning restores per-module modes rather than calling train(); freeze the BN statistics here too,
        # as users of --freeze-backbone expect
        if self.cfg.freeze_backbone and self.model.backbone is not None:
            self.model.backbone.eval()

    def forward(self, images: torch.Tensor) -> dict:
        return self.model(images)

    def training_step(self, batch: tuple, batch_idx: int) -> torch.Tensor:
        images, targets = batch
        if self.batch_mix is not None:
            images, targets["classify"] = self.batch_mix(images, targets["classify"])
        outputs = self.model(images)
        losses = self.model.loss(outputs, targets)
        if self.distiller is not None:  # --teacher: adds losses["kd"] to losses["loss"]
            self.distiller.add_loss(losses, images, outputs)
        if self.cfg.l1 > 0:
            l1 = sum(p.abs().sum() for p in self.model.parameters() if p.requires_grad and p.ndim > 1)
            losses["l1"] = self.cfg.l1 * l1
            losses["loss"] = losses["loss"] + losses["l1"]
        if not isinstance(losses["loss"], torch.Tensor):
            return None  # no image of this batch has a target for any head (mixed annotations): skip the step
        self.log_dict({f"train/{k}": v.detach() for k, v in losses.items()}, on_step=False, on_epoch=True,
                      prog_bar=False, batch_size=images.shape[0], sync_dist=True)
        return losses["loss"]

    def on_validation_epoch_start(self) -> None:
        # the checkpoints saved after this validation keep the recomputed statistics; a frozen backbone keeps its
        # own on purpose; outside training (``ghostkit val``, Lightning's sanity check) there is nothing to recompute
        loader = self.trainer.train_dataloader
        if not self.trainer.sanity_checking and loader is not None and not self.cfg.freeze_backbone:
            recompute_bn(self.model, loader, BN_IMAGES, self.device)

    def validation_step(self, batch: tuple, batch_idx: int) -> None:
        images, targets = batch
        outputs = self.model(images)
        # test-time augmentation replaces raw detect outputs by merged boxes: no loss to compute then
        losses = {} if getattr(self.model, "tta", False) else self.model.loss(outputs, targets)
        if isinstance(losses.get("loss"), torch.Tensor):
            self.log("val/loss", losses["loss"], on_epoch=True, batch_size=images.shape[0], sync_dist=True)
        for task, metric in self.metrics.items():
            pair = self.model.select(outputs, targets, task)
            if pair is not None:
                metric.update(*pair)

    def on_validation_epoch_end(self) -> None:
        self.last_metrics = {}
        for task, metric in self.metrics.items():
            values = metric.compute()
            metric.reset()
            self.last_metrics[task] = values
            prefix = "val/" if len(self.metrics) == 1 else f"val/{task}/"
            scalars = {prefix + k: float(v) for k, v in values.items() if isinstance(v, (int, float))}
            self.log_dict(scalars, prog_bar=len(self.metrics) == 1, sync_dist=False)
        self.last_score = combined_score(self.last_metrics, self.monitors)
        if self.last_score is not None:
            self.log("val/score", self.last_score, prog_bar=True, sync_dist=False)

    def configure_optimizers(self):
        cfg = self.cfg
        decay, no_decay = [], []
        for p in self.model.parameters():
            if p.requires_grad:
                (decay if p.ndim > 1 else no_decay).append(p)  # no weight decay on biases and norm weights
        groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        if cfg.optimizer == "sgd":
            opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)
        elif cfg.optimizer == "rmsprop":
            opt = torch.optim.RMSprop(groups, lr=cfg.lr, momentum=cfg.momentum, alpha=0.9, eps=1e-3)
        else:
            opt = torch.optim.AdamW(groups, lr=cfg.lr)
        steps_per_epoch = max(1, math.ceil(self.trainer.estimated_stepping_batches / max(1, self.trainer.max_epochs)))
        warmup = int(cfg.warmup_epochs * steps_per_epoch)
        total = max(1, cfg.epochs * steps_per_epoch)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            if cfg.schedule == "step":
                return cfg.step_gamma ** ((step // steps_per_epoch) // cfg.step_epochs)
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["ghostkit"] = self.model.config
        checkpoint["rng"] = {"torch": torch.get_rng_state(), "numpy": _numpy_state(),
                             "python": list(random.getstate()[1])}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        rng = checkpoint.get("rng")
        if rng:
            torch.set_rng_state(rng["torch"])
            np.random.set_state(("MT19937", np.asarray(rng["numpy"]["key"], dtype=np.uint32), rng["numpy"]["pos"],
                                 0, 0.0))
            random.setstate((3, tuple(rng["python"]), None))


def _numpy_state() -> dict:
    _, key, pos, _, _ = np.random.get_state()
    return {"key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos)}


def recompute_bn(model: nn.Module, loader, images: int = BN_IMAGES, device: torch.device | None = None) -> int:
    """Replace the BatchNorm running statistics of `model` by those of the first batches of `loader` (whole batches,
    at least `images` images; a batch is ``(images B x 3 x H x W, targets)``) at the current weights; returns the
    number of batches used.

    The running statistics (momentum 0.1) average the batches of the last 10-20 steps, each taken at the weights of
    its own step. Short runs at high learning rates move the weights faster than that average follows: digits at
    batch 256 (50 steps in 10 epochs, lr 4e-3) fitted the training set (loss 0.007) while validation read 0.54 top1
    with the running statistics and 0.95 with statistics recomputed from 64 training images (1024: 0.96). This is
    "precise BN" (Wu and Johnson, "Rethinking 'Batch' in BatchNorm", 2021); torch's `update_bn` does the averaging.
    """
    batches, seen = [], 0
    for batch in loader:
        batches.append(batch)
        seen += len(batch[0])
        if seen >= images:
            break
    with torch.no_grad():  # update_bn resets the statistics and averages them over the batches (momentum None)
        update_bn(batches, model, device=device)
    return len(batches)
