"""Predictor: run a trained ghostkit model on images (paths, folders, globs, PIL images, arrays, tensors)."""

from __future__ import annotations

import glob
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .data.classify import classify_transforms
from .data.images import IMG_EXTENSIONS, filter_readable, list_images, read_image
from .errors import GhostkitError
from .tasks.model import TaskModel, load_task_model

__all__ = ["Predictor", "expand_source"]

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


class Predictor:
    """``Predictor(model).predict(sources)`` → one result dict per image.

    Classification results: ``{"source", "topk": [{"class", "index", "score"}, ...]}`` (softmax probabilities);
    multi-label: ``{"source", "labels": [{"class", "index", "score"}, ...]}`` for scores ≥ ``threshold``, plus
    ``"scores"`` for every class.
    """

    def __init__(self, model: TaskModel, device: str | torch.device = "cpu") -> None:
        self.model = model.eval().to(device)
        self.device = torch.device(device)
        cfg = model.config
        self.task = next(iter(cfg["heads"]))
        self.class_names = cfg["class_names"][self.task]
        self.transform = classify_transforms(cfg["imgsz"][0], train=False, mean=cfg["mean"], std=cfg["std"])

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> Predictor:
        return cls(load_task_model(path), device)

    def _prepare(self, source: Source) -> tuple[str, torch.Tensor]:
        if isinstance(source, (str, Path)):
            return str(source), self.transform(read_image(source))
        if isinstance(source, Image.Image):
            return "<PIL image>", self.transform(source.convert("RGB"))
        if isinstance(source, np.ndarray):
            if source.ndim != 3 or source.shape[2] != 3:
                raise GhostkitError(f"expected an H x W x 3 array, got shape {source.shape}")
            return "<array>", self.transform(Image.fromarray(source.astype(np.uint8)))
        if isinstance(source, torch.Tensor):
            if source.ndim != 3 or source.shape[0] != 3:
                raise GhostkitError(f"expected a 3 x H x W tensor, got shape {tuple(source.shape)}")
            img = source if source.dtype == torch.uint8 else (source.clamp(0, 1) * 255).round().to(torch.uint8)
            return "<tensor>", self.transform(Image.fromarray(img.permute(1, 2, 0).cpu().numpy()))
        raise GhostkitError(f"cannot predict on a {type(source).__name__}")

    @torch.inference_mode()
    def predict(self, sources: Source | list[Source], topk: int = 5, threshold: float = 0.5,
                batch: int = 32) -> list[dict]:
        if not isinstance(sources, (list, tuple)):
            sources = [sources]
        prepared = [self._prepare(s) for s in sources]
        results = []
        for i in range(0, len(prepared), batch):
            chunk = prepared[i:i + batch]
            images = torch.stack([t for _, t in chunk]).to(self.device)
            outputs = self.model(images)
            per_image = self.model.postprocess(outputs, [tuple(images.shape[-2:])] * len(chunk))
            for (name, _), res in zip(chunk, per_image):
                results.append(self._format(name, res[self.task]["scores"].cpu(), topk, threshold))
        return results

    def _format(self, name: str, scores: torch.Tensor, topk: int, threshold: float) -> dict:
        if self.task == "multilabel":
            idx = [int(i) for i in torch.nonzero(scores >= threshold).flatten()]
            return {"source": name,
                    "labels": [{"class": self.class_names[i], "index": i, "score": float(scores[i])} for i in idx],
                    "scores": {c: float(s) for c, s in zip(self.class_names, scores)}}
        vals, idx = scores.topk(min(topk, len(scores)))
        return {"source": name, "topk": [{"class": self.class_names[int(i)], "index": int(i), "score": float(v)}
                                         for v, i in zip(vals, idx)]}
