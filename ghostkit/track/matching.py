"""Association costs and thresholded linear assignment (scipy's ``linear_sum_assignment``).

Every cost here is a distance in ``[0, 1]`` (or larger where a gate rejects a pair): lower is better.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["cosine_distance", "iou_distance", "linear_assignment"]

# Stands in for "never match" inside the solver: finite (scipy rejects all-infinite rows) and above any real cost.
_FORBIDDEN = 1e6


def iou_distance(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """``1 - IoU`` between ``N x 4`` and ``M x 4`` xyxy boxes → ``N x M`` (0 for identical boxes, 1 for disjoint).

    NumPy rather than ``torchvision.ops.box_iou``: a tracker calls this several times per frame on a handful of
    boxes, where the tensor round trip cost several times the arithmetic (about 0.3 ms against 0.02 ms a call).
    """
    a, b = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4), np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    if len(a) == 0 or len(b) == 0:
        return np.ones((len(a), len(b)))
    wh = np.clip(np.minimum(a[:, None, 2:], b[None, :, 2:]) - np.maximum(a[:, None, :2], b[None, :, :2]), 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return 1.0 - np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


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
