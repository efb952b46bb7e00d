"""Predictor: run a trained ghostkit model on images (paths, folders, globs, PIL images, arrays, tensors).

Pre-processing follows the head's ``preprocess``: ``"crop"`` (resize + centre crop, as validated), ``"resize"``
(the whole image resized to the training size; results are mapped back to the original size by the head) or
``"none"`` (the image at its own size).
"""

from __future__ import annotations

import glob
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

from .data.classify import classify_transforms
from .data.images import IMG_EXTENSIONS, filter_readable, list_images, read_image
from .errors import GhostkitError
from .tasks.model import TaskModel, load_task_model

__all__ = ["Predictor", "expand_source", "to_pil"]

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
    tensors under ``"raw"`` (for drawing)."""

    def __init__(self, model: TaskModel, device: str | torch.device = "cpu") -> None:
        self.model = model.eval().to(device)
        self.device = torch.device(device)
        cfg = model.config
        self.class_names = cfg.get("class_names", {})
        h, w = cfg["imgsz"]
        mean, std = cfg["mean"], cfg["std"]
        modes = {head.preprocess for head in model.heads.values()}
        self.mode = "crop" if modes == {"crop"} else ("none" if modes == {"none"} else "resize")
        if self.mode == "crop":
            self.transform = classify_transforms(h, train=False, mean=mean, std=std)
        else:
            resize = [v2.Resize((h, w), antialias=True)] if self.mode == "resize" else []
            self.transform = v2.Compose([v2.ToImage(), *resize, v2.ToDtype(torch.float32, scale=True),
                                         v2.Normalize(mean, std)])

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> Predictor:
        return cls(load_task_model(path), device)

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
            for (name, _), res in zip(chunk, per_image):
                out = {"source": name}
                for task, r in res.items():
                    formatted = self.model.heads[task].format_result(r, self.class_names.get(task, []), **options)
                    out.update(formatted if len(res) == 1 else {task: formatted})
                if raw:
                    out["raw"] = res
                results.append(out)
        return results


# order in which the heads draw onto one combined picture: masks under boxes under image-level labels
_DRAW_ORDER = ("restore", "segment", "detect", "classify", "multilabel")


def render_result(model: TaskModel, image: Image.Image, result: dict, class_names: dict[str, list[str]]
                  ) -> dict[str, Image.Image]:
    """Pictures of one image's ``raw`` result: name suffix → image. Single-task models give their head's pictures;
    multi-task models give each head's under ``"<task>[_<suffix>]"`` plus ``"all"``: every head drawn onto one
    picture (segment overlay, then boxes, then the class labels)."""
    pictures: dict[str, Image.Image] = {}
    combined = image
    for task in sorted(result, key=lambda t: _DRAW_ORDER.index(t) if t in _DRAW_ORDER else len(_DRAW_ORDER)):
        head = model.heads[task]
        drawn = head.render(image, result[task], class_names.get(task, []))
        if len(result) == 1:
            return drawn
        pictures.update({f"{task}_{k}" if k else task: v for k, v in drawn.items()})
        on_top = head.render(combined, result[task], class_names.get(task, []))
        combined = on_top.get("overlay", on_top.get("", combined))
    pictures["all"] = combined
    return pictures

