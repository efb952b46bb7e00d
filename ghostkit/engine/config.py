"""Training options: one dataclass shared by the CLI (``ghostkit train --help``) and ``ghostkit.train(...)``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from ..errors import GhostkitError
from ..models import list_models

__all__ = ["TrainConfig", "TASK_NAMES"]

TASK_NAMES = ("classify", "multilabel", "detect", "segment", "restore")


@dataclass
class TrainConfig:
    """Every option of a training run, with its default. ``None`` means "chosen from the data" (see ``resolve``)."""

    task: str = "classify"
    data: str = "digits"
    model: str = "ghostnet_100"
    epochs: int = 30
    batch: int | None = None  # default: the task's (64 classify / multilabel / restore, 16 detect / segment / multi)
    imgsz: int | None = None  # default: classify from the data's image size (ghostkit.data.recipe); else the task's
    lr: float | None = None  # default: the task's (2e-3; 4e-3 detect, segment, multi) x sqrt(batch / its batch) if >
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
    flip: bool = False  # random horizontal flips (classify)
    crop_scale: float | None = None  # smallest random crop as a fraction of the image area (None: the recipe's)
    cache_mb: int = 1024  # classify: keep decoded images in memory up to this many MiB (0: read files every epoch)
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
    head: str | None = None  # detect: ssdlite | fcos | retinanet; segment: lraspp | deeplabv3 (None: task default)
    aux_loss: bool = False  # segment: auxiliary loss on a stride-16 head
    conf: float = 0.25  # detect: score threshold for predictions
    iou: float = 0.5  # detect: NMS IoU threshold
    max_det: int = 100  # detect: detections kept per image
    scale: int = 2  # restore: super-resolution factor 1..4 (1: denoise only)
    noise: str = "0"  # restore: Gaussian noise sigma (0-255 scale), or a range like 0-50
    jpeg: int = 0  # restore: JPEG quality of the synthesised degradation (0: none)
    width: int = 32  # restore: network width (channels)
    depth: int = 6  # restore: number of ghost blocks
    pretrained: str | None = None  # official / timm / ghostkit weights for the backbone (and classifier conv)
    freeze_backbone: bool = False
    threshold: float = 0.5  # multi-label decision threshold
    task_weights: str | None = None  # multi-task: "auto" (None: the default), "equal" or "detect=1,segment=0.5"
    monitor: str | None = None  # metric picking the best checkpoint (None: the task's; multi-task: "score")
    val_fraction: float = 0.2  # split off train when the data has no val set
    resume: str | None = None  # a run's last.ckpt
    out: str = "runs/train"
    exist_ok: bool = False

    def validate(self) -> TrainConfig:
        """Raise :class:`GhostkitError` (one line, naming the option) for nonsense values."""
        checks = [
            (self.task in TASK_NAMES or "," in self.task,
             f"--task must be one of {', '.join(TASK_NAMES)} or a comma-separated list of them, got {self.task!r}"),
            (self.epochs > 0, f"--epochs must be positive, got {self.epochs}"),
            (self.batch is None or self.batch > 0, f"--batch must be positive, got {self.batch}"),
            (self.imgsz is None or self.imgsz >= 32, f"--imgsz must be at least 32, got {self.imgsz}"),
            (self.lr is None or self.lr > 0, f"--lr must be positive, got {self.lr}"),
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
            (0 < self.ema_decay < 1, f"--ema-decay must be in (0, 1), got {self.ema_decay}"),
            (self.patience >= 0, f"--patience must not be negative, got {self.patience}"),
            (self.precision in ("32", "bf16-mixed", "16-mixed"), f"--precision must be 32, bf16-mixed or 16-mixed, "
                                                                f"got {self.precision!r}"),
            (self.workers is None or self.workers >= 0, f"--workers must not be negative, got {self.workers}"),
            (self.output_stride in (8, 16, 32), f"--output-stride must be 8, 16 or 32, got {self.output_stride}"),
            (0 < self.threshold < 1, f"--threshold must be in (0, 1), got {self.threshold}"),
            (0 < self.val_fraction < 1, f"--val-fraction must be in (0, 1), got {self.val_fraction}"),
            (self.model in list_models(), None),
        ]
        for ok, message in checks:
            if not ok:
                if message is None:  # the registry words unknown names best (with suggestions)
                    from ..models.registry import model_entrypoint

                    model_entrypoint(self.model)
                raise GhostkitError(message)
        return self

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
    "data": "data folder, or built-in data: digits, shapes",
    "model": "backbone name (ghostkit info --list)",
    "epochs": "training epochs",
    "batch": "batch size per device (default: 64 for classify, multilabel and restore; 16 for detect, segment and "
             "multi-task runs, whose short CPU runs need more optimizer steps per epoch)",
    "imgsz": "input size in pixels (default: classify: the median shorter side of the training images rounded up to "
             "a multiple of 32, in 32..224; other tasks: the task's)",
    "lr": "peak learning rate (default: 2e-3 at batch 64; 4e-3 at batch 16 for detect, segment and multi-task runs; "
          "scaled by sqrt(batch / that batch) for larger batches)",
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
    "flip": "random horizontal flips; off by default, since a mirrored 6, b or arrow is another class",
    "crop_scale": "smallest random crop, as a fraction of the image area (default: the recipe's)",
    "cache_mb": "classify: decode the images once and keep them in memory when they fit in this many MiB (0: off)",
    "random_erasing": "random erasing probability",
    "ema": "keep an exponential moving average of the weights (validated and saved)",
    "ema_decay": "EMA decay",
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
    "head": "detect: ssdlite, fcos or retinanet; segment: lraspp or deeplabv3 (default: the task's)",
    "aux_loss": "segment: auxiliary loss on stride-16 features",
    "conf": "detect: score threshold of predictions",
    "iou": "detect: NMS IoU threshold",
    "max_det": "detect: detections kept per image",
    "scale": "restore: super-resolution factor 1..4 (1: denoising only)",
    "noise": "restore: Gaussian noise sigma on the 0-255 scale, or a range like 0-50",
    "jpeg": "restore: also compress the degraded input as JPEG at this quality 1..100 (0: no JPEG)",
    "width": "restore: network width",
    "depth": "restore: number of ghost blocks",
    "pretrained": "backbone weights (official, timm or ghostkit file) for transfer learning",
    "freeze_backbone": "train the head only",
    "threshold": "multi-label decision threshold",
    "task_weights": "multi-task loss weights: auto (learned uncertainty weighting, the default), equal, or "
                    "TASK=W,... (others 1)",
    "monitor": "metric choosing the best checkpoint and early stopping, e.g. map50 or detect/map50 (default: the "
               "task's primary metric; multi-task: score, the mean of the tasks' primary metrics)",
    "val_fraction": "fraction split off train when the data has no validation set",
    "resume": "continue a run from its last.ckpt",
    "out": "run directory",
    "exist_ok": "overwrite an existing run directory",
}
