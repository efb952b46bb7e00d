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


def test_default_image_size_follows_the_training_images():
    """One rule for every task with a default size: the images' median shorter side rounded up to a multiple of 32,
    in [32, the task's default]; never the data's name."""
    assert default_imgsz("classify", 28) == 32
    assert default_imgsz("multilabel", 100) == 128
    assert default_imgsz("classify", 1000) == TASKS["classify"].imgsz == 224
    assert default_imgsz("detect", 64) == 64
    assert default_imgsz("detect", 321) == TASKS["detect"].imgsz == 320
    assert default_imgsz("segment", 20) == 32
    assert default_imgsz("segment") == TASKS["segment"].imgsz == 512  # nothing known: the task's
    assert default_imgsz("classify,detect", 64) == 64
    assert default_imgsz("classify,detect", 4000) == MULTITASK.imgsz
    assert default_imgsz("restore", 64) is None  # the data builder's: a patch that follows --scale
    assert build_task_data("classify", "digits").imgsz == 32


def test_builtin_data_and_the_same_images_in_a_folder_get_the_same_size(tmp_path):
    import numpy as np
    from PIL import Image

    from ghostkit.data.synthetic import SHAPES_IMGSZ, load_digits, make_shapes, write_imagefolder

    images, labels, names = load_digits(32)
    write_imagefolder(tmp_path / "digits" / "train", images[:200], labels[:200], names)
    write_imagefolder(tmp_path / "digits" / "val", images[200:260], labels[200:260], names)
    assert build_task_data("classify", tmp_path / "digits").imgsz == build_task_data("classify", "digits").imgsz == 32
    # the shapes as a mask folder (segmentation) and as YOLO files (detection), at their own size
    seg, yolo = tmp_path / "seg", tmp_path / "yolo"
    for split, seed in (("train", 0), ("val", 1)):
        for d in (seg / "images" / split, seg / "masks" / split, yolo / "images" / split, yolo / "labels" / split):
            d.mkdir(parents=True)
        for k, s in enumerate(make_shapes(8, seed=seed)):
            Image.fromarray(s.image).save(seg / "images" / split / f"{k}.png")
            Image.fromarray(s.mask).save(seg / "masks" / split / f"{k}.png")
            Image.fromarray(s.image).save(yolo / "images" / split / f"{k}.png")
            x1, y1, x2, y2 = np.asarray(s.boxes[0]) / SHAPES_IMGSZ
            (yolo / "labels" / split / f"{k}.txt").write_text(
                f"{int(s.labels[0])} {(x1 + x2) / 2} {(y1 + y2) / 2} {x2 - x1} {y2 - y1}\n")
    (yolo / "data.yaml").write_text("names: [circle, square, triangle]\n")
    assert build_task_data("segment", seg).imgsz == build_task_data("segment", "shapes").imgsz == SHAPES_IMGSZ
    assert build_task_data("detect", yolo).imgsz == build_task_data("detect", "shapes").imgsz == SHAPES_IMGSZ
    assert build_task_data("classify,detect", "shapes").imgsz == SHAPES_IMGSZ


def test_unknown_and_duplicate_tasks_are_errors():
    with pytest.raises(GhostkitError, match="unknown task 'nope'; available: classify"):
        get_task("nope")
    with pytest.raises(GhostkitError, match="registered twice"):
        register_task(TaskEntry(name="detect", module="detect", data="detect", engine="detect", layouts=(),
                                batch=1, lr=1.0, imgsz=None, metrics=("map",), primary="map"))
    assert get_task("detect").batch == 16  # the first entry stands
