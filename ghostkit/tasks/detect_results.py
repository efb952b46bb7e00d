"""What happens to detections after the head: mapping boxes to each original image's size, test-time augmentation
(``ghostkit val/predict --tta``: every input scale with and without a horizontal flip, the detections of all passes
merged by class-wise NMS) and drawing."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import batched_nms

__all__ = ["PALETTE", "TTA_CONF", "draw_detections", "format_detections", "rescale_boxes", "tta_outputs", "tta_predict"]

# a fixed colour per class index for drawn boxes
PALETTE = ["#ff3838", "#2c99a8", "#ff9d97", "#ff701f", "#48f90a", "#3ddb86", "#1a9334", "#00d4bb", "#ffb21d",
           "#00c2ff", "#344593", "#6473ff", "#0018ec", "#8438ff", "#cb38ff", "#ff95c8", "#ff37c7", "#cfd231"]


@torch.no_grad()
def rescale_boxes(result: dict, input_size: tuple[int, int], image_sizes: list | None, i: int) -> dict:
    """Boxes of image ``i`` from network-input pixels to its original size (``image_sizes[i]``; None: as they are)."""
    if image_sizes is None:
        return result
    (in_h, in_w), (h, w) = input_size, image_sizes[i]
    return {**result, "boxes": result["boxes"] * result["boxes"].new_tensor([w / in_w, h / in_h, w / in_w, h / in_h])}


def format_detections(result: dict, class_names: list[str]) -> list[dict]:
    """``[{"class", "index", "score", "box": [x1, y1, x2, y2]}]``, JSON-able, one per box of ``result``."""
    out = []
    for box, score, label in zip(result["boxes"].tolist(), result["scores"].tolist(), result["labels"].tolist()):
        name = class_names[label] if label < len(class_names) else str(label)
        out.append({"class": name, "index": int(label), "score": round(float(score), 4),
                    "box": [round(float(v), 2) for v in box]})
    return out


def draw_detections(image, result: dict, class_names: list[str], min_side: int = 256):
    """A PIL image with ``result``'s boxes (original image coordinates) drawn by ``draw_bounding_boxes``."""
    from PIL import Image
    from torchvision.transforms.functional import pil_to_tensor, to_pil_image
    from torchvision.utils import draw_bounding_boxes

    image = image.convert("RGB")
    factor = max(1, math.ceil(min_side / max(1, min(image.size))))
    if factor > 1:
        image = image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)
    boxes = result["boxes"].detach().float().cpu().reshape(-1, 4) * factor
    labels = [int(v) for v in result["labels"].tolist()]
    scores = result["scores"].tolist()
    names = [f"{class_names[c] if c < len(class_names) else c} {s:.2f}" for c, s in zip(labels, scores)]
    colours = [PALETTE[c % len(PALETTE)] for c in labels]
    width = max(1, min(image.size) // 160)
    drawn = draw_bounding_boxes(pil_to_tensor(image), boxes, labels=names, colors=colours, width=width)
    return to_pil_image(drawn)



TTA_CONF = 0.001  # merged passes keep every candidate; postprocess applies the caller's threshold afterwards


def tta_outputs(model: nn.Module, images: torch.Tensor) -> dict:
    """Detect outputs of a TaskModel with ``tta`` on: the merged detections of :func:`tta_predict` (network-input
    pixels), which ``postprocess`` thresholds and rescales like raw outputs."""
    size = (int(images.shape[-2]), int(images.shape[-1]))
    return {"detections": tta_predict(model, images, conf=TTA_CONF), "image_size": size}


def tta_predict(model: nn.Module, images: torch.Tensor, image_sizes: list[tuple[int, int]] | None = None,
                scales: tuple[float, ...] = (1.0, 0.83, 1.2), flips: bool = True, task: str = "detect",
                conf: float | None = None, iou: float | None = None) -> list[dict[str, torch.Tensor]]:
    """Test-time augmentation: run ``model`` (a :class:`~ghostkit.tasks.model.TaskModel`) on ``images``
    (B x 3 x H x W, normalised) at each input scale, with and without horizontal flip, and merge the detections
    of all passes by class-wise NMS. Returns ``postprocess``-style results in ``image_sizes`` coordinates."""
    head = model.heads[task]
    run = getattr(model, "_forward", model)  # a TaskModel's plain forward (its own forward may be the TTA one)
    h, w = images.shape[-2:]
    sizes = image_sizes or [(int(h), int(w))] * images.shape[0]
    passes: list[list[dict]] = []
    for s in scales:
        x = images if s == 1.0 else F.interpolate(images, size=(max(32, round(h * s)), max(32, round(w * s))),
                                                  mode="bilinear", align_corners=False)
        for flip in (False, True) if flips else (False,):
            res = head.postprocess(run(x.flip(-1) if flip else x)[task], sizes, conf=conf)
            if flip:
                for r, (_, iw) in zip(res, sizes):
                    r["boxes"] = torch.stack([iw - r["boxes"][:, 2], r["boxes"][:, 1], iw - r["boxes"][:, 0],
                                              r["boxes"][:, 3]], dim=1)
            passes.append(res)
    merged = []
    for i in range(images.shape[0]):
        boxes = torch.cat([p[i]["boxes"] for p in passes])
        scores = torch.cat([p[i]["scores"] for p in passes])
        labels = torch.cat([p[i]["labels"] for p in passes])
        keep = batched_nms(boxes, scores, labels, head.iou if iou is None else iou)[: head.max_det]
        merged.append({"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]})
    return merged
