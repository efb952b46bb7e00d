"""YOLO detection labels: ``images/{train,val}/``, ``labels/{train,val}/*.txt`` (one ``class cx cy w h`` line per
object, normalised to 0..1; an image without a label file has no objects) and ``data.yaml`` whose ``names`` is a
list or an ``{id: name}`` dict."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import yaml

from ghostkit.data.formats.boxes import BoxCleaner
from ghostkit.data.images import image_size, list_images
from ghostkit.errors import GhostkitError

__all__ = ["read_yolo", "yolo_names"]

# an image and its objects: {"boxes": float32 N x 4 xyxy pixels, "labels": int64 N}
Item = tuple[Path, dict[str, np.ndarray]]


def yolo_names(root: Path) -> list[str]:
    path = next((root / n for n in ("data.yaml", "data.yml") if (root / n).is_file()), None)
    if path is None:
        raise GhostkitError(f"{root}: YOLO data needs a data.yaml with the class 'names'")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except yaml.YAMLError as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        raise GhostkitError(f"{path}{'' if line is None else f':{line + 1}'}: malformed YAML") from None
    names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, dict):
        try:
            ids = sorted(int(k) for k in names)
        except (TypeError, ValueError):
            raise GhostkitError(f"{path}: 'names' keys must be class ids 0..N-1") from None
        if ids != list(range(len(ids))):
            raise GhostkitError(f"{path}: 'names' ids must be 0..{len(ids) - 1} without gaps, got {ids}")
        names = [names[k] if k in names else names[str(k)] for k in ids]
    if not isinstance(names, list) or not names:
        raise GhostkitError(f"{path}: 'names' must be a non-empty list or {{id: name}} dict")
    return [str(n) for n in names]


def _read_yolo_labels(path: Path, num_classes: int, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    boxes, labels = [], []
    for lineno, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 5:
            raise GhostkitError(f"{path}:{lineno}: expected 5 fields 'class cx cy w h', got {len(fields)}")
        try:
            cls = int(fields[0])
            cx, cy, w, h = (float(v) for v in fields[1:])
        except ValueError:
            raise GhostkitError(f"{path}:{lineno}: expected an integer class and four numbers, got {line.strip()!r}"
                                ) from None
        if not 0 <= cls < num_classes:
            raise GhostkitError(f"{path}:{lineno}: class id {cls} is out of range 0..{num_classes - 1} (data.yaml)")
        if not all(math.isfinite(v) for v in (cx, cy, w, h)):
            raise GhostkitError(f"{path}:{lineno}: coordinates must be finite numbers")
        boxes.append([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height])
        labels.append(cls)
    return np.array(boxes, np.float32).reshape(-1, 4), np.array(labels, np.int64)


def read_yolo(root: str | Path, split: str, names: Sequence[str] | None = None) -> tuple[list[Item], list[str]]:
    """Read `root/images/<split>/` with `root/labels/<split>/*.txt` → (items, class names from data.yaml)."""
    root = Path(root)
    names = list(names) if names is not None else yolo_names(root)
    img_dir, lbl_dir = root / "images" / split, root / "labels" / split
    clean = BoxCleaner()
    items: list[Item] = []
    for img in list_images(img_dir, recursive=True):
        label_file = (lbl_dir / img.relative_to(img_dir)).with_suffix(".txt")
        w, h = image_size(img) or (0, 0)
        if label_file.is_file():
            boxes, labels = _read_yolo_labels(label_file, len(names), w, h)
        else:  # YOLO convention: an image without a label file shows no objects
            boxes, labels = np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
        items.append((img, clean(boxes, labels, w, h)))
    clean.warn(lbl_dir)
    return items, names
