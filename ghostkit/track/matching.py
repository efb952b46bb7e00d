"""Association costs and thresholded linear assignment (scipy's ``linear_sum_assignment``).

Every cost here is a distance in ``[0, 1]`` (or larger where a gate rejects a pair): lower is better.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torchvision.ops import box_iou

__all__ = ["cosine_distance", "iou_distance", "linear_assignment"]

# Stands in for "never match" inside the solver: finite (scipy rejects all-infinite rows) and above any real cost.
_FORBIDDEN = 1e6


def iou_distance(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """``1 - IoU`` between ``N x 4`` and ``M x 4`` xyxy boxes → ``N x M``."""
    if len(boxes_a) == 0 or len(boxes_b) == 0:
        return np.ones((len(boxes_a), len(boxes_b)))
    iou = box_iou(torch.from_numpy(np.asarray(boxes_a, dtype=np.float64)),
                  torch.from_numpy(np.asarray(boxes_b, dtype=np.float64)))
    return 1.0 - iou.numpy()


def cosine_distance(emb_a: np.ndarray, emb_b: np.ndarray) -> np.ndarray:
    """``1 - cos`` between ``N x D`` and ``M x D`` embeddings (any norm) → ``N x M`` in ``[0, 2]``."""
    if len(emb_a) == 0 or len(emb_b) == 0:
        return np.ones((len(emb_a), len(emb_b)))
    a = emb_a / np.maximum(np.linalg.norm(emb_a, axis=1, keepdims=True), 1e-12)
    b = emb_b / np.maximum(np.linalg.norm(emb_b, axis=1, keepdims=True), 1e-12)
    return 1.0 - a @ b.T


def linear_assignment(cost: np.ndarray, thresh: float) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Minimum-cost one-to-one matching of rows to columns, keeping only pairs with ``cost <= thresh``.

    Returns ``(matches, unmatched_rows, unmatched_cols)``: ``matches`` as ``(row, col)`` pairs in row order.
    Pairs above the threshold (or non-finite) are forbidden before solving, so the solver never trades a valid
    pair away for an invalid one.
    """
    n, m = cost.shape
    if n == 0 or m == 0:
        return [], list(range(n)), list(range(m))
    allowed = np.isfinite(cost) & (cost <= thresh)
    rows, cols = linear_sum_assignment(np.where(allowed, cost, _FORBIDDEN))
    matches = [(int(r), int(c)) for r, c in zip(rows, cols) if allowed[r, c]]
    matched_rows, matched_cols = {r for r, _ in matches}, {c for _, c in matches}
    return matches, [r for r in range(n) if r not in matched_rows], [c for c in range(m) if c not in matched_cols]
