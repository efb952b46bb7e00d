"""Knowledge distillation for classification and multi-label training: the teacher, the soft-target loss and the
GhostNetV3 recipe (``ghostkit train --teacher T [--kd-weight W] [--kd-temp T] [--kd-loss kl|soft_ce]``).

The training loss is ``task loss + kd_weight * soft-target loss`` between the student's and the teacher's logits:

* ``kl`` (default): Hinton, Vinyals and Dean, "Distilling the Knowledge in a Neural Network" (2015),
  https://arxiv.org/abs/1503.02531: ``T^2 * KL(softmax(t / T) || softmax(s / T))``, averaged over the batch. The
  ``T^2`` keeps the gradient's size independent of the temperature. Zero when the student's logits equal the
  teacher's.
* ``soft_ce``: the soft cross-entropy of the GhostNetV3 paper's training script (Liu et al., 2024,
  https://arxiv.org/abs/2404.11202): ``-sum softmax(t / T) * log_softmax(s / T)`` averaged over the batch (times
  ``T^2`` as above; the official script uses T = 1). It differs from ``kl`` by the teacher's entropy, a constant
  for the student, so the gradients are the same.
* multi-label: every class is its own binary problem, so the soft targets are per-class sigmoids
  ``q = sigmoid(t / T)``: ``kl`` is the binary KL divergence ``q log(q / p) + (1 - q) log((1 - q) / (1 - p))`` with
  ``p = sigmoid(s / T)``, ``soft_ce`` the binary cross-entropy against ``q``; both averaged over classes and batch
  (as the task's own binary cross-entropy) and scaled by ``T^2``.

The form is additive, as in the GhostNetV3 script, whose SGD steps scale with the loss. With AdamW (ghostkit's default
optimiser) a constant factor on the loss leaves the steps unchanged, so ``task + w * kd`` trains like the common
``(1 - a) * task + a * kd`` with ``a = w / (1 + w)``. The defaults (``kl``, T = 4, weight 1, i.e. ``a = 0.5``) are
Hinton et al.'s form at a usual temperature; on built-in digits they give a 10-epoch ghostnet_050 student +0.56 points
of top1 from a 24-epoch ghostnet_100 teacher, averaged over 3 seeds (``benchmarks/distill.py``, docs/benchmarks.md).
The student's cross-entropy keeps the recipe's label smoothing, as the GhostNetV3 script does; the soft-target loss
has none.

The teacher runs in eval mode without gradients on the same augmented batch as the student (after Mixup / CutMix).
When its input size or normalisation differ from the student's, the batch is un-normalised, resized (bilinear) and
normalised again for it (:func:`teacher_input`). It is held outside the LightningModule's submodules, so its
weights never enter the student's checkpoint, optimiser or EMA copy.

A teacher is one of:

* a ghostkit checkpoint (``runs/big/best.ckpt``) with a head for the student's task and the data's class names;
* a registered model name (``ghostnet_130``) with ``--teacher-weights FILE`` (an official / timm / ghostkit file)
  or ``--teacher-weights imagenet`` (the Hugging Face Hub, see :mod:`ghostkit.models.hub`);
* ``timm:NAME`` when timm is installed: ``timm.create_model(NAME)`` with ``--teacher-weights FILE``, or timm's
  pretrained weights through its own Hub cache when none is given.

Hand-written because no library in ghostkit's stack offers logit distillation for a Lightning module (torchdistill
and the like bring their own training loops); the losses are a few lines of ``torch.nn.functional``.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GhostkitError

__all__ = ["KD_TASKS", "KD_LOSSES", "RECIPES", "Distiller", "kd_loss", "teacher_input", "load_teacher",
           "build_distiller", "check_distill_options", "apply_recipe"]

KD_TASKS = ("classify", "multilabel")
KD_LOSSES = ("kl", "soft_ce")

# --recipe ghostnetv3. Sources:
#  [script] the official training script, huawei-noah/Efficient-AI-Backbones ghostnetv3_pytorch/train.py
#           (commit c2d49e0): its defaults --opt sgd, --momentum 0.9, --lr 0.05, --weight-decay 2e-5,
#           --sched cosine, --warmup-epochs 3, --smoothing 0.1, --model-ema-decay 0.9998 (EMA on with --model-ema),
#           --kd-loss-weight 1, --ori-loss-weight 1, and kd_loss: the soft cross-entropy at temperature 1 (the
#           --temperature option is not used by it); default teacher beitv2_large_patch16_224.
#  [paper]  the GhostNetV3 paper (arXiv 2404.11202), abstract: Mixup and CutMix make compact models worse.
#  [table]  600 epochs: GhostNetV3's row (224 px, 600 epochs, 79.1% top-1 for 1.3x) in the ImageNet comparison
#           table of the iFormer paper (Zheng, ICLR 2025), which quotes the GhostNetV3 paper's training length.
# The batch size is not part of the preset (the script's --batch-size default, 128 per GPU, is per device; ghostkit's
# --batch is per device too and stays the task's unless given). The paper's teacher is a large ImageNet model (the
# script's default: BEiT v2 large, timm name beitv2_large_patch16_224); on ImageNet-like data pass it as
# --teacher timm:beitv2_large_patch16_224.in1k_ft_in22k_in1k, elsewhere a larger model trained on the same data.
RECIPES: dict[str, dict[str, object]] = {
    "ghostnetv3": {
        "optimizer": "sgd",  # [script]
        "momentum": 0.9,  # [script]
        "lr": 0.05,  # [script]
        "weight_decay": 2e-5,  # [script]
        "schedule": "cosine",  # [script]
        "warmup_epochs": 3.0,  # [script]
        "epochs": 600,  # [table]
        "label_smoothing": 0.1,  # [script]
        "ema": True,  # [script] --model-ema
        "ema_decay": 0.9998,  # [script]
        "mixup": 0.0,  # [paper]
        "cutmix": 0.0,  # [paper]
        "kd_loss": "soft_ce",  # [script]
        "kd_temp": 1.0,  # [script]
        "kd_weight": 1.0,  # [script] (task loss weight 1 too)
    },
}


def check_distill_options(cfg) -> None:
    """One-line :class:`GhostkitError` for bad distillation options of a :class:`~ghostkit.engine.TrainConfig`."""
    if not (math.isfinite(cfg.kd_temp) and cfg.kd_temp > 0):
        raise GhostkitError(f"--kd-temp must be a positive number, got {cfg.kd_temp}")
    if not (math.isfinite(cfg.kd_weight) and cfg.kd_weight >= 0):
        raise GhostkitError(f"--kd-weight must be a non-negative number, got {cfg.kd_weight}")
    if cfg.kd_loss not in KD_LOSSES:
        raise GhostkitError(f"--kd-loss must be one of {', '.join(KD_LOSSES)}, got {cfg.kd_loss!r}")
    if cfg.recipe is not None and cfg.recipe not in RECIPES:
        raise GhostkitError(f"--recipe must be one of {', '.join(RECIPES)}, got {cfg.recipe!r}")
    if cfg.teacher_weights and not cfg.teacher:
        raise GhostkitError("--teacher-weights needs --teacher (the model the weights belong to)")
    if cfg.teacher and cfg.task not in KD_TASKS:
        raise GhostkitError(f"--teacher: distillation is available for {' and '.join(KD_TASKS)}, not {cfg.task}")
    if cfg.recipe == "ghostnetv3" and not cfg.teacher:
        raise GhostkitError("--recipe ghostnetv3 distils from a teacher: pass --teacher (a larger ghostkit "
                            "checkpoint trained on the same data, or e.g. timm:beitv2_large_patch16_224 for ImageNet)")


def apply_recipe(cfg, given: set[str] | None):
    """``cfg`` with its ``--recipe``'s values filled into every option not in ``given`` (the options the user set)."""
    if cfg.recipe is None:
        return cfg
    if cfg.recipe not in RECIPES:
        raise GhostkitError(f"--recipe must be one of {', '.join(RECIPES)}, got {cfg.recipe!r}")
    given = set(given or ())
    return dataclasses.replace(cfg, **{k: v for k, v in RECIPES[cfg.recipe].items() if k not in given})


# -- the loss ----------------------------------------------------------------------------------------------------
def kd_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0, kind: str = "kl",
            multilabel: bool = False) -> torch.Tensor:
    """Soft-target loss between ``student`` and ``teacher`` logits (``B x C``), scaled by ``temperature**2``
    (module docstring). Computed in float32 whatever the autocast precision."""
    s, t = student.float() / temperature, teacher.float() / temperature
    if multilabel:
        q = torch.sigmoid(t)
        bce = F.binary_cross_entropy_with_logits(s, q, reduction="none")
        if kind == "kl":  # binary KL = cross-entropy minus the teacher's own binary entropy
            bce = bce - F.binary_cross_entropy_with_logits(t, q, reduction="none")
        loss = bce.mean()
    elif kind == "kl":
        loss = F.kl_div(F.log_softmax(s, 1), F.log_softmax(t, 1), log_target=True, reduction="batchmean")
    else:
        loss = -(F.softmax(t, 1) * F.log_softmax(s, 1)).sum(1).mean()
    return loss * temperature**2


def teacher_input(images: torch.Tensor, student_norm: tuple, teacher_norm: tuple,
                  size: tuple[int, int] | None) -> torch.Tensor:
    """The student's batch (``B x 3 x H x W``, normalised with ``student_norm = (mean, std)``) as the teacher
    expects it: normalised with ``teacher_norm`` and resized to ``size`` (``None``: as it is). Returns ``images``
    itself when nothing differs."""
    same_norm = all(math.isclose(a, b, abs_tol=1e-6) for a, b in zip([*student_norm[0], *student_norm[1]],
                                                                      [*teacher_norm[0], *teacher_norm[1]]))
    same_size = size is None or tuple(size) == tuple(images.shape[-2:])
    if same_norm and same_size:
        return images

    def col(v) -> torch.Tensor:
        return torch.as_tensor(v, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)

    x = images * col(student_norm[1]) + col(student_norm[0]) if not same_norm else images
    if not same_size:
        x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False,
                          antialias=size[0] < images.shape[-2])
    return (x - col(teacher_norm[0])) / col(teacher_norm[1]) if not same_norm else x


# -- the teacher -------------------------------------------------------------------------------------------------
class Teacher(nn.Module):
    """A frozen model in eval mode → logits ``B x C`` for ``task``; ``norm`` = (mean, std) and ``size`` (H, W) of
    the inputs it expects (``None``: any size), ``class_names`` when its checkpoint records them."""

    def __init__(self, model: nn.Module, task: str | None, num_classes: int, norm: tuple, size: tuple | None,
                 class_names: list[str] | None, where: str) -> None:
        super().__init__()
        self.model, self.task, self.num_classes = model, task, num_classes
        self.norm, self.size, self.class_names, self.where = norm, size, class_names, where
        self.eval().requires_grad_(False)  # the wrapper too: nothing about a teacher reports training

    def train(self, mode: bool = True) -> Teacher:  # always evaluating: BN statistics and dropout stay fixed
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.model(images)
        return out[self.task] if self.task is not None else out


def _ghostkit_teacher(path: str | Path, task: str, where: str, expect_backbone: str | None = None) -> Teacher:
    from ..tasks.model import load_task_model

    model = load_task_model(path)
    config = model.config
    if task not in config["heads"]:
        raise GhostkitError(f"{where}: a teacher of another task ({', '.join(config['heads'])}), not {task}")
    if expect_backbone and config["backbone"]["name"] != expect_backbone:
        raise GhostkitError(f"{where}: holds a {config['backbone']['name']} model, not {expect_backbone}")
    head = config["heads"][task]
    imgsz = config.get("imgsz")
    return Teacher(model, task, head["num_classes"], (config["mean"], config["std"]),
                   tuple(imgsz) if imgsz else None, config.get("class_names", {}).get(task), where)


def _registered_teacher(name: str, weights: str | None, where: str) -> Teacher:
    from ..models import create_model
    from ..models.hub import TIMM_PRETRAINED_CFG, hub_revision
    from ..models.weights import read_checkpoint

    if weights is None:
        raise GhostkitError(f"--teacher {name}: a registered model needs its weights: --teacher-weights FILE or "
                            "--teacher-weights imagenet")
    if hub_revision(weights) is not None:
        model = create_model(name, weights=weights)
        cfg = model.pretrained_cfg
    else:
        state, config, _ = read_checkpoint(weights)
        if config and "heads" in config:
            return None  # a ghostkit task checkpoint: the caller loads it as one
        if "classifier.weight" not in state:
            raise GhostkitError(f"{weights}: no classifier weights (classifier.weight); a teacher needs its head")
        model = create_model(name, weights=weights, num_classes=int(state["classifier.weight"].shape[0]))
        cfg = TIMM_PRETRAINED_CFG  # official and timm files were trained on ImageNet's normalisation at 224 px
    return Teacher(model, None, model.num_classes, (cfg["mean"], cfg["std"]), tuple(cfg["input_size"][1:]), None,
                   where)


def _timm_teacher(name: str, weights: str | None, where: str) -> Teacher:
    try:
        import timm
    except ImportError:
        raise GhostkitError(f"--teacher {where}: timm is not installed (pip install timm)") from None
    if not timm.is_model(name.split(".")[0]):
        raise GhostkitError(f"--teacher {where}: timm has no model {name!r}")
    try:
        if weights is not None:  # a state dict (any wrapper read_checkpoint knows); its classifier sets the classes
            from ..models.weights import read_checkpoint

            state, _, _ = read_checkpoint(weights)
            classifier = timm.create_model(name, pretrained=False).pretrained_cfg.get("classifier", "head")
            num_classes = state[f"{classifier}.weight"].shape[0] if f"{classifier}.weight" in state else None
            model = timm.create_model(name, pretrained=False,
                                      **({"num_classes": int(num_classes)} if num_classes else {}))
            model.load_state_dict(state)
        else:
            model = timm.create_model(name, pretrained=True)
    except GhostkitError:
        raise
    except Exception as e:  # download failures, missing cache entries, state dicts that do not fit
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise GhostkitError(f"--teacher {where}: cannot build it with its weights ({first[:300]})") from None
    cfg = timm.data.resolve_data_config({}, model=model)
    return Teacher(model, None, model.num_classes, (list(cfg["mean"]), list(cfg["std"])), tuple(cfg["input_size"][1:]),
                   None, where)


def load_teacher(teacher: str, task: str, weights: str | None = None) -> Teacher:
    """The frozen :class:`Teacher` named by ``--teacher`` (and ``--teacher-weights``), see the module docstring."""
    from ..models import list_models

    if teacher.startswith("timm:"):
        return _timm_teacher(teacher[len("timm:"):], weights, teacher)
    if teacher in list_models():
        found = _registered_teacher(teacher, weights, teacher)
        return found or _ghostkit_teacher(weights, task, weights, expect_backbone=teacher)
    if Path(teacher).is_file():
        if weights is not None:
            raise GhostkitError(f"--teacher-weights: {teacher} is a checkpoint holding its own weights")
        return _ghostkit_teacher(teacher, task, teacher)
    raise GhostkitError(f"--teacher {teacher!r}: neither a checkpoint file, a registered model name (ghostkit info "
                        "--list) nor timm:NAME")


def _check_classes(teacher: Teacher, class_names: list[str], data: str) -> None:
    if teacher.num_classes != len(class_names):
        raise GhostkitError(f"{teacher.where}: the teacher predicts {teacher.num_classes} classes, the data "
                            f"({data}) have {len(class_names)}")
    if teacher.class_names is not None and list(teacher.class_names) != list(class_names):
        diff = next(f"{a!r} vs {b!r}" for a, b in zip(teacher.class_names, class_names) if a != b)
        raise GhostkitError(f"{teacher.where}: the teacher's class names differ from the data's ({data}): {diff}")


class Distiller:
    """Adds ``kd_weight * kd_loss(student, teacher)`` to a training step's losses (``add_loss``).

    A plain object, not an ``nn.Module``: the LightningModule holds it without registering the teacher, so the
    teacher's weights are not saved, optimised or averaged; copies of the LightningModule (EMA) share it.
    """

    def __init__(self, teacher: Teacher, task: str, student_norm: tuple, weight: float, temperature: float,
                 kind: str) -> None:
        self.teacher, self.task, self.student_norm = teacher, task, student_norm
        self.weight, self.temperature, self.kind = weight, temperature, kind

    def __deepcopy__(self, memo: dict) -> Distiller:
        return self

    def add_loss(self, losses: dict, images: torch.Tensor, outputs: dict) -> None:
        """``losses["kd"]`` (weighted) added to ``losses["loss"]``; ``outputs[task]`` are the student's logits."""
        teacher = self.teacher.to(images.device)
        logits = teacher(teacher_input(images, self.student_norm, teacher.norm, teacher.size))
        kd = self.weight * kd_loss(outputs[self.task], logits, self.temperature, self.kind,
                                   multilabel=self.task == "multilabel")
        losses["kd"] = kd
        losses["loss"] = losses["loss"] + kd


def build_distiller(cfg, config: dict) -> Distiller | None:
    """The :class:`Distiller` of a run (``None`` without ``--teacher``); ``config`` is the student's model config
    (class names, mean, std). The teacher is checked against the data's classes here, before training starts."""
    if not cfg.teacher:
        return None
    teacher = load_teacher(cfg.teacher, cfg.task, cfg.teacher_weights)
    _check_classes(teacher, config["class_names"][cfg.task], cfg.data)
    return Distiller(teacher, cfg.task, (config["mean"], config["std"]), cfg.kd_weight, cfg.kd_temp, cfg.kd_loss)
