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
  training crop of that size; a style under 16 px on its shorter side is refused: too small to carry a texture).
  ``--style mosaic`` (the default) is the built-in style: a stained-glass pattern of coloured Voronoi cells with dark
  lead lines, drawn procedurally (:func:`mosaic`).
- ``--head adain`` (arbitrary styles) trains on a set of styles: ``--style DIR``, a folder of style images (a single
  file gives a set of one), each read as above and centre-cropped to ``imgsz x imgsz``; by default the built-in set
  ``styles`` (:func:`builtin_styles`): six mosaics of different seeds and cell sizes, and the two sample
  photographs of the built-in ``photos`` posterised to six colours with dark edges (a flat-colour poster look).
  Each training photo is paired with a random style every time it is drawn; validation photo ``i`` with style
  ``i mod N`` (the same pairs every epoch).

Items are ``(photo 3 x H x W float32 in [0, 1], style index)``; a batch's targets are ``{"style": {"content": photos
B x 3 x H x W, "style": 1 x 3 x h x w (one style) or B x 3 x S x S (a set: each photo's)}}``
(:class:`StyleCollate`).
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
from ghostkit.data.images import filter_readable, list_images, median_short_side, read_image
from ghostkit.errors import GhostkitError
from ghostkit.tasks.registry import default_imgsz

__all__ = ["PHOTOS", "BUILTIN_STYLES", "STYLE_SET", "StyleCollate", "StyleData", "PhotoDataset", "builtin_photos",
           "builtin_styles", "mosaic", "load_style", "load_styles", "task_data"]

PHOTOS = "photos"
BUILTIN_STYLES = ("mosaic",)
STYLE_SET = "styles"  # the built-in style set of --head adain
MIN_STYLE_SIDE = 16
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


def builtin_styles() -> list[Image.Image]:
    """The built-in style set (module docstring), deterministic."""
    from PIL import ImageFilter, ImageOps
    from sklearn.datasets import load_sample_images  # bundled with scikit-learn: no download

    styles = [mosaic(256, cells, seed) for seed, cells in enumerate((30, 60, 90, 140, 200, 300))]
    for array in load_sample_images().images:
        photo = Image.fromarray(array)
        poster = photo.quantize(6, method=Image.Quantize.MEDIANCUT).convert("RGB")
        edges = ImageOps.invert(photo.convert("L").filter(ImageFilter.FIND_EDGES).point(lambda v: 255 if v > 40
                                                                                         else 0))
        styles.append(Image.composite(poster, Image.new("RGB", poster.size, (15, 15, 20)), edges))
    return styles


def _scaled(image: Image.Image, imgsz: int, name: str) -> torch.Tensor:
    """``image`` resized so its shorter side is ``imgsz``, as ``3 x h x w`` float32 in [0, 1]."""
    w, h = image.size
    if min(w, h) < MIN_STYLE_SIDE:
        raise GhostkitError(f"--style {name}: {w} x {h} px is too small to carry a texture (at least "
                            f"{MIN_STYLE_SIDE} px on the shorter side)")
    s = imgsz / min(w, h)
    image = image.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BICUBIC)
    return v2.functional.to_dtype(v2.functional.pil_to_tensor(image), torch.float32, scale=True)


def load_styles(style: str | Path | None, imgsz: int) -> torch.Tensor:
    """``--style`` of ``--head adain``: a folder of style images, one file, or the built-in set (``None`` or
    ``styles``) → ``N x 3 x imgsz x imgsz`` float32 in [0, 1] (module docstring); unreadable files are skipped
    with one warning."""
    name = str(style) if style is not None else STYLE_SET
    if name == STYLE_SET:
        images = [(f"{STYLE_SET}[{i}]", im) for i, im in enumerate(builtin_styles())]
    elif Path(name).is_dir():
        paths = list_images(Path(name))
        if not paths:
            raise GhostkitError(f"--style {name}: no images in this folder")
        images = [(str(p), read_image(p)) for p in filter_readable(paths, folder=Path(name))[0]]
    else:
        return v2.functional.center_crop(load_style(name, imgsz), [imgsz, imgsz])[None]
    return torch.stack([v2.functional.center_crop(_scaled(im, imgsz, n), [imgsz, imgsz]) for n, im in images])


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
    return _scaled(image, imgsz, name)


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
    """Photos at ``paths`` as ``(3 x imgsz x imgsz float32 in [0, 1], style index in [0, num_styles))``: random
    resized crops and flips and a random style (``train``), or resize + centre crop and style ``index mod
    num_styles``."""

    def __init__(self, paths: list[Path], imgsz: int, train: bool, num_styles: int = 1) -> None:
        self.paths, self.train, self.num_styles = paths, train, num_styles
        geometry = ([v2.RandomResizedCrop(imgsz, scale=(0.25, 1.0), antialias=True), v2.RandomHorizontalFlip()]
                    if train else [v2.Resize(imgsz, antialias=True), v2.CenterCrop(imgsz)])
        self.transform = v2.Compose([v2.ToImage(), *geometry, v2.ToDtype(torch.float32, scale=True)])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        style = int(torch.randint(self.num_styles, ())) if self.train else index % self.num_styles
        return self.transform(read_image(self.paths[index])), style

    @property
    def items(self) -> list[tuple[Path, None]]:
        """The photos as ``(path, None)`` pairs (what ``ghostkit train`` copies to ``samples/``)."""
        return [(p, None) for p in self.paths]


class StyleCollate:
    """``[(photo, style index)]`` → ``(photos B x 3 x H x W, {"style": {"content": photos, "style": styles}})``:
    ``styles`` ``N x 3 x h x w``; one style (``N = 1``) is passed once (``1 x 3 x h x w``), a set as each photo's
    (``B x 3 x h x w``)."""

    def __init__(self, styles: torch.Tensor) -> None:
        self.styles = styles

    def __call__(self, batch: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, dict]:
        photos = torch.stack([b[0] for b in batch])
        styles = self.styles if len(self.styles) == 1 else self.styles[[b[1] for b in batch]]
        return photos, {"style": {"content": photos, "style": styles}}


@dataclass
class StyleData:
    """Train / val photo datasets and the style images ``N x 3 x h x w`` (``style``: the first, ``3 x h x w``,
    the one a model keeps)."""

    train: PhotoDataset
    val: PhotoDataset
    styles: torch.Tensor

    @property
    def style(self) -> torch.Tensor:
        return self.styles[0]


def _photos(folder: Path) -> list[Path]:
    paths = list_images(folder)
    if not paths:
        raise GhostkitError(f"{folder}: no images in this folder")
    return filter_readable(paths, folder=folder)[0]


def task_data(task: str, data: str | Path, imgsz: int, val_fraction: float = 0.2, seed: int = 0,
              style: str | None = None, style_set: bool = False, **_) -> TaskData:
    """Style data as the engine uses it (``ghostkit.data.tasks.build_task_data``): photos of ``imgsz`` px in
    [0, 1] (mean 0, std 1) and the ``style`` image, or with ``style_set`` (``--head adain``) the style images
    (module docstring)."""
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
    imgsz = imgsz or default_imgsz(task, median_short_side(train))
    styles = load_styles(style, imgsz) if style_set else load_style(style, imgsz)[None]
    source = StyleData(PhotoDataset(train, imgsz, True, len(styles)), PhotoDataset(val, imgsz, False, len(styles)),
                       styles)
    return TaskData(source.train, source.val, {task: []}, imgsz, [0.0] * 3, [1.0] * 3, StyleCollate(styles), source)
