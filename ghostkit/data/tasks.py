"""A task's data in one shape for every task: :class:`TaskData`, built by :func:`build_task_data` from a ``--data``
value, or by :func:`data_for_model` from a trained model's config (what ``ghostkit val`` and the export checks
evaluate on: the one way to rebuild a checkpoint's validation data).

The data module of each task is the one its registry entry names (:mod:`ghostkit.tasks.registry`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import torch
from torchvision.transforms import v2

from ghostkit.data.common import TaskData
from ghostkit.errors import GhostkitError
from ghostkit.tasks.registry import get_task

__all__ = ["TaskData", "build_task_data", "data_for_model", "inference_transform"]


def build_task_data(task: str, data: str, imgsz: int | None = None, val_fraction: float = 0.2, seed: int = 0,
                    **options) -> TaskData:
    """``task``'s (or a comma list of tasks') train / val data from ``data``, built by the ``task_data`` function of
    the data module its registry entry names; ``imgsz`` ``None``: chosen by that builder from the training images
    (:func:`ghostkit.tasks.registry.default_imgsz`). ``options``: the task's own (classification: ``auto_augment``,
    ``random_erasing`` and the recipe's; restoration: ``scale``, ``noise``, ``jpeg``)."""
    module = importlib.import_module(f"{__package__}.{get_task(task).data}")
    return module.task_data(task, data, imgsz, val_fraction, seed, **options)


def data_for_model(config: dict, data: str, imgsz: int | None = None, seed: int = 0,
                   where: str | None = None) -> TaskData:
    """The data a model with ``config`` (a checkpoint's ``"ghostkit"`` config) is evaluated on: ``data``'s
    validation split at the network input size ``imgsz`` (default: the training size), with the restoration
    degradation the model was trained for. Raises :class:`GhostkitError` when ``data``'s classes are not the
    model's (the message names ``where``, the model's file, when given)."""
    heads = config["heads"]
    task = ",".join(heads)
    options = {k: heads["restore"][k] for k in ("scale", "noise", "jpeg") if k in heads.get("restore", {})}
    if heads.get("style", {}).get("head") == "adain":  # arbitrary styles: validated on the built-in style set
        options["style_set"] = True
    imgsz = imgsz or config["imgsz"][0]
    if len(heads) > 1:  # a multi-task super-resolution model's data frame is the HR one, --scale x its input
        imgsz *= options.get("scale", 1)
    td = build_task_data(task, data, imgsz, seed=seed, **options)
    paired = getattr(td.source, "paired_scale", None)
    if paired is not None and paired != options.get("scale"):
        raise GhostkitError(f"{data}: the lr/ + hr/ pairs are x{paired}, but the model is x{options.get('scale')}")
    names = config.get("class_names", {})
    for t in heads:
        if td.class_names.get(t) != names.get(t):
            raise GhostkitError(f"{where or data}: the model's {t} head was trained for {len(names.get(t) or [])} "
                                f"classes "
                                f"{(names.get(t) or [])[:5]}, but {data} has {len(td.class_names.get(t, []))} "
                                f"{td.class_names.get(t, [])[:5]}")
    return td


def inference_transform(modes: set[str], imgsz: tuple[int, int], mean: list[float], std: list[float]) -> Callable:
    """PIL image → normalised float32 ``3 x H x W`` as a model whose heads declare ``modes`` (``head.preprocess``)
    was validated: ``{"none"}`` the image at its own size (restoration), anything else the whole image resized to
    ``imgsz`` (classification, dense tasks, multi-task)."""
    h, w = imgsz
    resize = [] if modes == {"none"} else [v2.Resize((h, w), antialias=True)]
    return v2.Compose([v2.ToImage(), *resize, v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])
