"""A task's data in one shape for every task: :class:`TaskData`, built by :func:`build_task_data` from a ``--data``
value, or by :func:`data_for_model` from a trained model's config (what ``ghostkit val`` and the export checks
evaluate on: the one way to rebuild a checkpoint's validation data).

The data module of each task is the one its registry entry names (:mod:`ghostkit.tasks.registry`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset, default_collate
from torchvision.transforms import v2

from ghostkit.errors import GhostkitError
from ghostkit.tasks.registry import default_imgsz, get_task

__all__ = ["TaskData", "build_task_data", "data_for_model", "collate_classify", "collate_segment",
           "inference_transform"]


@dataclass
class TaskData:
    train: Dataset | None
    val: Dataset
    class_names: dict[str, list[str]]  # task → class names
    imgsz: int
    mean: list[float]
    std: list[float]
    collate: Callable  # list of (image, target) → (images B x 3 x H x W, {task: batched targets})
    source: object = None  # what the task's builder returned (e.g. RestoreData, for its paired scale)


def collate_classify(task: str) -> Callable:
    """``[(image, class index or multi-hot)]`` → ``(images B x 3 x H x W, {task: targets B or B x C})``."""

    def collate(batch: list[tuple]) -> tuple[torch.Tensor, dict]:
        images = torch.stack([b[0] for b in batch])
        targets = [b[1] for b in batch]
        t = torch.stack(targets) if isinstance(targets[0], torch.Tensor) else torch.as_tensor(targets)
        return images, {task: t}

    return collate


def collate_segment(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, dict]:
    """``[(image, mask)]`` → ``(images B x 3 x H x W, {"segment": masks B x H x W})``."""
    images, masks = default_collate(batch)
    return images, {"segment": masks}


def build_task_data(task: str, data: str, imgsz: int | None = None, val_fraction: float = 0.2, seed: int = 0,
                    auto_augment: str = "trivial", random_erasing: float = 0.0, scale: int = 2, noise: str = "0",
                    jpeg: int = 0) -> TaskData:
    """``task``'s (or a comma list of tasks') train / val data from ``data``; ``imgsz`` ``None``: the registry's
    default. ``auto_augment`` / ``random_erasing``: classification; ``scale`` / ``noise`` / ``jpeg``: the
    restoration degradation (a multi-task run denoises: ``scale`` 1)."""
    imgsz = imgsz or default_imgsz(task, data)
    entry = get_task(task)
    if "," in task:
        from .multitask import build_multitask_data, collate_multitask
        from .restore import Degradation

        tasks = [t.strip() for t in task.split(",") if t.strip()]
        degradation = Degradation.parse(1, noise, jpeg) if "restore" in tasks else None
        d = build_multitask_data(data, tasks, imgsz, val_fraction, seed, degradation)
        return TaskData(d.train, d.val, d.class_names, d.imgsz, list(d.mean), list(d.std), collate_multitask(tasks),
                        d)
    if entry.data == "classify":
        from .classify import build_classify_data

        d = build_classify_data(data, imgsz=imgsz, multilabel=task == "multilabel", val_fraction=val_fraction,
                                seed=seed, auto_augment=auto_augment, random_erasing=random_erasing)
        return TaskData(d.train, d.val, {task: list(d.class_names)}, d.imgsz, list(d.mean), list(d.std),
                        collate_classify(task), d)
    if entry.data == "detect":
        from .detect import build_detect_data, collate_detect

        d = build_detect_data(data, imgsz=imgsz, val_fraction=val_fraction, seed=seed)
        return TaskData(d.train, d.val, {task: list(d.class_names)}, d.imgsz, list(d.mean), list(d.std),
                        collate_detect, d)
    if entry.data == "segment":
        from .segment import build_segment_data

        d = build_segment_data(data, imgsz=imgsz, val_fraction=val_fraction, seed=seed)
        return TaskData(d.train, d.val, {task: list(d.class_names)}, d.imgsz, list(d.mean), list(d.std),
                        collate_segment, d)
    if entry.data == "restore":
        from .restore import Degradation, build_restore_data, restore_collate

        d = build_restore_data(data, Degradation.parse(scale, noise, jpeg), patch=imgsz, val_fraction=val_fraction,
                               seed=seed)
        return TaskData(d.train, d.val, {task: []}, d.patch, [0.0] * 3, [1.0] * 3, restore_collate, d)
    raise GhostkitError(f"task {task!r}: no data builder for its data module {entry.data!r}")


def data_for_model(config: dict, data: str, imgsz: int | None = None, seed: int = 0) -> TaskData:
    """The data a model with ``config`` (a checkpoint's ``"ghostkit"`` config) is evaluated on: ``data``'s
    validation split at ``imgsz`` (default: the training size), with the restoration degradation the model was
    trained for. Raises :class:`GhostkitError` when ``data``'s classes are not the model's."""
    heads = config["heads"]
    task = ",".join(heads)
    restore = {k: heads["restore"][k] for k in ("scale", "noise", "jpeg") if k in heads.get("restore", {})}
    td = build_task_data(task, data, imgsz or config["imgsz"][0], seed=seed, **restore)
    paired = getattr(td.source, "paired_scale", None)
    if paired is not None and paired != restore.get("scale"):
        raise GhostkitError(f"{data}: the lr/ + hr/ pairs are x{paired}, but the model is x{restore.get('scale')}")
    names = config.get("class_names", {})
    for t in heads:
        if td.class_names.get(t) != names.get(t):
            raise GhostkitError(f"{data}: the model's {t} head was trained for {len(names.get(t) or [])} classes "
                                f"{(names.get(t) or [])[:5]}, but {data} has {len(td.class_names.get(t, []))} "
                                f"{td.class_names.get(t, [])[:5]}")
    return td


def inference_transform(modes: set[str], imgsz: tuple[int, int], mean: list[float], std: list[float]) -> Callable:
    """PIL image → normalised float32 ``3 x H x W`` as a model whose heads declare ``modes`` (``head.preprocess``)
    was validated: ``{"crop"}`` resize + centre crop (classification), ``{"none"}`` the image at its own size
    (restoration), anything else the whole image resized to ``imgsz`` (dense tasks, multi-task)."""
    h, w = imgsz
    if modes == {"crop"}:
        from .classify import classify_transforms

        return classify_transforms(h, train=False, mean=mean, std=std)
    resize = [] if modes == {"none"} else [v2.Resize((h, w), antialias=True)]
    return v2.Compose([v2.ToImage(), *resize, v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])
