"""Trainer factory shared by every task: callbacks, logger, precision, devices and strategy from TrainConfig.

Checkpoints are written by Lightning's TorchCheckpointIO, which saves through an fsspec transaction (temporary file,
then move), so an interrupted save never replaces ``last.ckpt`` with a partial file.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import (
    EarlyStopping,
    EMAWeightAveraging,
    LearningRateMonitor,
    ModelCheckpoint,
    RichProgressBar,
)
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from ..errors import GhostkitError
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
    callbacks = extra + [
        ModelCheckpoint(dirpath=run_dir, filename="best", monitor=monitor, mode=mode, save_last=True,
                        save_top_k=1, enable_version_counter=False, auto_insert_metric_name=False),
        LearningRateMonitor(logging_interval="epoch"),
    ]
    if cfg.patience > 0:
        callbacks.append(EarlyStopping(monitor=monitor, mode=mode, patience=cfg.patience))
    if cfg.ema:
        callbacks.append(EMAWeightAveraging(decay=cfg.ema_decay))
    interactive = sys.stdout.isatty()
    if interactive:
        callbacks.append(RichProgressBar())
    logger = [CSVLogger(save_dir=str(run_dir), name="", version="")]
    if importlib.util.find_spec("tensorboard") is not None:  # optional: event files in runs/<name>/tensorboard/
        logger.append(TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version=""))
    try:
        return L.Trainer(
            max_epochs=cfg.epochs,
            accelerator=cfg.accelerator,
            devices=parse_devices(cfg.devices),
            num_nodes=cfg.num_nodes,
            strategy=cfg.strategy,
            precision=cfg.precision,
            gradient_clip_val=cfg.grad_clip or None,
            callbacks=callbacks,
            logger=logger,
            enable_progress_bar=interactive,
            enable_model_summary=False,
            log_every_n_steps=10,
            num_sanity_val_steps=0,
            deterministic=False,
            default_root_dir=str(run_dir),
        )
    except Exception as e:  # Lightning's configuration errors (bad device count, precision for the accelerator)
        raise GhostkitError(f"cannot set up training: {str(e).splitlines()[0]}") from None
