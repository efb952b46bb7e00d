"""Classification data: single-label (ImageFolder) and multi-label (CSV) readers, transform presets, and
`build_classify_data`, which turns a `--data` value into train/val datasets.

Layouts (see DESIGN.md, "Data formats"):

- single-label: `DIR/train/<class>/*`, `DIR/val/<class>/*`; class folders are searched recursively.
- multi-label: `DIR/images/` + `DIR/train.csv` (+ `DIR/val.csv`), header `filename,labels`, labels space-separated
  class names; class list from `DIR/classes.txt` (one per line) if present, else the sorted labels of train.csv.
- built-in: `digits` (scikit-learn) and `shapes` (procedural, see `ghostkit.data.synthetic`). These names are
  reserved: a folder called `digits` in the working directory is reached as `./digits`. They only name where the
  images come from: augmentation and regularisation follow `ghostkit.data.recipe` for every source alike.

A missing validation split is split off the training split with a fixed seed (stratified per class for
single-label data) and gets the validation transforms. Unreadable images are skipped with one counted
`SkippedFilesWarning` per folder; every user mistake raises a one-line `GhostkitError` naming the file.
"""

from __future__ import annotations

import csv
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import v2

from ghostkit.data.common import IMAGENET_MEAN, IMAGENET_STD, TaskData, read_classes_txt, split_items
from ghostkit.data.images import filter_readable, list_images, read_image, resolve_inside, to_rgb
from ghostkit.data.recipe import Recipe, choose_recipe, classify_transforms, data_stats
from ghostkit.data.synthetic import SHAPE_CLASSES, SHAPES_IMGSZ, load_digits, make_shapes
from ghostkit.errors import GhostkitError

__all__ = [
    "BUILTIN_DATA",
    "ClassifyData",
    "ImageListDataset",
    "build_classify_data",
    "classify_transforms",
    "read_imagefolder",
    "read_multilabel_csv",
    "task_data",
]

BUILTIN_DATA: tuple[str, ...] = ("digits", "shapes")

# An image source and its target: an int class index, or a float multi-hot vector (C) for multi-label data.
ImageSource = Path | str | np.ndarray | Image.Image
Item = tuple[ImageSource, Any]

# Built-in data settings, fixed so results are comparable between runs.
_DIGITS_VAL_FRACTION, _DIGITS_SEED, _DIGITS_IMGSZ = 0.2, 0, 32
_SHAPES_TRAIN, _SHAPES_VAL = 2000, 400


def _load_rgb(source: ImageSource) -> Image.Image | np.ndarray:
    """An item's image as RGB: a PIL image, or a uint8 H x W x 3 array (writable arrays are not copied)."""
    if isinstance(source, (str, Path)):
        return read_image(source)
    if isinstance(source, Image.Image):
        return to_rgb(source)
    arr = np.asarray(source)
    if arr.dtype != np.uint8:
        raise GhostkitError(f"image arrays must be uint8, got {arr.dtype}")
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise GhostkitError(f"image arrays must be H x W x 3 (or H x W), got shape {arr.shape}")
    # torch warns on read-only arrays (e.g. np.asarray of a PIL image); those get copied.
    return arr if arr.flags.writeable else arr.copy()


class ImageListDataset(Dataset):
    """A list of (image, target) items → `(tensor 3 x H x W, target)`.

    An image is a file path (decoded with `read_image`), a PIL image, or a uint8 H x W x 3 (or H x W) array.
    A target is an int class index (single-label), or a sequence / array / tensor of C values, returned as a
    float32 multi-hot tensor (multi-label). Without a transform, images become float32 tensors in [0, 1].
    """

    def __init__(self, items: Sequence[Item], transform: Any = None) -> None:
        self.items = list(items)
        self.transform = transform or v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])

    def __len__(self) -> int:
        return len(self.items)

    def _image(self, index: int) -> Any:
        return _load_rgb(self.items[index][0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int | torch.Tensor]:
        target = self.items[index][1]
        image = self.transform(self._image(index))
        values = np.asarray(target)
        if values.ndim == 0 and np.issubdtype(values.dtype, np.integer):
            return image, int(values)
        return image, torch.from_numpy(values.astype(np.float32))

    @property
    def targets(self) -> list[Any]:
        """The targets of all items, without loading any image."""
        return [target for _, target in self.items]


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def read_imagefolder(root: str | Path, class_names: Sequence[str] | None = None) -> tuple[list[Item], list[str]]:
    """Read `root/<class>/*` (each class folder searched recursively) → ([(path, class_index)], class_names).

    With `class_names` (e.g. the training classes when reading a validation folder), indices follow that list,
    classes may be absent, and a folder of an unknown class is an error. Unreadable images are skipped with one
    `SkippedFilesWarning`. Raises `GhostkitError` for a missing folder, no class folders, an empty class folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise GhostkitError(f"{root}: no such folder")
    dirs = _class_dirs(root)
    if not dirs:
        raise GhostkitError(f"{root}: no class folders (expected {root}/<class>/<image files>)")
    names = [d.name for d in dirs] if class_names is None else list(class_names)
    index = {name: i for i, name in enumerate(names)}
    for d in dirs:
        if d.name not in index:
            raise GhostkitError(f"{d}: class {d.name!r} is not one of the training classes ({', '.join(names)})")
    paths, targets = [], []
    for d in dirs:
        files = list_images(d, recursive=True)
        if not files:
            raise GhostkitError(f"{d}: class folder has no images")
        paths += files
        targets += [index[d.name]] * len(files)
    good, _ = filter_readable(paths, folder=root)
    good_set = set(good)
    items = [(p, t) for p, t in zip(paths, targets, strict=True) if p in good_set]
    kept = {t for _, t in items}
    for d in dirs:
        if index[d.name] not in kept:
            raise GhostkitError(f"{d}: class folder has no readable images")
    return items, names


def _parse_label_csv(csv_path: Path, images_dir: Path) -> list[tuple[int, Path, list[str]]]:
    """Rows of a `filename,labels` file → [(line number, image path, label names)], validated."""
    if not csv_path.is_file():
        raise GhostkitError(f"{csv_path}: no such file")
    rows = []
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        try:
            header = next(reader, None)
            if header is None:
                raise GhostkitError(f"{csv_path}: empty file (expected a header 'filename,labels')")
            header = [h.strip().lower() for h in header]
            missing = [c for c in ("filename", "labels") if c not in header]
            if missing:
                raise GhostkitError(
                    f"{csv_path}:1: missing column(s) {', '.join(missing)} (header must be 'filename,labels')"
                )
            col_file, col_labels = header.index("filename"), header.index("labels")
            for row in reader:
                where = f"{csv_path}:{reader.line_num}"
                if not row or all(not cell.strip() for cell in row):
                    continue
                if len(row) != len(header):
                    raise GhostkitError(f"{where}: expected {len(header)} fields, got {len(row)}")
                name, labels = row[col_file].strip(), row[col_labels].split()
                if not name:
                    raise GhostkitError(f"{where}: empty filename")
                path = resolve_inside(images_dir, name, where)
                if not labels:
                    raise GhostkitError(f"{where}: {name} has no labels")
                if not path.is_file():
                    raise GhostkitError(f"{where}: {name} does not exist in {images_dir}")
                rows.append((reader.line_num, path, labels))
        except csv.Error as exc:
            raise GhostkitError(f"{csv_path}:{reader.line_num}: malformed row ({exc})") from exc
    if not rows:
        raise GhostkitError(f"{csv_path}: no rows")
    return rows


def read_multilabel_csv(
    root: str | Path, split: str, class_names: Sequence[str] | None = None
) -> tuple[list[Item], list[str]]:
    """Read `root/<split>.csv` with images in `root/images/` → ([(path, multi-hot float32 C)], class_names).

    Classes: `class_names` if given, else `root/classes.txt` if present, else the sorted union of labels in
    train.csv and val.csv. A label outside a given / classes.txt list is an error naming the csv line.
    Unreadable images are skipped with one `SkippedFilesWarning`.
    """
    root = Path(root)
    images_dir = root / "images"
    if not images_dir.is_dir():
        raise GhostkitError(f"{images_dir}: no such folder (multi-label data needs images/ and {split}.csv)")
    csv_path = root / f"{split}.csv"
    rows = _parse_label_csv(csv_path, images_dir)
    classes_txt = root / "classes.txt"
    if class_names is not None:
        names, source = list(class_names), "the training classes"
    elif classes_txt.is_file():
        names, source = read_classes_txt(classes_txt, spaces=False), str(classes_txt)
    else:
        union = {label for _, _, labels in rows for label in labels}
        for other in ("train", "val"):
            if other != split and (root / f"{other}.csv").is_file():
                union |= {
                    label for _, _, labels in _parse_label_csv(root / f"{other}.csv", images_dir) for label in labels
                }
        names, source = sorted(union), "the labels of train.csv / val.csv"
    index = {name: i for i, name in enumerate(names)}
    items: list[Item] = []
    for lineno, path, labels in rows:
        target = np.zeros(len(names), dtype=np.float32)
        for label in labels:
            if label not in index:
                raise GhostkitError(f"{csv_path}:{lineno}: unknown label {label!r} (not in {source})")
            target[index[label]] = 1.0
        items.append((path, target))
    good, _ = filter_readable([p for p, _ in items], folder=images_dir)
    good_set = set(good)
    items = [(p, t) for p, t in items if p in good_set]
    if not items:
        raise GhostkitError(f"{csv_path}: none of the listed images is readable")
    return items, names


@dataclass
class ClassifyData:
    """Train / val datasets (`ImageListDataset`, items → (float32 3 x imgsz x imgsz, target)) and their metadata.

    `multilabel`: targets are float32 multi-hot vectors of len(class_names) instead of int class indices.
    `mean`, `std`, `imgsz` are what the validation transform used (the whole image resized to imgsz x imgsz), so a
    predictor that knows them preprocesses exactly like validation: `classify_transforms(imgsz, train=False, mean=mean,
    std=std)`.
    """

    train: ImageListDataset
    val: ImageListDataset
    class_names: list[str]
    multilabel: bool
    mean: tuple[float, ...]
    std: tuple[float, ...]
    imgsz: int
    recipe: Recipe | None = None  # how the training transform was chosen

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@functools.lru_cache(maxsize=4)
def _shape_samples(n: int, seed: int) -> tuple[tuple[np.ndarray, int, tuple[int, ...]], ...]:
    """Built-in shapes as (read-only uint8 image, label, classes present), cached: every run, and the single- and
    multi-label variants, reuse the same arrays (about 12 KB per 64 px image)."""
    out = []
    for sample in make_shapes(n, imgsz=SHAPES_IMGSZ, seed=seed):
        sample.image.flags.writeable = False  # shared by the cache; `_load_rgb` copies before use
        out.append((sample.image, sample.label, tuple(sample.multilabel)))
    return tuple(out)


def build_classify_data(
    data: str | Path,
    imgsz: int | None = None,
    multilabel: bool = False,
    val_fraction: float = 0.2,
    seed: int = 0,
    auto_augment: str | None = None,
    random_erasing: float = 0.0,
    *,
    epochs: int = 30,
    pretrained: bool = False,
    flip: bool | None = None,
    crop_scale: float | None = None,
    dropout: float | None = None,
    label_smoothing: float | None = None,
    cache_mb: float = 0,
) -> ClassifyData:
    """Resolve a `--data` value to train / val datasets of 3 x imgsz x imgsz tensors, with the training transform of
    `ghostkit.data.recipe.choose_recipe` for the data, `epochs` and `pretrained` (None options: the rule's choice).

    `data`: "digits" (1797 32 px images, 10 classes, a fixed stratified 20% val split with seed 0), "shapes" (2000
    train / 400 val 64 px images, seeds 0 / 1; target = class of the largest shape, or the classes present with
    `multilabel`), or a folder: ImageFolder `train/<class>/*` (+ `val/<class>/*`), or multi-label
    `images/` + `train.csv` (+ `val.csv`), detected by train.csv. `multilabel` must match the data: a
    train.csv folder with `multilabel=False`, or ImageFolder / digits with `multilabel=True`, is an error.
    A missing val split is split off train with `val_fraction` and `seed` and gets the val transforms.
    `cache_mb` > 0: decode all images once and keep them in memory as uint8 tensors when they fit in that many MiB.
    """
    if imgsz is not None and imgsz <= 0:
        raise GhostkitError(f"imgsz must be > 0, got {imgsz}")
    if not 0.0 < val_fraction < 1.0:
        raise GhostkitError(f"val_fraction must be in (0, 1), got {val_fraction}")
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    name = str(data)

    def make(train_items: list[Item], val_items: list[Item], names: Sequence[str], is_multilabel: bool) -> ClassifyData:
        from ghostkit.data.cache import CachedImageDataset, decode_items

        images = decode_items(train_items + val_items, cache_mb)
        train_images = images[: len(train_items)] if images is not None else None
        stats = data_stats(train_images or [src for src, _ in train_items], [t for _, t in train_items])
        recipe = choose_recipe(stats, epochs, pretrained, task="multilabel" if is_multilabel else "classify",
                               imgsz=imgsz, crop_scale=crop_scale,
                               auto_augment=auto_augment, flip=flip, dropout=dropout, label_smoothing=label_smoothing)
        train_tf = classify_transforms(recipe.imgsz, True, mean, std, auto_augment=recipe.auto_augment,
                                       random_erasing=random_erasing, hflip=0.5 if recipe.flip else 0.0,
                                       scale=(recipe.crop_scale, 1.0))
        val_tf = classify_transforms(recipe.imgsz, False, mean, std)
        if images is None:
            train_set, val_set = ImageListDataset(train_items, train_tf), ImageListDataset(val_items, val_tf)
        else:
            train_set = CachedImageDataset(train_items, train_images, train_tf)
            val_set = CachedImageDataset(val_items, images[len(train_items):], val_tf)
        return ClassifyData(train=train_set, val=val_set, class_names=list(names), multilabel=is_multilabel,
                            mean=mean, std=std, imgsz=recipe.imgsz, recipe=recipe)

    if name == "digits":
        if multilabel:
            raise GhostkitError("digits: built-in digits are single-label; multi-label built-in data is 'shapes'")
        images, labels, names = load_digits(_DIGITS_IMGSZ)
        train_items, val_items = split_items(list(zip(images, labels, strict=True)), _DIGITS_VAL_FRACTION, _DIGITS_SEED)
        return make(train_items, val_items, names, False)
    if name == "shapes":

        def shape_items(n: int, shape_seed: int) -> list[Item]:
            samples = _shape_samples(n, shape_seed)
            if not multilabel:
                return [(image, label) for image, label, _ in samples]
            eye = np.eye(len(SHAPE_CLASSES), dtype=np.float32)
            return [(image, eye[list(present)].sum(axis=0)) for image, _, present in samples]

        return make(shape_items(_SHAPES_TRAIN, 0), shape_items(_SHAPES_VAL, 1), SHAPE_CLASSES, multilabel)

    root = Path(data)
    if not root.exists():
        raise GhostkitError(f"{root}: no such data folder (built-in data: {', '.join(BUILTIN_DATA)})")
    if not root.is_dir():
        raise GhostkitError(f"{root}: not a folder (expected a data folder or one of: {', '.join(BUILTIN_DATA)})")

    if (root / "train.csv").is_file():
        if not multilabel:
            raise GhostkitError(f"{root}: holds multi-label data (train.csv); use the multilabel task")
        # Without classes.txt the class list is train.csv's labels, so val.csv may not add new ones.
        names = None
        if not (root / "classes.txt").is_file() and (root / "images").is_dir():
            rows = _parse_label_csv(root / "train.csv", root / "images")
            names = sorted({label for _, _, labels in rows for label in labels})
        train_items, names = read_multilabel_csv(root, "train", class_names=names)
        if (root / "val.csv").is_file():
            val_items, _ = read_multilabel_csv(root, "val", class_names=names)
        else:
            train_items, val_items = split_items(train_items, val_fraction, seed, stratify=False)
        return make(train_items, val_items, names, True)

    if multilabel:
        raise GhostkitError(f"{root}: multi-label data needs images/ and train.csv (labels space-separated)")
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise GhostkitError(f"{root}: no train/ folder (expected train/<class>/*, or images/ + train.csv)")
    train_items, names = read_imagefolder(train_dir)
    if (root / "val").is_dir():
        val_items, _ = read_imagefolder(root / "val", class_names=names)
    else:
        train_items, val_items = split_items(train_items, val_fraction, seed)
    return make(train_items, val_items, names, False)


def collate_classify(task: str) -> Callable:
    """``[(image, class index or multi-hot)]`` → ``(images B x 3 x H x W, {task: targets B or B x C})``."""

    def collate(batch: list[tuple]) -> tuple[torch.Tensor, dict]:
        images = torch.stack([b[0] for b in batch])
        targets = [b[1] for b in batch]
        t = torch.stack(targets) if isinstance(targets[0], torch.Tensor) else torch.as_tensor(targets)
        return images, {task: t}

    return collate


def task_data(task: str, data: str | Path, imgsz: int | None, val_fraction: float = 0.2, seed: int = 0,
              random_erasing: float = 0.0, **recipe_options) -> TaskData:
    """``classify`` / ``multilabel`` data as the engine uses it (``ghostkit.data.tasks.build_task_data``), with the
    recipe's choices in ``resolved`` and its line in ``recipe``. ``recipe_options``: `build_classify_data`'s
    keyword-only ones and ``auto_augment`` (others, of other tasks, are ignored)."""
    known = ("auto_augment", "epochs", "pretrained", "flip", "crop_scale", "dropout", "label_smoothing", "cache_mb")
    d = build_classify_data(data, imgsz=imgsz, multilabel=task == "multilabel", val_fraction=val_fraction,
                            seed=seed, random_erasing=random_erasing,
                            **{k: v for k, v in recipe_options.items() if k in known})
    r = d.recipe
    resolved = dict(imgsz=r.imgsz, crop_scale=r.crop_scale, auto_augment=r.auto_augment, dropout=r.dropout,
                    label_smoothing=r.label_smoothing)
    from ghostkit.data.cache import CachedImageDataset

    return TaskData(d.train, d.val, {task: list(d.class_names)}, d.imgsz, list(d.mean), list(d.std),
                    collate_classify(task), d, resolved=resolved, recipe=r.describe(),
                    in_memory=isinstance(d.train, CachedImageDataset))
