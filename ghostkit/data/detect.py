"""Detection data: the dataset, built-in shapes, transforms and collate, on the shared readers of
`ghostkit.data.formats` (COCO, YOLO, Pascal VOC, WIDER FACE).

Layouts, detected from the folder (`detect_format`):

- COCO: `images/` + `annotations/instances_{train,val}.json` (images at `images/<file_name>` or
  `images/<split>/<file_name>`). Category ids map to 0..C-1 in sorted id order; names come from `categories`;
  crowd annotations (`iscrowd: 1`) are left out.
- YOLO: `images/{train,val}/`, `labels/{train,val}/*.txt` (one `class cx cy w h` line per object, normalised to
  0..1; an image without a label file has no objects) and `data.yaml` whose `names` is a list or an {id: name} dict.
- Pascal VOC: `Annotations/*.xml`, `JPEGImages/`, `ImageSets/Main/{train,val}.txt`. Classes: VOC's 20 when every
  name is one of them, else the sorted names of all XMLs. Objects marked `difficult` are left out; VOC's 1-based
  inclusive pixel corners become 0-based xyxy edges.
- WIDER FACE: `wider_face_split/wider_face_{train,val}_bbx_gt.txt` + `WIDER_{train,val}/images/...`, one class
  "face"; boxes flagged invalid or of zero size are skipped and counted.
- MOTChallenge: `train/<SEQ>/img1/*.jpg` + `train/<SEQ>/gt/gt.txt` (and `val/<SEQ>/...`, optional `classes.txt`),
  read by `ghostkit.data.formats.mot`: every frame is a detection image (frames without boxes are negatives), each
  object also carries its split-wide identity (`"ids"`, for an embedding head).
- built-in `shapes`: 1250 new 64 px training images every epoch (`ghostkit.data.synthetic.ShapeStream`) and 200
  fixed validation images (`make_shapes`, seed 1); built-in `tracks` is a MOTChallenge folder
  (`ghostkit.data.tracks.builtin_tracks`), written once and then read like a user's. Both go through the recipe
  below and the same transforms as a folder of the same images.

A missing validation split is split off train (`val_fraction`, `seed`). Boxes are xyxy in pixels of the original
image. Boxes reaching outside their image are clipped and degenerate ones (under 1 px wide or high) dropped, with
one counted `BoxesFixedWarning` per file set; unreadable images are skipped with one `SkippedFilesWarning`; a
malformed annotation file, an unknown category or class id, a wrong field count or a missing image raise a
one-line `GhostkitError` naming the file (and line).

The training recipe (`choose_detect_recipe`): one rule for every data source, decided from the training images and
the run (`detect_stats`: median shorter side, median object side as a fraction of the image's shorter side, number
of images; epochs; pretrained or not), never from the data's name:

- **light** for runs from scratch under 30 epochs: no augmentation but flips, the whole image resized. A short
  from-scratch run underfits, and augmentation takes away more than it adds (unseen scenes, 30 epochs: mAP50 0.845
  with zoom-out, IoU crops and flips against 0.894 for a plain FCOS loop without augmentation);
  `benchmarks/recipe_dense.py` (600 images, 8 epochs, two seeds): colour distortion 0.287 against 0.306 without on
  `scenes`, 0.343 against 0.333 on `shapes`.
- **medium** for runs from scratch of 30 to 49 epochs, and for longer or pretrained runs on small images (median
  shorter side under 64 px): the light recipe plus colour distortion (`RandomPhotometricDistort`, p 0.5; brightness,
  contrast, saturation, hue and channel order). Seeing each image 30 times and more, a detector starts to learn its
  objects' colours instead of their shapes: `recipe_dense.py --epochs 30` on `scenes` (600 images): mAP50 0.683
  against 0.630 without; built-in `tracks` (800 images, 30 epochs, ghostnet_100 at 96 px): 0.697 against 0.621, and
  the validation score no longer falls after its best epoch.
- **standard** for pretrained runs and runs from scratch of 50 epochs and more, on images of 64 px and more: SSD's
  augmentation, colour distortion (as medium), IoU crops (p 0.5) down to 10% of the image
  area (sides of 32% and more: torchvision's `RandomIoUCrop` range) and, when the objects are not small (median
  side at least 1/8 of the image's shorter side, so that they stay 1/16 and more), zoom-out up to 2x (p 0.5).
- Horizontal flips (p 0.5) in every recipe, as in torchvision's detection references, Ultralytics (`fliplr` 0.5),
  Detectron2 and MMDetection: the objects users detect (people, vehicles, animals, faces, products) keep their class
  in a mirror, and a flip takes nothing away from a short run. `recipe_dense.py` (two seeds): `shapes` 8 epochs
  mAP50 0.400 / 0.412 against 0.354 / 0.383 without, 30 epochs 0.677 / 0.782 against 0.647 / 0.634; built-in
  `tracks` (30 epochs) 0.825 / 0.822 against 0.688 / 0.746. Classes that a mirror changes lose by it: `scenes`
  (digits 0, 1, 4, 7) 0.285 / 0.432 against 0.335 / 0.498 (8 epochs), 0.796 / 0.696 against 0.765 / 0.837 (30);
  `--no-flip` is for such data (digits, letters, arrows, left / right classes).
- Image size: the median shorter side rounded up to a multiple of 32, between 32 and 320
  (`ghostkit.tasks.registry.default_imgsz`).

Every choice is overridable: `--imgsz`, `--crop-scale` (smallest IoU crop as a fraction of the image area; 1: no
crops and no zoom-out; under 1: crops, and zoom-out for objects that are not small) and `--flip / --no-flip`. The
recipe is printed at the start of a run (``recipe: medium augmentation (..., 30 epochs, from scratch): ...``) and its
choices are written into the run's config.yaml (`imgsz`, `crop_scale`, `flip`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from ghostkit.data.cache import decode_items
from ghostkit.data.common import IMAGENET_MEAN, IMAGENET_STD, TaskData, split_items
from ghostkit.data.formats.boxes import MIN_BOX, BoxCleaner
from ghostkit.data.formats.coco import read_coco_boxes
from ghostkit.data.formats.mot import read_mot_boxes
from ghostkit.data.formats.voc import read_voc, voc_class_names, voc_ids
from ghostkit.data.formats.widerface import read_widerface
from ghostkit.data.formats.yolo import read_yolo
from ghostkit.data.images import filter_readable, image_size, read_image
from ghostkit.data.synthetic import SHAPE_CLASSES, SHAPES_IMGSZ, ShapeSample, ShapeStream, make_shapes
from ghostkit.data.tracks import data_root
from ghostkit.errors import GhostkitError
from ghostkit.tasks.registry import default_imgsz

__all__ = [
    "DetectData",
    "DetectRecipe",
    "DetectStats",
    "DetectionDataset",
    "build_detect_data",
    "choose_detect_recipe",
    "collate_detect",
    "detect_format",
    "detect_stats",
    "detect_transforms",
    "task_data",
]

# Built-in shapes: new training images per epoch, enough for a default `ghostkit train --task detect --data shapes`
# run to reach mAP50 >= 0.9 within 10 minutes on a 2-core CPU (30 epochs of 1000: 0.899 in 442 s; of 1250: README).
SHAPES_TRAIN, SHAPES_VAL = 1250, 200
# the recipe's thresholds (module docstring)
LONG_RUN = 50  # epochs from scratch at or above this are a long run
MEDIUM_RUN = 30  # epochs from scratch at or above this (and below LONG_RUN) get colour distortion
SMALL_IMAGE = 64  # px: shorter sides below this are small images
SMALL_OBJECT = 1 / 8  # median object side / image side below this: small objects (no zoom-out)
STANDARD_CROP = 0.1  # smallest IoU crop of the standard recipe, as a fraction of the image area
PHOTOMETRIC = 0.5  # probability of each colour distortion of the standard recipe
_STATS_SAMPLE = 64  # images looked at for the statistics

ImageSource = Path | str | np.ndarray
# an image and its objects: {"boxes": float32 N x 4 xyxy pixels, "labels": int64 N}
Item = tuple[ImageSource, dict[str, np.ndarray]]


# -- datasets and transforms ---------------------------------------------------------------------------------------
def detect_transforms(imgsz: int, train: bool, mean: Sequence[float] = IMAGENET_MEAN,
                      std: Sequence[float] = IMAGENET_STD, hflip: float = 0.0, photometric: float = 0.0,
                      zoom_out: float = 0.0, iou_crop: float = 0.0, crop_scale: float = STANDARD_CROP) -> v2.Compose:
    """Transform preset for `(image, {"boxes": BoundingBoxes, "labels"})` → normalised float32 3 x imgsz x imgsz
    with boxes in the resized image's pixels. The defaults are the light recipe (no augmentation).

    train (SSD-style, each step with its probability): RandomPhotometricDistort → RandomZoomOut (up to 2x, filled
    with the mean colour) → RandomIoUCrop (sides of at least sqrt(crop_scale), so areas of at least `crop_scale`) →
    RandomHorizontalFlip → Resize → SanitizeBoundingBoxes (drops boxes cropped away or under 1 px). val: Resize
    only (the whole image, as the Predictor does)."""
    for name, p in (("hflip", hflip), ("photometric", photometric), ("zoom_out", zoom_out), ("iou_crop", iou_crop)):
        if not 0.0 <= p <= 1.0:
            raise GhostkitError(f"{name} must be a probability in [0, 1], got {p}")
    if not 0.0 < crop_scale <= 1.0:
        raise GhostkitError(f"--crop-scale must be in (0, 1], got {crop_scale}")
    ops: list[Any] = [v2.ToImage()]
    if train:
        if photometric > 0:
            ops.append(v2.RandomPhotometricDistort(p=photometric))
        if zoom_out > 0:
            fill = {tv_tensors.Image: [round(255 * m) for m in mean], "others": 0}
            ops.append(v2.RandomZoomOut(fill=fill, side_range=(1.0, 2.0), p=zoom_out))
        if iou_crop > 0 and crop_scale < 1:
            ops.append(v2.RandomApply([v2.RandomIoUCrop(min_scale=math.sqrt(crop_scale))], p=iou_crop))
        if hflip > 0:
            ops.append(v2.RandomHorizontalFlip(hflip))
    ops.append(v2.Resize((imgsz, imgsz), antialias=True))
    if train:
        ops.append(v2.SanitizeBoundingBoxes(min_size=MIN_BOX))
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    return v2.Compose(ops)


class DetectionDataset(Dataset):
    """Items `(image, {"boxes": N x 4 xyxy pixels, "labels": N})` → `(float32 3 x S x S, {"boxes": float32 N x 4
    in the transformed image's pixels, "labels": int64 N, "index": the item's index})`. An image is a file path or
    a uint8 H x W x 3 array; `images`: the items' images already decoded (uint8 3 x H x W tensors, same order,
    `ghostkit.data.cache.decode_items`), read instead of the files."""

    def __init__(self, items: Sequence[Item], transform: Any = None,
                 images: Sequence[torch.Tensor] | None = None) -> None:
        self.items = items if isinstance(items, ShapeStream) else list(items)
        self.transform = transform or v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])
        if images is not None and len(images) != len(self.items):
            raise ValueError(f"{len(images)} images for {len(self.items)} items")
        self.images = images

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int) -> Image.Image:
        """The item's image as it is stored (RGB PIL)."""
        source = self.items[index][0]
        return read_image(source) if isinstance(source, (str, Path)) else Image.fromarray(np.asarray(source))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        source, ann = self.items[index]
        if self.images is not None:
            image = tv_tensors.Image(self.images[index])
        elif isinstance(source, (str, Path)):
            image = tv_tensors.Image(v2.functional.pil_to_tensor(read_image(source)))
        else:
            image = tv_tensors.Image(torch.from_numpy(np.array(source, dtype=np.uint8)).permute(2, 0, 1))
        boxes = tv_tensors.BoundingBoxes(torch.as_tensor(ann["boxes"], dtype=torch.float32).reshape(-1, 4),
                                         format="XYXY", canvas_size=tuple(image.shape[-2:]))
        image, target = self.transform(image, {"boxes": boxes, "labels": torch.as_tensor(ann["labels"])})
        return image, {"boxes": target["boxes"].as_subclass(torch.Tensor).float().reshape(-1, 4),
                       "labels": target["labels"].long(), "index": torch.tensor(index)}


def collate_detect(batch: list[tuple[torch.Tensor, dict]]) -> tuple[torch.Tensor, dict[str, list[dict]]]:
    """→ (images B x 3 x S x S, {"detect": [one target dict per image]})."""
    return torch.stack([b[0] for b in batch]), {"detect": [b[1] for b in batch]}


@dataclass
class DetectData:
    """Train / val `DetectionDataset`s and their metadata (what the validation transform used)."""

    train: DetectionDataset
    val: DetectionDataset
    class_names: list[str]
    imgsz: int
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    recipe: DetectRecipe | None = None  # how the training transform was chosen


# -- the training recipe -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DetectStats:
    """What the recipe reads from the training set."""

    size: int  # median shorter side of the training images, px
    object_size: float  # median object side (sqrt of the box area) / its image's shorter side; 0: no objects
    images: int  # training images (per epoch, for a generated source)


@dataclass(frozen=True)
class DetectRecipe:
    """The resolved training augmentation of a detection run (module docstring)."""

    name: str  # "light", "medium" or "standard"
    reasons: tuple[str, ...]  # why, in words
    imgsz: int
    crop_scale: float  # smallest IoU crop as a fraction of the image area; 1: no crops
    zoom_out: bool
    flip: bool
    photometric: float  # probability of each colour distortion
    overridden: tuple[str, ...] = ()  # options the user set

    def transform_options(self) -> dict[str, float]:
        """`detect_transforms` keyword arguments of this recipe."""
        return dict(hflip=0.5 if self.flip else 0.0, photometric=self.photometric,
                    zoom_out=0.5 if self.zoom_out else 0.0, iou_crop=0.5 if self.crop_scale < 1 else 0.0,
                    crop_scale=self.crop_scale)

    def describe(self) -> str:
        """One line for the start of a run."""
        crops = "none" if self.crop_scale >= 1 else f"IoU crops {self.crop_scale:.0%}-100% of the area"
        line = (f"recipe: {self.name} augmentation ({', '.join(self.reasons)}): imgsz {self.imgsz}, colour distortion "
                f"{self.photometric:g}, crops {crops}, zoom-out {'up to 2x' if self.zoom_out else 'off'}, flips "
                f"{'on' if self.flip else 'off'}")
        return line + (f" (set by option: {', '.join(self.overridden)})" if self.overridden else "")


def _even_sample(items: Sequence, n: int = _STATS_SAMPLE) -> list:
    return [items[i] for i in range(0, len(items), max(1, len(items) // n))][:n]


def detect_stats(items: Sequence[Item]) -> DetectStats:
    """Image size, object size and count of a training set, from an even sample of `_STATS_SAMPLE` items (files:
    their headers only). A generated source (`ShapeStream`) is sampled like a list: each read draws an image."""
    if not len(items):
        raise GhostkitError("the detection training set is empty")
    sides, objects = [], []
    for source, ann in _even_sample(items):
        if isinstance(source, (str, Path)):
            size = image_size(Path(source))
            if size is None:
                continue
        else:
            size = np.asarray(source).shape[1::-1]
        side = min(size)
        sides.append(side)
        wh = np.asarray(ann["boxes"], dtype=np.float64).reshape(-1, 4)
        objects += (np.sqrt(np.clip(wh[:, 2] - wh[:, 0], 0, None) * np.clip(wh[:, 3] - wh[:, 1], 0, None))
                    / side).tolist()
    if not sides:
        raise GhostkitError("no readable training images to choose the recipe from")
    return DetectStats(size=int(np.median(sides)), object_size=float(np.median(objects)) if objects else 0.0,
                       images=len(items))


def choose_detect_recipe(stats: DetectStats, epochs: int, pretrained: bool = False, *, imgsz: int | None = None,
                         crop_scale: float | None = None, flip: bool | None = None) -> DetectRecipe:
    """The recipe of the module docstring for `stats` and the run; options that are not None (`flip=False`
    included) replace the rule's choice and are listed in `DetectRecipe.overridden`."""
    if epochs < 1:
        raise GhostkitError(f"--epochs must be positive, got {epochs}")
    small_image = stats.size < SMALL_IMAGE
    small_objects = stats.object_size < SMALL_OBJECT
    long_run = pretrained or epochs >= LONG_RUN
    reasons = [*(["small images"] if small_image else []),
               f"objects {stats.object_size:.0%} of the image side", f"{stats.images} images", f"{epochs} epochs",
               "pretrained" if pretrained else "from scratch"]
    standard = long_run and not small_image
    name = "standard" if standard else "medium" if long_run or epochs >= MEDIUM_RUN else "light"
    given = dict(imgsz=imgsz, crop_scale=crop_scale, flip=flip)
    overridden = tuple(k for k, v in given.items() if v is not None)
    chosen = dict(imgsz=default_imgsz("detect", stats.size), crop_scale=STANDARD_CROP if standard else 1.0,
                  flip=True) | {k: given[k] for k in overridden}
    if not 0.0 < chosen["crop_scale"] <= 1.0:
        raise GhostkitError(f"--crop-scale must be in (0, 1], got {chosen['crop_scale']}")
    if chosen["imgsz"] < 32:
        raise GhostkitError(f"imgsz must be at least 32, got {chosen['imgsz']}")
    return DetectRecipe(name=name, reasons=tuple(reasons), overridden=overridden,
                        zoom_out=chosen["crop_scale"] < 1 and not small_objects,
                        photometric=0.0 if name == "light" else PHOTOMETRIC, **chosen)


def is_mot_root(root: Path) -> bool:
    """`root/train` holds MOTChallenge sequence folders (`<SEQ>/img1/` or `<SEQ>/seqinfo.ini`)."""
    train = root / "train"
    return train.is_dir() and any((p / "img1").is_dir() or (p / "seqinfo.ini").is_file() for p in train.iterdir()
                                  if p.is_dir())


def detect_format(root: str | Path) -> str:
    """Which layout `root` holds: "coco", "yolo", "voc", "widerface" or "mot"."""
    root = Path(root)
    if (root / "annotations" / "instances_train.json").is_file():
        return "coco"
    if (root / "labels").is_dir() or (root / "data.yaml").is_file() or (root / "data.yml").is_file():
        return "yolo"
    if (root / "Annotations").is_dir():
        return "voc"
    if (root / "wider_face_split").is_dir():
        return "widerface"
    if is_mot_root(root):
        return "mot"
    raise GhostkitError(f"{root}: no detection data found (expected COCO annotations/instances_train.json, YOLO "
                        "data.yaml + labels/, VOC Annotations/, WIDER FACE wider_face_split/, or MOTChallenge "
                        "train/<SEQ>/img1/)")


def _shape_item(sample: ShapeSample) -> Item:
    return sample.image, {"boxes": sample.boxes, "labels": sample.labels}


@functools.lru_cache(maxsize=4)
def _shapes(n: int, seed: int, imgsz: int) -> tuple[Item, ...]:
    items = []
    for s in make_shapes(n, imgsz=imgsz, seed=seed):
        s.image.flags.writeable = False  # shared by the cache
        items.append(_shape_item(s))
    return tuple(items)


def _readable(items: list[Item], where: Path) -> list[Item]:
    good = set(filter_readable([p for p, _ in items], folder=where)[0])
    return [it for it in items if it[0] in good]


def read_mot_detections(root: Path, split: str) -> tuple[list[Item], list[str]]:
    """A MOTChallenge split as detection items (`read_mot_boxes`), boxes clipped to their frame and degenerate ones
    dropped (their identities with them), counted in one warning."""
    items, names = read_mot_boxes(root, split)
    clean, out = BoxCleaner(), []
    for path, ann in items:
        size = image_size(path) if len(ann["boxes"]) else (0, 0)
        if size is None:  # unreadable: `filter_readable` drops it with the shared warning
            out.append((path, ann))
            continue
        fixed = clean(ann["boxes"], np.arange(len(ann["boxes"])), *size)  # "labels": the surviving rows
        kept = fixed["labels"]
        out.append((path, {"boxes": fixed["boxes"], "labels": ann["labels"][kept], "ids": ann["ids"][kept]}))
    clean.warn(root / split)
    return out, names


def _read_folder(root: Path, val_fraction: float, seed: int) -> tuple[list[Item], list[Item] | None, list[str]]:
    fmt = detect_format(root)
    if fmt == "mot":
        train, names = read_mot_detections(root, "train")
        val = read_mot_detections(root, "val")[0] if (root / "val").is_dir() else None
    elif fmt == "coco":
        train, cats = read_coco_boxes(root, "train")
        names = [name for _, name in cats]
        val = read_coco_boxes(root, "val", cats)[0] if (root / "annotations" / "instances_val.json").is_file() else None
    elif fmt == "yolo":
        if not (root / "images" / "train").is_dir():
            raise GhostkitError(f"{root / 'images' / 'train'}: no such folder (YOLO data: images/train, labels/train)")
        train, names = read_yolo(root, "train")
        val = read_yolo(root, "val", names)[0] if (root / "images" / "val").is_dir() else None
    elif fmt == "voc":
        names = voc_class_names(root)
        train_ids = voc_ids(root, "train")
        val_ids = voc_ids(root, "val")
        train = read_voc(root, train_ids, names)
        val = read_voc(root, val_ids, names) if val_ids is not None and train_ids is not None else None
    else:
        train, names = read_widerface(root, "train"), ["face"]
        has_val = (root / "wider_face_split" / "wider_face_val_bbx_gt.txt").is_file()
        val = read_widerface(root, "val") if has_val else None
    train = _readable(train, root)
    if val is None:
        train, val = split_items(train, val_fraction, seed, stratify=False) if len(train) > 1 else (train, [])
    else:
        val = _readable(val, root)
    return train, val, names


def build_detect_data(data: str | Path, imgsz: int | None = None, val_fraction: float = 0.2, seed: int = 0, *,
                      epochs: int = 30, pretrained: bool = False, crop_scale: float | None = None,
                      flip: bool | None = None, cache_mb: float = 0) -> DetectData:
    """Resolve `--data` (a folder in one of the layouts above, or "shapes" / "tracks") to train / val datasets of
    3 x imgsz x imgsz tensors, the training transform chosen by `choose_detect_recipe` for the data, `epochs` and
    `pretrained` (`imgsz`, `crop_scale`, `flip`: set by the user, else the rule's). `cache_mb` > 0: a folder's
    images are decoded once and kept in memory when they fit in that many MiB (`ghostkit.data.cache`)."""
    if str(data) == "shapes":  # a generated source of 64 px images, read like a folder of them
        train, val = ShapeStream(SHAPES_TRAIN, SHAPES_IMGSZ, _shape_item), list(_shapes(SHAPES_VAL, 1, SHAPES_IMGSZ))
        names = list(SHAPE_CLASSES)
    else:
        root = data_root(data)
        if not root.exists():
            raise GhostkitError(f"{root}: no such data folder (built-in detection data: shapes, tracks)")
        if not root.is_dir():
            raise GhostkitError(f"{root}: not a folder (expected detection data, 'shapes' or 'tracks')")
        train, val, names = _read_folder(root, val_fraction, seed)
    images = None if isinstance(train, ShapeStream) else decode_items(train + val, cache_mb)
    recipe = choose_detect_recipe(detect_stats(train), epochs, pretrained, imgsz=imgsz, crop_scale=crop_scale,
                                  flip=flip)
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    return DetectData(
        train=DetectionDataset(train, detect_transforms(recipe.imgsz, True, mean, std, **recipe.transform_options()),
                               images[:len(train)] if images else None),
        val=DetectionDataset(val, detect_transforms(recipe.imgsz, False, mean, std),
                             images[len(train):] if images else None),
        class_names=list(names),
        imgsz=recipe.imgsz,
        mean=mean,
        std=std,
        recipe=recipe,
    )


def task_data(task: str, data: str | Path, imgsz: int | None, val_fraction: float = 0.2, seed: int = 0,
              **options) -> TaskData:
    """Detection data as the engine uses it (``ghostkit.data.tasks.build_task_data``), with the recipe's choices in
    ``resolved`` and its line in ``recipe``. ``options``: `build_detect_data`'s keyword-only ones (others, of other
    tasks, are ignored)."""
    known = ("epochs", "pretrained", "crop_scale", "flip", "cache_mb")
    d = build_detect_data(data, imgsz=imgsz, val_fraction=val_fraction, seed=seed,
                          **{k: v for k, v in options.items() if k in known})
    r = d.recipe
    return TaskData(d.train, d.val, {task: list(d.class_names)}, d.imgsz, list(d.mean), list(d.std), collate_detect,
                    d, resolved=dict(imgsz=r.imgsz, crop_scale=r.crop_scale, flip=r.flip), recipe=r.describe(),
                    in_memory=d.train.images is not None)
