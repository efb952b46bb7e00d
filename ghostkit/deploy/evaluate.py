"""``evaluate``: a model's metrics on a data set, without Lightning: the one evaluation loop of ``ghostkit val`` and
of the INT8 accuracy check of ``export``.

Metric modules are passed in (``{task: module}`` with ``update(outputs, targets)``, ``compute() -> dict`` and
``reset()``): the tasks' metrics live in ``ghostkit.engine.<task>``, which this layer does not import. The caller
that has them (``ghostkit.engine.run.validate``, the ``ghostkit export`` command, ``ghostkit.api.export``) builds
them, e.g. with :func:`ghostkit.engine.spec.model_metrics`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

__all__ = ["evaluate", "MetricsFactory"]

# model → {task: metric module}: how export's INT8 check gets the task's metrics (see the module docstring)
MetricsFactory = Callable[[nn.Module], dict[str, nn.Module]]


def _to(value, device: torch.device):
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: _to(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to(v, device) for v in value)
    return value


def evaluate(model: nn.Module, data: DataLoader | Dataset, metrics: dict[str, nn.Module], batch: int = 64,
             collate: Callable | None = None, device: str | torch.device | None = None,
             limit: int | None = None) -> dict[str, dict]:
    """Run ``model`` (a ``TaskModel`` or an ``OnnxTaskModel``: ``forward`` and ``select``) in eval mode over ``data``
    (a ``DataLoader``, or a ``Dataset`` batched by ``batch`` with ``collate``) and return ``{task: metrics.compute()}``.
    Each batch is ``(images B x 3 x H x W, {task: targets})``; a task's metric sees only the images that have its
    target (``model.select``). ``device``: where the model and batches run (default: the model's); ``limit``: stop
    after about this many images."""
    loader = data if isinstance(data, DataLoader) else DataLoader(data, batch_size=batch, shuffle=False,
                                                                  collate_fn=collate)
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    device = torch.device(device)
    model = model.eval().to(device)
    for metric in metrics.values():
        metric.to(device).reset()
    seen = 0
    with torch.inference_mode():
        for images, targets in loader:
            images, targets = images.to(device), _to(targets, device)
            outputs = model(images)
            for task, metric in metrics.items():
                pair = model.select(outputs, targets, task)
                if pair is not None:
                    metric.update(*pair)
            seen += len(images)
            if limit is not None and seen >= limit:
                break
    values = {task: metric.compute() for task, metric in metrics.items()}
    for metric in metrics.values():
        metric.reset()
    return values
