"""Lightning callbacks that keep a run's history and stop it cleanly: ``RunHistory`` (metrics.csv, carried in the
checkpoints so that any number of resumes keep every epoch) and ``RunGuard`` (a non-finite loss stops the run;
Ctrl-C is recorded so that the run can say where it stopped) and ``WarmedEMA`` (weight averaging whose decay warms up).

Why not Lightning's CSVLogger: it deletes an existing metrics.csv when it starts (a resumed run lost its history)
and rewrites the file in place; here the history lives in the checkpoint and the file is written atomically.
"""

from __future__ import annotations

import csv
import io
import math
import shlex
from dataclasses import fields
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback, WeightAveraging

from ..errors import GhostkitError
from ..io import atomic_write_text

__all__ = ["RunHistory", "RunGuard", "RunInterrupted", "WarmedEMA", "ema_decay_at", "resume_command", "is_rank_zero"]


def ema_decay_at(decay: float, updates: int) -> float:
    """The EMA decay after ``updates`` updates: ``min(decay, (1 + n) / (10 + n))`` (the warm-up of TensorFlow's and
    timm's model EMA), so the average follows the fast-changing early weights instead of holding the initial ones:
    with a fixed 0.999 the random initial weights still make up 0.999^1500 = 22% of the average after 1500 steps."""
    return min(decay, (1 + updates) / (10 + updates))


class WarmedEMA(WeightAveraging):
    """Lightning's weight averaging (an ``AveragedModel`` validated and saved in place of the trained weights, kept in
    the checkpoints for an exact resume) updated after every optimiser step with the warmed-up decay of
    :func:`ema_decay_at`. Lightning's ``EMAWeightAveraging`` applies its decay from the first step."""

    def __init__(self, decay: float) -> None:
        def update(averaged: torch.Tensor, current: torch.Tensor, num_averaged: torch.Tensor) -> torch.Tensor:
            if not averaged.is_floating_point():  # counters such as BatchNorm's num_batches_tracked
                return current
            return averaged.lerp(current, 1 - ema_decay_at(decay, int(num_averaged)))

        super().__init__(avg_fn=update)


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped training; the message says where and how to resume (the CLI prints it and exits 130)."""


class RunHistory(Callback):
    """One row per finished epoch (``epoch``, ``step``, ``lr``, every logged ``train/*`` and ``val/*`` scalar),
    written to ``run_dir/metrics.csv`` after each epoch and saved in every checkpoint, so a resumed run rebuilds its
    whole history from ``last.ckpt``. Also keeps the full validation metrics of the best and the latest epoch, for
    the outputs of a run that stops early. ``monitor``: the logged key choosing the best epoch; ``mode``: ``"max"``
    (higher is better) or ``"min"`` (lower is better, e.g. FID), as for the best checkpoint.
    """

    def __init__(self, run_dir: Path, monitor: str, mode: str = "max") -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.run_dir, self.monitor = Path(run_dir), monitor
        self.sign = 1.0 if mode == "max" else -1.0  # best = largest sign * value
        self.rows: list[dict[str, float]] = []
        self.best: tuple[dict, float | None] | None = None  # (module.last_metrics, last_score) of the best epoch
        self.best_value = -math.inf  # sign * value of the best epoch
        self.latest: tuple[dict, float | None] | None = None

    def state_dict(self) -> dict:
        return {"rows": self.rows}

    def load_state_dict(self, state: dict) -> None:
        self.rows = [dict(r) for r in state.get("rows", [])]

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # runs before ModelCheckpoint's hook (Lightning calls checkpoint callbacks last), so the checkpoint of this
        # epoch already carries its row
        logged = {k: float(v) for k, v in trainer.callback_metrics.items()
                  if k.startswith(("train/", "val/")) and getattr(v, "numel", lambda: 1)() == 1}
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else float("nan")
        row = {"epoch": trainer.current_epoch, "step": trainer.global_step, "lr": lr, **logged}
        self.rows = [r for r in self.rows if r["epoch"] < trainer.current_epoch] + [row]
        values = (dict(pl_module.last_metrics), pl_module.last_score)
        self.latest = values
        value = logged.get(self.monitor)
        if value is not None and self.sign * value > self.best_value:
            self.best, self.best_value = values, self.sign * value
        if trainer.is_global_zero:
            self.write_csv()

    def write_csv(self) -> Path:
        keys = ["epoch", "step", "lr"]
        keys += sorted({k for r in self.rows for k in r} - set(keys))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=keys, restval="")
        writer.writeheader()
        writer.writerows(self.rows)
        return atomic_write_text(self.run_dir / "metrics.csv", buffer.getvalue())

    def outputs(self) -> tuple[dict, float | None] | None:
        """The validation metrics (and multi-task score) to report for the epochs done: the best epoch's."""
        return self.best or self.latest


class RunGuard(Callback):
    """Stops a run whose loss is NaN or infinite before the bad step reaches the weights (naming epoch and step,
    pointing at the last good checkpoint), and records where Ctrl-C stopped the run (``interrupted``)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.interrupted: tuple[int, int] | None = None  # (epoch, global step), 0-based epoch

    def on_before_backward(self, trainer, pl_module, loss: torch.Tensor) -> None:
        if not bool(torch.isfinite(loss.detach()).all()):
            epoch, step = trainer.current_epoch + 1, trainer.global_step
            raise GhostkitError(f"training stopped: the loss became {float(loss.detach().float().sum())} at epoch "
                                f"{epoch}, step {step}; {self.last_good()} (try a lower --lr or --grad-clip 1)")

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if isinstance(exception, KeyboardInterrupt):
            self.interrupted = (trainer.current_epoch, trainer.global_step)

    def last_good(self) -> str:
        last = self.run_dir / "last.ckpt"
        if not last.is_file():
            return "no epoch finished, so there is no checkpoint to keep"
        epoch = torch.load(last, map_location="cpu", weights_only=True, mmap=True).get("epoch", -1) + 1
        return f"the last good checkpoint, {last}, holds epoch {epoch}"


def is_rank_zero() -> bool:
    """True in the process that prints (global rank 0 of a multi-process run, set by Lightning's strategy)."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def resume_command(cfg) -> str:
    """The ``ghostkit train`` command line continuing the run of ``cfg`` from its ``last.ckpt``."""
    defaults = type(cfg)()
    args = ["ghostkit", "train"]
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if f.name in ("resume", "exist_ok") or value == getattr(defaults, f.name):
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else flag.replace("--", "--no-", 1))
        else:
            args += [flag, str(value)]
    return shlex.join([*args, "--resume", str(Path(cfg.out) / "last.ckpt")])
