"""Predictor: run a trained ghostkit model on images (paths, folders, globs, PIL images, arrays, tensors).

Pre-processing follows the head's ``preprocess``, as validated: ``"resize"`` (the whole image resized to the training
size; dense results are mapped back to the original size by the head) or ``"none"`` (the image at its own size; also
multi-task super-resolution models, whose results are in the frame ``scale x`` the image).
"""

from __future__ import annotations

import glob
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .data.images import IMG_EXTENSIONS, filter_readable, list_images, read_image
from .data.tasks import inference_transform
from .deploy.runtime import load_model_file
from .errors import GhostkitError
from .models import fastpath
from .tasks.model import TaskModel, enable_tta
from .tasks.registry import get_task

__all__ = ["Predictor", "expand_source", "is_stream", "render_result", "to_pil", "VIDEO_EXTENSIONS"]

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")

Source = str | Path | Image.Image | np.ndarray | torch.Tensor


def expand_source(source: str | Path) -> list[Path]:
    """An image file, a folder of images or a glob → sorted image paths (unreadable files skipped with a warning)."""
    text = str(source)
    path = Path(text)
    if path.is_dir():
        paths = list_images(path)
        if not paths:
            raise GhostkitError(f"{path}: no images in this folder")
        return filter_readable(paths, folder=path)[0]
    if path.is_file():
        if path.suffix.lower() not in IMG_EXTENSIONS:
            raise GhostkitError(f"{path}: not an image file (expected one of {', '.join(sorted(IMG_EXTENSIONS))})")
        return [path]
    if any(c in text for c in "*?["):
        paths = sorted(Path(p) for p in glob.glob(text) if Path(p).suffix.lower() in IMG_EXTENSIONS)
        if not paths:
            raise GhostkitError(f"{text}: the pattern matches no images")
        return filter_readable(paths, folder=text)[0]
    raise GhostkitError(f"{text}: no such file or folder")


def is_stream(source: str | Path) -> bool:
    """A camera index (``"0"``) or a video file: predicted frame by frame (:meth:`Predictor.stream`)."""
    text = str(source)
    return text.isdigit() or Path(text).suffix.lower() in VIDEO_EXTENSIONS


def to_pil(source: Source) -> tuple[str, Image.Image]:
    """Any supported source → ``(name, RGB PIL image)``; a float tensor is taken as 3 x H x W in [0, 1]."""
    if isinstance(source, (str, Path)):
        return str(source), read_image(source)
    if isinstance(source, Image.Image):
        return "<PIL image>", source.convert("RGB")
    if isinstance(source, np.ndarray):
        if source.ndim != 3 or source.shape[2] != 3:
            raise GhostkitError(f"expected an H x W x 3 array, got shape {source.shape}")
        return "<array>", Image.fromarray(source.astype(np.uint8))
    if isinstance(source, torch.Tensor):
        if source.ndim != 3 or source.shape[0] != 3:
            raise GhostkitError(f"expected a 3 x H x W tensor, got shape {tuple(source.shape)}")
        img = source if source.dtype == torch.uint8 else (source.clamp(0, 1) * 255).round().to(torch.uint8)
        return "<tensor>", Image.fromarray(img.permute(1, 2, 0).cpu().numpy())
    raise GhostkitError(f"cannot predict on a {type(source).__name__}")


class Predictor:
    """``Predictor(model).predict(sources)`` → one JSON-able result dict per image, with ``"source"`` and one entry
    per task (single-task models: the task's result keys at the top level). ``raw=True`` also keeps the heads'
    tensors under ``"raw"`` and the decoded RGB image they came from under ``"image"`` (for drawing)."""

    def __init__(self, model: TaskModel, device: str | torch.device = "cpu", tta: bool = False) -> None:
        self.model = model.eval().to(device)
        if tta:
            enable_tta(self.model)
        self.device = torch.device(device)
        cfg = model.config
        self.class_names = cfg.get("class_names", {})
        h, w = cfg["imgsz"]
        modes = {head.preprocess for head in model.heads.values()}
        if getattr(model, "sr_head", None) is not None and not any(getattr(model, "input_hw", ())):
            # multi-task super-resolution: every head is fully convolutional, and resizing a small image to the
            # training size would discard (or invent) the very detail the model restores; static ONNX keeps resizing
            modes = {"none"}
        self.mode = "none" if modes == {"none"} else "resize"
        self.transform = inference_transform(modes, (h, w), cfg["mean"], cfg["std"])

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", tta: bool = False) -> Predictor:
        model = load_model_file(path)
        if isinstance(model, TaskModel):  # a PyTorch checkpoint, ours alone: CPU inference on the fast path
            fastpath.enable(model)
        if tta:
            enable_tta(model, path)
        return cls(model, device)

    @torch.inference_mode()
    def predict(self, sources: Source | list[Source], batch: int = 16, raw: bool = False, **options) -> list[dict]:
        """``options`` go to each head's ``format_result`` (e.g. ``topk``, ``threshold``)."""
        if not isinstance(sources, (list, tuple)):
            sources = [sources]
        results = []
        step = batch if self.mode != "none" else 1  # native-size images cannot be stacked
        for i in range(0, len(sources), step):
            chunk = [to_pil(s) for s in sources[i:i + step]]
            images = torch.stack([self.transform(img) for _, img in chunk]).to(self.device)
            sizes = [(img.height, img.width) for _, img in chunk]
            per_image = self.model.postprocess(self.model(images), sizes)
            for (name, image), res in zip(chunk, per_image):
                out = {"source": name}
                for task, r in res.items():
                    formatted = self.model.heads[task].format_result(r, self.class_names.get(task, []), **options)
                    out.update(formatted if len(res) == 1 else {task: formatted})
                if raw:  # draw on exactly what the model saw: the decoded image (EXIF-rotated, 8-bit RGB)
                    out["raw"], out["image"] = res, image
                results.append(out)
        return results

    def stream(self, source: str | Path, max_frames: int = 0, **options):
        """Predict a video file or camera (``"0"``) frame by frame with bounded memory: yields ``(frame as RGB PIL
        image, result)`` with ``result["frame"]`` the frame index and the heads' tensors under ``"raw"``. Needs
        OpenCV (``pip install "ghostkit[video]"``); ``max_frames`` > 0 stops after that many frames."""
        try:
            import cv2
        except ImportError:
            raise GhostkitError("video and camera input need OpenCV: pip install 'ghostkit[video]'") from None
        text = str(source)
        if not text.isdigit() and not Path(text).is_file():
            raise GhostkitError(f"{text}: no such video file")
        cap = cv2.VideoCapture(int(text) if text.isdigit() else text)
        if not cap.isOpened():
            raise GhostkitError(f"{text}: cannot open this {'camera' if text.isdigit() else 'video'}")
        try:
            index = 0
            total = 0 if text.isdigit() else int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
            while not max_frames or index < max_frames:
                ok, frame = cap.read()
                if not ok:
                    if index and (text.isdigit() or index < total):
                        what = "the camera stopped delivering frames" if text.isdigit() else (
                            f"the file announces {total} frames; the rest could not be decoded (truncated or "
                            "corrupt video)")
                        warnings.warn(f"{text}: read {index} frame(s), then stopped: {what}", stacklevel=2)
                    break
                image = Image.fromarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
                result = self.predict([image], raw=True, **options)[0]
                del result["image"]  # yielded beside the result
                result["source"], result["frame"] = text, index
                yield image, result
                index += 1
        finally:
            cap.release()
        if index == 0:
            raise GhostkitError(f"{text}: no frame could be decoded")


def render_result(model: TaskModel, image: Image.Image, result: dict, class_names: dict[str, list[str]]
                  ) -> dict[str, Image.Image]:
    """Pictures of one image's ``raw`` result: name suffix → image. Single-task models give their head's pictures;
    multi-task models give each head's under ``"<task>[_<suffix>]"`` plus ``"all"``: every head drawn onto one
    picture (segment overlay, then boxes, then the class labels), for a super-resolution model (``restore`` at
    scale > 1 beside other heads, whose results are in the HR frame) on the restored image."""
    pictures: dict[str, Image.Image] = {}
    combined = image
    if "restore" in result and len(result) > 1 and tuple(result["restore"]["image"].shape[-2:]) != (
            image.height, image.width):
        from .tasks.restore import to_pil_image

        combined = to_pil_image(result["restore"]["image"])
    for task in sorted(result, key=lambda t: get_task(t).draw_order):  # masks under boxes under labels
        head = model.heads[task]
        drawn = head.render(image, result[task], class_names.get(task, []))
        if len(result) == 1:
            return drawn
        pictures.update({f"{task}_{k}" if k else task: v for k, v in drawn.items()})
        if task != "restore":  # the restored image has the network's size: drawn on its own only
            on_top = head.render(combined, result[task], class_names.get(task, []))
            combined = on_top.get("overlay", on_top.get("", combined))
    pictures["all"] = combined
    return pictures

