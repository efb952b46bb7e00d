"""Multi-task runs: ``--task classify,detect,segment`` trains one backbone with several heads.

Each task keeps its own spec (head config, metrics, plots); this spec combines them. Options that belong to one task
apply to it alone: ``--head fcos,deeplabv3`` gives each task the head it names (a task whose head is not named keeps
its default). ``--task-weights`` is ``auto`` by default: one learned uncertainty weight per task (``TaskModel``);
``detect=1,segment=0.5`` fixes them (unnamed tasks: 1), ``equal`` sets all to 1. Validation computes every task's
metrics; the combined ``score`` is the mean of the tasks' primary metrics (classify top1, multilabel map, detect
map, segment miou: all in [0, 1]) and picks the best checkpoint unless ``--monitor TASK/KEY`` names another;
restoration adds its SSIM. Restoration joins as super-resolution (``--scale 2|3|4``, optionally with ``--noise`` /
``--jpeg``) or as denoising (``--scale 1`` with ``--noise`` and / or ``--jpeg``): every image is degraded, all heads
read the degraded image and the restore head learns the clean one back (it un-normalises its input itself). At
``--scale s`` > 1 ``--imgsz`` is the high-resolution frame (the network input is ``imgsz / s``) and the other heads
predict in it, against the HR masks and boxes (``--sr-join``, ``ghostkit.tasks.restore``).

Style transfer joins a classifier (``--task classify,style``, or ``multilabel,style``): one backbone classifies and
is the style head's loss network (content, Gram style and TV losses through its current weights, which the style
losses do not train: ``ghostkit.tasks.style``); the transform network is the style head; ``--style IMAGE`` (default
the built-in mosaic) is the style, and every training image is also a content photo (the un-normalised image).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from torch import nn

from ..data.multitask import task_data as multitask_data
from ..data.restore import Degradation
from ..errors import GhostkitError
from ..tasks.registry import MULTITASK, TASKS, combinable_tasks, get_task
from ..tasks.restore import JOINT_DEPTH, JOINT_WIDTH, default_join
from .config import TrainConfig
from .spec import TaskData, TaskSpec, get_spec, register_multitask_spec

__all__ = ["MultiTaskSpec", "parse_tasks", "parse_task_weights"]


def parse_tasks(value: str, min_tasks: int = 2) -> list[str]:
    """``"classify,detect"`` → ``["classify", "detect"]``, checked (known, combinable, no repeats)."""
    tasks = [t.strip() for t in value.split(",") if t.strip()]
    for t in tasks:
        if t not in combinable_tasks():
            what = "cannot be combined with other tasks" if t in TASKS else "is not a task"
            raise GhostkitError(f"--task: {t!r} {what}; combinable: {', '.join(combinable_tasks())}")
    for t in tasks:
        partners = TASKS[t].partners
        others = [o for o in tasks if o != t and partners is not None and o not in partners]
        if others:
            raise GhostkitError(f"--task: {t} cannot be combined with {', '.join(others)}; it combines with "
                                f"{', '.join(partners)}")
    if len(set(tasks)) != len(tasks):
        raise GhostkitError(f"--task names a task twice: {value}")
    if {"classify", "multilabel"} <= set(tasks):
        raise GhostkitError("--task: classify and multilabel are two forms of one head; pick one")
    if len(tasks) < min_tasks:
        raise GhostkitError(f"--task {value!r}: a multi-task run needs at least two tasks")
    return tasks


def parse_task_weights(value: str | None, tasks: list[str]) -> dict[str, float] | str | None:
    """``None`` (the default: ``"auto"`` for a multi-task run, nothing for one task), ``"auto"``, ``"equal"`` (all
    1) or ``"detect=1,segment=0.5"`` → ``{task: weight}`` (unnamed tasks: 1).

    Multi-task runs learn their weights by default. On built-in shapes (10 epochs, classify + detect + segment, three
    seeds) learned weights came closer to the single-task models than equal ones in 4 of 5 comparisons:
    segmentation 0.6–9.8 points below its single model against 5.5–12.0 (README, benchmarks/multitask.py)."""
    if value is None or value.strip() == "":
        return "auto" if len(tasks) > 1 else None
    if value.strip() == "auto":
        return "auto"
    if value.strip() == "equal":
        return {}
    weights = {}
    for part in value.split(","):
        task, sep, number = part.partition("=")
        task = task.strip()
        if not sep or task not in tasks:
            raise GhostkitError(f"--task-weights: {part.strip()!r} is not TASK=WEIGHT for one of {', '.join(tasks)}"
                                f" (or auto)")
        try:
            weights[task] = float(number)
        except ValueError:
            raise GhostkitError(f"--task-weights: {number.strip()!r} is not a number (in {part.strip()!r})") from None
        if not weights[task] >= 0:
            raise GhostkitError(f"--task-weights: the weight of {task} must not be negative, got {weights[task]}")
    return weights


@register_multitask_spec
class MultiTaskSpec(TaskSpec):
    """The spec of a multi-task run. ``min_tasks=1`` gives a single-task run on the multi-task data pipeline (the
    same images and transforms as the joint run: the fair baseline of ``benchmarks/multitask.py``). Its defaults
    are the registry's ``MULTITASK`` entry's."""

    default_batch = MULTITASK.batch
    default_lr = MULTITASK.lr
    monitor = MULTITASK.primary

    def __init__(self, task: str, min_tasks: int = 2) -> None:
        self.name = task
        self._tasks = parse_tasks(task, min_tasks)
        self.specs = {t: get_spec(t) for t in self._tasks}
        self.monitor = "score" if len(self._tasks) > 1 else self.specs[self._tasks[0]].monitor

    @property
    def tasks(self) -> list[str]:
        return list(self._tasks)

    @property
    def monitors(self) -> dict[str, str]:
        # the registry's score_metric: in [0, 1] for every task (restoration's SSIM rather than its PSNR in dB)
        return {t: get_task(t).score_key for t in self.specs}

    def task_cfg(self, cfg: TrainConfig, task: str) -> TrainConfig:
        """``cfg`` as the single-task spec of ``task`` should see it (its own ``--head``)."""
        heads = [h.strip() for h in (cfg.head or "").split(",") if h.strip()]
        from ..tasks.detect import DETECT_ARCHS
        from ..tasks.segment import SEGMENT_HEADS

        known = {"detect": tuple(DETECT_ARCHS), "segment": SEGMENT_HEADS, "style": ("johnson",)}
        for h in heads:
            if h == "adain" and "style" in self._tasks:
                raise GhostkitError("--head adain: a multi-task style head renders one style (johnson); train "
                                    "arbitrary styles with --task style --head adain")
            if not any(h in known.get(t, ()) for t in self._tasks):
                raise GhostkitError(f"--head {h!r} belongs to none of {', '.join(self._tasks)}")
        mine = [h for h in heads if h in known.get(task, ())]
        return dataclasses.replace(cfg, task=task, head=mine[0] if mine else None)

    def build_data(self, cfg: TrainConfig) -> TaskData:
        if "restore" in self._tasks and Degradation.parse(cfg.scale, cfg.noise, cfg.jpeg).identity:
            raise GhostkitError("restoration in a multi-task run needs a degradation: --scale 2-4, --noise (e.g. 25) "
                                "or --jpeg")
        if cfg.sr_join is not None and not ("restore" in self._tasks and cfg.scale > 1):
            raise GhostkitError("--sr-join applies to multi-task super-resolution runs (--task restore,... --scale "
                                "2-4)")
        # the multi-task pipeline also for one task (min_tasks=1), so not the registry's per-task data module
        data = multitask_data(",".join(self._tasks), cfg.data, cfg.imgsz, cfg.val_fraction, cfg.seed,
                              scale=cfg.scale, noise=cfg.noise, jpeg=cfg.jpeg, style=cfg.style)
        self.attach_data(data)
        return data

    def attach_data(self, data: TaskData) -> None:
        for spec in self.specs.values():  # e.g. detect's plots draw on the validation images
            spec.attach_data(data)

    def head_configs(self, cfg: TrainConfig, data: TaskData) -> dict[str, dict]:
        sr = "restore" in self.specs and len(self.specs) > 1 and cfg.scale > 1
        join = (cfg.sr_join or default_join(self._tasks)) if sr else None
        # super-resolution with the backbone on the restored image: the other heads' defaults for the HR size
        hr_data = dataclasses.replace(data, imgsz=data.imgsz * cfg.scale) if join == "restored" else data
        configs = {t: s.head_config(self.task_cfg(cfg, t), data if t == "restore" else hr_data)
                   for t, s in self.specs.items()}
        for t in ("restore", "style"):  # their input is the normalised image the other heads need
            if t in configs:
                configs[t].update(mean=list(data.mean), std=list(data.std))
        if "style" in configs:  # the shared backbone is the loss network (ghostkit.tasks.style)
            configs["style"]["loss_model"] = None
        if sr:
            configs["restore"]["join"] = join
            configs["restore"]["fuse_classes"] = configs.get("segment", {}).get("num_classes", 0)
            # the restore branch reads the backbone's features of the LR input when the backbone runs on it, and
            # is then lighter than a restore model's by default (JOINT_WIDTH, JOINT_DEPTH: ghostkit.tasks.restore)
            if join != "restored":
                configs["restore"].update(reuse_features=True, width=cfg.width or JOINT_WIDTH,
                                          depth=cfg.depth or JOINT_DEPTH)
        return configs

    def task_metrics(self, class_names: dict[str, list[str]], cfg: TrainConfig, heads) -> dict[str, nn.Module]:
        return {t: s.metrics(class_names.get(t, []), self.task_cfg(cfg, t), heads[t]) for t, s in self.specs.items()}

    def task_plots(self, values: dict[str, dict], class_names: dict[str, list[str]], out_dir: Path) -> list[Path]:
        out = []
        for t, s in self.specs.items():
            (out_dir / t).mkdir(parents=True, exist_ok=True)
            out += s.plots(values[t], class_names.get(t, []), out_dir / t)
        return out
