"""Reading image files: listing folders, decoding to 8-bit RGB, and skipping unreadable files.

Every reader in `ghostkit.data` goes through `read_image`, so all tasks see the same thing: a fully decoded
8-bit RGB `PIL.Image.Image` (H x W x 3 once turned into an array), whatever the file stored (grayscale,
alpha, palette, CMYK, 16-bit or float). A file that cannot be decoded completely raises `GhostkitError`;
truncated files are never silently half-loaded (PIL's `ImageFile.LOAD_TRUNCATED_IMAGES` stays False).

Dataset readers call `filter_readable` once over a folder's files: unreadable ones are dropped and counted in
one `SkippedFilesWarning`, so one bad file never stops a run.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PureWindowsPath

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ghostkit.errors import GhostkitError

__all__ = [
    "IMG_EXTENSIONS",
    "SkippedFilesWarning",
    "filter_readable",
    "image_size",
    "list_images",
    "median_short_side",
    "read_image",
    "resolve_inside",
    "to_rgb",
]

# Lower-case suffixes that `list_images` picks up (what PIL decodes without plugins).
IMG_EXTENSIONS: tuple[str, ...] = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".ppm",
    ".pgm",
    ".pbm",
)

# How many names the skip warning lists before "...".
_WARN_NAMES = 5


class SkippedFilesWarning(UserWarning):
    """Some input files were unreadable and were left out (the message counts and names them)."""


def list_images(folder: str | Path, recursive: bool = False) -> list[Path]:
    """Image files in `folder` (suffix in `IMG_EXTENSIONS`, any case), sorted by path.

    Hidden files and folders (name starting with ".", e.g. macOS `._a.jpg` resource forks) are ignored.
    Raises `GhostkitError` if `folder` is not a directory.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise GhostkitError(f"{folder}: no such folder")
    if recursive:
        found = []
        for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            found.extend(Path(dirpath) / name for name in filenames)
    else:
        found = [p for p in folder.iterdir() if p.is_file()]
    return sorted(p for p in found if not p.name.startswith(".") and p.suffix.lower() in IMG_EXTENSIONS)


def resolve_inside(root: str | Path, name: str, source: str | Path) -> Path:
    """`root / name` for a file `name` read from the annotation file `source`; raises `GhostkitError` naming
    `source` when `name` is absolute or climbs out of `root` (`../../x.png`, `/etc/hostname`).

    The check is on the path as written (normalised, not resolved): a data folder may itself hold symbolic links
    to where its images live, which is the user's choice; an annotation file may not point elsewhere."""
    text = name.replace("\\", "/")
    norm = os.path.normpath(text)
    if text.startswith("/") or PureWindowsPath(name).drive or norm == ".." or norm.startswith("../"):
        raise GhostkitError(f"{source}: image path {name!r} leaves the data folder {root}; annotation paths must be "
                            "relative to it")
    return Path(root) / norm


def _scale_to_uint8(img: Image.Image) -> Image.Image:
    """16-bit / 32-bit integer and float single-channel images → 8-bit 'L'.

    Integer 16-bit data keeps its meaning (value / 257, like 16-bit PNG readers that drop the low byte);
    32-bit integers are treated as 16-bit when they fit in [0, 65535]; floats in [0, 1] are scaled by 255,
    floats in [0, 255] are kept; anything else is stretched min..max to 0..255.
    """
    arr = np.asarray(img).astype(np.float64)
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    if img.mode.startswith("I;16") or (img.mode == "I" and lo >= 0 and hi <= 65535):
        arr = arr / 257.0
    elif img.mode == "F" and lo >= 0 and hi <= 1:
        arr = arr * 255.0
    elif not (lo >= 0 and hi <= 255):
        arr = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8))


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL image → 8-bit RGB (H x W x 3). Alpha is composited on white; 16-bit/float data is rescaled."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "P" and "transparency" in img.info:
        # Converting straight to RGB drops the transparency (and PIL warns); go through RGBA.
        img, mode = img.convert("RGBA"), "RGBA"
    if mode in ("LA", "La", "PA", "RGBa", "RGBA"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode.startswith("I") or mode == "F":
        return _scale_to_uint8(img).convert("RGB")
    return img.convert("RGB")


def image_size(path: Path, exif: bool = True) -> tuple[int, int] | None:
    """``(width, height)`` from the file header, without decoding the pixels; ``exif``: as displayed (EXIF rotation
    applied, as ``read_image`` decodes), else as stored. ``None`` when unreadable (``filter_readable`` drops the file
    later with the shared warning)."""
    try:
        with Image.open(path) as img:
            w, h = img.size
            orientation = img.getexif().get(0x0112, 1) if exif else 1
    except Exception:
        return None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def median_short_side(sources: Sequence, sample: int = 64) -> int | None:
    """The median shorter side (px) of an even sample of at most ``sample`` images: files (read from their headers,
    as displayed), PIL images, ``H x W (x C)`` arrays or ``C x H x W`` tensors. ``None`` without readable images."""
    step = max(1, len(sources) // sample)
    sides = []
    for source in list(sources)[::step]:
        if isinstance(source, (str, Path)):
            size = image_size(Path(source))
        elif isinstance(source, Image.Image):
            size = source.size
        elif hasattr(source, "permute"):  # a torch tensor, C x H x W
            size = tuple(source.shape[-2:])
        else:
            size = np.asarray(source).shape[:2]
        if size and min(size) > 0:
            sides.append(min(size))
    return int(np.median(sides)) if sides else None


def _reason(exc: BaseException) -> str:
    """A short one-line reason for a decoding failure (PIL messages often repeat the path)."""
    if isinstance(exc, UnidentifiedImageError):
        return "not an image or unsupported format"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text


def read_image(path: str | Path, exif_transpose: bool = True) -> Image.Image:
    """Fully decode an image file to 8-bit RGB (H x W x 3).

    The first frame of multi-frame files is used. With `exif_transpose`, the EXIF orientation tag is applied
    (photos come out upright, as viewers show them). Raises `GhostkitError("<path>: cannot read image (...)")`
    for missing, truncated, corrupt or unsupported files.
    """
    try:
        with Image.open(path) as img:
            img.load()  # decode everything now: truncated data must fail here, not later in a worker
            if exif_transpose:
                img = ImageOps.exif_transpose(img)
            rgb = to_rgb(img)
            # `to_rgb` may return the opened image itself; copy so the data outlives the closed file.
            return rgb.copy() if rgb is img else rgb
    except GhostkitError:
        raise
    except Exception as exc:  # PIL raises many types on corrupt data (OSError, SyntaxError, struct.error, ...)
        raise GhostkitError(f"{path}: cannot read image ({_reason(exc)})") from exc


def _is_readable(path: Path) -> bool:
    try:
        read_image(path, exif_transpose=False)
    except GhostkitError:
        return False
    return True


def filter_readable(
    paths: Iterable[str | Path], folder: str | Path | None = None, num_threads: int = 8
) -> tuple[list[Path], list[Path]]:
    """Split `paths` into (readable, unreadable) by decoding every file, in a small thread pool.

    Order is kept within each list. When some are unreadable, emits one `SkippedFilesWarning`:
    "skipped N unreadable image(s) in <folder>: a.jpg, b.png, ..." naming the first five, relative to
    `folder` (default: the files' common parent folder).
    """
    paths = [Path(p) for p in paths]
    if not paths:
        return [], []
    workers = max(1, min(num_threads, len(paths), os.cpu_count() or 1))
    if workers == 1:
        ok = [_is_readable(p) for p in paths]
    else:
        # PIL releases the GIL while decoding, so threads give a real speed-up without process start-up cost.
        with ThreadPoolExecutor(max_workers=workers) as pool:
            ok = list(pool.map(_is_readable, paths))
    good = [p for p, k in zip(paths, ok, strict=True) if k]
    bad = [p for p, k in zip(paths, ok, strict=True) if not k]
    if bad:
        warnings.warn(_skip_message(bad, folder), SkippedFilesWarning, stacklevel=2)
    return good, bad


def _skip_message(bad: Sequence[Path], folder: str | Path | None) -> str:
    if folder is None:
        folder = Path(os.path.commonpath([str(p.parent) for p in bad]))
    folder = Path(folder)
    names = []
    for p in bad[:_WARN_NAMES]:
        try:
            names.append(p.relative_to(folder).as_posix())
        except ValueError:
            names.append(str(p))
    more = ", ..." if len(bad) > _WARN_NAMES else ""
    return f"skipped {len(bad)} unreadable image(s) in {folder}: {', '.join(names)}{more}"
