"""Run-directory plots: loss/metric curves per epoch and the confusion matrix."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..io import atomic_path  # noqa: E402

__all__ = ["plot_curves", "plot_confusion_matrix"]


def plot_curves(metrics_csv: Path, out: Path) -> Path | None:
    """One panel per logged quantity (``train/*``, ``val/*``) against epoch, from the run's metrics.csv."""
    if not metrics_csv.is_file():
        return None
    with open(metrics_csv) as f:
        rows = list(csv.DictReader(f))
    series: dict[str, dict[int, float]] = {}
    for row in rows:
        epoch = row.get("epoch")
        for key, value in row.items():
            if key.startswith(("train/", "val/")) and value not in ("", None) and epoch not in ("", None):
                series.setdefault(key, {})[int(float(epoch))] = float(value)
    if not series:
        return None
    keys = sorted(series)
    cols = min(3, len(keys))
    rows_n = (len(keys) + cols - 1) // cols
    fig, axes = plt.subplots(rows_n, cols, figsize=(4 * cols, 3 * rows_n), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        xs = sorted(series[key])
        ax.plot([x + 1 for x in xs], [series[key][x] for x in xs], marker=".")
        ax.set_title(key)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return out


def plot_confusion_matrix(matrix: list[list[int]], class_names: list[str], out: Path) -> Path:
    """Row-normalised confusion matrix (rows: true class, columns: predicted) with counts in the cells."""
    import numpy as np

    m = np.asarray(matrix, dtype=float)
    norm = m / np.maximum(m.sum(1, keepdims=True), 1)
    n = len(class_names)
    size = max(4, 0.5 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), class_names, rotation=90)
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if m[i, j]:
                    ax.text(j, i, int(m[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if norm[i, j] > 0.5 else "black")
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return out
