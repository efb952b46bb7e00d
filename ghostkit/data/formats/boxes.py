"""Box clean-up shared by the detection readers: clip to the image, drop degenerate boxes, one counted warning."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

__all__ = ["BoxesFixedWarning", "BoxCleaner", "MIN_BOX"]

MIN_BOX = 1.0  # px: narrower or lower boxes are degenerate


class BoxesFixedWarning(UserWarning):
    """Some boxes reached outside their image and were clipped, or were degenerate and dropped (counted)."""


class BoxCleaner:
    """Clips boxes to their image and drops degenerate ones, counting both for one warning per file set."""

    def __init__(self) -> None:
        self.clipped = self.dropped = 0

    def __call__(self, boxes: np.ndarray, labels: np.ndarray, width: int, height: int) -> dict[str, np.ndarray]:
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        clipped = boxes.copy()
        clipped[:, 0::2] = clipped[:, 0::2].clip(0, width)
        clipped[:, 1::2] = clipped[:, 1::2].clip(0, height)
        ok = ((clipped[:, 2] - clipped[:, 0]) >= MIN_BOX) & ((clipped[:, 3] - clipped[:, 1]) >= MIN_BOX)
        self.dropped += int((~ok).sum())
        self.clipped += int((np.abs(clipped - boxes).max(1, initial=0) > 1e-2)[ok].sum())
        return {"boxes": clipped[ok], "labels": labels[ok]}

    def warn(self, where: Path | str) -> None:
        if self.clipped or self.dropped:
            warnings.warn(f"{where}: clipped {self.clipped} box(es) to their image and dropped {self.dropped} "
                          f"degenerate box(es)", BoxesFixedWarning, stacklevel=3)
