"""``ghostkit predict``: images, folders, globs, videos and cameras through the Predictor; samples of a generative
model (``--num``)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import typer
from rich.table import Table

from ..errors import GhostkitError
from .common import console, summary

__all__ = ["predict"]


def predict(
    weights: str = typer.Option(..., help="checkpoint (best.ckpt) or exported .onnx model"),
    source: str = typer.Option(None, help="image file, folder or glob; a video file; or a camera index such as 0"),
    topk: int = typer.Option(5, help="classes to show per image"),
    threshold: float = typer.Option(None, help="multi-label decision threshold (default: the one trained with)"),
    tta: bool = typer.Option(False, "--tta", help="detection: test-time augmentation (flips x scales 1, 0.83, 1.2)"),
    conf: float = typer.Option(None, help="detection: score threshold (default: the one trained with)"),
    iou: float = typer.Option(None, help="detection: NMS IoU threshold (default: the one trained with)"),
    max_frames: int = typer.Option(0, help="video / camera: stop after this many frames (0: until the end)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON lines instead of a table"),
    save: str = typer.Option(None, help="folder to save pictures of the results in (annotated images, masks, "
                                        "videos, ...); generative models: the samples"),
    style: str = typer.Option(None, help="style transfer: a style image (models of arbitrary styles only)"),
    alpha: float = typer.Option(1.0, help="style transfer: strength in [0, 1] (0: the photo, 1: fully stylised)"),
    num: int = typer.Option(None, help="generative models: samples to draw (per class for class-conditional "
                                       "models), written to --save as <class>/<index>.png or <index>.png + grid.png"),
    class_name: str = typer.Option(None, "--class", help="generative models: sample this class only"),
    seed: int = typer.Option(0, help="generative models: random seed of the latents (same seed, same images)"),
) -> None:
    """Predict on images, videos or a camera: classes, boxes, masks or restored images, per the model's task(s);
    or draw samples from a generative model (--num N --save DIR)."""
    from ..api import load_model
    from ..io import atomic_path, check_output_dir
    from ..predict import expand_source, is_stream, render_result

    if num is not None or class_name is not None:
        _sample(weights, num, save, class_name, seed)
        return
    if source is None:
        raise GhostkitError("--source is required (or --num N --save DIR for a generative model)")
    if topk <= 0:
        raise GhostkitError(f"--topk must be positive, got {topk}")
    if max_frames < 0:
        raise GhostkitError(f"--max-frames must not be negative, got {max_frames}")
    if conf is not None and not 0 <= conf < 1:
        raise GhostkitError(f"--conf must be in [0, 1), got {conf}")
    if iou is not None and not 0 < iou <= 1:
        raise GhostkitError(f"--iou must be in (0, 1], got {iou}")
    if not 0 <= alpha <= 1:
        raise GhostkitError(f"--alpha must be in [0, 1], got {alpha}")
    if save is not None:
        check_output_dir(save, "--save")
    predictor = load_model(weights, tta=tta)
    if not hasattr(predictor, "predict"):
        raise GhostkitError(f"{weights}: a generative model; sample from it with --num N --save DIR [--class NAME]")
    _set_style(predictor.model, weights, style, alpha)
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
        table.add_row(r["source"], summary(r))
    console.print(table)


def _sample(weights: str, num: int | None, save: str | None, class_name: str | None, seed: int) -> None:
    """``ghostkit predict --weights G.ckpt|G.onnx --num N --save OUT [--class NAME] [--seed S]``."""
    from ..api import load_model
    from ..tasks.generate import save_samples

    if num is None or num <= 0:
        raise GhostkitError(f"--num must be a positive number of samples, got {num}")
    if save is None:
        raise GhostkitError("--num needs --save DIR: the folder the samples are written to")
    model = load_model(weights)
    if not hasattr(model, "generate"):
        raise GhostkitError(f"{weights}: not a generative model (train one with --task generate); --num and --class "
                            "apply to generative models")
    paths = save_samples(model, num, save, class_name, seed)
    console.print(f"{len(paths)} samples and grid.png saved to {save}")


def _predict_stream(predictor, source: str, max_frames: int, as_json: bool, save: str | None, **options) -> None:
    """Frames one at a time: JSON lines or a short line per frame, an annotated video with ``--save``, and the
    frames per second at the end (inference, drawing and encoding included)."""
    import time

    import numpy as np

    from ..io import atomic_path
    from ..predict import render_result

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
                    console.print(f"frame {result['frame']}: {summary(result)}")
        except KeyboardInterrupt:  # Ctrl-C is how a camera stream ends: keep the video of the frames seen
            interrupted = True
    seconds = time.perf_counter() - t0
    console.print(f"{frames} frames in {seconds:.1f} s: {frames / max(seconds, 1e-9):.1f} frames/s"
                  + (f"; saved {out_path}" if out_path else ""))
    if interrupted:
        raise KeyboardInterrupt


def _set_style(model, weights: str, style: str | None, alpha: float) -> None:
    """``--style`` / ``--alpha`` onto a style head; errors for other models and for a one-style model's
    ``--style``. An arbitrary-style model reads the style image as in training (shorter side at the training
    size)."""
    from ..tasks.model import TaskModel

    head = model.heads["style"] if "style" in model.heads else None
    if head is None:
        if style is not None or alpha != 1.0:
            raise GhostkitError(f"{weights}: --style and --alpha apply to style-transfer models")
        return
    if style is not None and not getattr(head, "arbitrary", False):
        raise GhostkitError(f"{weights}: this model renders the one style it was trained on; --style applies to "
                            "models of arbitrary styles (--head adain)")
    if (alpha != 1.0 or style is not None) and not isinstance(model, TaskModel):
        raise GhostkitError(f"{weights}: --alpha and --style need the PyTorch checkpoint (an exported model renders "
                            "its kept style at alpha 1)")
    if style is not None:
        from ..data.style import load_style

        head.set_style(load_style(style, model.config["imgsz"][0]))
    head.alpha = alpha
