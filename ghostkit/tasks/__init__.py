"""Task modules (heads), one file per task. The head contract:

* ``head(features: list[Tensor] | None, images: Tensor) -> outputs`` — ``features`` are the backbone's stride 4, 8,
  16 and 32 maps (``feature_info`` describes them; ``None`` for a model without backbone), ``images`` the normalised
  network input ``B x 3 x H x W`` (its size for dense outputs; restoration heads work on it directly);
* ``head.needs_backbone`` (default True): a model whose heads all say False is built without a backbone;
* ``head.level_idx`` (optional): the positions in ``features`` the head reads; when every head of a model has one,
  the backbone stops after the deepest of them (the list then ends there);
* ``head.share_backbone(backbone)`` (optional): the ``TaskModel`` hands the head its backbone when built (a style
  head beside a classifier measures its losses with it);
* ``head.loss(outputs, targets) -> dict[str, Tensor]`` with the total under ``"loss"``;
* ``head.postprocess(outputs, image_sizes) -> list[dict]`` per image, in the coordinates of ``image_sizes`` (the
  original images' sizes);
* ``head.preprocess``: how the Predictor prepares an image: ``"resize"`` (whole image resized to the training
  size: classification, dense tasks) or ``"none"`` (native size, restoration);
* ``head.format_result(result, class_names, **options) -> dict`` of JSON-able values for ``ghostkit predict``;
* ``head.render(image: PIL.Image, result, class_names) -> dict[str, PIL.Image]``: pictures of the result for
  ``ghostkit predict --save DIR`` (name suffix → image, e.g. ``{"": annotated}`` or ``{"mask": ..., "overlay": ...}``).

No training loop and no Lightning here. Which module defines a task's head, and the task's defaults, is in the task
registry (:mod:`ghostkit.tasks.registry`). Importing this package imports no torch: the CLI reads the registry
without it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .registry import get_task

if TYPE_CHECKING:
    from torch import nn

__all__ = ["HEADS", "build_head", "get_head_class", "register_head"]

HEADS: dict[str, type[nn.Module]] = {}  # task → head class; task modules register their heads on import


def register_head(*tasks: str):
    def wrap(cls: type[nn.Module]) -> type[nn.Module]:
        for task in tasks:
            HEADS[task] = cls
        return cls

    return wrap


def get_head_class(task: str) -> type[nn.Module]:
    if task not in HEADS:
        importlib.import_module(f"{__name__}.{get_task(task).module}")
    return HEADS[task]


def build_head(task: str, feature_info: list[dict] | None, **cfg) -> nn.Module:
    """Build ``task``'s head from the backbone's ``feature_info`` (``None`` without backbone) and the head config
    stored in checkpoints."""
    return get_head_class(task)(feature_info, **cfg)
