"""Multi-task data: images carrying any subset of classification, multi-label, box and mask targets.

``--data`` is one source or several joined by commas (``--data shapes`` or ``--data coco_dir,more_boxes_dir``).
Each source is read by every requested task whose layout it holds (the single-task readers, same formats and the
same bad-input errors); targets of one image are merged by its file path:

* ``shapes`` (built-in): class of the largest shape, classes present, boxes and class mask for every image: 1000
  new training images every epoch (``ShapeStream``, as the single-task detect and segment runs) and the 200 fixed
  validation images of those runs (64 px, seed 1);
* a COCO folder (``annotations/instances_{train,val}.json``): boxes (detect), rasterised masks (segment) and the
  classes present as image-level labels (multilabel) at once;
* a MOTChallenge folder (``train/<SEQ>/img1/``, ``gt/gt.txt``; built-in ``tracks``): boxes (detect) and, for an
  ``embed`` head, the same boxes with their identities (``ids`` numbered across the training split; a second source's
  identities follow the first's);
* YOLO / VOC / WIDER FACE folders: boxes; ``images/`` + ``masks/`` or VOC ``SegmentationClass``: masks;
  ``train/<class>/``: single-label classes; ``images/`` + ``train.csv``: multi-label classes.

A ``restore`` head gets every image: the run degrades each one (``--scale`` bicubic downscaling, ``--noise``,
``--jpeg``) before the other heads see it too, and learns the clean image back. At ``--scale s`` > 1 the training
image is the high-resolution (HR) target: ``imgsz`` is the HR frame (as ``--imgsz`` is the HR patch of a restore
run; a multiple of ``s``), every image is resized to it with its masks and boxes, and the network input is its
``imgsz / s`` px downscaled version; masks and boxes stay in the HR frame, where the heads predict them. Images
smaller than the HR frame (their HR detail would be invented by upscaling) and masks whose size differs from their
image's are refused before training, naming the file.

A ``style`` head (beside a classifier) gets every image too: its target is the un-normalised image as the content
photo, with the ``--style`` image (``ghostkit.data.style.load_style`` at the run's ``imgsz``) added by the collate.

An image without some task's target is kept: that head's loss and metrics skip it (``present`` in the batch).
An image in the validation split of any task is a validation image for all. The same task in two sources must
have the same class list. Transforms keep every target aligned: photometric distortion → horizontal flip → resize
of the whole image to ``imgsz`` (no crops, which would invalidate image-level labels), as the Predictor does.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import ConcatDataset, Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from ..errors import GhostkitError
from ..tasks.registry import default_imgsz
from .classify import build_classify_data
from .common import IMAGENET_MEAN, IMAGENET_STD, TaskData
from .detect import build_detect_data, detect_format, is_mot_root
from .formats.coco import CocoMask
from .formats.voc import find_voc_root
from .images import image_size, median_short_side, read_image
from .restore import Degradation
from .segment import build_segment_data, read_mask
from .style import load_style
from .synthetic import SHAPE_CLASSES, SHAPES_IMGSZ, ShapeSample, ShapeStream, make_shapes
from .tracks import data_root

__all__ = ["MultiTaskData", "MultiTaskDataset", "build_multitask_data", "collate_multitask", "multitask_transforms",
           "task_data"]

SHAPES_TRAIN, SHAPES_VAL = 1000, 200
# an item: (image path or uint8 H x W x 3 array, {task: target}); targets as the single-task readers give them
Item = tuple[Any, dict[str, Any]]
_EVERY_IMAGE = ("restore", "style")  # heads whose target every image is (derived from the image itself)


def multitask_transforms(imgsz: int, train: bool) -> v2.Compose:
    """Joint transform of ``(Image, {"boxes": BoundingBoxes, "mask": Mask, ...})`` → float32 in [0, 1] (see the
    module docstring); the dataset normalises after the optional restoration degradation."""
    ops: list[Any] = [v2.RandomPhotometricDistort(p=0.5), v2.RandomHorizontalFlip()] if train else []
    return v2.Compose([*ops, v2.Resize((imgsz, imgsz), antialias=True), v2.ToDtype(torch.float32, scale=True)])


class MultiTaskDataset(Dataset):
    """Items → ``(float32 3 x S x S normalised, {task: target})`` with only the tasks the image has; targets as the
    single-task datasets return them (class index, multi-hot float vector, ``{"boxes", "labels", "index"}``, int64
    mask; embed: ``{"boxes", "ids", "index"}``). With ``degradation`` (a restore head in the run) every image is
    degraded before normalisation, so all heads see the degraded image, and its clean version (3 x S x S in [0, 1])
    is the ``restore`` target; validation degradations are reproducible (a generator seeded with the item's
    index). At the degradation's scale s > 1 the image is ``3 x S/s x S/s`` while every target stays in the
    ``S x S`` frame. With ``content`` (a style head in the run) the image in [0, 1] is the ``style`` target too."""

    def __init__(self, items: Sequence[Item], transform: Any, degradation: Degradation | None = None,
                 train: bool = True, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, content: bool = False) -> None:
        self.items = items if isinstance(items, (ShapeStream, ConcatDataset)) else list(items)
        self.transform, self.degradation, self.train, self.content = transform, degradation, train, content
        self.mean, self.std = list(mean), list(std)

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int) -> Image.Image:
        source = self.items[index][0]
        return read_image(source) if isinstance(source, (str, Path)) else Image.fromarray(np.asarray(source))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict]:
        source, targets = self.items[index]
        array = np.asarray(self.load(index)) if isinstance(source, (str, Path)) else np.asarray(source)
        image = tv_tensors.Image(torch.from_numpy(array.copy()).permute(2, 0, 1))
        size = tuple(image.shape[-2:])
        sample: dict[str, Any] = {}
        if "detect" in targets:
            det = targets["detect"]
            sample["boxes"] = tv_tensors.BoundingBoxes(torch.as_tensor(det["boxes"], dtype=torch.float32)
                                                       .reshape(-1, 4), format="XYXY", canvas_size=size)
            sample["labels"] = torch.as_tensor(det["labels"], dtype=torch.int64)
        if "embed" in targets:  # boxes of their own: an embed head may train without a detect head
            sample["embed"] = tv_tensors.BoundingBoxes(torch.as_tensor(targets["embed"]["boxes"], dtype=torch.float32)
                                                       .reshape(-1, 4), format="XYXY", canvas_size=size)
        if "segment" in targets:
            mask = targets["segment"]
            mask = mask.render() if isinstance(mask, CocoMask) else mask
            mask = read_mask(mask) if isinstance(mask, (str, Path)) else np.asarray(mask)
            if mask.shape != size:
                raise GhostkitError(f"{source if isinstance(source, (str, Path)) else index}: mask is "
                                    f"{mask.shape[1]} x {mask.shape[0]}, its image {size[1]} x {size[0]}")
            sample["mask"] = tv_tensors.Mask(torch.from_numpy(np.ascontiguousarray(mask).copy()))
        image, sample = self.transform(image, sample)
        image = image.as_subclass(torch.Tensor)
        out: dict[str, Any] = {}
        if self.degradation is not None:
            generator = None if self.train else torch.Generator().manual_seed(index)
            out["restore"], image = image, self.degradation(image, generator)
        if self.content:
            out["style"] = image
        image = v2.functional.normalize(image, self.mean, self.std)
        if "classify" in targets:
            out["classify"] = int(targets["classify"])
        if "multilabel" in targets:
            out["multilabel"] = torch.as_tensor(np.asarray(targets["multilabel"], dtype=np.float32))
        if "detect" in targets:
            out["detect"] = {"boxes": sample["boxes"].as_subclass(torch.Tensor).float().reshape(-1, 4),
                             "labels": sample["labels"], "index": torch.tensor(index)}
        if "segment" in targets:
            out["segment"] = sample["mask"].as_subclass(torch.Tensor).long()
        if "embed" in targets:
            out["embed"] = {"boxes": sample["embed"].as_subclass(torch.Tensor).float().reshape(-1, 4),
                            "ids": torch.as_tensor(targets["embed"]["ids"], dtype=torch.int64),
                            "index": torch.tensor(index)}
        return image, out


def collate_multitask(tasks: Sequence[str], style: torch.Tensor | None = None):
    """Collate function: ``(images, {task: targets of the images that have them, "present": {task: bool B}})``;
    a task no image of the batch has maps to ``None``. ``style`` (``3 x h x w`` in [0, 1]): the style image of a
    ``style`` head, whose targets are ``{"content": B x 3 x S x S, "style": 1 x 3 x h x w}``."""

    def collate(batch: list[tuple[torch.Tensor, dict]]) -> tuple[torch.Tensor, dict]:
        images = torch.stack([b[0] for b in batch])
        targets: dict[str, Any] = {"present": {}}
        for task in tasks:
            present = torch.tensor([task in b[1] for b in batch])
            values = [b[1][task] for b in batch if task in b[1]]
            targets["present"][task] = present
            if not values:
                targets[task] = None
            elif isinstance(values[0], dict):  # per-image box targets (detect, embed)
                targets[task] = values
            elif task == "classify":
                targets[task] = torch.as_tensor(values, dtype=torch.int64)
            elif task == "style":
                targets[task] = {"content": torch.stack(values), "style": style[None]}
            else:
                targets[task] = torch.stack(values)
        return images, targets

    return collate


@dataclass
class MultiTaskData:
    train: MultiTaskDataset
    val: MultiTaskDataset
    class_names: dict[str, list[str]]
    imgsz: int  # the network input (at --scale s > 1: the HR frame / s)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    style: torch.Tensor | None = None  # a style head's style image, 3 x h x w in [0, 1]


def _shape_item(tasks: tuple[str, ...], s: ShapeSample) -> Item:
    t: dict[str, Any] = {"detect": {"boxes": s.boxes, "labels": s.labels}, "segment": s.mask,
                         "multilabel": np.eye(len(SHAPE_CLASSES), dtype=np.float32)[s.multilabel].sum(axis=0)}
    if len(s.labels):
        t["classify"] = s.label
    return s.image, {k: v for k, v in t.items() if k in tasks}


def _layouts(root: Path) -> set[str]:
    """The tasks whose data ``root`` holds, judged by layout markers only (the readers check the contents)."""
    found = set()
    coco = any((root / "annotations").glob("instances_*.json"))
    try:
        detect_format(root)
        found.add("detect")
    except GhostkitError:
        pass
    if is_mot_root(root):
        found.add("embed")
    if coco:
        found |= {"segment", "multilabel"}
    if (root / "masks").is_dir() or find_voc_root(root) is not None:
        found.add("segment")
    if (root / "train.csv").is_file():
        found.add("multilabel")
    elif (root / "train").is_dir() and any(p.is_dir() for p in (root / "train").iterdir()):
        found.add("classify")
    return found


def _read_source(root: Path, tasks: Sequence[str], imgsz: int | None, val_fraction: float, seed: int
                 ) -> tuple[dict[str, dict[str, dict]], dict[str, list[str]]]:
    """``({"train"|"val": {path: {task: target}}}, {task: class names})`` of one folder."""
    splits: dict[str, dict[str, dict]] = {"train": {}, "val": {}}
    names: dict[str, list[str]] = {}
    layouts = _layouts(root)
    detect_data = None  # read once: detect and COCO's image-level labels share it

    def boxes():
        nonlocal detect_data
        detect_data = detect_data or build_detect_data(root, imgsz, val_fraction, seed)
        return detect_data

    for task in tasks:
        if task not in layouts:
            continue
        if task == "multilabel" and not (root / "train.csv").is_file():  # COCO: the classes of the boxes
            d = boxes()
            n = len(d.class_names)
            names[task] = d.class_names
            for split, ds in (("train", d.train), ("val", d.val)):
                for path, ann in ds.items:
                    splits[split].setdefault(str(path), {})[task] = np.eye(n, dtype=np.float32)[
                        np.unique(np.asarray(ann["labels"], dtype=np.int64))].sum(axis=0)
            continue
        if task == "embed":  # the detection items' boxes with their identities
            d = boxes()
            names[task] = []
            for split, ds in (("train", d.train), ("val", d.val)):
                for path, ann in ds.items:
                    splits[split].setdefault(str(path), {})[task] = {"boxes": ann["boxes"], "ids": ann["ids"]}
            continue
        if task == "detect":
            d = boxes()
        elif task == "segment":
            d = build_segment_data(root, imgsz, val_fraction, seed)
        else:
            d = build_classify_data(root, imgsz, multilabel=task == "multilabel", val_fraction=val_fraction,
                                    seed=seed)
        names[task] = list(d.class_names)
        for split, ds in (("train", d.train), ("val", d.val)):
            for path, target in ds.items:
                splits[split].setdefault(str(path), {})[task] = target
    # an image in any task's validation split validates every task
    for path in set(splits["train"]) & set(splits["val"]):
        splits["val"][path] = splits["train"].pop(path) | splits["val"][path]
    return splits, names


def _offset_ids(splits: dict[str, dict[str, dict]], offset: int) -> int:
    """Shift the ``embed`` identities of one source's splits by ``offset``; returns the next free identity."""
    top = offset
    for split in splits.values():
        for targets in split.values():
            if "embed" in targets:
                ids = np.asarray(targets["embed"]["ids"], dtype=np.int64) + offset
                targets["embed"] = {**targets["embed"], "ids": ids}
                top = max(top, int(ids.max(initial=offset - 1)) + 1)
    return top


def _mask_size(mask: Any) -> tuple[int, int] | None:
    """(H, W) of a segmentation target as the dataset will read it, from the file header where it is a file."""
    if isinstance(mask, (str, Path)):
        size = image_size(Path(mask), exif=False)
        return None if size is None else (size[1], size[0])
    if isinstance(mask, CocoMask):
        return None  # rasterised at its image's size by construction
    return tuple(np.asarray(mask).shape[:2])


def _check_hr_frame(items: Sequence[Item], hr: int, scale: int) -> None:
    """Refuse, naming the file, an image smaller than the ``hr`` px HR frame and a mask whose size differs from its
    image's (both read from the file headers, before any training step)."""
    for source, targets in items:
        if not isinstance(source, (str, Path)):
            continue
        size = image_size(Path(source))
        if size is None:  # unreadable: the readers' shared warning handles it
            continue
        w, h = size
        if min(w, h) < hr:
            raise GhostkitError(f"{source}: {w} x {h} px is smaller than the {hr} x {hr} px high-resolution frame "
                                f"(--scale {scale} x the {hr // scale} px input); pass a smaller --imgsz")
        mask = _mask_size(targets["segment"]) if "segment" in targets else None
        if mask is not None and mask != (h, w):
            raise GhostkitError(f"{targets['segment']}: mask is {mask[1]} x {mask[0]} px, its image {source} "
                                f"{w} x {h} px")


def build_multitask_data(data: str, tasks: Sequence[str], imgsz: int | None = None, val_fraction: float = 0.2,
                         seed: int = 0, degradation: Degradation | None = None, style: str | None = None
                         ) -> MultiTaskData:
    """Resolve ``--data`` (one or more comma-separated sources, see the module docstring) for ``tasks``;
    ``degradation`` for a ``restore`` head (every image then has a restore target: its clean self); ``imgsz`` None:
    from the training images (``ghostkit.tasks.registry.default_imgsz`` of the sources' median shorter sides; the
    built-in shapes' own size is ``SHAPES_IMGSZ``). At ``degradation.scale`` s > 1, ``imgsz`` is the HR frame (a
    multiple of s; default: as above, at most the smallest image side) and the returned ``imgsz`` the network input,
    ``imgsz / s``. ``style``: a style head's ``--style`` (``None``: the built-in mosaic)."""
    scale = degradation.scale if degradation is not None else 1
    if imgsz is not None and imgsz % scale:
        raise GhostkitError(f"--imgsz {imgsz} (the high-resolution frame) is not a multiple of --scale {scale}: the "
                            f"input would be {imgsz / scale:g} px")
    if imgsz is not None and imgsz < 32 * scale:
        raise GhostkitError(f"imgsz must be at least 32{f' x --scale {scale}' if scale > 1 else ''}, got {imgsz}")
    train: list = []  # one part per source; a shapes source: its item maker, drawn once the size is known
    val: list[Item] = []
    sides: list[int | None] = []  # each source's median shorter side
    class_names: dict[str, list[str]] = {}
    where: dict[str, str] = {}
    id_offset = 0
    for source in [s.strip() for s in str(data).split(",") if s.strip()]:
        if source == "shapes":
            train.append(functools.partial(_shape_item, tuple(tasks)))
            sides.append(SHAPES_IMGSZ)
            names = {t: (["background", *SHAPE_CLASSES] if t == "segment" else list(SHAPE_CLASSES)) for t in tasks
                     if t not in _EVERY_IMAGE}
        else:
            root = data_root(source)
            if not root.is_dir():
                raise GhostkitError(f"{root}: no such data folder (built-in multi-task data: shapes, tracks)")
            splits, names = _read_source(root, tasks, imgsz, val_fraction, seed)
            if "embed" in tasks:  # identities of several sources are different people
                id_offset = _offset_ids(splits, id_offset)
            train.append([(Path(p), t) for p, t in splits["train"].items()])
            sides.append(median_short_side([p for p, _ in train[-1]]))
            val += [(Path(p), t) for p, t in splits["val"].items()]
        for task, task_names in names.items():
            if task in class_names and class_names[task] != task_names:
                raise GhostkitError(f"{source}: its {task} classes {task_names[:5]} conflict with those of "
                                    f"{where[task]} {class_names[task][:5]}")
            class_names.setdefault(task, task_names)
            where.setdefault(task, source)
    known = [s for s in sides if s]
    if imgsz is None:
        imgsz = default_imgsz("multitask", float(np.median(known)) if known else None) * scale
        if scale > 1:  # no image may be smaller than the HR frame: at most the smallest side, a multiple of s
            smallest = [min(image_size(Path(p)) or (imgsz, imgsz)) for part in train if isinstance(part, list)
                        for p, _ in part] + [min(image_size(Path(p)) or (imgsz, imgsz)) for p, _ in val]
            imgsz = max(32 * scale, min([imgsz, *smallest]) // scale * scale)
    if scale > 1:
        for part in [*train, val]:
            if isinstance(part, list):
                _check_hr_frame(part, imgsz, scale)
    for k, part in enumerate(train):
        if isinstance(part, functools.partial):  # shapes, drawn at the run's size
            train[k] = ShapeStream(SHAPES_TRAIN, imgsz, part)
            val += [part(s) for s in make_shapes(SHAPES_VAL, imgsz=imgsz, seed=1)]
    # a shapes stream has every task's targets (each of its images has at least one shape)
    missing = [t for t in tasks if t not in _EVERY_IMAGE and not any(
        isinstance(part, ShapeStream) or any(t in targets for _, targets in part) for part in train)]
    if missing:
        raise GhostkitError(f"{data}: no training image has a target for {', '.join(missing)} (tasks: "
                            f"{', '.join(tasks)})")
    if not val:
        raise GhostkitError(f"{data}: the validation set is empty")
    class_names.update({t: [] for t in _EVERY_IMAGE if t in tasks})
    content = "style" in tasks
    style_image = load_style(style, imgsz) if content else None
    items = train[0] if len(train) == 1 else ConcatDataset(train)
    return MultiTaskData(MultiTaskDataset(items, multitask_transforms(imgsz, True), degradation, train=True,
                                          content=content),
                         MultiTaskDataset(val, multitask_transforms(imgsz, False), degradation, train=False,
                                          content=content),
                         class_names, imgsz // scale, style=style_image)


def task_data(task: str, data: str, imgsz: int | None, val_fraction: float = 0.2, seed: int = 0, scale: int = 1,
              noise: str = "0", jpeg: int = 0, style: str | None = None, **_) -> TaskData:
    """A comma list of tasks' data as the engine uses it (``ghostkit.data.tasks.build_task_data``); a restore head
    upscales by ``scale`` (``imgsz``: the HR frame) and / or denoises (``noise``, ``jpeg``); a style head renders
    ``style``."""
    tasks = [t.strip() for t in task.split(",") if t.strip()]
    degradation = Degradation.parse(scale, noise, jpeg) if "restore" in tasks else None
    d = build_multitask_data(data, tasks, imgsz, val_fraction, seed, degradation, style)
    return TaskData(d.train, d.val, d.class_names, d.imgsz, list(d.mean), list(d.std),
                    collate_multitask(tasks, d.style), d)
