"""The task registry is the one place for task names and defaults, and every layer finds a task through it."""

from __future__ import annotations

import importlib

import pytest

from ghostkit.data.tasks import build_task_data
from ghostkit.engine.config import HELP, TASK_NAMES, TrainConfig
from ghostkit.engine.spec import get_spec
from ghostkit.errors import GhostkitError
from ghostkit.tasks import get_head_class
from ghostkit.tasks.registry import (
    MULTITASK,
    TASKS,
    TaskEntry,
    default_imgsz,
    get_task,
    register_task,
    task_names,
)


@pytest.mark.parametrize("task", list(TASKS))
def test_every_layer_finds_the_task(task):
    entry = TASKS[task]
    for layer, name in (("tasks", entry.module), ("data", entry.data), ("engine", entry.engine)):
        importlib.import_module(f"ghostkit.{layer}.{name}")
    if entry.lightning_module is None:
        assert get_head_class(task).__module__ == f"ghostkit.tasks.{entry.module}"
    else:  # a task with a training loop of its own: the registry names its LightningModule, which makes the run
        import lightning as L

        module, _, name = entry.lightning_module.partition(":")
        cls = getattr(importlib.import_module(module), name)
        assert issubclass(cls, L.LightningModule) and callable(cls.run)
    spec = get_spec(task)
    assert (spec.monitor, spec.default_batch, spec.default_lr) == (entry.primary, entry.batch, entry.lr)
    assert entry.primary in entry.metrics


def test_multitask_defaults_come_from_the_registry():
    spec = get_spec("classify,detect")
    assert (spec.default_batch, spec.default_lr, spec.monitor) == (MULTITASK.batch, MULTITASK.lr, "score")
    assert spec.monitors == {"classify": "top1", "detect": "map"}
    assert get_spec("detect,restore").monitors["restore"] == TASKS["restore"].score_key == "ssim"


def test_task_names_and_help_follow_the_registry():
    assert TASK_NAMES == task_names() == tuple(TASKS)
    for task, entry in TASKS.items():
        assert task in HELP["batch"] and task in HELP["lr"]
        assert entry.imgsz is None or f"{task} {entry.imgsz}" in HELP["imgsz"]
    with pytest.raises(GhostkitError, match="--task must be one of classify, multilabel"):
        TrainConfig(task="nonsense").validate()


def test_default_image_size():
    assert default_imgsz("classify", "digits") == 32
    assert default_imgsz("detect", "shapes") == 64
    assert default_imgsz("segment", "my_folder") == TASKS["segment"].imgsz == 512
    assert default_imgsz("classify,detect", "shapes") == 64
    assert default_imgsz("classify,detect", "shapes,my_folder") == MULTITASK.imgsz
    assert default_imgsz("restore", "photos") is None  # the data builder's: a patch that follows --scale
    assert build_task_data("classify", "digits").imgsz == 32


def test_unknown_and_duplicate_tasks_are_errors():
    with pytest.raises(GhostkitError, match="unknown task 'nope'; available: classify"):
        get_task("nope")
    with pytest.raises(GhostkitError, match="registered twice"):
        register_task(TaskEntry(name="detect", module="detect", data="detect", engine="detect", layouts=(),
                                batch=1, lr=1.0, imgsz=None, metrics=("map",), primary="map"))
    assert get_task("detect").batch == 16  # the first entry stands
