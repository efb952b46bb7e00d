"""What the command groups share: the console and the printing of metrics and predictions."""

from __future__ import annotations

import json

from rich.console import Console
from rich.table import Table

__all__ = ["console", "print_metrics", "summary"]

console = Console()


def _metrics_table(title: str, values: dict) -> Table:
    table = Table(title=title)
    scalars = {k: v for k, v in values.items() if isinstance(v, (int, float))}
    for key in scalars:
        table.add_column(key, justify="right")
    table.add_row(*(f"{v:.4f}" for v in scalars.values()))
    return table


def _per_class_table(values: dict) -> Table | None:
    per_class = values.get("per_class")
    if not per_class:
        return None
    cols = list(next(iter(per_class.values())))
    table = Table(title="per class")
    table.add_column("class")
    for c in cols:
        table.add_column(c, justify="right")
    for name, row in per_class.items():
        table.add_row(name, *(f"{row[c]:.4f}" for c in cols))
    return table


def print_metrics(title: str, values: dict) -> None:
    if "score" in values:  # multi-task: a table per task, then the combined score
        for task, v in values.items():
            if isinstance(v, dict):
                print_metrics(f"{title}: {task}", v)
        console.print(f"combined score (mean of the tasks' primary metrics): {values['score']:.4f}")
        return
    console.print(_metrics_table(title, values))
    per_class = _per_class_table(values)
    if per_class is not None and len(values["per_class"]) <= 40:
        console.print(per_class)


def summary(result: dict) -> str:
    """One line per image: the classes (top-k or multi-label) or a short rendering of other tasks' results."""
    items = result.get("topk", result.get("labels"))
    if items is not None:
        return ", ".join(f"{x['class']} {x['score']:.3f}" for x in items) or "-"
    if "detections" in result:
        return ", ".join(f"{d['class']} {d['score']:.2f}" for d in result["detections"][:8]) or "no objects"
    nested = {k: v for k, v in result.items() if isinstance(v, dict) and k in ("classify", "multilabel", "detect")}
    if nested:  # multi-task: a line per image-level task
        return "; ".join(f"{k}: {summary(v)}" for k, v in nested.items())
    rest = {k: v for k, v in result.items() if k != "source"}
    return json.dumps(rest)[:200]
