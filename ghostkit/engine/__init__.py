"""Lightning glue: one LightningModule, a trainer factory, per-task metrics and plots (``engine/<task>.py``).

Lazy: ``import ghostkit.engine`` (or ``ghostkit.engine.config``, read by ``ghostkit train --help``) imports neither
torch nor Lightning; ``train`` imports Lightning when it runs.
"""

from __future__ import annotations

__all__ = ["TrainConfig", "train", "validate"]


def __getattr__(name: str):
    if name == "TrainConfig":
        from .config import TrainConfig

        return TrainConfig
    if name in ("train", "validate"):
        from . import run

        return getattr(run, name)
    raise AttributeError(name)
