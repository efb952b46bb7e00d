"""Image generation data: a folder of images, with classes (class-conditional) or without (unconditional).

``--data`` is one of:

* an ImageFolder, ``DIR/<class>/*`` or ``DIR/train/<class>/*`` (plus ``DIR/val/<class>/*``, whose images are used
  for training too: a GAN learns the whole distribution, and its FID is measured against the training images, as
  in the GAN literature): a class-conditional model;
* a flat folder of images, ``DIR/*`` or ``DIR/train/*`` (plus ``DIR/val/*``): an unconditional model;
* built-in ``digits`` (scikit-learn's 1797 handwritten digits, ten classes), which enters as the same list of
  (image, class) items a folder gives and goes through the same transforms.

Images of any size are resized (shorter side to ``imgsz``, bilinear, antialiased) and centre-cropped to
``imgsz x imgsz``, so folders of mixed sizes work; there is no augmentation (a flip would be wrong for text and
digits). Tensors are in [-1, 1], the generator's tanh range. Unreadable files are skipped with one counted warning.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import default_collate
from torchvision.transforms import v2

from ..errors import GhostkitError
from ..tasks.registry import default_imgsz
from .classify import ImageListDataset, Item, read_imagefolder
from .common import TaskData
from .images import filter_readable, list_images
from .synthetic import load_digits

__all__ = ["GenerateData", "build_generate_data", "generate_transform", "read_generate_items", "task_data"]

BUILTIN = ("digits",)


@dataclass
class GenerateData:
    """``train``: items → ``(float32 3 x imgsz x imgsz in [-1, 1], class index)`` (index 0 when unconditional);
    ``class_names``: empty for unconditional data."""

    train: ImageListDataset
    class_names: list[str]
    imgsz: int

    @property
    def conditional(self) -> bool:
        return bool(self.class_names)


def generate_transform(imgsz: int) -> v2.Compose:
    """PIL image or uint8 H x W x 3 array → float32 3 x imgsz x imgsz in [-1, 1] (resize shorter side, centre crop)."""
    return v2.Compose([v2.ToImage(), v2.Resize(imgsz, antialias=True), v2.CenterCrop(imgsz),
                       v2.ToDtype(torch.float32, scale=True), v2.Normalize([0.5] * 3, [0.5] * 3)])


def _folder_items(root: Path, class_names: list[str] | None) -> tuple[list[Item], list[str]]:
    """One folder: class subfolders (ImageFolder) or images directly in it."""
    subdirs = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    files = list_images(root)
    if subdirs and files:
        raise GhostkitError(f"{root}: holds both images and sub-folders; put all images in class folders "
                            f"(class-conditional) or none (unconditional)")
    if subdirs:
        return read_imagefolder(root, class_names)
    if not files:
        raise GhostkitError(f"{root}: no images (expected {root}/<class>/<images> or {root}/<images>)")
    if class_names:
        raise GhostkitError(f"{root}: has no class folders, but {root.parent}/train has classes")
    good, _ = filter_readable(files, folder=root)
    if not good:
        raise GhostkitError(f"{root}: none of its {len(files)} images is readable")
    return [(p, 0) for p in good], []


def read_generate_items(data: str | Path, imgsz: int) -> tuple[list[Item], list[str]]:
    """``--data`` → ``([(image source, class index)], class names)`` (see the module docstring)."""
    name = str(data)
    if name == "digits":
        images, labels, names = load_digits(min(imgsz, 64))
        return list(zip(images, labels, strict=True)), names
    root = Path(data)
    if not root.is_dir():
        what = "no such data folder" if not root.exists() else "not a folder"
        raise GhostkitError(f"{root}: {what} (built-in data: {', '.join(BUILTIN)})")
    if not (root / "train").is_dir():
        return _folder_items(root, None)
    items, names = _folder_items(root / "train", None)
    if (root / "val").is_dir():
        more, _ = _folder_items(root / "val", names or None)
        items += more
    return items, names


def build_generate_data(data: str | Path, imgsz: int, batch: int) -> GenerateData:
    """The training set of ``data`` at ``imgsz``; fewer images than one ``batch`` is an error (a GAN step needs a
    full batch of real images)."""
    items, names = read_generate_items(data, imgsz)
    if len(items) < batch:
        raise GhostkitError(f"{data}: {len(items)} image(s), fewer than one batch (--batch {batch}); add images or "
                            f"lower --batch")
    return GenerateData(ImageListDataset(items, generate_transform(imgsz)), names, imgsz)


def task_data(task: str, data: str | Path, imgsz: int, val_fraction: float = 0.2, seed: int = 0, batch: int = 64,
              **_) -> TaskData:
    """``generate`` data as the engine uses it (``ghostkit.data.tasks.build_task_data``): the training images serve
    as validation images too (``val_fraction`` does not apply), ``source`` is the :class:`GenerateData`, and a batch
    collates to ``(images B x 3 x S x S in [-1, 1], class indices B)``."""
    d = build_generate_data(data, imgsz or default_imgsz(task), batch)
    return TaskData(d.train, d.train, {task: d.class_names}, d.imgsz, [0.5] * 3, [0.5] * 3, default_collate, d)
