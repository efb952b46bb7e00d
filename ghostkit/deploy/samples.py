"""Sample images for export: the parity check's inputs and INT8 calibration images, pre-processed as the model
expects them (the data layer's validation transforms, or its inference transform on built-in shapes)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..data.synthetic import make_shapes
from ..data.tasks import data_for_model, inference_transform

__all__ = ["sample_images"]


def sample_images(model: nn.Module, imgsz: tuple[int, int], data: str | None = None, n: int = 8,
                  split: str = "val") -> tuple[torch.Tensor, str]:
    """``n`` pre-processed images ``n x 3 x H x W`` and where they came from: ``data``'s ``split`` (``"val"``, or
    ``"train"`` with validation transforms, for calibration), else built-in synthetic shapes."""
    h, w = imgsz
    if data is not None:
        td = data_for_model(model.config, data, max(h, w))
        ds = td.val
        if split == "train" and td.train is not None and hasattr(td.train, "transform") and hasattr(ds, "transform"):
            ds = copy.copy(td.train)
            ds.transform = td.val.transform  # no augmentation for calibration
        images = [ds[i][0] for i in range(min(n, len(ds)))]
        source = f"{data} {split}"
    else:
        config = model.config
        modes = {head.preprocess for head in model.heads.values()}
        transform = inference_transform(modes, (h, w), config["mean"], config["std"])
        images = [transform(s.image) for s in make_shapes(n, imgsz=max(h, w), seed=7)]
        source = "synthetic shapes"
    batch = torch.stack([torch.as_tensor(x) for x in images]).float()
    if tuple(batch.shape[-2:]) != (h, w):
        batch = nn.functional.interpolate(batch, size=(h, w), mode="bilinear", align_corners=False)
    return batch, source
