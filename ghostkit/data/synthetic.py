"""Built-in data that needs no download: procedural shapes and scikit-learn's handwritten digits.

`make_shapes` draws coloured circles, squares and triangles on textured backgrounds and returns, for every
image, the labels of every task at once: boxes (detection), a class mask (segmentation), an instance map,
the class of the largest shape (classification) and the set of classes present (multi-label).
Sample `i` of seed `s` is generated from its own random stream seeded by `(s, i)`, so it does not depend on
how many samples are asked for, and sets made with different seeds do not share samples.

`load_digits` wraps `sklearn.datasets.load_digits` (1797 8 x 8 images bundled with scikit-learn).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ghostkit.errors import GhostkitError

__all__ = [
    "SHAPES_IMGSZ",
    "SHAPE_CLASSES",
    "ShapeSample",
    "ShapeStream",
    "load_digits",
    "make_shapes",
    "write_imagefolder",
]

SHAPE_CLASSES: tuple[str, ...] = ("circle", "square", "triangle")
DIGIT_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))

# Shape size as a fraction of the image size: the side of a square of the same area, so no class is
# systematically larger (circle diameter = 1.13 x size, triangle side = 1.52 x size).
_SIZE_RANGE = (0.15, 0.45)
# Instances with fewer visible pixels than this are dropped from boxes/labels (they stay in `mask`).
_MIN_VISIBLE_PX = 8
# Colour distances (Euclidean, 0..255 RGB) that keep shapes clearly visible.
_MIN_BG_CONTRAST = 120.0
_MIN_SHAPE_CONTRAST = 80.0
_PLACE_TRIES = 30


@dataclass
class ShapeSample:
    """One synthetic image and its labels for every task.

    image: uint8 H x W x 3. boxes: float32 N x 4, xyxy in pixels, tight around each instance's visible pixels
    (pixel edges: a shape covering columns 3..7 has x1 = 3, x2 = 8). labels: int64 N, indices into
    `SHAPE_CLASSES`. mask: uint8 H x W, 0 = background, c + 1 = class c (later shapes cover earlier ones).
    instances: uint8 H x W, 0 = none, k + 1 = the instance of `boxes[k]`; pixels of a dropped, almost fully
    hidden instance are 0 here but keep their class in `mask`.
    """

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    mask: np.ndarray
    instances: np.ndarray

    @property
    def areas(self) -> np.ndarray:
        """Visible pixel count of each instance (int64 N)."""
        return np.bincount(self.instances.ravel(), minlength=len(self.labels) + 1)[1 : len(self.labels) + 1]

    @property
    def label(self) -> int:
        """Class of the largest shape by visible area (the single-label classification target)."""
        if len(self.labels) == 0:
            raise GhostkitError("shapes sample has no objects, so it has no single label")
        return int(self.labels[int(np.argmax(self.areas))])

    @property
    def multilabel(self) -> list[int]:
        """Sorted unique classes present (the multi-label target)."""
        return sorted({int(c) for c in self.labels})


def _smooth_noise(rng: np.random.Generator, imgsz: int) -> np.ndarray:
    """Low-frequency noise in [0, 1], H x W: a coarse random grid upsampled bilinearly."""
    cells = int(rng.integers(3, 9))
    grid = rng.random((cells, cells))
    pos = (np.arange(imgsz) + 0.5) * (cells - 1) / imgsz
    i0 = np.minimum(pos.astype(np.int64), cells - 2)
    w = pos - i0
    rows = grid[i0] * (1 - w)[:, None] + grid[i0 + 1] * w[:, None]  # H x cells
    return rows[:, i0] * (1 - w)[None, :] + rows[:, i0 + 1] * w[None, :]


def _texture(rng: np.random.Generator, kind: int, xx: np.ndarray, yy: np.ndarray, imgsz: int) -> np.ndarray:
    """A background blend weight map in [0, 1], H x W. kind: 0 gradient, 1 noise, 2 stripes, 3 checker."""
    theta = rng.uniform(0, 2 * math.pi)
    proj = xx * math.cos(theta) + yy * math.sin(theta)
    if kind == 0:
        return (proj - proj.min()) / max(float(np.ptp(proj)), 1e-6)
    if kind == 1:
        return _smooth_noise(rng, imgsz)
    if kind == 2:
        period = rng.uniform(0.08, 0.3) * imgsz
        wave = 0.5 + 0.5 * np.sin(2 * math.pi * proj / period + rng.uniform(0, 2 * math.pi))
        return (wave > 0.5).astype(np.float64) if rng.random() < 0.5 else wave
    cell = max(2, int(rng.uniform(0.06, 0.25) * imgsz))
    return ((xx.astype(np.int64) // cell + yy.astype(np.int64) // cell) % 2).astype(np.float64)


def _shape_mask(rng: np.random.Generator, cls: int, imgsz: int) -> tuple[np.ndarray, tuple[slice, slice]]:
    """One filled shape of class `cls` with random size, position and rotation, lying inside the image.

    Returns a boolean h x w mask of the shape's bounding window and the window's (rows, cols) slices.
    """
    size = rng.uniform(*_SIZE_RANGE) * imgsz
    if cls == 0:  # circle of area size^2
        radius = size / math.sqrt(math.pi)
    elif cls == 1:  # square of side `size`; radius = centre-to-corner distance
        radius, n, start = size / math.sqrt(2), 4, rng.uniform(0, math.pi / 2)
    else:  # equilateral triangle of area size^2 (side = size * sqrt(4 / sqrt(3)))
        radius, n, start = size * math.sqrt(4 / math.sqrt(3)) / math.sqrt(3), 3, rng.uniform(0, 2 * math.pi / 3)
    cx, cy = rng.uniform(radius, imgsz - radius, size=2)
    x0, x1 = max(0, int(cx - radius)), min(imgsz, int(math.ceil(cx + radius)) + 1)
    y0, y1 = max(0, int(cy - radius)), min(imgsz, int(math.ceil(cy + radius)) + 1)
    xx = (np.arange(x0, x1) + 0.5)[None, :]  # pixel centres, broadcast to the window
    yy = (np.arange(y0, y1) + 0.5)[:, None]
    window = (slice(y0, y1), slice(x0, x1))
    if cls == 0:
        return (xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2, window
    angles = start + 2 * math.pi * np.arange(n) / n
    vx, vy = cx + radius * np.cos(angles), cy + radius * np.sin(angles)
    # Convex polygon: inside = on the same side of every edge (vertices go round in one direction).
    inside = np.ones((y1 - y0, x1 - x0), dtype=bool)
    for k in range(n):
        ax, ay, bx, by = vx[k], vy[k], vx[(k + 1) % n], vy[(k + 1) % n]
        inside &= (bx - ax) * (yy - ay) - (by - ay) * (xx - ax) >= 0
    return inside, window


def _pick_colour(rng: np.random.Generator, avoid_bg: np.ndarray, avoid_shapes: list[np.ndarray]) -> np.ndarray:
    """An RGB colour (float 3) far from the background colours (K x 3) and from the shapes drawn so far."""
    candidates = rng.uniform(0, 255, size=(64, 3))
    ok = np.linalg.norm(candidates[:, None] - avoid_bg[None], axis=2).min(axis=1) >= _MIN_BG_CONTRAST
    if avoid_shapes:
        ok &= np.linalg.norm(candidates[:, None] - np.array(avoid_shapes)[None], axis=2).min(axis=1) >= (
            _MIN_SHAPE_CONTRAST
        )
    if ok.any():
        return candidates[int(np.argmax(ok))]
    # The RGB cube corner farthest from the background is always at least ~220 away from it.
    return np.where(avoid_bg.mean(axis=0) < 128, 255.0, 0.0)


def _make_sample(
    rng: np.random.Generator,
    imgsz: int,
    min_objects: int,
    max_objects: int,
    max_occlusion: float,
    xx: np.ndarray,
    yy: np.ndarray,
) -> ShapeSample:
    # Background: blend of two nearby colours by one or two mixed textures.
    c0 = rng.uniform(0, 255, size=3)
    c1 = np.clip(c0 + rng.uniform(-70, 70, size=3), 0, 255)
    kinds = rng.choice(4, size=int(rng.integers(1, 3)), replace=False)
    weight = _texture(rng, int(kinds[0]), xx, yy, imgsz)
    if len(kinds) == 2:
        mix = rng.uniform(0.3, 0.7)
        weight = mix * weight + (1 - mix) * _texture(rng, int(kinds[1]), xx, yy, imgsz)
    image = c0.astype(np.float32) + weight.astype(np.float32)[..., None] * (c1 - c0).astype(np.float32)

    instances = np.zeros((imgsz, imgsz), dtype=np.uint8)
    classes: list[int] = []
    full_areas: list[int] = []
    colours: list[np.ndarray] = []
    bg_colours = np.stack([c0, c1])
    for k in range(int(rng.integers(min_objects, max_objects + 1))):
        cls = int(rng.integers(len(SHAPE_CLASSES)))
        for _ in range(_PLACE_TRIES):
            shape, window = _shape_mask(rng, cls, imgsz)
            area = int(shape.sum())
            if area < _MIN_VISIBLE_PX:
                continue
            if k > 0:
                # Reject placements that hide too much of an earlier shape.
                covered = np.bincount(instances[window][shape], minlength=k + 1)[1:]
                if np.any(covered > max_occlusion * np.asarray(full_areas)):
                    continue
            break
        else:
            continue
        colour = _pick_colour(rng, bg_colours, colours)
        image[window][shape] = colour
        instances[window][shape] = len(classes) + 1
        classes.append(cls)
        full_areas.append(area)
        colours.append(colour)

    # Uniform pixel noise over everything (up to +-16 levels), so flat colours are not a giveaway.
    amplitude = np.float32(rng.uniform(0, 32))
    image += (rng.random(image.shape, dtype=np.float32) - np.float32(0.5)) * amplitude
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)

    cls_lut = np.array([0, *[c + 1 for c in classes]], dtype=np.uint8)
    mask = cls_lut[instances]
    visible = np.bincount(instances.ravel(), minlength=len(classes) + 1)[1:]
    keep = np.flatnonzero(visible >= _MIN_VISIBLE_PX)
    if len(keep) < len(classes):
        # Renumber kept instances 1..N; dropped slivers become 0 in the instance map (they stay in `mask`).
        remap = np.zeros(len(classes) + 1, dtype=np.uint8)
        remap[keep + 1] = np.arange(1, len(keep) + 1, dtype=np.uint8)
        instances = remap[instances]
    boxes = np.zeros((len(keep), 4), dtype=np.float32)
    for j in range(len(keep)):
        pixels = instances == j + 1
        cols, rows = np.flatnonzero(pixels.any(axis=0)), np.flatnonzero(pixels.any(axis=1))
        boxes[j] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    labels = np.array([classes[k] for k in keep], dtype=np.int64)
    return ShapeSample(image=image, boxes=boxes, labels=labels, mask=mask, instances=instances)


# the built-in shapes' own image size: what a run defaults to (ghostkit.tasks.registry.default_imgsz) as it would on
# the same images written to a folder; a run at another --imgsz draws them at that size
SHAPES_IMGSZ = 64


def make_shapes(
    n: int,
    imgsz: int = SHAPES_IMGSZ,
    seed: int = 0,
    min_objects: int = 1,
    max_objects: int = 3,
    max_occlusion: float = 0.5,
) -> list[ShapeSample]:
    """`n` synthetic images (imgsz x imgsz) of 1..3 filled circles / squares / triangles on textured backgrounds.

    Shapes measure 15%-50% of `imgsz`, lie inside the image, and are coloured to contrast with the background
    and with each other. A new shape may cover at most `max_occlusion` of any earlier shape's area; instances
    left with fewer than a few visible pixels are dropped from boxes/labels. Deterministic: sample `i` depends
    only on `(seed, i, imgsz, min_objects, max_objects, max_occlusion)`.
    """
    _check_shape_args(n, imgsz, seed, min_objects, max_objects, max_occlusion)
    xx, yy = _pixel_centres(imgsz)
    return [
        _make_sample(np.random.default_rng([seed, i]), imgsz, min_objects, max_objects, max_occlusion, xx, yy)
        for i in range(n)
    ]


class ShapeStream(Sequence):
    """A training set of `n` shapes samples per epoch that never repeats: every read draws a new sample.

    The sample's generator is seeded from torch's random stream, like the augmentations, so a seeded run (and each
    DataLoader worker, which torch seeds per epoch) is reproducible while every epoch sees new images. From-scratch
    models overfit a fixed set of 1000 images long before they learn to tell the shapes apart; fresh samples remove
    that limit at the cost of drawing them (about 0.5 ms per 64 px image). `to_item` maps each `ShapeSample` to the
    item a task's dataset reads (e.g. `(image, mask)`); it must be a module-level function (DataLoader workers).
    """

    def __init__(self, n: int, imgsz: int, to_item: Callable[[ShapeSample], Any], min_objects: int = 1,
                 max_objects: int = 3, max_occlusion: float = 0.5) -> None:
        _check_shape_args(n, imgsz, 0, min_objects, max_objects, max_occlusion)
        self.n, self.imgsz, self.to_item = n, imgsz, to_item
        self.options = (min_objects, max_objects, max_occlusion)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> Any:  # type: ignore[override]
        if not -self.n <= index < self.n:
            raise IndexError(f"shapes stream index {index} out of range 0..{self.n - 1}")
        rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
        return self.to_item(_make_sample(rng, self.imgsz, *self.options, *_pixel_centres(self.imgsz)))


@functools.lru_cache(maxsize=8)
def _pixel_centres(imgsz: int) -> tuple[np.ndarray, np.ndarray]:
    centres = np.arange(imgsz, dtype=np.float64) + 0.5
    return tuple(np.meshgrid(centres, centres))


def _check_shape_args(n: int, imgsz: int, seed: int, min_objects: int, max_objects: int, max_occlusion: float) -> None:
    if n < 0:
        raise GhostkitError(f"shapes: n must be >= 0, got {n}")
    if imgsz < 16:
        raise GhostkitError(f"shapes: imgsz must be >= 16, got {imgsz}")
    if seed < 0:
        raise GhostkitError(f"shapes: seed must be >= 0, got {seed}")
    if not 0 <= min_objects <= max_objects <= 255:
        raise GhostkitError(f"shapes: need 0 <= min_objects <= max_objects <= 255, got {min_objects}, {max_objects}")
    if not 0 <= max_occlusion <= 1:
        raise GhostkitError(f"shapes: max_occlusion must be in [0, 1], got {max_occlusion}")


def load_digits(imgsz: int = 32) -> tuple[list[np.ndarray], list[int], list[str]]:
    """scikit-learn's 1797 handwritten digits as uint8 RGB imgsz x imgsz x 3 images (bilinear resize).

    Returns (images, labels, class_names) with class names "0".."9". Digits are light on dark, as stored.
    """
    if imgsz <= 0:
        raise GhostkitError(f"digits: imgsz must be > 0, got {imgsz}")
    from sklearn.datasets import load_digits as sk_load_digits  # bundled with scikit-learn: no download

    bunch = sk_load_digits()
    images = []
    for digit in bunch.images:  # 8 x 8 floats in 0..16
        small = Image.fromarray((digit * (255.0 / 16.0)).astype(np.float32))
        big = np.asarray(small.resize((imgsz, imgsz), Image.Resampling.BILINEAR))
        gray = np.clip(np.rint(big), 0, 255).astype(np.uint8)
        images.append(np.repeat(gray[..., None], 3, axis=2))
    return images, [int(t) for t in bunch.target], list(DIGIT_CLASSES)


def write_imagefolder(
    root: str | Path,
    images: Sequence[np.ndarray | Image.Image],
    labels: Sequence[int],
    class_names: Sequence[str],
) -> list[Path]:
    """Write images as PNGs in the ImageFolder layout `root/<class>/NNNNN.png` (NNNNN = index in `images`).

    images: uint8 H x W x 3 (or H x W) arrays or PIL images. Only classes that have images get a folder.
    Returns the written paths, in input order.
    """
    if len(images) != len(labels):
        raise GhostkitError(f"{root}: {len(images)} images but {len(labels)} labels")
    root = Path(root)
    paths = []
    for i, (img, label) in enumerate(zip(images, labels, strict=True)):
        if not 0 <= int(label) < len(class_names):
            raise GhostkitError(f"{root}: label {label} of image {i} is not in 0..{len(class_names) - 1}")
        folder = root / class_names[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        pil = img if isinstance(img, Image.Image) else Image.fromarray(np.asarray(img, dtype=np.uint8))
        path = folder / f"{i:05d}.png"
        pil.save(path)
        paths.append(path)
    return paths
