"""Image restoration data: clean images degraded on the fly, or paired low-/high-quality images.

Layouts (``--data``):

- ``DIR/train/`` and ``DIR/val/``: folders of clean images. Degradations are synthesised: bicubic downscaling by
  ``scale`` (``F.interpolate(mode="bicubic", antialias=True)``, the a = -0.5 kernel of PIL and MATLAB's
  ``imresize``; the result is rounded to 8-bit levels as a saved low-resolution image would be), then Gaussian
  noise of sigma ``noise`` on the 0-255 scale (a fixed value, or drawn uniformly from a range like ``0-50`` per
  sample), clipped to [0, 1], and with ``--jpeg Q`` JPEG compression at quality Q (deterministic). A missing
  ``val/`` is split off ``train/`` (``val_fraction``, ``seed``).
- paired: ``lr/`` + ``hr/`` folders (at the top level, split into train/val like a missing ``val/``, or inside
  ``train/`` and ``val/``) whose file names match by stem; the low-quality inputs are used as they are (``noise``
  is not added) and each ``hr`` image must be ``scale`` x its ``lr`` image (``hr // scale == lr`` per side, so an
  hr image not divisible by the scale is cropped). The scale is read off the pairs; it must match the model's.
- ``photos``: built in, scikit-learn's two sample photographs (``china.jpg``, ``flower.jpg``, 427 x 640). Training
  crops come from the top 75% of each photo (rows 0-319, 320 x 640), validation uses the bottom 25% (rows 320-426,
  107 x 640), which training never sees. (Not a left/right split: the side strips of flower.jpg are out-of-focus
  background on which bicubic upscaling already reaches 54 dB, so they would measure nothing; the bottom strips
  hold the subjects of both photos: foliage and the temple's base, the lower flowers.)

Training items are random ``patch`` x ``patch`` crops of the clean image (``patch`` in high-resolution px, a
multiple of the scale; default 24 x scale, at least 32) with a random flip / 90-degree rotation, degraded on the
fly; an epoch is at least :data:`SAMPLES_PER_EPOCH` crops (images are cycled). Validation items are centre crops of
one common size (the smallest height and width among the validation images, at most :data:`VAL_MAX_SIZE`,
multiples of the scale) so that they batch; their degradation is reproducible: the noise of item ``i`` comes from a
generator seeded with ``i`` (not the training seed, so validations of different runs compare).

Items are ``(degraded input 3 x h x w, clean target 3 x H x W)``, float32 in [0, 1], ``H = scale x h``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from ghostkit.data.common import TaskData, split_items
from ghostkit.data.images import filter_readable, list_images, read_image
from ghostkit.errors import GhostkitError

__all__ = [
    "PHOTOS",
    "SAMPLES_PER_EPOCH",
    "VAL_MAX_SIZE",
    "MIN_VAL_SIZE",
    "Degradation",
    "RestoreData",
    "RestoreDataset",
    "RestoreItem",
    "build_restore_data",
    "load_photos",
    "parse_noise",
    "restore_collate",
    "task_data",
]

PHOTOS = "photos"
PHOTOS_TRAIN_FRACTION = 0.75
# default training patch: 24 input px (48 px at x2, 96 at x4), at least 32 px. Small patches gave the best PSNR per CPU
# second (batch 64 of 24 px beat 32 px patches by 0.3 dB after equal training time on the photos at x2)
DEFAULT_LR_PATCH, MIN_PATCH = 24, 32
SAMPLES_PER_EPOCH = 1280  # 20 batches of 64: the default 30 epochs take 2-4 minutes on 2 cores
VAL_MAX_SIZE = 1024
MIN_VAL_SIZE = 32  # SSIM's 11 px window must fit after the border crop
_CACHE_BYTES = 512 * 2**20  # decoded training images kept in memory (per data loader worker)

ImageSource = Path | np.ndarray  # a file, or a uint8 H x W x 3 array


def parse_noise(noise: str | float | int) -> tuple[float, float]:
    """``"25"`` → (25, 25); ``"0-50"`` → (0, 50): Gaussian sigma on the 0-255 scale. Raises ``GhostkitError`` for
    malformed, negative or reversed values."""
    text = str(noise).strip()
    m = re.fullmatch(r"(\d+(?:\.\d*)?)(?:\s*-\s*(\d+(?:\.\d*)?))?", text)
    if not m:
        hint = " (sigma must not be negative)" if text.startswith("-") else ""
        raise GhostkitError(f"--noise must be a sigma like 25 or a range like 0-50 (0-255 scale), got {text!r}{hint}")
    lo = float(m.group(1))
    hi = float(m.group(2)) if m.group(2) is not None else lo
    if lo > hi or hi > 255:
        raise GhostkitError(f"--noise range must satisfy 0 <= low <= high <= 255, got {text!r}")
    return lo, hi


@dataclass(frozen=True)
class Degradation:
    """Bicubic downscaling by ``scale`` (1..4), Gaussian noise with sigma drawn from ``sigma`` (0-255 scale), then
    JPEG compression at quality ``jpeg`` (1..100; 0: none) with torchvision's libjpeg encoder."""

    scale: int = 2
    sigma: tuple[float, float] = (0.0, 0.0)
    jpeg: int = 0

    @classmethod
    def parse(cls, scale: int, noise: str | float | int, jpeg: int = 0) -> Degradation:
        if not isinstance(scale, int) or not 1 <= scale <= 4:
            raise GhostkitError(f"--scale must be 1, 2, 3 or 4, got {scale!r}")
        if not isinstance(jpeg, int) or not 0 <= jpeg <= 100:
            raise GhostkitError(f"--jpeg must be a JPEG quality 1..100 (0: no JPEG), got {jpeg!r}")
        return cls(scale, parse_noise(noise), jpeg)

    @property
    def identity(self) -> bool:
        return self.scale == 1 and self.sigma[1] == 0 and self.jpeg == 0

    def __call__(self, hr: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Clean ``3 x H x W`` in [0, 1] (H, W multiples of the scale) → degraded ``3 x H/s x W/s`` in [0, 1]."""
        lr = hr
        if self.scale > 1:
            size = (hr.shape[-2] // self.scale, hr.shape[-1] // self.scale)
            lr = F.interpolate(hr[None], size=size, mode="bicubic", antialias=True, align_corners=False)[0]
            lr = (lr.clamp(0, 1) * 255).round() / 255
        lo, hi = self.sigma
        if hi > 0:
            sigma = lo + (hi - lo) * float(torch.rand((), generator=generator))
            lr = (lr + torch.randn(lr.shape, generator=generator) * (sigma / 255)).clamp(0, 1)
        if self.jpeg:
            from torchvision.io import decode_jpeg, encode_jpeg

            data = encode_jpeg((lr * 255).round().to(torch.uint8), quality=self.jpeg)
            lr = decode_jpeg(data).float() / 255
        return lr


@dataclass(frozen=True)
class RestoreItem:
    """One image: the clean ``hr`` source and, for paired data, the given low-quality ``lr`` source."""

    name: str  # for messages
    hr: ImageSource
    lr: ImageSource | None = None


def _size(source: ImageSource) -> tuple[int, int]:
    """(H, W) as ``read_image`` will return it (EXIF rotation applied), without decoding the pixels."""
    if isinstance(source, np.ndarray):
        return source.shape[0], source.shape[1]
    with Image.open(source) as img:
        w, h = img.size
        rotated = img.getexif().get(0x0112) in (5, 6, 7, 8)
    return (w, h) if rotated else (h, w)


def _to_tensor(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).float().div_(255)


def _augment(x: torch.Tensor, k: int) -> torch.Tensor:
    """One of the 8 flips / 90-degree rotations (``k`` in 0..7) of ``C x H x W``."""
    x = torch.rot90(x, k % 4, (1, 2))
    return x.flip(2) if k >= 4 else x


class RestoreDataset(Dataset):
    """``(degraded input 3 x h x w, clean target 3 x sh x sw)`` pairs, float32 in [0, 1].

    Training (``patch`` given): random ``patch`` px crops (high-resolution px) with a random flip / rotation, at
    least ``length`` per epoch. Validation: reproducible centre crops of one common size. :meth:`configure` sets
    the degradation (and checks the sizes against it).
    """

    def __init__(self, examples: Sequence[RestoreItem], degradation: Degradation, patch: int | None = None,
                 length: int = SAMPLES_PER_EPOCH) -> None:
        self.examples = list(examples)
        self.patch, self.length = patch, length
        # (hr size, lr size or None) per example, read from the file headers once
        self._sizes = [(_size(e.hr), _size(e.lr) if e.lr is not None else None) for e in self.examples]
        self._cache: dict[int, np.ndarray] = {}
        self._cached_bytes = 0
        self.paired_scale = _pair_scale(self.examples, self._sizes)
        self.configure(degradation)

    @property
    def scale(self) -> int:
        return self.paired_scale or self.degradation.scale

    def configure(self, degradation: Degradation) -> None:
        """Use ``degradation`` (ignored but the scale for paired data); raises ``GhostkitError`` naming an image
        too small for the training patch or for validation."""
        self.degradation = degradation
        s = self.scale
        if self.patch is not None:
            self.lr_patch = max(1, self.patch // s)
            for e, ((h, w), lr_size) in zip(self.examples, self._sizes):
                lh, lw = lr_size if lr_size is not None else (h // s, w // s)
                if lh < self.lr_patch or lw < self.lr_patch:
                    raise GhostkitError(f"{e.name}: {w} x {h} px is smaller than the {self.lr_patch * s} px training "
                                        f"patch (--imgsz) at scale {s}")
            return
        lr_sizes = [lr if lr is not None else (h // s, w // s) for (h, w), lr in self._sizes]
        for e, (lh, lw), ((h, w), _) in zip(self.examples, lr_sizes, self._sizes):
            if min(lh, lw) * s < MIN_VAL_SIZE:
                raise GhostkitError(f"{e.name}: {w} x {h} px is too small to validate on at scale {s} (at least "
                                    f"{MIN_VAL_SIZE} px per side)")
        cap = VAL_MAX_SIZE // s
        self.crop = (min([cap, *(h for h, _ in lr_sizes)]), min([cap, *(w for _, w in lr_sizes)]))

    def __len__(self) -> int:
        if self.patch is None:
            return len(self.examples)
        return max(len(self.examples), self.length)

    def _load(self, source: ImageSource) -> np.ndarray:
        if isinstance(source, np.ndarray):
            return source
        key = hash(source)
        if key in self._cache:
            return self._cache[key]
        arr = np.array(read_image(source))  # writable: torch.from_numpy warns on read-only arrays
        if self._cached_bytes + arr.nbytes <= _CACHE_BYTES:  # decoding big images every step is the bottleneck
            self._cache[key] = arr
            self._cached_bytes += arr.nbytes
        return arr

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.examples[index % len(self.examples)]
        s = self.scale
        hr = self._load(e.hr)
        lr = self._load(e.lr) if e.lr is not None else None
        if self.patch is not None:
            q = self.lr_patch
            lh, lw = lr.shape[:2] if lr is not None else (hr.shape[0] // s, hr.shape[1] // s)
            y, x = int(torch.randint(0, lh - q + 1, ())), int(torch.randint(0, lw - q + 1, ()))
            k = int(torch.randint(0, 8, ()))
            target = _augment(_to_tensor(hr[y * s:(y + q) * s, x * s:(x + q) * s]), k)
            if lr is not None:
                return _augment(_to_tensor(lr[y:y + q, x:x + q]), k), target
            return self.degradation(target), target
        (ch, cw), (lh, lw) = self.crop, (lr.shape[:2] if lr is not None else (hr.shape[0] // s, hr.shape[1] // s))
        y, x = (lh - ch) // 2, (lw - cw) // 2
        target = _to_tensor(hr[y * s:(y + ch) * s, x * s:(x + cw) * s])
        if lr is not None:
            return _to_tensor(lr[y:y + ch, x:x + cw]), target
        return self.degradation(target, torch.Generator().manual_seed(index)), target

    @property
    def items(self) -> _Inputs:
        """The validation inputs as ``(PIL image, None)`` pairs (what ``ghostkit train`` saves to ``samples/``)."""
        return _Inputs(self)


class _Inputs:
    """Lazy sequence of a dataset's degraded inputs as 8-bit PIL images."""

    def __init__(self, dataset: RestoreDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset.examples)

    def __getitem__(self, index: int | slice):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        lr, _ = self.dataset[index]
        arr = (lr.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        return Image.fromarray(arr), None


def _pair_scale(examples: Sequence[RestoreItem], sizes: Sequence[tuple]) -> int | None:
    """The one integer scale 1..4 of all paired examples (None without pairs); raises naming a pair that differs."""
    scale, first = None, None
    for e, ((h, w), lr) in zip(examples, sizes):
        if lr is None:
            continue
        lh, lw = lr
        s = h // lh if lh else 0
        if not 1 <= s <= 4 or h // s != lh or w // s != lw:
            raise GhostkitError(f"{e.name}: hr {w} x {h} px is not 1-4 x its lr {lw} x {lh} px")
        if scale is not None and s != scale:
            raise GhostkitError(f"{e.name}: hr is {s} x its lr, but {first} is {scale} x")
        scale, first = s, e.name
    return scale


def restore_collate(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, dict]:
    """``[(input, target)]`` → ``(inputs B x 3 x h x w, {"restore": targets B x 3 x H x W})``."""
    return torch.stack([b[0] for b in batch]), {"restore": torch.stack([b[1] for b in batch])}


def load_photos() -> tuple[list[RestoreItem], list[RestoreItem]]:
    """scikit-learn's sample photos split into (train: top 75% of each, val: bottom 25% of each)."""
    from sklearn.datasets import load_sample_images

    photos = load_sample_images()
    train, val = [], []
    for path, image in zip(photos.filenames, photos.images):
        cut = round(image.shape[0] * PHOTOS_TRAIN_FRACTION)
        name = Path(path).name
        train.append(RestoreItem(f"{PHOTOS}:{name}[:{cut}]", np.array(image[:cut])))
        val.append(RestoreItem(f"{PHOTOS}:{name}[{cut}:]", np.array(image[cut:])))
    return train, val


def _read_pairs(root: Path) -> list[RestoreItem]:
    """``root/lr/*`` and ``root/hr/*`` matched by file stem; unpaired names and unreadable files are reported."""
    lr = {p.stem: p for p in list_images(root / "lr")}
    hr = {p.stem: p for p in list_images(root / "hr")}
    only_lr, only_hr = sorted(set(lr) - set(hr)), sorted(set(hr) - set(lr))
    if only_lr or only_hr:
        names = [f"lr/{lr[n].name}" for n in only_lr] + [f"hr/{hr[n].name}" for n in only_hr]
        more = ", ..." if len(names) > 5 else ""
        raise GhostkitError(f"{root}: {len(names)} image(s) without a partner of the same name: "
                            f"{', '.join(names[:5])}{more}")
    if not lr:
        raise GhostkitError(f"{root}: lr/ and hr/ hold no images")
    good = set(filter_readable([*lr.values(), *hr.values()], folder=root)[0])
    return [RestoreItem(str(hr[n]), hr[n], lr[n]) for n in sorted(lr) if lr[n] in good and hr[n] in good]


def _read_split(folder: Path) -> list[RestoreItem]:
    """A split folder: paired (``lr/`` + ``hr/``) or clean images."""
    if (folder / "lr").is_dir() or (folder / "hr").is_dir():
        for sub in ("lr", "hr"):
            if not (folder / sub).is_dir():
                raise GhostkitError(f"{folder}: has {'hr' if sub == 'lr' else 'lr'}/ but no {sub}/ folder")
        return _read_pairs(folder)
    paths = list_images(folder)
    if not paths:
        raise GhostkitError(f"{folder}: no images in this folder")
    return [RestoreItem(str(p), p) for p in filter_readable(paths, folder=folder)[0]]


@dataclass
class RestoreData:
    """Train / val :class:`RestoreDataset` s, the training patch (high-resolution px) and, for paired data, the
    scale the pairs imply (``None`` where degradations are synthesised)."""

    train: RestoreDataset
    val: RestoreDataset
    patch: int
    paired_scale: int | None


def build_restore_data(data: str | Path, degradation: Degradation, patch: int | None = None,
                       val_fraction: float = 0.2, seed: int = 0) -> RestoreData:
    """Resolve ``--data`` (``photos`` or a folder, see the module docstring) to restoration datasets.

    ``patch``: training crop in high-resolution px (default ``24 x scale``, at least 32), rounded down to a multiple
    of the scale. Raises ``GhostkitError`` for missing folders, unpaired names, images too small for the patch or for
    validation, pairs whose sizes do not agree with one scale, and ``scale 1`` without noise on clean images.
    """
    name = str(data)
    if name == PHOTOS:
        train_items, val_items = load_photos()
    else:
        root = Path(data)
        if not root.is_dir():
            raise GhostkitError(f"{root}: no such data folder (built-in restoration data: {PHOTOS})")
        if (root / "train").is_dir():
            train_items = _read_split(root / "train")
            val_items = _read_split(root / "val") if (root / "val").is_dir() else None
        elif (root / "lr").is_dir() or (root / "hr").is_dir():
            train_items, val_items = _read_split(root), None
        else:
            raise GhostkitError(f"{root}: no train/ folder of clean images and no lr/ + hr/ pairs")
        if val_items is None:
            if len(train_items) < 2:
                raise GhostkitError(f"{root}: a single training image cannot be split into train and val; add val/")
            train_items, val_items = split_items([(e, 0) for e in train_items], val_fraction, seed, stratify=False)
            train_items, val_items = [e for e, _ in train_items], [e for e, _ in val_items]
    synthetic = any(e.lr is None for e in [*train_items, *val_items])
    if synthetic and degradation.identity:
        raise GhostkitError("--scale 1 with --noise 0 leaves nothing to restore: set --noise (e.g. 25) or --scale 2-4")
    pairs = [e for e in [*train_items, *val_items] if e.lr is not None]
    paired_scale = _pair_scale(pairs, [(_size(e.hr), _size(e.lr)) for e in pairs])
    scale = paired_scale or degradation.scale
    patch = patch or max(MIN_PATCH, DEFAULT_LR_PATCH * scale)
    patch -= patch % scale
    train = RestoreDataset(train_items, degradation, patch=patch)
    val = RestoreDataset(val_items, replace(degradation))
    return RestoreData(train, val, patch, paired_scale)


def task_data(task: str, data: str | Path, imgsz: int | None, val_fraction: float = 0.2, seed: int = 0,
              scale: int = 2, noise: str = "0", jpeg: int = 0, **_) -> TaskData:
    """Restoration data as the engine uses it (``ghostkit.data.tasks.build_task_data``); ``imgsz``: the training
    patch (``None``: the default, see :func:`build_restore_data`). Images stay in [0, 1] (mean 0, std 1)."""
    d = build_restore_data(data, Degradation.parse(scale, noise, jpeg), patch=imgsz, val_fraction=val_fraction,
                           seed=seed)
    return TaskData(d.train, d.val, {task: []}, d.patch, [0.0] * 3, [1.0] * 3, restore_collate, d)
