"""What the generic engine needs from each task: data, head config, metrics, plots."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn
from torch.utils.data import Dataset

from ..errors import GhostkitError

__all__ = ["TaskData", "TaskSpec", "register_spec", "get_spec"]


@dataclass
class TaskData:
    train: Dataset | None
    val: Dataset
    class_names: dict[str, list[str]]  # task → class names
    imgsz: int
    mean: list[float]
    std: list[float]
    collate: Callable  # list of (image, target) → (images B x 3 x H x W, {task: batched targets})
    resolved: dict = field(default_factory=dict)  # TrainConfig options the data decided (the classify recipe)
    recipe: str | None = None  # the line describing them, printed at the start of a run
    in_memory: bool = False  # the images are decoded and held in memory (fewer loader workers needed)


class TaskSpec:
    """One per task, in ``ghostkit/engine/<task>.py``, registered on import with :func:`register_spec`.

    ``monitor`` is the metrics.json key that picks the best checkpoint and drives early stopping (higher is better).
    ``metrics(...)`` returns an ``nn.Module`` with ``update(outputs, targets)`` (raw head outputs and the batch's
    targets for this task), ``compute() -> dict`` (metrics.json keys; non-scalar extras allowed) and ``reset()``.
    """

    name: str
    monitor: str
    default_batch = 64  # --batch when not given
    default_lr = 2e-3  # --lr when not given

    def build_data(self, cfg) -> TaskData:
        raise NotImplementedError

    def head_config(self, cfg, data: TaskData) -> dict:
        raise NotImplementedError

    def metrics(self, class_names: list[str], cfg, head: nn.Module) -> nn.Module:
        raise NotImplementedError

    def plots(self, values: dict, class_names: list[str], out_dir: Path) -> list[Path]:
        return []

    # -- the run's view: one task here, several in ``MultiTaskSpec`` ----------------------------------------------
    @property
    def tasks(self) -> list[str]:
        return [self.name]

    @property
    def monitors(self) -> dict[str, str]:
        """Task → its primary metric (the key of the combined multi-task score)."""
        return {self.name: self.monitor}

    def head_configs(self, cfg, data: TaskData) -> dict[str, dict]:
        return {self.name: self.head_config(cfg, data)}

    def task_metrics(self, class_names: dict[str, list[str]], cfg, heads) -> dict[str, nn.Module]:
        return {self.name: self.metrics(class_names.get(self.name, []), cfg, heads[self.name])}

    def task_plots(self, values: dict[str, dict], class_names: dict[str, list[str]], out_dir: Path) -> list[Path]:
        return self.plots(values[self.name], class_names.get(self.name, []), out_dir)


_SPECS: dict[str, TaskSpec] = {}


def register_spec(spec: TaskSpec) -> TaskSpec:
    _SPECS[spec.name] = spec
    return spec


def get_spec(task: str) -> TaskSpec:
    """The spec of ``task``, or of a multi-task run for a comma-separated list of tasks."""
    if "," in task:
        from .multitask import MultiTaskSpec

        return MultiTaskSpec(task)
    if task not in _SPECS:
        from ..tasks import TASK_MODULES

        if task not in TASK_MODULES:
            raise GhostkitError(f"unknown task {task!r}; available: {', '.join(TASK_MODULES)}")
        importlib.import_module(f"{__package__}.{TASK_MODULES[task]}")
    return _SPECS[task]
