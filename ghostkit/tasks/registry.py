"""The task registry: one :class:`TaskEntry` per task, read by the engine, the data layer, deploy and the CLI.

A task is one file per layer plus one entry here:

* ``ghostkit/tasks/<module>.py`` — everything about its model: head (registered with ``register_head``), loss,
  postprocess, default head config and image size, drawing;
* ``ghostkit/data/<data>.py`` — its dataset and transforms, on the shared readers of ``ghostkit/data/formats/``;
* ``ghostkit/engine/<engine>.py`` — its metrics and plots (a ``TaskSpec`` registered with ``register_spec``).

Modules are named, not imported: this file imports nothing heavy (``ghostkit --help`` reads it without torch), and
each layer imports the module it needs by name. The task-name list (:func:`task_names`), the default image size
(:func:`default_imgsz`) and the default batch size and learning rate are decided here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import GhostkitError

__all__ = ["IGNORE_INDEX", "TaskEntry", "TASKS", "MULTITASK", "get_task", "task_names", "combinable_tasks",
           "default_imgsz", "register_task"]

# the label of pixels a segmentation mask leaves out (losses and metrics skip them), shared by data, tasks and engine
IGNORE_INDEX = 255


@dataclass(frozen=True)
class TaskEntry:
    """What every layer needs to know about one task.

    Attributes:
        name: the ``--task`` value.
        module: ``ghostkit.tasks.<module>``: its head (registered on import), loss, postprocess, head config,
            drawing.
        data: ``ghostkit.data.<data>``: its dataset and transforms.
        engine: ``ghostkit.engine.<engine>``: its metrics and plots (registers its ``TaskSpec`` on import).
        layouts: the ``--data`` layouts it reads (DESIGN.md, "Data formats"), for help texts and errors.
        batch: default ``--batch``.
        lr: default ``--lr``.
        imgsz: the largest default ``--imgsz`` (:func:`default_imgsz` picks it from the training images, up to
            this); ``None``: the data builder decides (restoration: a training patch that follows ``--scale``).
        metrics: the metrics.json keys.
        primary: the metrics.json key that picks the best checkpoint (see ``mode``).
        mode: ``"max"``: a higher ``primary`` is better; ``"min"``: a lower one (generate's FID).
        score_metric: the key that enters a multi-task run's combined score (in [0, 1]; default ``primary``).
        combinable: may join a multi-task run (``--task a,b``).
        partners: the tasks it may be combined with (``None``: any combinable task).
        draw_order: where a multi-task picture draws this head's result: lower first (masks under boxes under
            image-level labels).
        lightning_module: ``"ghostkit.engine.<file>:<Class>"``, a LightningModule of its own for tasks whose
            training step is not "sum the heads' losses" (a GAN's two optimisers under manual optimisation); its
            classmethod ``run(cfg, callbacks) -> metrics`` makes the whole run (its model is not a ``TaskModel``),
            called by ``ghostkit.engine.run.train`` once the options are checked and the batch size and learning
            rate resolved. ``None``: the engine's ``TaskModule``.
    """

    name: str
    module: str
    data: str
    engine: str
    layouts: tuple[str, ...]
    batch: int
    lr: float
    imgsz: int | None
    metrics: tuple[str, ...]
    primary: str
    mode: str = "max"
    score_metric: str | None = None
    combinable: bool = True
    partners: tuple[str, ...] | None = None
    draw_order: int = 0
    lightning_module: str | None = None

    @property
    def score_key(self) -> str:
        return self.score_metric or self.primary


TASKS: dict[str, TaskEntry] = {}


def register_task(entry: TaskEntry) -> TaskEntry:
    """Add ``entry`` (a task name may be registered once)."""
    if entry.name in TASKS or entry.name == MULTITASK.name:
        raise GhostkitError(f"task {entry.name!r} is registered twice")
    TASKS[entry.name] = entry
    return entry


# a comma list of tasks trains one backbone with several heads: its own defaults
MULTITASK = TaskEntry(
    name="multitask", module="model", data="multitask", engine="multitask", layouts=("any of the tasks' layouts",),
    batch=16, lr=4e-3,  # as detect and segment (6-epoch benchmark: every joint score above 2e-3's)
    imgsz=320, metrics=("score",), primary="score", combinable=False)

register_task(TaskEntry(
    name="classify", module="classify", data="classify", engine="classify", layouts=("imagefolder",),
    batch=64, lr=2e-3, imgsz=224, metrics=("top1", "top5", "f1_macro"), primary="top1",
    draw_order=3))
register_task(TaskEntry(
    name="multilabel", module="classify", data="classify", engine="classify", layouts=("csv",),
    batch=64, lr=2e-3, imgsz=224, metrics=("map", "f1_macro"), primary="map", draw_order=4))
register_task(TaskEntry(
    name="detect", module="detect", data="detect", engine="detect", layouts=("coco", "yolo", "voc", "widerface"),
    batch=16,  # more optimizer steps per epoch train faster on CPU
    lr=4e-3,  # built-in shapes, 30 epochs of 1000 images: mAP50 0.899
    imgsz=320, metrics=("map", "map50"), primary="map", draw_order=2))
register_task(TaskEntry(
    name="segment", module="segment", data="segment", engine="segment", layouts=("masks", "voc", "coco"),
    batch=16,  # more optimizer steps per epoch train faster on CPU
    lr=4e-3,  # built-in shapes after 500 steps: 0.53 mIoU against 0.48 with 2e-3
    imgsz=512, metrics=("miou", "pixel_acc"), primary="miou", draw_order=1))
register_task(TaskEntry(
    name="restore", module="restore", data="restore", engine="restore", layouts=("clean folders", "lr/ + hr/"),
    batch=64, lr=2e-3, imgsz=None, metrics=("psnr", "ssim", "psnr_baseline"), primary="psnr",
    score_metric="ssim"))  # PSNR is in dB; its SSIM (in [0, 1] like the others) enters a multi-task score
register_task(TaskEntry(
    # an appearance-embedding head (JDE / FairMOT) for the appearance tracker, trained beside a detector:
    # --task detect,embed on MOTChallenge data (boxes with identities); its data come from the multi-task pipeline
    name="embed", module="embed", data="multitask", engine="embed", layouts=("mot",),
    batch=16, lr=4e-3, imgsz=320, metrics=("id_top1",), primary="id_top1", draw_order=5))
register_task(TaskEntry(
    name="style", module="style", data="style", engine="style", layouts=("photo folders",),
    batch=4, lr=2e-3, imgsz=128,
    metrics=("content_loss", "style_loss", "ssim_content", "content_loss_baseline", "style_loss_baseline",
             "ssim_content_baseline", "style_reduction"), primary="style_reduction",
    # --task classify,style: one backbone classifies and measures the style losses (ghostkit.engine.multitask)
    partners=("classify", "multilabel")))
register_task(TaskEntry(
    name="generate", module="generate", data="generate", engine="generate",
    layouts=("imagefolder (class-conditional)", "flat folder of images"),
    batch=64, lr=4e-4,  # the generator's; D's: GENERATE_DEFAULTS["lr_d_factor"] x this (2e-4: digits class_acc 0.83)
    imgsz=32, metrics=("fid", "kid", "class_acc"), primary="fid", mode="min", combinable=False,
    lightning_module="ghostkit.engine.gan:GANModule"))


def task_names() -> tuple[str, ...]:
    """Every ``--task`` name, in registration order."""
    return tuple(TASKS)


def combinable_tasks() -> tuple[str, ...]:
    """The tasks a multi-task run can combine."""
    return tuple(name for name, entry in TASKS.items() if entry.combinable)


def get_task(task: str) -> TaskEntry:
    """The entry of ``task``, or :data:`MULTITASK` for a comma list of tasks (or its name, ``"multitask"``)."""
    if "," in task or task == MULTITASK.name:
        return MULTITASK
    if task not in TASKS:
        raise GhostkitError(f"unknown task {task!r}; available: {', '.join(TASKS)}")
    return TASKS[task]


def default_imgsz(task: str, median_side: float | None = None) -> int | None:
    """The ``--imgsz`` of a run of ``task`` when none is given, from the training images alone (never from the
    data's name, so built-in data and the same images in a folder get the same size): their median shorter side
    ``median_side`` rounded up to a multiple of 32, at least 32 and at most the task's default
    (:attr:`TaskEntry.imgsz`); that default when ``median_side`` is None. ``None``: the data builder's (see
    :class:`TaskEntry`). Upscaling small images past their own size adds compute, not detail."""
    entry = get_task(task)
    if entry.imgsz is None or median_side is None:
        return entry.imgsz
    return min(entry.imgsz, max(32, -(-int(median_side) // 32) * 32))
