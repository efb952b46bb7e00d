"""Pictures of tracks: each box in its identity's colour, labelled ``#id class``, with a short trail of its recent
centres (what ``ghostkit track --save`` writes into its video)."""

from __future__ import annotations

import math
from collections import deque

import torch
from PIL import Image, ImageDraw

__all__ = ["TrackDrawer"]

# a colour per identity, far apart for consecutive ids (ids are given out in order)
_PALETTE = ["#ff3838", "#2c99a8", "#ffb21d", "#3ddb86", "#8438ff", "#ff701f", "#00c2ff", "#cfd231", "#ff37c7",
            "#1a9334", "#6473ff", "#ff95c8", "#00d4bb", "#344593", "#48f90a", "#cb38ff"]


class TrackDrawer:
    """Draws one frame at a time and remembers the last ``trail`` centres of every identity (forgotten once an
    identity has been out of sight for ``trail`` frames). Frames smaller than ``min_side`` are enlarged first, so
    the labels stay legible."""

    def __init__(self, class_names: list[str], trail: int = 20, min_side: int = 320) -> None:
        self.class_names, self.trail, self.min_side = class_names, trail, min_side
        self.centres: dict[int, deque] = {}
        self.last_seen: dict[int, int] = {}
        self.frame = 0

    def __call__(self, image: Image.Image, tracks: dict[str, torch.Tensor]) -> Image.Image:
        from torchvision.transforms.functional import pil_to_tensor, to_pil_image
        from torchvision.utils import draw_bounding_boxes

        self.frame += 1
        factor = max(1, math.ceil(self.min_side / max(1, min(image.size))))
        image = image.convert("RGB")
        if factor > 1:
            image = image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)
        boxes = tracks["boxes"].detach().float().cpu().reshape(-1, 4) * factor
        ids = [int(i) for i in tracks["ids"].tolist()]
        for i, box in zip(ids, boxes.tolist()):
            self.centres.setdefault(i, deque(maxlen=self.trail)).append(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2))
            self.last_seen[i] = self.frame
        for i in [i for i, seen in self.last_seen.items() if self.frame - seen >= self.trail]:
            del self.centres[i], self.last_seen[i]
        draw = ImageDraw.Draw(image)
        width = max(1, min(image.size) // 160)
        for i, points in self.centres.items():
            if len(points) > 1:
                draw.line(list(points), fill=_PALETTE[i % len(_PALETTE)], width=width)
        if not ids:
            return image
        labels = [int(c) for c in tracks["labels"].tolist()]
        names = [f"#{i} {self.class_names[c] if c < len(self.class_names) else c}" for i, c in zip(ids, labels)]
        drawn = draw_bounding_boxes(pil_to_tensor(image), boxes, labels=names,
                                    colors=[_PALETTE[i % len(_PALETTE)] for i in ids], width=width)
        return to_pil_image(drawn)
