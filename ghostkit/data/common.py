"""What every task's data shares: the normalisation constants, :class:`TaskData`, the fixed-seed train / val split
and the ``classes.txt`` reader. Neutral ground: task data modules import from here, never from each other."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from ghostkit.errors import GhostkitError

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "TaskData", "cached_folder", "read_classes_txt", "split_items"]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
# a data set item: (image source, target)
Item = tuple[Any, Any]


@dataclass
class TaskData:
    """A task's data as the engine, ``ghostkit val`` and export use it (``ghostkit.data.tasks``)."""

    train: Dataset | None
    val: Dataset
    class_names: dict[str, list[str]]  # task → class names
    imgsz: int
    mean: list[float]
    std: list[float]
    collate: Callable  # list of (image, target) → (images B x 3 x H x W, {task: batched targets})
    source: object = None  # what the task's builder returned (e.g. RestoreData, for its paired scale)
    resolved: dict = field(default_factory=dict)  # TrainConfig options the data decided (the classify recipe)
    recipe: str | None = None  # the line describing them, printed at the start of a run
    in_memory: bool = False  # the images are decoded and held in memory (fewer loader workers needed)


def read_classes_txt(path: Path, spaces: bool = True, max_classes: int | None = None, task: str = "") -> list[str]:
    """Class names, one per line (blank lines skipped); duplicates are an error. ``spaces=False``: a name with a
    space is an error (where labels are space-separated); ``max_classes``: the most ``task`` supports."""
    names: list[str] = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        name = line.strip()
        if not name:
            continue
        if not spaces and " " in name:
            raise GhostkitError(f"{path}:{lineno}: class name {name!r} contains a space (labels are space-separated)")
        if name in names:
            raise GhostkitError(f"{path}:{lineno}: duplicate class {name!r}")
        names.append(name)
    if not names:
        raise GhostkitError(f"{path}: no class names")
    if max_classes is not None and len(names) > max_classes:
        raise GhostkitError(f"{path}: {len(names)} classes; {task} supports at most {max_classes}")
    return names


def split_items(
    items: Sequence[Item], val_fraction: float, seed: int = 0, stratify: bool = True
) -> tuple[list[Item], list[Item]]:
    """Deterministically split items into (train, val), keeping the input order within each part.

    With `stratify` (int targets), each class with at least 2 items puts round(n * val_fraction) of them, but at
    least 1 and at most n - 1, into val, so every class stays in train. Without it (multi-label targets), a
    plain random split of round(n * val_fraction) items (at least 1, at most n - 1).
    """
    if not 0.0 < val_fraction < 1.0:
        raise GhostkitError(f"val_fraction must be in (0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    n = len(items)
    if stratify:
        by_class: dict[int, list[int]] = {}
        for i, (_, target) in enumerate(items):
            by_class.setdefault(int(target), []).append(i)
        groups = [by_class[c] for c in sorted(by_class)]
    else:
        groups = [list(range(n))]
    val_idx: set[int] = set()
    for group in groups:
        if len(group) < 2:
            continue
        n_val = min(max(round(len(group) * val_fraction), 1), len(group) - 1)
        val_idx.update(group[j] for j in rng.permutation(len(group))[:n_val])
    train = [item for i, item in enumerate(items) if i not in val_idx]
    val = [item for i, item in enumerate(items) if i in val_idx]
    return train, val


def cached_folder(name: str, key: object, write: Callable[[Path], None], cache_dir: str | Path | None = None) -> Path:
    """A built-in data folder ``<cache_dir>/<name>-<hash of key>`` (default cache ``~/.cache/ghostkit``): ``write``
    fills a temporary folder beside it on first use, which is then renamed into place, so an interrupted run never
    leaves half a data set behind and concurrent first uses agree; reused afterwards."""
    cache = Path(cache_dir) if cache_dir is not None else Path.home() / ".cache" / "ghostkit"
    digest = hashlib.sha1(repr(key).encode()).hexdigest()[:10]
    target = cache / f"{name}-{digest}"
    if target.is_dir():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cache, prefix=f".{name}-{digest}."))
    try:
        write(tmp)
        os.replace(tmp, target)
    except OSError:
        if not target.is_dir():  # not another process finishing first: a real failure
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
