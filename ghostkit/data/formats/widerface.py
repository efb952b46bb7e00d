"""WIDER FACE: ``wider_face_split/wider_face_{train,val}_bbx_gt.txt`` + ``WIDER_{train,val}/images/...``, one class
"face"; boxes flagged invalid or of zero size are skipped and counted."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ghostkit.data.formats.boxes import BoxCleaner, BoxesFixedWarning
from ghostkit.data.images import image_size, resolve_inside
from ghostkit.errors import GhostkitError

__all__ = ["read_widerface"]

Item = tuple[Path, dict[str, np.ndarray]]


def read_widerface(root: str | Path, split: str) -> list[Item]:
    """Read `root/wider_face_split/wider_face_<split>_bbx_gt.txt` (image path, face count, then one
    `x y w h blur expression illumination invalid occlusion pose` line per face; a count of 0 is followed by one
    line of zeros) with images in `root/WIDER_<split>/images/`. Invalid-flagged and zero-size faces are skipped
    and counted in one warning."""
    root = Path(root)
    path = root / "wider_face_split" / f"wider_face_{split}_bbx_gt.txt"
    img_dir = root / f"WIDER_{split}" / "images"
    if not path.is_file():
        raise GhostkitError(f"{path}: no such file")
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    clean = BoxCleaner()
    items: list[Item] = []
    skipped, i = 0, 0
    while i < len(lines):
        name = lines[i].strip()
        if not name:
            i += 1
            continue
        image = resolve_inside(img_dir, name, f"{path}:{i + 1}")
        if not image.is_file():
            raise GhostkitError(f"{path}:{i + 1}: image {name} not found in {img_dir}")
        try:
            count = int(lines[i + 1].strip())
        except (IndexError, ValueError):
            raise GhostkitError(f"{path}:{i + 2}: expected the face count of {name}") from None
        boxes = []
        for k in range(i + 2, i + 2 + max(count, 1)):
            fields = lines[k].split() if k < len(lines) else []
            try:
                values = [int(float(v)) for v in fields]
            except ValueError:
                values = []
            if len(values) < 4:
                raise GhostkitError(f"{path}:{k + 1}: expected 'x y w h ...' for a face of {name}")
            if count == 0:
                break
            x, y, w, h = values[:4]
            if w <= 0 or h <= 0 or (len(values) >= 8 and values[7] == 1):
                skipped += 1
                continue
            boxes.append([x, y, x + w, y + h])
        i += 2 + max(count, 1)
        width, height = image_size(image) or (0, 0)
        items.append((image, clean(np.array(boxes, np.float32), np.zeros(len(boxes), np.int64), width, height)))
    if skipped:
        warnings.warn(f"{path}: skipped {skipped} invalid or zero-size face box(es)", BoxesFixedWarning, stacklevel=2)
    clean.warn(path)
    return items
