"""Task modules (heads), one file per task. The head contract:

* ``head(features: list[Tensor] | None, images: Tensor) -> outputs`` — ``features`` are the backbone's stride 4, 8,
  16 and 32 maps (``feature_info`` describes them; ``None`` for a model without backbone), ``images`` the normalised
  network input ``B x 3 x H x W`` (its size for dense outputs; restoration heads work on it directly);
* ``head.needs_backbone`` (default True): a model whose heads all say False is built without a backbone;
* ``head.loss(outputs, targets) -> dict[str, Tensor]`` with the total under ``"loss"``;
* ``head.postprocess(outputs, image_sizes) -> list[dict]`` per image, in the coordinates of ``image_sizes`` (the
  original images' sizes);
* ``head.preprocess``: how the Predictor prepares an image: ``"crop"`` (resize + centre crop, classification),
  ``"resize"`` (whole image resized to the training size, dense tasks) or ``"none"`` (native size, restoration);
* ``head.format_result(result, class_names, **options) -> dict`` of JSON-able values for ``ghostkit predict``;
* ``head.render(image: PIL.Image, result, class_names) -> dict[str, PIL.Image]``: pictures of the result for
  ``ghostkit predict --save DIR`` (name suffix → image, e.g. ``{"": annotated}`` or ``{"mask": ..., "overlay": ...}``).

No training loop and no Lightning here.
"""

from __future__ import annotations

import importlib

from torch import nn

from ..errors import GhostkitError

__all__ = ["HEADS", "TASK_MODULES", "build_head", "get_head_class", "register_head"]

# task name → the module (in this package) that defines its head; modules register their heads on import
TASK_MODULES = {"classify": "classify", "multilabel": "classify", "detect": "detect", "segment": "segment",
                "restore": "restore", "generate": "generate"}
HEADS: dict[str, type[nn.Module]] = {}


def register_head(*tasks: str):
    def wrap(cls: type[nn.Module]) -> type[nn.Module]:
        for task in tasks:
            HEADS[task] = cls
        return cls

    return wrap


def get_head_class(task: str) -> type[nn.Module]:
    if task not in HEADS:
        if task not in TASK_MODULES:
            raise GhostkitError(f"unknown task {task!r}; available: {', '.join(TASK_MODULES)}")
        importlib.import_module(f"{__name__}.{TASK_MODULES[task]}")
    return HEADS[task]


def build_head(task: str, feature_info: list[dict] | None, **cfg) -> nn.Module:
    """Build ``task``'s head from the backbone's ``feature_info`` (``None`` without backbone) and the head config
    stored in checkpoints."""
    return get_head_class(task)(feature_info, **cfg)
