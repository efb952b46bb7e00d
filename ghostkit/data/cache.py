"""Decode once, keep in memory: small image sets as uint8 tensors, so epochs after the first cost no decoding.

With a small model and small images the input pipeline, not the model, bounds a CPU run: decoding a PNG takes
longer than the forward and backward pass of a 32 px image. `decode_items` decodes every image of a data set once
(in threads: PIL releases the GIL while decoding) into uint8 3 x H x W tensors, unless their decoded size would
pass a limit; `CachedImageDataset` then runs the same v2 transforms on those tensors. `default_workers` picks the
data-loader worker count from the cores and from whether the data is in memory.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ghostkit.data.classify import ImageListDataset, Item, _load_rgb

__all__ = ["CACHE_MB", "CachedImageDataset", "decode_items", "default_workers"]

CACHE_MB = 1024  # default limit of the decoded training + validation images, MiB


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _to_tensor(source: Any) -> torch.Tensor:
    arr = np.array(_load_rgb(source))  # H x W x 3 uint8, decoded and converted like every reader does; a copy
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def decode_items(items: Sequence[Item], limit_mb: float = CACHE_MB) -> list[torch.Tensor] | None:
    """Every item's image as a uint8 3 x H x W tensor, or None when they would take more than `limit_mb` MiB
    (file sizes are checked first, so a large folder is not decoded at all; decoding stops at the limit)."""
    if limit_mb <= 0 or not items:
        return None
    limit = limit_mb * 2**20
    paths = [src for src, _ in items if isinstance(src, (str, Path))]
    if sum(os.path.getsize(p) for p in paths) > limit:  # decoded images are never smaller than their files
        return None
    images: list[torch.Tensor] = []
    total = 0
    with ThreadPoolExecutor(max_workers=_cores()) as pool:
        for tensor in pool.map(_to_tensor, (src for src, _ in items)):
            total += tensor.numel()
            if total > limit:
                return None
            images.append(tensor)
    return images


class CachedImageDataset(ImageListDataset):
    """`ImageListDataset` whose images are already decoded (uint8 3 x H x W tensors, one per item, same order);
    `items` are kept for their targets and sources (run samples, multi-task merging)."""

    def __init__(self, items: Sequence[Item], images: Sequence[torch.Tensor], transform: Any = None) -> None:
        super().__init__(items, transform)
        if len(images) != len(self.items):
            raise ValueError(f"{len(images)} images for {len(self.items)} items")
        self.images = list(images)

    def _image(self, index: int) -> Any:
        return self.images[index]


def default_workers(in_memory: bool, cores: int | None = None) -> int:
    """Data-loader worker processes: with the data in memory only the (cheap) augmentations remain, so workers pay
    only on machines with cores to spare beside the model's threads (8 and more); reading files needs at least one
    worker decoding beside the model, and up to half the cores (at most 8)."""
    cores = cores or _cores()
    if in_memory:
        return 0 if cores < 8 else min(8, cores // 4)
    return max(1, min(8, cores // 2))
