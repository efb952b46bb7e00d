"""What the generic engine needs from each task: data, head config, metrics, plots.

The spec of a task lives in the engine module its registry entry names (:mod:`ghostkit.tasks.registry`); that
module registers it on import. A comma list of tasks gets the multi-task spec, which the registry's ``MULTITASK``
entry names the same way (so this module does not import the multi-task one: no circle).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from torch import nn

from ..data.tasks import TaskData
from ..tasks.registry import MULTITASK, get_task

__all__ = ["TaskData", "TaskSpec", "register_spec", "register_multitask_spec", "get_spec", "model_metrics",
           "combined_score"]


class TaskSpec:
    """One per task, in ``ghostkit/engine/<task>.py``, registered on import with :func:`register_spec`.

    ``monitor`` (from the task registry) is the metrics.json key that picks the best checkpoint and drives early
    stopping (higher is better).
    ``metrics(...)`` returns an ``nn.Module`` with ``update(outputs, targets)`` (raw head outputs and the batch's
    targets for this task), ``compute() -> dict`` (metrics.json keys; non-scalar extras allowed) and ``reset()``.
    """

    name: str

    @property
    def monitor(self) -> str:
        """The primary metric (the task registry's)."""
        return get_task(self.name).primary

    @property
    def default_batch(self) -> int:
        """--batch when not given (the task registry's)."""
        return get_task(self.name).batch

    @property
    def default_lr(self) -> float:
        """--lr when not given (the task registry's)."""
        return get_task(self.name).lr

    def build_data(self, cfg) -> TaskData:
        raise NotImplementedError

    def head_config(self, cfg, data: TaskData) -> dict:
        raise NotImplementedError

    def attach_data(self, data: TaskData) -> None:
        """Keep what ``metrics`` / ``plots`` need of the data being evaluated (``build_data`` calls it; so does
        ``validate``, whose data comes from the checkpoint's config)."""

    def metrics(self, class_names: list[str], cfg, head: nn.Module) -> nn.Module:
        raise NotImplementedError

    def plots(self, values: dict, class_names: list[str], out_dir: Path) -> list[Path]:
        return []

    def calibrate(self, model: nn.Module, data: TaskData, cfg) -> dict[str, dict]:
        """After training, with the best weights loaded: settings chosen on the training data (multi-label: the
        decision threshold), set on ``model``'s heads; returns them as ``{task: {head config key: value}}`` for
        the checkpoints' configs."""
        return {}

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
_MULTITASK: list[Callable[[str], TaskSpec]] = []  # the multi-task spec's class, registered by its module


def register_spec(spec: TaskSpec) -> TaskSpec:
    _SPECS[spec.name] = spec
    return spec


def register_multitask_spec(factory: Callable[[str], TaskSpec]) -> Callable[[str], TaskSpec]:
    """Register the class that builds a multi-task run's spec from its comma list of tasks."""
    _MULTITASK[:] = [factory]
    return factory


def get_spec(task: str) -> TaskSpec:
    """The spec of ``task``, or of a multi-task run for a comma-separated list of tasks."""
    entry = get_task(task)
    if entry is MULTITASK:
        if not _MULTITASK:
            importlib.import_module(f"{__package__}.{MULTITASK.engine}")
        return _MULTITASK[0](task)
    if task not in _SPECS:
        importlib.import_module(f"{__package__}.{entry.engine}")
    return _SPECS[task]


def model_metrics(model: nn.Module, threshold: float | None = None) -> dict[str, nn.Module]:
    """Fresh metric modules ``{task: module}`` for a trained ``model`` (``TaskModel`` or ``OnnxTaskModel``), as
    ``ghostkit val`` computes them: what export's INT8 accuracy check is given (``ghostkit.deploy.evaluate``)."""
    from .config import TrainConfig

    config = model.config
    task = ",".join(config["heads"])
    cfg = TrainConfig(task=task, threshold=threshold)
    return get_spec(task).task_metrics(config.get("class_names", {}), cfg, model.heads)


def combined_score(values: dict[str, dict], monitors: dict[str, str]) -> float | None:
    """A multi-task run's ``score``: the mean of the tasks' primary metrics (``None`` for one task)."""
    if len(values) < 2:
        return None
    return sum(float(values[t][k]) for t, k in monitors.items()) / len(monitors)
