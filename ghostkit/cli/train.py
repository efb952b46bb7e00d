"""``ghostkit train`` and ``ghostkit val``. The options of ``train`` are ``TrainConfig``'s fields (read without
torch); the engine loads when a command runs."""

from __future__ import annotations

import dataclasses
import inspect
import typing

import typer

from ..errors import GhostkitError
from .common import console, print_metrics

__all__ = ["train", "val"]


def _train_signature() -> inspect.Signature:
    """One ``--option`` per TrainConfig field with its default and help, so the CLI and the API never drift."""
    from ..engine.config import HELP, TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    params = []
    for f in dataclasses.fields(TrainConfig):
        hint = hints[f.name]
        base = next((t for t in typing.get_args(hint) if t is not type(None)), hint)
        option = typer.Option(f.default, help=HELP.get(f.name), show_default=True)
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option,
                                        annotation=typing.Optional[base] if f.default is None else base))  # noqa: UP045
    # the context tells which options the user gave: --recipe fills only the others
    ctx = inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)
    return inspect.Signature([ctx, *params])


def train(ctx: typer.Context, **options) -> None:
    """Train a task model (default: classification on built-in digits) into a run directory."""
    from ..engine.callbacks import is_rank_zero
    from ..engine.config import TrainConfig
    from ..engine.distill import apply_recipe
    from ..engine.run import train as run_training

    given = {k for k in options if getattr(ctx.get_parameter_source(k), "name", "DEFAULT") != "DEFAULT"}
    cfg = apply_recipe(TrainConfig(**options), given)  # --recipe fills the options not given
    metrics = run_training(cfg)
    if not is_rank_zero():
        return  # multi-process runs: the tables once, from rank 0
    if metrics:
        print_metrics(f"validation ({cfg.out}/best.ckpt)", metrics)
    console.print(f"run saved to {cfg.out}")


train.__signature__ = _train_signature()


def val(
    weights: str = typer.Option(..., help="checkpoint (best.ckpt / last.ckpt)"),
    data: str = typer.Option(..., help="data folder or built-in data (digits, shapes)"),
    out: str = typer.Option(None, help="output folder for metrics.json (default: val/ beside the weights)"),
    batch: int = typer.Option(64, help="batch size"),
    workers: int = typer.Option(2, help="data loader workers"),
    threshold: float = typer.Option(None, help="multi-label decision threshold (default: the checkpoint's)"),
    tta: bool = typer.Option(False, "--tta", help="detection: test-time augmentation (flips x scales 1, 0.83, 1.2)"),
    task: str = typer.Option(None, help="track: track the val sequences of a MOTChallenge folder (or tracks) with "
                                        "this detector: MOTA, IDF1, HOTA, ID switches, fps (default: the model's "
                                        "own tasks)"),
    tracker: str = typer.Option("bytetrack", help="--task track: bytetrack, sort or appearance"),
    conf: float = typer.Option(None, help="--task track: high-score threshold of the tracker (default: its own)"),
    online: bool = typer.Option(False, "--online", help="--task track: score the tracker's per-frame output, without "
                                                        "the offline pass that ghostkit track applies"),
    max_gap: int = typer.Option(20, help="--task track: the offline pass's longest filled gap, in frames"),
    backfill: int = typer.Option(1, help="--task track: frames the offline pass reports before each track's first"),
) -> None:
    """Evaluate a checkpoint (or exported .onnx model) on a data set's validation split and write metrics.json."""
    from ..engine.run import validate

    if batch <= 0:
        raise GhostkitError(f"--batch must be positive, got {batch}")
    if task == "track":
        from ..track.evaluate import validate_tracking

        metrics = validate_tracking(weights, data, out, tracker=tracker, conf=conf, online=online, max_gap=max_gap,
                                    backfill=backfill)
        print_metrics(f"tracking ({tracker}) of {weights} on {data}", metrics)
        print_metrics("the same, classes ignored", metrics["class_agnostic"])
        if "online" in metrics:
            print_metrics("the tracker's per-frame output, before the offline pass", metrics["online"])
        return
    if task is not None:
        raise GhostkitError(f"--task: val evaluates the model's own tasks, or track; got {task!r}")
    metrics = validate(weights, data, out, batch=batch, workers=workers, threshold=threshold, tta=tta)
    print_metrics(f"validation of {weights} on {data}", metrics)
