"""Semantic segmentation data: the mask-folder reader and mask checks, built-in shapes, transform presets, and
`build_segment_data` (Pascal VOC and COCO through the shared readers of `ghostkit.data.formats`), which turns a
`--data` value into train / val datasets of (image, class-index mask).

Layouts (a mask holds one class index per pixel; 255 = ignore):

- folders: `DIR/images/{train,val}/*` + `DIR/masks/{train,val}/<same stem>.png`; without `images/train`, the files of
  `DIR/images/` + `DIR/masks/` are split into train / val with a fixed seed. Class names from `DIR/classes.txt` (one
  per line), else `class_0..class_N` with N the largest index found in the masks.
- Pascal VOC: `DIR/JPEGImages/`, `DIR/SegmentationClass/*.png` (palette PNGs), `DIR/ImageSets/Segmentation/{train,
  val}.txt`; `DIR` may also be a folder holding `VOC2012/` (or `VOCdevkit/VOC2012/`). VOC's 21 classes; the 255
  object borders are ignored.
- COCO: `DIR/images/` + `DIR/annotations/instances_{train,val}.json`; polygons and RLEs are rasterised with
  pycocotools. Class index = position in the category list sorted by id + 1; 0 = background. Pixels claimed by two
  classes, and crowd regions, are ignored (255). Images are looked up as `images/<file_name>`, then
  `images/<split>/<file_name>`, then `images/<split>2017/<file_name>`.
- built-in `shapes`: masks of 0 background, c + 1 for shape class c; 2000 new 64 px training images every epoch
  (`ShapeStream`) and 200 fixed validation images (`make_shapes`, seed 1), through the recipe below and the same
  transforms as a folder of the same images.

Every mask is checked once when the data set is built (its size against its image's, its values against the class
count, single-channel or palette), so a bad file stops the run at the start with one line naming it, never in a
worker mid-epoch. Unreadable images or masks are skipped with one counted `SkippedFilesWarning`. Images are read
without applying EXIF orientation, so their pixels stay aligned with the masks drawn on the stored pixels.

The training recipe (`choose_segment_recipe`): one rule for every data source, decided from the training images and
the run (median shorter side, number of images, epochs, pretrained or not), never from the data's name:

- **light** for runs from scratch under 50 epochs, and for small images (median shorter side under 64 px): no
  augmentation, the whole image resized. Augmentation slows a short from-scratch run down more than it adds variety
  (built-in shapes, 30 epochs: 0.66 mIoU with crops of 50-100% of the area, 0.845 without; colour distortion slowed
  detection the same way, see `ghostkit.data.detect`).
- **standard** for pretrained runs and runs from scratch of 50 epochs and more, on images of 64 px and more: random
  resized crops of 25-100% of the area (aspect ratios 3:4 to 4:3), then colour jitter (brightness, contrast,
  saturation 0.3, hue 0.02).
- Horizontal flips are never chosen by the rule: a mirrored digit, letter or arrow is another shape. `--flip` turns
  them on (p 0.5).
- Image size: the median shorter side rounded up to a multiple of 32, between 32 and 512
  (`ghostkit.tasks.registry.default_imgsz`).

Every choice is overridable: `--imgsz`, `--crop-scale` (smallest crop as a fraction of the image area; 1: no
crops) and `--flip`. The recipe is printed at the start of a run and its choices are written into the run's
config.yaml (`imgsz`, `crop_scale`, `flip`).
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, default_collate
from torchvision import tv_tensors
from torchvision.transforms import v2

from ghostkit.data.common import IMAGENET_MEAN, IMAGENET_STD, TaskData, read_classes_txt, split_items
from ghostkit.data.formats.coco import CocoMask, read_coco_masks
from ghostkit.data.formats.voc import VOC_CLASSES, find_voc_root, voc_segmentation_pairs
from ghostkit.data.images import (
    SkippedFilesWarning,
    filter_readable,
    image_size,
    list_images,
    median_short_side,
    read_image,
)
from ghostkit.data.synthetic import SHAPE_CLASSES, SHAPES_IMGSZ, ShapeSample, ShapeStream, make_shapes
from ghostkit.errors import GhostkitError
from ghostkit.tasks.registry import IGNORE_INDEX, default_imgsz

__all__ = [
    "VOC_SEGMENT_CLASSES",
    "SegmentData",
    "SegmentDataset",
    "SegmentRecipe",
    "build_segment_data",
    "choose_segment_recipe",
    "read_mask",
    "read_mask_folders",
    "read_voc",
    "segment_transforms",
    "task_data",
]

# Pascal VOC's segmentation classes: background, then the 20 object classes
VOC_SEGMENT_CLASSES: tuple[str, ...] = ("background", *VOC_CLASSES)
# built-in shapes: new training images per epoch (30 epochs of 1000: 0.845 mIoU in 237 s; of 2000: see README)
_SHAPES_TRAIN, _SHAPES_VAL = 2000, 200
# the recipe's thresholds (module docstring)
LONG_RUN = 50  # epochs from scratch at or above this are a long run
SMALL_IMAGE = 64  # px: shorter sides below this are small images
STANDARD_CROP = 0.25  # smallest crop of the standard recipe, as a fraction of the image area
# single-channel or palette modes whose pixel values are class indices
_INDEX_MODES = ("P", "L", "1", "I", "I;16", "I;16B", "I;16L")


# An image source (path or uint8 H x W x 3 array) and its mask source (path, uint8 H x W array or CocoMask).
Item = tuple[Path | np.ndarray, Path | np.ndarray | CocoMask]


class _UnreadableMask(GhostkitError):
    """A mask file that cannot be decoded (skipped with a warning while a data set is built)."""


def read_mask(path: str | Path, num_classes: int | None = None) -> np.ndarray:
    """A mask file → uint8 ``H x W`` class indices (palette PNGs give their indices, not colours).

    Raises `GhostkitError` for an RGB(A) / two-channel mask, a value above 255, or (given ``num_classes``) a value
    that is neither a class index nor 255, and for files that cannot be decoded ("cannot read mask").
    """
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            arr = np.asarray(img) if mode in _INDEX_MODES else None
    except Exception as exc:  # PIL raises many types on corrupt data
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise _UnreadableMask(f"{path}: cannot read mask ({reason})") from exc
    if arr is None:
        raise GhostkitError(f"{path}: {mode} mask; masks must be single-channel (L) or palette (P) PNGs of class "
                            f"indices, not colours")
    if arr.dtype != np.uint8:
        big = arr[arr > IGNORE_INDEX]
        if big.size:
            raise GhostkitError(f"{path}: mask value {int(big.min())} is not a class index (0..254) or 255 (ignore)")
        arr = arr.astype(np.uint8)
    if num_classes is not None:
        _check_values(arr, num_classes, path)
    return arr


def _check_values(mask: np.ndarray, num_classes: int, where: Any) -> None:
    bad = mask[(mask >= num_classes) & (mask != IGNORE_INDEX)]
    if bad.size:
        raise GhostkitError(f"{where}: mask value {int(bad.min())} is not a class index (0..{num_classes - 1}) "
                            f"or {IGNORE_INDEX} (ignore)")


def segment_transforms(imgsz: int, train: bool, mean: Sequence[float] = IMAGENET_MEAN,
                       std: Sequence[float] = IMAGENET_STD, crop_scale: float = 1.0, hflip: float = 0.0,
                       jitter: bool = False) -> v2.Compose:
    """Joint transform of ``(tv_tensors.Image uint8 3 x H x W, tv_tensors.Mask uint8 H x W)`` → (normalised float32
    3 x imgsz x imgsz, mask imgsz x imgsz); masks are resized with nearest neighbours, colours leave them alone. The
    defaults are the light recipe (no augmentation).

    train: RandomResizedCrop(imgsz, scale=(crop_scale, 1)) (``crop_scale=1``: a plain resize) →
    RandomHorizontalFlip(hflip) → ColorJitter (``jitter``). val: Resize((imgsz, imgsz)) of the whole image, as the
    Predictor does ("resize"), so the aspect ratio changes the same way in training and inference.
    """
    if not 0.0 < crop_scale <= 1.0:
        raise GhostkitError(f"--crop-scale must be in (0, 1], got {crop_scale}")
    if not 0.0 <= hflip <= 1.0:
        raise GhostkitError(f"hflip must be a probability in [0, 1], got {hflip}")
    to_float = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(mean), std=list(std))]
    resize = v2.Resize((imgsz, imgsz), antialias=True)
    if not train:
        return v2.Compose([resize, *to_float])
    crop = v2.RandomResizedCrop((imgsz, imgsz), scale=(crop_scale, 1.0), antialias=True)
    return v2.Compose([
        resize if crop_scale >= 1 else crop,
        *([v2.RandomHorizontalFlip(hflip)] if hflip > 0 else []),
        *([v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.02)] if jitter else []),
        *to_float,
    ])


@dataclass(frozen=True)
class SegmentRecipe:
    """The resolved training augmentation of a segmentation run (module docstring)."""

    name: str  # "light" or "standard"
    reasons: tuple[str, ...]  # why, in words
    imgsz: int
    crop_scale: float  # smallest crop as a fraction of the image area; 1: the whole image resized
    flip: bool
    jitter: bool  # colour jitter
    overridden: tuple[str, ...] = ()  # options the user set

    def describe(self) -> str:
        """One line for the start of a run."""
        crops = "none" if self.crop_scale >= 1 else f"{self.crop_scale:.0%}-100% of the area"
        line = (f"recipe: {self.name} augmentation ({', '.join(self.reasons)}): imgsz {self.imgsz}, crops {crops}, "
                f"colour jitter {'0.3' if self.jitter else 'off'}, flips {'on' if self.flip else 'off'}")
        return line + (f" (set by option: {', '.join(self.overridden)})" if self.overridden else "")


def choose_segment_recipe(size: int, images: int, epochs: int, pretrained: bool = False, *, imgsz: int | None = None,
                          crop_scale: float | None = None, flip: bool | None = None) -> SegmentRecipe:
    """The recipe of the module docstring for training images of median shorter side ``size`` px, ``images`` of
    them, and the run; options that are not None replace the rule's choice and are listed in
    `SegmentRecipe.overridden`."""
    if epochs < 1:
        raise GhostkitError(f"--epochs must be positive, got {epochs}")
    small_image = size < SMALL_IMAGE
    standard = (pretrained or epochs >= LONG_RUN) and not small_image
    reasons = (*(["small images"] if small_image else []), f"{images} images", f"{epochs} epochs",
               "pretrained" if pretrained else "from scratch")
    given = dict(imgsz=imgsz, crop_scale=crop_scale, flip=flip)
    overridden = tuple(k for k, v in given.items() if v is not None)
    chosen = dict(imgsz=default_imgsz("segment", size), crop_scale=STANDARD_CROP if standard else 1.0,
                  flip=False) | {k: given[k] for k in overridden}
    if not 0.0 < chosen["crop_scale"] <= 1.0:
        raise GhostkitError(f"--crop-scale must be in (0, 1], got {chosen['crop_scale']}")
    if chosen["imgsz"] < 32:
        raise GhostkitError(f"imgsz must be at least 32, got {chosen['imgsz']}")
    return SegmentRecipe(name="standard" if standard else "light", reasons=reasons, overridden=overridden,
                         jitter=standard, **chosen)


def _tensor(arr: np.ndarray) -> torch.Tensor:
    # torch shares memory with writable arrays only; the cached built-in arrays are read-only, so they are copied
    arr = np.ascontiguousarray(arr)
    return torch.from_numpy(arr if arr.flags.writeable else arr.copy())


class SegmentDataset(Dataset):
    """(image, mask) items → ``(float32 3 x H x W normalised image, int64 H x W mask)`` through ``transform``."""

    def __init__(self, items: Sequence[Item], transform: Any) -> None:
        self.items = items if isinstance(items, ShapeStream) else list(items)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        source, mask_source = self.items[index]
        image = source if isinstance(source, np.ndarray) else np.asarray(read_image(source, exif_transpose=False))
        if isinstance(mask_source, CocoMask):
            mask = mask_source.render()
        elif isinstance(mask_source, np.ndarray):
            mask = mask_source
        else:
            mask = read_mask(mask_source)
        if mask.shape != image.shape[:2]:  # checked when the data set was built; a file changed since
            raise GhostkitError(f"{mask_source}: mask is {mask.shape[1]} x {mask.shape[0]}, its image "
                                f"{image.shape[1]} x {image.shape[0]}")
        img = tv_tensors.Image(_tensor(image).permute(2, 0, 1))
        image_t, mask_t = self.transform(img, tv_tensors.Mask(_tensor(mask)))
        return image_t.as_subclass(torch.Tensor), mask_t.as_subclass(torch.Tensor).long()


@dataclass
class SegmentData:
    """Train / val `SegmentDataset`s and what the validation transform used (inference repeats it)."""

    train: SegmentDataset
    val: SegmentDataset
    class_names: list[str]
    imgsz: int
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    recipe: SegmentRecipe | None = None  # how the training transform was chosen


def _map(fn, args: list, num_threads: int = 8) -> list:
    workers = max(1, min(num_threads, len(args), os.cpu_count() or 1))
    if workers == 1:
        return [fn(a) for a in args]
    with ThreadPoolExecutor(max_workers=workers) as pool:  # PIL decodes with the GIL released
        return list(pool.map(fn, args))


def _check_pairs(pairs: list[tuple[Path, Path]], folder: Path, num_classes: int | None) -> tuple[list[Item], int]:
    """Keep readable (image, mask file) pairs after checking every mask; returns them and the largest class index.

    Missing masks, size mismatches, RGB masks and out-of-range values raise `GhostkitError`; unreadable images or
    masks are skipped with one `SkippedFilesWarning`.
    """
    for image, mask in pairs:
        if not mask.is_file():
            raise GhostkitError(f"{image}: no mask {mask}")
    good, _ = filter_readable([img for img, _ in pairs], folder=folder)
    good_set = set(good)
    pairs = [p for p in pairs if p[0] in good_set]

    def check(pair: tuple[Path, Path]) -> int | None:
        image, mask_path = pair
        try:
            mask = read_mask(mask_path, num_classes)
        except _UnreadableMask:
            return None
        size = image_size(image, exif=False)
        if size is not None and (mask.shape[1], mask.shape[0]) != size:
            raise GhostkitError(f"{mask_path}: mask is {mask.shape[1]} x {mask.shape[0]}, but its image {image.name} "
                                f"is {size[0]} x {size[1]}")
        valid = mask[mask != IGNORE_INDEX]
        return int(valid.max()) if valid.size else 0

    found = _map(check, pairs)
    bad = [m for (_, m), v in zip(pairs, found) if v is None]
    if bad:
        names = ", ".join(p.name for p in bad[:5]) + (", ..." if len(bad) > 5 else "")
        warnings.warn(f"skipped {len(bad)} unreadable mask(s) in {folder}: {names}", SkippedFilesWarning, stacklevel=3)
    items = [(img, m) for (img, m), v in zip(pairs, found) if v is not None]
    if not items:
        raise GhostkitError(f"{folder}: no readable image and mask pairs")
    return items, max(v for v in found if v is not None)


def read_mask_folders(root: str | Path, split: str | None, class_names: Sequence[str] | None = None
                      ) -> tuple[list[Item], int]:
    """``root/images/<split>/*`` with ``root/masks/<split>/<stem>.png`` (``split=None``: ``images/`` and ``masks/``
    themselves) → ([(image path, mask path)], largest class index found)."""
    root = Path(root)
    sub = Path(split) if split else Path()
    images_dir, masks_dir = root / "images" / sub, root / "masks" / sub
    if not masks_dir.is_dir():
        raise GhostkitError(f"{masks_dir}: no such folder (segmentation data needs images/{sub.as_posix()} and "
                            f"masks/{sub.as_posix()})")
    images = list_images(images_dir)
    if not images:
        raise GhostkitError(f"{images_dir}: no images")
    pairs = [(p, masks_dir / f"{p.stem}.png") for p in images]
    return _check_pairs(pairs, images_dir, None if class_names is None else len(class_names))


def read_voc(root: str | Path, split: str) -> list[Item]:
    """A Pascal VOC folder's ``split`` → [(image path, mask path)] with masks checked against VOC's 21 classes."""
    root = Path(root)
    return _check_pairs(voc_segmentation_pairs(root, split), root / "JPEGImages", len(VOC_SEGMENT_CLASSES))[0]


def _shape_item(sample: ShapeSample) -> tuple[np.ndarray, np.ndarray]:
    return sample.image, sample.mask


@functools.lru_cache(maxsize=4)
def _shape_items(n: int, seed: int, imgsz: int) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Built-in shapes as read-only (uint8 image H x W x 3, uint8 mask H x W), cached between runs."""
    out = []
    for s in make_shapes(n, imgsz=imgsz, seed=seed):
        s.image.flags.writeable = False
        s.mask.flags.writeable = False
        out.append((s.image, s.mask))
    return tuple(out)


def build_segment_data(data: str | Path, imgsz: int | None = None, val_fraction: float = 0.2, seed: int = 0, *,
                       epochs: int = 30, pretrained: bool = False, crop_scale: float | None = None,
                       flip: bool | None = None) -> SegmentData:
    """Resolve a `--data` value (``shapes``, a mask-folder, VOC or COCO folder; see the module docstring) to train /
    val datasets of ``(3 x imgsz x imgsz image, imgsz x imgsz mask)``, the training transform chosen by
    `choose_segment_recipe` for the training images, `epochs` and `pretrained` (``imgsz``, ``crop_scale``,
    ``flip``: set by the user, else the rule's)."""
    if imgsz is not None and imgsz < 32:
        raise GhostkitError(f"imgsz must be at least 32, got {imgsz}")
    name = str(data)

    def make(train: Sequence, val: list, names: Sequence[str]) -> SegmentData:
        # an even sample read once (a generated source draws a new image on every read)
        size = median_short_side([train[i][0] for i in range(0, len(train), max(1, len(train) // 64))])
        if size is None:
            raise GhostkitError(f"{data}: no readable training images to choose the recipe from")
        r = choose_segment_recipe(size, len(train), epochs, pretrained, imgsz=imgsz, crop_scale=crop_scale,
                                  flip=flip)
        train_tf = segment_transforms(r.imgsz, True, crop_scale=r.crop_scale, hflip=0.5 if r.flip else 0.0,
                                      jitter=r.jitter)
        return SegmentData(SegmentDataset(train, train_tf), SegmentDataset(val, segment_transforms(r.imgsz, False)),
                           list(names), r.imgsz, recipe=r)

    if name == "shapes":  # a generated source of 64 px images, read like a folder of them
        train = ShapeStream(_SHAPES_TRAIN, SHAPES_IMGSZ, _shape_item)
        return make(train, list(_shape_items(_SHAPES_VAL, 1, SHAPES_IMGSZ)), ("background", *SHAPE_CLASSES))
    root = Path(data)
    if not root.is_dir():
        raise GhostkitError(f"{root}: no such data folder (built-in data: shapes)")
    voc = find_voc_root(root)
    if voc is not None:
        return make(read_voc(voc, "train"), read_voc(voc, "val"), VOC_SEGMENT_CLASSES)
    if any((root / "annotations").glob("instances_*.json")):
        train, cats = read_coco_masks(root, "train")
        val, _ = read_coco_masks(root, "val", cats)
        return make(train, val, ["background", *(n for _, n in cats)])
    if not (root / "images").is_dir():
        raise GhostkitError(f"{root}: no images/ folder (expected images/{{train,val}} + masks/{{train,val}}, Pascal "
                            f"VOC's JPEGImages/ + SegmentationClass/, or COCO's images/ + annotations/)")
    classes_txt = root / "classes.txt"
    names = read_classes_txt(classes_txt, max_classes=IGNORE_INDEX - 1, task="segmentation") if (
        classes_txt.is_file()) else None
    if (root / "images" / "train").is_dir():
        train, top = read_mask_folders(root, "train", names)
        if not (root / "images" / "val").is_dir():
            raise GhostkitError(f"{root / 'images'}: has train/ but no val/ folder")
        val, top_val = read_mask_folders(root, "val", names)
    else:
        everything, top = read_mask_folders(root, None, names)
        if len(everything) < 2:
            raise GhostkitError(f"{root / 'images'}: needs at least 2 images to split off a validation set")
        train, val = split_items(everything, val_fraction, seed, stratify=False)
        top_val = 0
    return make(train, val, names or [f"class_{i}" for i in range(max(top, top_val) + 1)])


def collate_segment(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, dict]:
    """``[(image, mask)]`` → ``(images B x 3 x H x W, {"segment": masks B x H x W})``."""
    images, masks = default_collate(batch)
    return images, {"segment": masks}


def task_data(task: str, data: str | Path, imgsz: int | None, val_fraction: float = 0.2, seed: int = 0,
              **options) -> TaskData:
    """Segmentation data as the engine uses it (``ghostkit.data.tasks.build_task_data``), with the recipe's choices
    in ``resolved`` and its line in ``recipe``. ``options``: `build_segment_data`'s keyword-only ones (others, of
    other tasks, are ignored)."""
    known = ("epochs", "pretrained", "crop_scale", "flip")
    d = build_segment_data(data, imgsz=imgsz, val_fraction=val_fraction, seed=seed,
                           **{k: v for k, v in options.items() if k in known})
    r = d.recipe
    return TaskData(d.train, d.val, {task: list(d.class_names)}, d.imgsz, list(d.mean), list(d.std),
                    collate_segment, d, resolved=dict(imgsz=r.imgsz, crop_scale=r.crop_scale, flip=r.flip),
                    recipe=r.describe())
