"""Lightning glue: one LightningModule, a trainer factory, per-task specs (data, metrics, plots)."""

from .config import TrainConfig
from .run import train, validate

__all__ = ["TrainConfig", "train", "validate"]
