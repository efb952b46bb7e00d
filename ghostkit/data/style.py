"""Style-transfer data: content photos (``train/`` and ``val/`` folders of images) and one style image.

- ``--data DIR``: ``DIR/train/`` and ``DIR/val/`` folders of photos (a missing ``val/`` is split off ``train/``
  with a fixed seed). Training items are ``torchvision`` ``RandomResizedCrop`` s of ``imgsz`` px (25-100% of the
  photo's area) with a random horizontal flip; validation items are the photo resized so its shorter side is
  ``imgsz``, centre-cropped to ``imgsz x imgsz``.
- ``--data photos`` (built in): scikit-learn's two sample photographs (``china.jpg``, ``flower.jpg``, 427 x 640)
  cut into 192 px patches and written once as PNG files under ``~/.cache/ghostkit/photos-<key>/{train,val}/``,
  then read by the same folder reader as a user's data. Training patches come from the left 70% of each photo
  (448 px, 20 overlapping patches per photo), validation patches from the right 30% (3 per photo), which training
  never sees.
- ``--style IMAGE``: the style image, read as 8-bit RGB (a grayscale or palette image is converted to RGB, so
  the style's grey levels are matched on all three channels) and resized so that its shorter side equals
  ``imgsz`` (a smaller image is scaled up: the style's strokes then appear at the scale they would have in a
  training crop of that size). ``--style mosaic`` (the default) is the built-in style: a stained-glass pattern of
  coloured Voronoi cells with dark lead lines, drawn procedurally (:func:`mosaic`).

Items are ``(photo 3 x H x W float32 in [0, 1], 0)``; a batch's targets are ``{"style": {"content": photos
B x 3 x H x W, "style": style image 1 x 3 x h x w}}`` (:class:`StyleCollate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import v2

from ghostkit.data.common import TaskData, cached_folder, split_items
from ghostkit.data.images import filter_readable, list_images, read_image
from ghostkit.errors import GhostkitError

__all__ = ["PHOTOS", "BUILTIN_STYLES", "StyleCollate", "StyleData", "PhotoDataset", "builtin_photos", "mosaic",
           "load_style", "task_data"]

PHOTOS = "photos"
BUILTIN_STYLES = ("mosaic",)
_VERSION = 1  # bump when the patches change, so cached folders are rebuilt
_PATCH, _STRIDE, _TRAIN_FRACTION = 192, 64, 0.7
_VAL_STRIDE = 117  # three rows of validation patches down a 427 px photo


def mosaic(size: int = 256, cells: int = 90, seed: int = 0) -> Image.Image:
    """The built-in style: ``size x size`` stained glass, ``cells`` Voronoi cells in saturated colours with some
    shading inside each cell, separated by 2-3 px dark lines; deterministic by ``seed``."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, size, (cells, 2))
    palette = np.array([[214, 40, 40], [247, 127, 0], [252, 191, 73], [42, 157, 143], [38, 70, 83],
                        [106, 76, 147], [25, 130, 196], [138, 201, 38]], dtype=np.float64)
    colours = palette[rng.integers(len(palette), size=cells)]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    d = (yy[..., None] - centres[:, 0]) ** 2 + (xx[..., None] - centres[:, 1]) ** 2  # size x size x cells
    order = np.argsort(d, axis=2)
    near, second = np.take_along_axis(d, order[..., :2], 2).transpose(2, 0, 1) ** 0.5
    cell = order[..., 0]
    shade = 0.75 + 0.25 * np.cos(near / 6.0)  # concentric bands inside each cell, like hand-blown glass
    image = colours[cell] * shade[..., None]
    image[(second - near) < 2.5] = (20, 18, 24)  # lead lines where two cells meet
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))


def load_style(style: str | Path | None, imgsz: int) -> torch.Tensor:
    """``--style``: a file or a built-in name (``None``: ``mosaic``) → ``3 x h x w`` float32 in [0, 1] whose shorter
    side is ``imgsz`` (see the module docstring). Raises ``GhostkitError`` naming ``--style`` for a missing or
    unreadable file."""
    name = str(style) if style is not None else BUILTIN_STYLES[0]
    if name in BUILTIN_STYLES:
        image = mosaic()
    else:
        if not Path(name).is_file():
            raise GhostkitError(f"--style {name}: no such image file (built-in styles: {', '.join(BUILTIN_STYLES)})")
        try:
            image = read_image(name)
        except GhostkitError as e:
            raise GhostkitError(f"--style {e}") from None
    w, h = image.size
    s = imgsz / min(w, h)
    image = image.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BICUBIC)
    return v2.functional.to_dtype(v2.functional.pil_to_tensor(image), torch.float32, scale=True)


def builtin_photos(cache_dir: str | Path | None = None) -> Path:
    """The built-in ``photos`` folder (module docstring), written once under ``cache_dir`` (default
    ``~/.cache/ghostkit``) through a temporary folder renamed into place, and reused afterwards."""
    return cached_folder("photos", (_VERSION, _PATCH, _STRIDE, _TRAIN_FRACTION), _write_photos, cache_dir)


def _write_photos(folder: Path) -> None:
    """Patches of the photographs scikit-learn ships into ``folder/{train,val}``: validation from the right part of
    each photo, training from the rest."""
    from sklearn.datasets import load_sample_images  # bundled with scikit-learn: no download

    bunch = load_sample_images()
    for path, image in zip(bunch.filenames, bunch.images):
        h, w = image.shape[:2]
        cut = round(w * _TRAIN_FRACTION)
        for split, (x_lo, x_hi), stride in (("train", (0, cut), _STRIDE), ("val", (cut, w), _VAL_STRIDE)):
            (folder / split).mkdir(exist_ok=True)
            for y in range(0, h - _PATCH + 1, stride):
                for x in range(x_lo, x_hi - _PATCH + 1, _STRIDE):
                    patch = Image.fromarray(image[y:y + _PATCH, x:x + _PATCH])
                    patch.save(folder / split / f"{Path(path).stem}_{y:03d}_{x:03d}.png")


class PhotoDataset(Dataset):
    """Photos at ``paths`` as ``(3 x imgsz x imgsz float32 in [0, 1], 0)``: random resized crops and flips
    (``train``) or resize + centre crop."""

    def __init__(self, paths: list[Path], imgsz: int, train: bool) -> None:
        self.paths = paths
        geometry = ([v2.RandomResizedCrop(imgsz, scale=(0.25, 1.0), antialias=True), v2.RandomHorizontalFlip()]
                    if train else [v2.Resize(imgsz, antialias=True), v2.CenterCrop(imgsz)])
        self.transform = v2.Compose([v2.ToImage(), *geometry, v2.ToDtype(torch.float32, scale=True)])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(read_image(self.paths[index])), 0

    @property
    def items(self) -> list[tuple[Path, None]]:
        """The photos as ``(path, None)`` pairs (what ``ghostkit train`` copies to ``samples/``)."""
        return [(p, None) for p in self.paths]


class StyleCollate:
    """``[(photo, 0)]`` → ``(photos B x 3 x H x W, {"style": {"content": photos, "style": 1 x 3 x h x w}})``."""

    def __init__(self, style: torch.Tensor) -> None:
        self.style = style[None]

    def __call__(self, batch: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, dict]:
        photos = torch.stack([b[0] for b in batch])
        return photos, {"style": {"content": photos, "style": self.style}}


@dataclass
class StyleData:
    """Train / val photo datasets and the style image ``3 x h x w``."""

    train: PhotoDataset
    val: PhotoDataset
    style: torch.Tensor


def _photos(folder: Path) -> list[Path]:
    paths = list_images(folder)
    if not paths:
        raise GhostkitError(f"{folder}: no images in this folder")
    return filter_readable(paths, folder=folder)[0]


def task_data(task: str, data: str | Path, imgsz: int, val_fraction: float = 0.2, seed: int = 0,
              style: str | None = None, **_) -> TaskData:
    """Style data as the engine uses it (``ghostkit.data.tasks.build_task_data``): photos of ``imgsz`` px in
    [0, 1] (mean 0, std 1) and the ``style`` image (module docstring)."""
    root = builtin_photos() if str(data) == PHOTOS else Path(data)
    if not root.is_dir():
        raise GhostkitError(f"{root}: no such data folder (built-in style data: {PHOTOS})")
    if not (root / "train").is_dir():
        raise GhostkitError(f"{root}: no train/ folder of photos")
    train = _photos(root / "train")
    if (root / "val").is_dir():
        val = _photos(root / "val")
    else:
        if len(train) < 2:
            raise GhostkitError(f"{root}: a single training photo cannot be split into train and val; add val/")
        parts = split_items([(p, 0) for p in train], val_fraction, seed, stratify=False)
        train, val = ([p for p, _ in part] for part in parts)
    source = StyleData(PhotoDataset(train, imgsz, True), PhotoDataset(val, imgsz, False), load_style(style, imgsz))
    return TaskData(source.train, source.val, {task: []}, imgsz, [0.0] * 3, [1.0] * 3, StyleCollate(source.style),
                    source)
