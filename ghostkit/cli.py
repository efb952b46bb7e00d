"""The ``ghostkit`` command: train, val, predict, info. ``main(argv)`` runs in-process and returns the exit code.

A user mistake (``GhostkitError``, bad option values) prints one line and exits with code 2, never a traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import json
import sys
import typing
import warnings
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from .errors import GhostkitError

__all__ = ["main", "app"]

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="GhostNet toolkit: train, val, predict, info.")
console = Console()


def _metrics_table(title: str, values: dict) -> Table:
    table = Table(title=title)
    scalars = {k: v for k, v in values.items() if isinstance(v, (int, float))}
    for key in scalars:
        table.add_column(key, justify="right")
    table.add_row(*(f"{v:.4f}" for v in scalars.values()))
    return table


def _per_class_table(values: dict) -> Table | None:
    per_class = values.get("per_class")
    if not per_class:
        return None
    cols = list(next(iter(per_class.values())))
    table = Table(title="per class")
    table.add_column("class")
    for c in cols:
        table.add_column(c, justify="right")
    for name, row in per_class.items():
        table.add_row(name, *(f"{row[c]:.4f}" for c in cols))
    return table


def _print_metrics(title: str, values: dict) -> None:
    if "score" in values:  # multi-task: a table per task, then the combined score
        for task, v in values.items():
            if isinstance(v, dict):
                _print_metrics(f"{title}: {task}", v)
        console.print(f"combined score (mean of the tasks' primary metrics): {values['score']:.4f}")
        return
    console.print(_metrics_table(title, values))
    per_class = _per_class_table(values)
    if per_class is not None and len(values["per_class"]) <= 40:
        console.print(per_class)


def _train_signature() -> inspect.Signature:
    """One ``--option`` per TrainConfig field with its default and help, so the CLI and the API never drift."""
    from .engine.config import HELP, TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    params = []
    for f in dataclasses.fields(TrainConfig):
        hint = hints[f.name]
        base = next((t for t in typing.get_args(hint) if t is not type(None)), hint)
        option = typer.Option(f.default, help=HELP.get(f.name), show_default=True)
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option,
                                        annotation=typing.Optional[base] if f.default is None else base))  # noqa: UP045
    return inspect.Signature(params)


def train(**options) -> None:
    """Train a task model (default: classification on built-in digits) into a run directory."""
    from .engine.callbacks import is_rank_zero
    from .engine.config import TrainConfig
    from .engine.run import train as run_training

    cfg = TrainConfig(**options)
    metrics = run_training(cfg)
    if not is_rank_zero():
        return  # multi-process runs: the tables once, from rank 0
    if metrics:
        _print_metrics(f"validation ({cfg.out}/best.ckpt)", metrics)
    console.print(f"run saved to {cfg.out}")


train.__signature__ = _train_signature()
app.command()(train)


@app.command()
def val(
    weights: str = typer.Option(..., help="checkpoint (best.ckpt / last.ckpt)"),
    data: str = typer.Option(..., help="data folder or built-in data (digits, shapes)"),
    out: str = typer.Option(None, help="output folder for metrics.json (default: val/ beside the weights)"),
    batch: int = typer.Option(64, help="batch size"),
    workers: int = typer.Option(2, help="data loader workers"),
    threshold: float = typer.Option(0.5, help="multi-label decision threshold"),
    tta: bool = typer.Option(False, "--tta", help="detection: test-time augmentation (flips x scales 1, 0.83, 1.2)"),
) -> None:
    """Evaluate a checkpoint (or exported .onnx model) on a data set's validation split and write metrics.json."""
    from .engine.run import validate

    if batch <= 0:
        raise GhostkitError(f"--batch must be positive, got {batch}")
    metrics = validate(weights, data, out, batch=batch, workers=workers, threshold=threshold, tta=tta)
    _print_metrics(f"validation of {weights} on {data}", metrics)


@app.command()
def predict(
    weights: str = typer.Option(..., help="checkpoint (best.ckpt) or exported .onnx model"),
    source: str = typer.Option(..., help="image file, folder or glob; a video file; or a camera index such as 0"),
    topk: int = typer.Option(5, help="classes to show per image"),
    threshold: float = typer.Option(0.5, help="multi-label decision threshold"),
    tta: bool = typer.Option(False, "--tta", help="detection: test-time augmentation (flips x scales 1, 0.83, 1.2)"),
    conf: float = typer.Option(None, help="detection: score threshold (default: the one trained with)"),
    iou: float = typer.Option(None, help="detection: NMS IoU threshold (default: the one trained with)"),
    max_frames: int = typer.Option(0, help="video / camera: stop after this many frames (0: until the end)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON lines instead of a table"),
    save: str = typer.Option(None, help="folder to save pictures of the results in (annotated images, masks, "
                                        "videos, ...)"),
) -> None:
    """Predict on images, videos or a camera: classes, boxes, masks or restored images, per the model's task(s)."""
    from .api import load_model
    from .io import atomic_path, check_output_dir
    from .predict import expand_source, is_stream, render_result

    if topk <= 0:
        raise GhostkitError(f"--topk must be positive, got {topk}")
    if max_frames < 0:
        raise GhostkitError(f"--max-frames must not be negative, got {max_frames}")
    if conf is not None and not 0 <= conf < 1:
        raise GhostkitError(f"--conf must be in [0, 1), got {conf}")
    if iou is not None and not 0 < iou <= 1:
        raise GhostkitError(f"--iou must be in (0, 1], got {iou}")
    if save is not None:
        check_output_dir(save, "--save")
    predictor = load_model(weights, tta=tta)
    detect = predictor.model.heads["detect"] if "detect" in predictor.model.heads else None
    if (conf is not None or iou is not None) and detect is None:
        raise GhostkitError(f"{weights}: --conf and --iou apply to detection models")
    if detect is not None:
        detect.conf = detect.conf if conf is None else conf
        detect.iou = detect.iou if iou is None else iou
    if is_stream(source):
        _predict_stream(predictor, source, max_frames, as_json, save, topk=topk, threshold=threshold)
        return
    paths = expand_source(source)
    results = predictor.predict(paths, topk=topk, threshold=threshold, raw=save is not None)
    if save is not None:
        out_dir = Path(save)
        for path, r in zip(paths, results):
            image = r.pop("image")  # the picture the model saw (EXIF orientation applied, 16-bit scaled)
            for suffix, picture in render_result(predictor.model, image, r.pop("raw"), predictor.class_names).items():
                with atomic_path(out_dir / f"{path.stem}{'_' + suffix if suffix else ''}.png") as tmp:
                    picture.save(tmp, format="PNG")
        console.print(f"results saved to {out_dir}")
    if as_json:
        for r in results:
            print(json.dumps(r))
        return
    table = Table(title=f"predictions ({weights})")
    table.add_column("image")
    table.add_column("prediction")
    for r in results:
        table.add_row(r["source"], _summary(r))
    console.print(table)


def _predict_stream(predictor, source: str, max_frames: int, as_json: bool, save: str | None, **options) -> None:
    """Frames one at a time: JSON lines or a short line per frame, an annotated video with ``--save``, and the
    frames per second at the end (inference, drawing and encoding included)."""
    import time

    import numpy as np

    from .io import atomic_path
    from .predict import render_result

    writer, frames, t0 = None, 0, time.perf_counter()
    out_path, interrupted = None, False
    with contextlib.ExitStack() as stack:  # the video is written beside its target and renamed into place at the end
        try:
            for image, result in predictor.stream(source, max_frames=max_frames, **options):
                raw = result.pop("raw")
                frames += 1
                if save is not None:
                    import cv2

                    pictures = render_result(predictor.model, image, raw, predictor.class_names)
                    picture = pictures.get("all", pictures.get("overlay", pictures.get("", image)))
                    if writer is None:
                        stem = f"camera{source}" if source.isdigit() else Path(source).stem
                        out_path = Path(save) / f"{stem}_pred.mp4"
                        tmp = stack.enter_context(atomic_path(out_path))
                        size = picture.size
                        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, size)
                        stack.callback(writer.release)  # runs before the rename
                    frame = np.asarray(picture.convert("RGB").resize(size))
                    writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
                if as_json:
                    print(json.dumps(result), flush=True)
                else:
                    console.print(f"frame {result['frame']}: {_summary(result)}")
        except KeyboardInterrupt:  # Ctrl-C is how a camera stream ends: keep the video of the frames seen
            interrupted = True
    seconds = time.perf_counter() - t0
    console.print(f"{frames} frames in {seconds:.1f} s: {frames / max(seconds, 1e-9):.1f} frames/s"
                  + (f"; saved {out_path}" if out_path else ""))
    if interrupted:
        raise KeyboardInterrupt


def _summary(result: dict) -> str:
    """One line per image: the classes (top-k or multi-label) or a short rendering of other tasks' results."""
    items = result.get("topk", result.get("labels"))
    if items is not None:
        return ", ".join(f"{x['class']} {x['score']:.3f}" for x in items) or "-"
    if "detections" in result:
        return ", ".join(f"{d['class']} {d['score']:.2f}" for d in result["detections"][:8]) or "no objects"
    nested = {k: v for k, v in result.items() if isinstance(v, dict) and k in ("classify", "multilabel", "detect")}
    if nested:  # multi-task: a line per image-level task
        return "; ".join(f"{k}: {_summary(v)}" for k, v in nested.items())
    rest = {k: v for k, v in result.items() if k != "source"}
    return json.dumps(rest)[:200]


@app.command()
def info(
    model: str = typer.Argument(None, help="model name"),
    imgsz: tuple[int, int] = typer.Option((224, 224), help="input height and width for MACs and feature shapes"),
    list_all: bool = typer.Option(False, "--list", help="list the registered models"),
) -> None:
    """Parameters, MACs at an input size, feature strides and channels of a model."""
    from .models import list_models
    from .models.summary import model_summary

    if list_all or model is None:
        for name in list_models():
            print(name)
        return
    if min(imgsz) < 32:
        raise GhostkitError(f"--imgsz must be at least 32 x 32, got {imgsz[0]} x {imgsz[1]}")
    s = model_summary(model, tuple(imgsz))
    table = Table(title=f"{model} at {imgsz[0]} x {imgsz[1]}")
    table.add_column("")
    table.add_column("train structure", justify="right")
    table.add_column("deploy (reparameterised)", justify="right")
    table.add_row("params", f"{s['params'] / 1e6:.3f} M", f"{s['deploy_params'] / 1e6:.3f} M")
    table.add_row("MACs", f"{s['macs'] / 1e6:.1f} M", f"{s['deploy_macs'] / 1e6:.1f} M")
    console.print(table)
    feats = Table(title="feature stages (features_only=True)")
    for col in ("index", "module", "stride", "channels", "shape"):
        feats.add_column(col)
    for f in s["features"]:
        shape = " x ".join(map(str, f["shape"]))
        feats.add_row(str(f["index"]), f["module"], str(f["stride"]), str(f["channels"]), shape)
    console.print(feats)


from .deploy.cli import benchmark, export  # noqa: E402  (import-light: onnx / onnxruntime load when run)

app.command()(export)
app.command()(benchmark)


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """Warnings for users in one line, without the source line of the code that raised them."""
    return f"ghostkit: warning: {message}\n"


class _Interrupted(Exception):
    """Ctrl-C inside a command, carried past typer, which turns KeyboardInterrupt into a bare exit code 130."""


def _interruptible(command):
    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except KeyboardInterrupt as e:  # training's RunInterrupted says where it stopped and how to resume
            raise _Interrupted(str(e) or "interrupted") from None

    return run


for _info in app.registered_commands:
    _info.callback = _interruptible(_info.callback)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    format_warning = warnings.formatwarning  # not restored by catch_warnings
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.formatwarning = _format_warning
            result = app(args=argv, prog_name="ghostkit", standalone_mode=False)
    except GhostkitError as e:
        print(f"ghostkit: error: {e}", file=sys.stderr)
        return 2
    except _Interrupted as e:
        print(f"ghostkit: {e}", file=sys.stderr)
        return 130
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        print("ghostkit: aborted", file=sys.stderr)
        return 1
    except typer.exceptions.TyperException as e:  # usage errors: bad option values, unknown commands
        ctx = getattr(e, "ctx", None)
        if type(e).__name__ == "NoArgsIsHelpError" and ctx is not None:
            print(ctx.get_help())
            return 0
        e.show()
        return e.exit_code
    except KeyboardInterrupt:  # outside a command (typer turns it into 130 inside one)
        print("ghostkit: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = format_warning
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
