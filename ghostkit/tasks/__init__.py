"""Task modules (heads): ``head(features, image_size)``, ``head.loss(outputs, targets)``,
``head.postprocess(outputs, image_sizes)``. No training loop and no Lightning here."""

from torch import nn

from ..errors import GhostkitError
from .classify import ClassifyHead

__all__ = ["HEADS", "build_head", "ClassifyHead"]

# task name → head class; a head is built from the backbone's feature_info plus its config kwargs
HEADS: dict[str, type[nn.Module]] = {"classify": ClassifyHead, "multilabel": ClassifyHead}


def build_head(task: str, feature_info: list[dict], **cfg) -> nn.Module:
    if task not in HEADS:
        raise GhostkitError(f"unknown task {task!r}; available: {', '.join(sorted(HEADS))}")
    return HEADS[task](feature_info, **cfg)
