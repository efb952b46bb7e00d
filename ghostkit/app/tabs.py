"""The app's tabs: one per model file. :class:`ModelTab` wraps a :class:`~ghostkit.predict.Predictor` (every task
that takes an image: classify, multi-label, detect, segment, restore, style, multi-task), :class:`GeneratorTab` a
generative model's :class:`~ghostkit.tasks.generate.GANModel` (no input image: a class, a number of samples and a
seed). :func:`open_tab` picks the kind from the file.

Per-task parts are data: :data:`TASK_VIEWS` says which of the head's ``render`` pictures the page shows and which
controls (sliders) it offers; the page's ``RENDERERS`` table draws each task's JSON. The pictures come from the
head's own ``render`` through :func:`~ghostkit.predict.render_result`, so the app has no drawing code of its own.

Style transfer: a model trained for one style renders that style (its kept ``style_image`` is shown on the card) and
takes only ``alpha``; a head with ``arbitrary = True`` (any style at prediction) also takes a style image, read as
``ghostkit predict --style`` reads it (:func:`ghostkit.data.style.load_style`: shorter side at the training size) and
set with the head's ``set_style(3 x h x w in [0, 1])``; the head's own style (``head.style``, ``1 x 3 x h x w``) is
put back after each request. Sending a style image to a one-style model is a 400 that says so.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import GhostkitError
from ..predict import Predictor, render_result
from ..tasks.model import TaskModel
from .limits import AppError, Limits

__all__ = ["TaskView", "TASK_VIEWS", "ModelTab", "GeneratorTab", "open_tab", "png_data_url"]


def _slider(name: str, label: str, lo: float, hi: float, step: float, value: float) -> dict:
    return {"name": name, "label": label, "min": lo, "max": hi, "step": step, "value": value}


@dataclass(frozen=True)
class TaskView:
    """What the page shows for a task: ``pictures``, the suffixes of the head's ``render`` output to show (``""``:
    its main picture), and ``controls(head)``, the sliders whose values are sent with each request."""

    pictures: tuple[str, ...] = ()
    controls: Callable[[object], list[dict]] = field(default=lambda head: [])


TASK_VIEWS: dict[str, TaskView] = {
    "classify": TaskView((), lambda h: [_slider("topk", "top-k", 1, min(10, h.num_classes), 1, min(5, h.num_classes))]),
    "multilabel": TaskView((), lambda h: [_slider("threshold", "threshold", 0.05, 0.95, 0.05,
                                                  round(getattr(h, "threshold", 0.5), 2))]),
    "detect": TaskView(("",), lambda h: [_slider("conf", "confidence", 0.01, 0.95, 0.01, round(h.conf, 2)),
                                         _slider("iou", "NMS IoU", 0.1, 1.0, 0.05, round(h.iou, 2))]),
    "segment": TaskView(("overlay",)),
    "restore": TaskView(("compare",)),
    "style": TaskView(("",), lambda h: [_slider("alpha", "alpha", 0.0, 1.0, 0.05, 1.0)]),
}


def png_data_url(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _metrics(folder: Path) -> dict | None:
    """The run's metrics.json without per-class tables: numbers, and for multi-task runs each task's numbers."""
    try:
        metrics = json.loads((folder / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(metrics, dict):
        return None
    out = {}
    for key, value in metrics.items():
        if isinstance(value, (int, float)):
            out[key] = value
        elif isinstance(value, dict) and key != "per_class":
            out[key] = {k: v for k, v in value.items() if isinstance(v, (int, float))}
    return out


def _card(index: int, name: str, path: Path, config: dict, tasks: list[str], backbone: str | None, **extra) -> dict:
    """The model card the page shows; ``extra`` (controls, examples, ...) per kind of tab."""
    card = {"index": index, "name": name, "file": str(path), "tasks": tasks, "backbone": backbone,
            "imgsz": config.get("imgsz"), "metrics": _metrics(path.parent), "palette": {}, "examples": 0,
            "video": False, "controls": [], "style": None, "generate": None}
    return {**card, **extra}


# --------------------------------------------------------------------------------------------------- image models


class ModelTab:
    """One model file that takes images: its Predictor, model card and example images. Predictions on one model
    are serialised by a lock, because the sliders set head attributes (detection's ``conf`` / ``iou``, style's
    ``alpha`` and style image) for the duration of a request."""

    def __init__(self, name: str, path: Path, limits: Limits, predictor: Predictor) -> None:
        self.name, self.path, self.limits = name, path, limits
        self.predictor = predictor
        self.heads = predictor.model.heads
        self.tasks = list(self.heads)
        self.lock = threading.Lock()
        self.examples = self._examples()
        # style: alpha and the kept style image live in the PyTorch head; an exported graph renders its style at
        # alpha 1 (its heads here are built from the config only, without the kept image)
        self.pytorch = isinstance(predictor.model, TaskModel)
        style = self.heads["style"] if "style" in self.heads and self.pytorch else None
        self.arbitrary_style = bool(getattr(style, "arbitrary", False))
        kept = getattr(style, "style_image", None)
        self.style_png = _png(Image.fromarray(kept.permute(1, 2, 0).cpu().numpy())) if kept is not None else None

    def _examples(self, n: int = 8) -> list[bytes]:
        """PNG bytes of the run's ``samples/`` images (written by ``ghostkit train`` beside the weights), else a few
        built-in pictures (procedural shapes and handwritten digits) at the model's input size."""
        from ..data.images import list_images, read_image

        folder = self.path.parent / "samples"
        if folder.is_dir():
            images = [read_image(p) for p in list_images(folder)[:n]]
        else:
            from ..data.synthetic import load_digits, make_shapes

            size = max(self.predictor.model.config["imgsz"])
            images = [Image.fromarray(s.image) for s in make_shapes(n // 2, imgsz=max(64, size))]
            images += [Image.fromarray(a) for a in load_digits(max(32, size))[0][: n - len(images)]]
        return [_png(image) for image in images]

    def card(self, index: int) -> dict:
        config = self.predictor.model.config
        palette = {}
        if "segment" in self.heads:
            from ..tasks.segment import color_palette

            names = config.get("class_names", {}).get("segment", [])
            palette["segment"] = {n: "#{:02x}{:02x}{:02x}".format(*c) for n, c in zip(names, color_palette(len(names)))}
        style = None
        if "style" in self.heads:
            style = {"arbitrary": self.arbitrary_style, "own": self.style_png is not None}
        return _card(index, self.name, self.path, config, self.tasks, config.get("backbone", {}).get("name"),
                     classes=config.get("class_names", {}), palette=palette, examples=len(self.examples),
                     video="detect" in self.heads, style=style,
                     controls=[c for t in self.tasks for c in TASK_VIEWS.get(t, TaskView()).controls(self.heads[t])
                               if self.pytorch or c["name"] != "alpha"])

    def _style_image(self, path: Path, name: str) -> torch.Tensor:
        """The uploaded style image (``path``, uploaded as ``name``) as the CLI's ``--style`` reads it."""
        from ..data.style import load_style

        try:
            return load_style(path, self.predictor.model.config["imgsz"][0])
        except GhostkitError as e:  # name the upload, not its temporary copy
            raise AppError(400, str(e).replace(str(path), name).replace("--style ", "style image ")) from None

    def _settings(self, options: dict, style: tuple[Path, str] | None) -> tuple[dict, dict]:
        """Split request options into the heads' ``format_result`` options and the head attributes to set for the
        request: ``{"detect": {"conf", "iou"}, "style": {"alpha", "image"}}``."""
        settings: dict[str, dict] = {}
        detect = {k: v for k in ("conf", "iou") if (v := options.pop(k, None)) is not None}
        if detect:
            if "detect" not in self.heads:
                raise AppError(400, f"{self.name}: conf and iou apply to detection models")
            settings["detect"] = detect
        alpha = options.pop("alpha", None)
        if alpha is not None or style is not None:
            head = self.heads["style"] if "style" in self.heads else None
            if head is None:
                raise AppError(400, f"{self.name}: alpha and a style image apply to style-transfer models")
            if (style is not None or alpha not in (None, 1.0)) and not self.pytorch:
                raise AppError(400, f"{self.name}: alpha and a style image need the PyTorch checkpoint (an exported "
                                    "model renders its style at alpha 1)")
            if style is not None and not self.arbitrary_style:
                raise AppError(400, f"{self.name}: this model renders the one style it was trained on; a style "
                                    "image applies to models of arbitrary styles")
            image = self._style_image(*style) if style is not None else None
            settings["style"] = {k: v for k, v in (("alpha", alpha), ("image", image)) if v is not None}
        return options, settings

    def _with_settings(self, settings: dict, fn: Callable[[], object]) -> object:
        with self.lock:
            saved = {}
            try:
                if "detect" in settings:
                    head = self.heads["detect"]
                    saved["detect"] = head.conf, head.iou
                    head.conf = settings["detect"].get("conf", head.conf)
                    head.iou = settings["detect"].get("iou", head.iou)
                if "style" in settings:
                    head, wanted = self.heads["style"], settings["style"]
                    saved["style"] = head.alpha, head.style[0].clone() if "image" in wanted else None
                    head.alpha = wanted.get("alpha", head.alpha)
                    if "image" in wanted:
                        head.set_style(wanted["image"])
                return fn()
            finally:
                if "detect" in saved:
                    self.heads["detect"].conf, self.heads["detect"].iou = saved["detect"]
                if "style" in saved:
                    head, (alpha, own) = self.heads["style"], saved["style"]
                    head.alpha = alpha
                    if own is not None:
                        head.set_style(own)

    def predict(self, image: Image.Image, source: str, options: dict, pictures: bool,
                style: tuple[Path, str] | None = None) -> tuple[dict, dict]:
        """The ``ghostkit predict --json`` dict of one image and (``pictures``) the page's PNG data URLs; ``style``:
        an arbitrary-style model's style image, ``(file, name uploaded as)``."""
        from ..tasks.restore import to_pil_image

        options, settings = self._settings(dict(options), style)
        result = self._with_settings(settings, lambda: self.predictor.predict([image], raw=pictures, **options)[0])
        result["source"] = source
        raw, seen = result.pop("raw", None), result.pop("image", image)  # seen: the decoded image the model saw
        if raw is None:
            return result, {}
        drawn = render_result(self.predictor.model, seen, raw, self.predictor.class_names)
        if len(self.tasks) == 1:
            wanted = [s for s in TASK_VIEWS.get(self.tasks[0], TaskView(("",))).pictures if s in drawn]
        else:  # every head's own pictures after the combined one
            wanted = ["all"] + [k for k in drawn if k != "all" and not k.endswith("_mask")]
        out = {k or self.tasks[0]: png_data_url(drawn[k]) for k in wanted}
        used = settings.get("style", {}).get("image")
        if used is not None:
            out["style image"] = png_data_url(to_pil_image(used))
        elif "style" in self.heads and self.style_png is not None:
            out["style image"] = "data:image/png;base64," + base64.b64encode(self.style_png).decode()
        return result, out

    def video(self, path: Path, out_path: Path, options: dict, name: str) -> dict:
        """Annotate a clip frame by frame (at most ``max_frames``) into a WebM (VP8, which browsers play)."""
        import cv2

        options, settings = self._settings(dict(options), None)
        cap = cv2.VideoCapture(str(path))
        src_fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
        cap.release()
        max_pixels = self.limits.max_megapixels * 1e6

        def run() -> dict:
            writer, results, t0 = None, [], time.perf_counter()
            stream = self.predictor.stream(path, max_frames=self.limits.max_frames + 1, **options)
            try:
                for image, result in stream:
                    if result["frame"] == self.limits.max_frames:
                        return {"results": results, "truncated": True, "seconds": time.perf_counter() - t0}
                    if image.width * image.height > max_pixels:
                        raise AppError(413, f"video frames of {image.width} x {image.height} pixels are over the "
                                            f"limit of {self.limits.max_megapixels:g} megapixels")
                    drawn = render_result(self.predictor.model, image, result.pop("raw"), self.predictor.class_names)
                    picture = drawn.get("all", drawn.get("overlay", drawn.get("", image))).convert("RGB")
                    if writer is None:
                        size = picture.size
                        writer = cv2.VideoWriter(str(out_path), cv2.VideoWriter_fourcc(*"VP80"), src_fps, size)
                    writer.write(cv2.cvtColor(np.asarray(picture.resize(size)), cv2.COLOR_RGB2BGR))
                    result["source"] = name
                    results.append(result)
            finally:
                stream.close()
                if writer is not None:
                    writer.release()
            return {"results": results, "truncated": False, "seconds": time.perf_counter() - t0}

        out = self._with_settings(settings, run)
        frames = len(out["results"])
        video = base64.b64encode(out_path.read_bytes()).decode() if out_path.is_file() else ""
        return {"frames": frames, "fps": round(frames / max(out["seconds"], 1e-9), 2), "truncated": out["truncated"],
                "video": "data:video/webm;base64," + video, "results": out["results"]}


# ------------------------------------------------------------------------------------------------ generative models


class GeneratorTab:
    """A generative model's checkpoint: samples from its averaged generator for a class (or all classes in turn),
    a number of samples and a seed; the same seed gives the same samples (:meth:`GANModel.generate`)."""

    tasks = ["generate"]
    examples: list[bytes] = []
    style_png = None

    def __init__(self, name: str, path: Path, limits: Limits, model) -> None:
        self.name, self.path, self.limits, self.model = name, path, limits, model

    def card(self, index: int) -> dict:
        config = self.model.config
        return _card(index, self.name, self.path, config, self.tasks, config.get("discriminator", {}).get("model"),
                     classes={"generate": self.model.class_names} if self.model.conditional else {},
                     generate={"classes": self.model.class_names, "max_samples": self.limits.max_samples})

    def generate(self, num: int, class_name: str, seed: int) -> dict:
        """``{"num", "seed", "classes": one class name per sample (null: unconditional), "size": [H, W] of a
        sample, "grid": PNG data URL of the samples in a square grid, "images": one PNG data URL per sample}``.
        ``class_name`` ``""``: every class in turn."""
        from ..tasks.generate import image_grid

        if not 0 < num <= self.limits.max_samples:
            raise AppError(400, f"num must be in 1..{self.limits.max_samples}, got {num}")
        if not 0 <= seed < 2**63:
            raise AppError(400, f"seed must be in 0..2**63-1, got {seed}")
        if class_name and not self.model.conditional:
            raise AppError(400, f"{self.name}: this generator is unconditional (trained without classes); "
                                "leave the class empty")
        labels = self.model.class_indices(num, class_name or None)  # an unknown class: GhostkitError, a 400
        images = self.model.generate(num, class_name or None, seed=seed)
        names = None if labels is None else [self.model.class_names[i] for i in labels.tolist()]
        return {"num": num, "seed": seed, "classes": names, "size": list(images.shape[1:3]),
                "grid": png_data_url(Image.fromarray(image_grid(images))),
                "images": [png_data_url(Image.fromarray(img)) for img in images]}


def open_tab(name: str, path: Path, limits: Limits) -> ModelTab | GeneratorTab:
    """The tab for a model file: a generator checkpoint gives a :class:`GeneratorTab`, anything else (a checkpoint,
    ``.onnx`` or OpenVINO ``.xml``) a :class:`ModelTab`."""
    from ..api import load_model

    model = load_model(path)
    if isinstance(model, Predictor):
        return ModelTab(name, path, limits, model)
    return GeneratorTab(name, path, limits, model)
