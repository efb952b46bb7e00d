"""Training options: one dataclass shared by the CLI (``ghostkit train --help``) and ``ghostkit.train(...)``.

Import-light: reading the fields and their help needs no torch (``ghostkit train --help`` answers at once); the
task names and defaults come from the task registry.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from ..errors import GhostkitError
from ..tasks.registry import MULTITASK, TASKS, task_names

__all__ = ["TrainConfig", "TASK_NAMES"]

TASK_NAMES = task_names()
MAX_IMGSZ = 4096  # --imgsz bound: beyond it a batch of activations exceeds common memory sizes


@dataclass
class TrainConfig:
    """Every option of a training run, with its default. ``None`` means "chosen from the data" (see ``resolve``)."""

    task: str = "classify"
    data: str = "digits"
    model: str = "ghostnet_100"
    epochs: int = 30
    batch: int | None = None  # default: the task registry's
    imgsz: int | None = None  # default: from the training images, at most the task registry's (default_imgsz)
    lr: float | None = None  # default: the task registry's x sqrt(batch / its batch) for larger batches
    optimizer: str = "adamw"  # adamw | sgd | rmsprop
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 0.05  # L2 (decoupled for AdamW); not applied to biases and norm weights
    l1: float = 0.0  # L1 penalty on conv/linear weights added to the loss
    dropout: float | None = None  # before the classifier (None: the recipe's)
    label_smoothing: float | None = None  # (None: the recipe's)
    mixup: float = 0.0  # Mixup alpha (0: off)
    cutmix: float = 0.0  # CutMix alpha (0: off)
    auto_augment: str | None = None  # trivial | randaugment | none (None: the recipe's)
    flip: bool | None = None  # random horizontal flips (None: the task's rule; detect: on, classify / segment: off)
    crop_scale: float | None = None  # smallest random crop as a fraction of the image area (None: the recipe's)
    cache_mb: int = 1024  # classify, detect: keep decoded images in memory up to this many MiB (0: read files)
    random_erasing: float = 0.0
    ema: bool = False
    ema_decay: float = 0.999
    warmup_epochs: float = 1.0
    schedule: str = "cosine"  # cosine | step
    step_epochs: int = 10  # step schedule: decay every N epochs
    step_gamma: float = 0.1
    patience: int = 0  # early stopping patience in epochs (0: off)
    precision: str = "32"  # 32 | bf16-mixed | 16-mixed
    grad_clip: float = 0.0
    seed: int = 0
    workers: int | None = None  # None: from the cores and whether the data is in memory
    accelerator: str = "auto"
    devices: str = "1"  # a count, "auto", or a list like "0,1"
    num_nodes: int = 1
    strategy: str = "auto"  # auto | ddp | ddp_spawn | ...
    output_stride: int = 32
    head: str | None = None  # detect: ssdlite | fcos | retinanet; segment: lraspp | deeplabv3; style: johnson | adain
    aux_loss: bool = False  # segment: auxiliary loss on a stride-16 head
    conf: float = 0.25  # detect: score threshold for predictions
    iou: float = 0.5  # detect: NMS IoU threshold
    max_det: int = 100  # detect: detections kept per image
    scale: int = 2  # restore: super-resolution factor 1..4 (1: denoise only)
    noise: str = "0"  # restore: Gaussian noise sigma (0-255 scale), or a range like 0-50
    jpeg: int = 0  # restore: JPEG quality of the synthesised degradation (0: none)
    adversarial: bool = False  # restore: train with a discriminator (ghostkit.engine.sr_gan)
    sr_join: str | None = None  # multi-task restore at --scale > 1: lr | restored | fused (None: default_join's)
    width: int | None = None  # restore, style: network width; generate: generator channels (None: the task's)
    depth: int | None = None  # restore, style: number of ghost blocks (None: the task's)
    style: str | None = None  # style: the style image (None: the built-in mosaic); adain: a folder (None: built-in)
    content_weight: float = 1.0  # style: weight of the content loss
    style_weight: float = 5.0  # style: weight of the style loss
    tv_weight: float = 0.0  # style: weight of the total-variation loss
    fid_features: str | None = None  # generate: classify checkpoint whose features FID / KID use
    fid_weights: str | None = None  # generate: torchvision Inception-v3 state dict for FID / KID
    pretrained: str | None = None  # "imagenet[@REV]" (Hugging Face Hub) or an official / timm / ghostkit file
    freeze_backbone: bool = False
    threshold: float | None = None  # multi-label decision threshold (None: chosen on the training images)
    task_weights: str | None = None  # multi-task: "auto" (None: the default), "equal" or "detect=1,segment=0.5"
    teacher: str | None = None  # knowledge distillation (classify, multilabel): see ghostkit.engine.distill
    teacher_weights: str | None = None  # weights of a registered-name or timm teacher
    kd_weight: float = 1.0
    kd_temp: float = 4.0
    kd_loss: str = "kl"  # kl | soft_ce
    recipe: str | None = None  # ghostnetv3: fills the options not given (ghostkit.engine.distill.RECIPES)
    monitor: str | None = None  # metric picking the best checkpoint (None: the task's; multi-task: "score")
    val_fraction: float = 0.2  # split off train when the data has no val set
    resume: str | None = None  # a run's last.ckpt
    out: str = "runs/train"
    exist_ok: bool = False

    def validate(self) -> TrainConfig:
        """Raise :class:`GhostkitError` (one line, naming the option) for nonsense values: every numeric option is
        checked here, the one place (NaN and infinities first, then each option's range)."""
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise GhostkitError(f"--{f.name.replace('_', '-')} must be a finite number, got {value}")
        checks = [
            (self.task in TASK_NAMES or "," in self.task,
             f"--task must be one of {', '.join(TASK_NAMES)} or a comma-separated list of them, got {self.task!r}"),
            (self.epochs > 0, f"--epochs must be positive, got {self.epochs}"),
            (self.batch is None or self.batch > 0, f"--batch must be positive, got {self.batch}"),
            (self.imgsz is None or self.imgsz >= 32, f"--imgsz must be at least 32, got {self.imgsz}"),
            (self.imgsz is None or self.imgsz <= MAX_IMGSZ,
             f"--imgsz {self.imgsz} is too large: at most {MAX_IMGSZ} pixels (a training batch of such images does "
             "not fit in memory; downscale the images)"),
            (self.lr is None or 0 < self.lr <= 10, f"--lr must be in (0, 10], got {self.lr}"),
            (0 <= self.momentum < 1, f"--momentum must be in [0, 1), got {self.momentum}"),
            (self.optimizer in ("adamw", "sgd", "rmsprop"), f"--optimizer must be adamw, sgd or rmsprop, got "
                                                            f"{self.optimizer!r}"),
            (self.schedule in ("cosine", "step"), f"--schedule must be cosine or step, got {self.schedule!r}"),
            (self.weight_decay >= 0 and self.l1 >= 0, "--weight-decay and --l1 must not be negative"),
            (self.dropout is None or 0 <= self.dropout < 1, f"--dropout must be in [0, 1), got {self.dropout}"),
            (self.label_smoothing is None or 0 <= self.label_smoothing < 1,
             f"--label-smoothing must be in [0, 1), got {self.label_smoothing}"),
            (self.crop_scale is None or 0 < self.crop_scale <= 1, f"--crop-scale must be in (0, 1], got "
                                                                  f"{self.crop_scale}"),
            (self.cache_mb >= 0, f"--cache-mb must not be negative, got {self.cache_mb}"),
            (self.mixup >= 0 and self.cutmix >= 0, "--mixup and --cutmix must not be negative"),
            (0 <= self.random_erasing <= 1, f"--random-erasing must be in [0, 1], got {self.random_erasing}"),
            (0 < self.ema_decay < 1, f"--ema-decay must be in (0, 1), got {self.ema_decay}"),
            (self.warmup_epochs >= 0, f"--warmup-epochs must not be negative, got {self.warmup_epochs}"),
            (self.step_epochs > 0, f"--step-epochs must be positive, got {self.step_epochs}"),
            (0 < self.step_gamma <= 1, f"--step-gamma must be in (0, 1], got {self.step_gamma}"),
            (self.patience >= 0, f"--patience must not be negative, got {self.patience}"),
            (self.grad_clip >= 0, f"--grad-clip must not be negative (0: off), got {self.grad_clip}"),
            (0 <= self.seed < 2**32, f"--seed must be in [0, 2**32), got {self.seed}"),
            (self.num_nodes >= 1, f"--num-nodes must be at least 1, got {self.num_nodes}"),
            (0 <= self.conf < 1, f"--conf must be in [0, 1), got {self.conf}"),
            (0 < self.iou <= 1, f"--iou must be in (0, 1], got {self.iou}"),
            (self.max_det > 0, f"--max-det must be positive, got {self.max_det}"),
            (1 <= self.scale <= 4, f"--scale must be 1, 2, 3 or 4, got {self.scale}"),
            (0 <= self.jpeg <= 100, f"--jpeg must be a quality in 1..100 (0: off), got {self.jpeg}"),
            (not self.adversarial or self.task == "restore",
             f"--adversarial trains a restore model with a discriminator: it needs --task restore, got {self.task!r}"),
            (not self.adversarial or not (self.ema or self.grad_clip),
             "--adversarial: --ema and --grad-clip do not apply (two optimisers under manual optimisation)"),
            ((self.width or 1) > 0 and (self.depth or 1) > 0, f"--width and --depth must be positive, got "
                                                              f"{self.width}, {self.depth}"),
            (self.precision in ("32", "bf16-mixed", "16-mixed"), f"--precision must be 32, bf16-mixed or 16-mixed, "
                                                                f"got {self.precision!r}"),
            (self.workers is None or self.workers >= 0, f"--workers must not be negative, got {self.workers}"),
            (self.output_stride in (8, 16, 32), f"--output-stride must be 8, 16 or 32, got {self.output_stride}"),
            (self.threshold is None or 0 < self.threshold < 1,
             f"--threshold must be in (0, 1), got {self.threshold}"),
            (0 < self.val_fraction < 1, f"--val-fraction must be in (0, 1), got {self.val_fraction}"),
            (self._known_model(), None),
        ]
        for ok, message in checks:
            if not ok:
                if message is None:  # the registry words unknown names best (with suggestions)
                    from ..models.registry import model_entrypoint

                    model_entrypoint(self.model)
                raise GhostkitError(message)
        from ..models.hub import check_hub_weights, hub_revision
        from .distill import check_distill_options

        check_distill_options(self)

        if hub_revision(self.pretrained) is not None:
            check_hub_weights(self.model)  # a variant without hub weights fails before the data are read
        return self

    def _known_model(self) -> bool:
        from ..models import list_models

        return self.model in list_models()

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_kwargs(cls, **kwargs) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - names)
        if unknown:
            raise GhostkitError(f"unknown training option(s): {', '.join(unknown)}")
        return cls(**kwargs)


HELP: dict[str, str] = {
    "task": f"task: {', '.join(TASK_NAMES)}, or several joined by commas (multi-task: classify,detect,segment)",
    "data": "data folder, or built-in data: digits, shapes, photos, tracks (MOTChallenge sequences)",
    "model": "backbone name (ghostkit info --list)",
    "epochs": "training epochs",
    "batch": "batch size per device (default: the task's: " + ", ".join(f"{t} {e.batch}" for t, e in TASKS.items())
             + f", multi-task {MULTITASK.batch})",
    "imgsz": "input size in pixels (default: the median shorter side of the training images rounded up to a multiple "
             "of 32, at least 32 and at most the task's: " + ", ".join(f"{t} {e.imgsz}" for t, e in TASKS.items()
                                                                      if e.imgsz)
             + f", multi-task {MULTITASK.imgsz}; restore: a patch of 24 px x --scale; a multi-task run with "
             "restore at --scale s: the high-resolution frame, s x the input)",
    "lr": "peak learning rate (default: the task's at its batch size: " + ", ".join(
          f"{t} {e.lr:g}" for t, e in TASKS.items()) + f", multi-task {MULTITASK.lr:g}; scaled by sqrt(batch / the "
          "task's batch) for larger batches)",
    "optimizer": "adamw, sgd or rmsprop",
    "momentum": "momentum (sgd, rmsprop)",
    "nesterov": "Nesterov momentum (sgd)",
    "weight_decay": "L2 weight decay (decoupled for adamw; not on biases and norm weights)",
    "l1": "L1 penalty on conv/linear weights, added to the loss",
    "dropout": "dropout before the classifier (default: the recipe's, printed at the start of the run)",
    "label_smoothing": "label smoothing of the cross-entropy (default: the recipe's)",
    "mixup": "Mixup alpha (0: off)",
    "cutmix": "CutMix alpha (0: off)",
    "auto_augment": "trivial, randaugment or none (default: the recipe's)",
    "flip": "random horizontal flips (default: on for detection, off for classification and segmentation, where a "
            "mirrored 6, b or arrow is another class)",
    "crop_scale": "smallest random crop, as a fraction of the image area (default: the recipe's)",
    "cache_mb": "classify and detect: decode the images once and keep them in memory when they fit in this many MiB "
                "(0: off)",
    "random_erasing": "random erasing probability",
    "ema": "keep an exponential moving average of the weights (validated and saved)",
    "ema_decay": "EMA decay, reached after a warm-up: min(decay, (1 + n) / (10 + n)) at the n-th update",
    "warmup_epochs": "linear warm-up epochs",
    "schedule": "cosine or step",
    "step_epochs": "step schedule: decay every N epochs",
    "step_gamma": "step schedule: decay factor",
    "patience": "early stopping patience in epochs (0: off)",
    "precision": "32, bf16-mixed or 16-mixed",
    "grad_clip": "gradient norm clipping (0: off)",
    "seed": "random seed",
    "workers": "data loader worker processes (default, from the cores: with the data in memory none below 8 cores, "
               "else a quarter of them; reading files half of them, at least 1; at most 8)",
    "accelerator": "auto, cpu, gpu, ...",
    "devices": "devices per node: a count, auto, or a list like 0,1",
    "num_nodes": "number of nodes (torchrun / SLURM)",
    "strategy": "auto, ddp, ddp_spawn, ...",
    "output_stride": "backbone output stride: 32, 16 or 8 (dilation)",
    "head": "detect: ssdlite, fcos or retinanet; segment: lraspp or deeplabv3; style: johnson (one style per model) or "
            "adain (any style) (default: the task's)",
    "aux_loss": "segment: auxiliary loss on stride-16 features",
    "conf": "detect: score threshold of predictions",
    "iou": "detect: NMS IoU threshold",
    "max_det": "detect: detections kept per image",
    "scale": "restore: super-resolution factor 1..4 (1: denoising only)",
    "noise": "restore: Gaussian noise sigma on the 0-255 scale, or a range like 0-50",
    "jpeg": "restore: also compress the degraded input as JPEG at this quality 1..100 (0: no JPEG)",
    "adversarial": "restore: adversarial super-resolution (SRGAN/ESRGAN-style): a GhostNet discriminator (--model) "
                   "and pixel + perceptual + adversarial losses; --pretrained FILE|imagenet: the perceptual network's "
                   "weights (default: fixed random ones)",
    "sr_join": "multi-task super-resolution (--task restore,segment --scale 2): how the other heads reach the "
               "high-resolution frame: lr (LR features, outputs in the HR frame), fused (lr + masks refined to HR "
               "from the restore branch's features; the default without detect), restored (the backbone runs on "
               "the restored image; the default with detect)",
    "width": "restore, style: network width (default: restore 32, 16 in a multi-task super-resolution run with "
             "--sr-join lr or fused, style 16); generate: generator channels at full resolution (x2 per halving, at "
             "most x8; default 32)",
    "depth": "restore, style: number of ghost blocks (default: restore 6, 4 in a multi-task super-resolution run "
             "with --sr-join lr or fused, style 3)",
    "style": "style (and classify,style): the style image file, or the built-in mosaic (the default); --head adain: "
             "a folder of style images, or the built-in set styles (the default)",
    "content_weight": "style: weight of the content loss",
    "style_weight": "style: weight of the style loss (Gram matrices over four stages)",
    "tv_weight": "style: weight of the total-variation loss",
    "fid_features": "generate: a classify checkpoint whose pooled features FID and KID use (default: a classifier "
                    "trained on the run's images, saved as features.ckpt)",
    "fid_weights": "generate: torchvision Inception-v3 weights file (inception_v3_google-*.pth) for FID and KID on "
                   "Inception features",
    "pretrained": "backbone weights for transfer learning: imagenet (timm's ImageNet weights from the Hugging Face "
                  "Hub, cached; imagenet@REV pins a revision, default main) or an official, timm or ghostkit file",
    "freeze_backbone": "train the head only",
    "threshold": "multi-label decision threshold (default: the one of the best macro F1 on the training images, "
                 "chosen after training and stored in the checkpoint)",
    "task_weights": "multi-task loss weights: auto (learned uncertainty weighting, the default), equal, or "
                    "TASK=W,... (others 1)",
    "teacher": "knowledge distillation (classify, multilabel): a ghostkit checkpoint, a registered model name with "
               "--teacher-weights, or timm:NAME",
    "teacher_weights": "weights of a registered-name teacher (a file, or imagenet) or of a timm: teacher (a file; "
                       "default: timm's pretrained weights)",
    "kd_weight": "weight of the distillation loss added to the task loss",
    "kd_temp": "distillation temperature (softens both distributions; the loss is scaled by its square)",
    "kd_loss": "kl (Hinton et al.) or soft_ce (the GhostNetV3 script's soft cross-entropy); multi-label: per-class "
               "sigmoid soft targets",
    "recipe": "ghostnetv3: the GhostNetV3 training recipe (SGD, cosine, label smoothing, EMA, distillation) for every "
              "option not given; needs --teacher",
    "monitor": "metric choosing the best checkpoint and early stopping, e.g. map50 or detect/map50 (default: the "
               "task's primary metric; multi-task: score, the mean of the tasks' primary metrics)",
    "val_fraction": "fraction split off train when the data has no validation set",
    "resume": "continue a run from its last.ckpt",
    "out": "run directory",
    "exist_ok": "overwrite an existing run directory",
}
