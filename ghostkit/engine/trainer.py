"""Trainer factory shared by every task: callbacks, logger, precision, devices and strategy from TrainConfig.

Checkpoints are written through :func:`ghostkit.io.atomic_checkpoint_io` (temporary file beside the target, fsync,
rename), so an interrupted or failed save never replaces ``last.ckpt`` with a partial file. ``metrics.csv`` comes
from :class:`~ghostkit.engine.callbacks.RunHistory`, which carries the history in the checkpoints.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import warnings
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import (
    EarlyStopping,
    LearningRateMonitor,
    ModelCheckpoint,
    RichProgressBar,
)
from lightning.pytorch.loggers import TensorBoardLogger

from ..errors import GhostkitError
from ..io import atomic_checkpoint_io
from .callbacks import RunGuard, RunHistory, WarmedEMA
from .config import TrainConfig

__all__ = ["build_trainer", "parse_devices"]


def parse_devices(devices: str) -> int | str | list[int]:
    devices = str(devices).strip()
    if devices == "auto":
        return "auto"
    try:
        if "," in devices:
            return [int(d) for d in devices.split(",") if d]
        return int(devices)
    except ValueError:
        raise GhostkitError(f"--devices must be a count, 'auto' or a list like 0,1; got {devices!r}") from None


def build_trainer(cfg: TrainConfig, run_dir: Path, monitor: str, callbacks: list | None = None,
                  mode: str = "max") -> L.Trainer:
    """A Trainer writing ``best.ckpt`` (highest ``monitor``; lowest with ``mode="min"``), ``last.ckpt`` and
    ``metrics.csv`` into ``run_dir``; ``callbacks`` are added to ghostkit's own."""
    extra = list(callbacks or [])
    # saved at the end of each training epoch (after its validation), so that a checkpoint holds whole epochs only
    # and carries RunHistory's row of that epoch. last.ckpt has its own callback: Lightning 2.6's ``save_last``
    # writes it only in epochs that also write a monitored checkpoint, so it would stop at the best epoch.
    saved = dict(dirpath=run_dir, save_top_k=1, enable_version_counter=False, auto_insert_metric_name=False,
                 save_on_train_epoch_end=True)
    callbacks = extra + [
        RunHistory(run_dir, monitor, mode), RunGuard(run_dir),
        ModelCheckpoint(filename="best", monitor=monitor, mode=mode, **saved),  # trainer.checkpoint_callback
        ModelCheckpoint(filename="last", monitor=None, every_n_epochs=1, **saved),
    ]
    if cfg.patience > 0:
        callbacks.append(EarlyStopping(monitor=monitor, mode=mode, patience=cfg.patience))
    if cfg.ema:
        callbacks.append(WarmedEMA(cfg.ema_decay))
    interactive = sys.stdout.isatty()
    if interactive:
        callbacks.append(RichProgressBar())
    logger = []
    if importlib.util.find_spec("tensorboard") is not None:  # optional: event files in runs/<name>/tensorboard/
        logger.append(TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version=""))
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))
    devices = parse_devices(cfg.devices)
    if cfg.accelerator == "cpu" or (cfg.accelerator == "auto" and not _has_accelerator()):
        cores = os.cpu_count() or 1
        if isinstance(devices, int) and devices > cores:
            warnings.warn(f"--devices {devices} starts {devices} training processes on {cores} CPU cores; each "
                          f"step will be slower than with --devices {cores} or fewer", stacklevel=2)
    try:
        return L.Trainer(
            max_epochs=cfg.epochs,
            accelerator=cfg.accelerator,
            devices=devices,
            num_nodes=cfg.num_nodes,
            strategy=cfg.strategy,
            precision=cfg.precision,
            gradient_clip_val=cfg.grad_clip or None,
            callbacks=callbacks,
            logger=logger or False,
            plugins=[atomic_checkpoint_io()],
            enable_progress_bar=interactive,
            enable_model_summary=False,
            log_every_n_steps=10,
            num_sanity_val_steps=0,
            deterministic=False,
            default_root_dir=str(run_dir),
        )
    except Exception as e:  # Lightning's configuration errors (bad device count, precision for the accelerator)
        raise GhostkitError(f"cannot set up training: {str(e).splitlines()[0]}") from None


def _has_accelerator() -> bool:
    import torch

    return torch.cuda.is_available() or (hasattr(torch.backends, "mps") and torch.backends.mps.is_available())
