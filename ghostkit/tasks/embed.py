"""Appearance embedding head for tracking, trained jointly with a detector on the same backbone (JDE / FairMOT).

- JDE: Wang et al., "Towards Real-Time Multi-Object Tracking", ECCV 2020, https://arxiv.org/abs/1909.12605
- FairMOT: Zhang et al., "FairMOT: On the Fairness of Detection and Re-Identification in Multiple Object Tracking",
  IJCV 2021, https://arxiv.org/abs/2004.01888

The head fuses the backbone's stride 8, 16 and 32 maps into one stride-8 map (1x1 lateral convolutions, upsampled
and summed, as an FPN's top-down sum without the per-level outputs), then a 3x3 conv + BN + ReLU and a 1x1 conv to
``dim`` channels: one embedding per location (FairMOT: 128 dimensions, on a stride-4 map; stride 8 keeps the CPU cost
of the head under a tenth of the backbone's at 160 px). An object's embedding is the map sampled bilinearly at its
box centre (FairMOT's choice: the centre belongs to the object even where boxes overlap), L2-normalised.

Training is identity classification (FairMOT's re-ID loss): every identity of the training sequences is a class,
the normalised embedding times the JDE scale ``sqrt(2) * log(num_ids - 1)`` goes through a linear classifier, with
cross-entropy. Targets per image: ``{"boxes": N x 4 xyxy input pixels, "ids": N int64 in 0..num_ids-1}``. The
classifier is only a training device; at tracking time :meth:`EmbedHead.embed` gives the normalised embeddings of a
detector's boxes, which ``ghostkit.track``'s appearance tracker compares by cosine distance.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GhostkitError
from . import register_head

__all__ = ["EmbedHead", "sample_embeddings"]


def sample_embeddings(emb_map: torch.Tensor, boxes: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """The embeddings at the box centres: ``emb_map`` D x h x w (one image), ``boxes`` N x 4 xyxy in pixels of an
    ``image_size`` (H, W) input → N x D, L2-normalised."""
    if boxes.numel() == 0:
        return emb_map.new_zeros(0, emb_map.shape[0])
    h, w = image_size
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    # grid_sample's [-1, 1] spans the input's outer pixel edges (align_corners=False), as pixel coordinates do
    grid = torch.stack([centres[:, 0] / w, centres[:, 1] / h], dim=1) * 2 - 1
    picked = F.grid_sample(emb_map[None].float(), grid[None, None].to(emb_map.device).float(), mode="bilinear",
                           padding_mode="border", align_corners=False)  # 1 x D x 1 x N
    return F.normalize(picked[0, :, 0].t(), dim=1)


@register_head("embed")
class EmbedHead(nn.Module):
    """``head(features, images) -> {"embeddings": B x dim x H/8 x W/8 (not normalised), "image_size": (H, W)}``.

    Args:
        feature_info: the backbone's ``feature_info``.
        num_ids: identities of the training sequences (classes of the identity classifier).
        dim: embedding size (FairMOT: 128).
        chs: width of the fused map.
        strides: backbone maps fused (the first one's stride is the map's).
    """

    shared_outputs = ("image_size",)
    preprocess = "resize"

    def __init__(self, feature_info: list[dict], num_ids: int, dim: int = 128, chs: int = 64,
                 strides: list[int] = (8, 16, 32)) -> None:
        super().__init__()
        if num_ids < 2:
            raise GhostkitError(f"embed: identity classification needs at least 2 identities, got {num_ids}")
        by_stride = {f["reduction"]: i for i, f in enumerate(feature_info)}
        if any(s not in by_stride for s in strides):
            raise GhostkitError(f"embed: the backbone has no stride {list(strides)} features (has {sorted(by_stride)})")
        self.num_ids, self.dim = num_ids, dim
        self.level_idx = [by_stride[s] for s in strides]
        self.lateral = nn.ModuleList(nn.Conv2d(feature_info[i]["num_chs"], chs, 1) for i in self.level_idx)
        self.fuse = nn.Sequential(nn.Conv2d(chs, chs, 3, padding=1, bias=False), nn.BatchNorm2d(chs),
                                  nn.ReLU(inplace=True), nn.Conv2d(chs, dim, 1))
        self.classifier = nn.Linear(dim, num_ids)
        self.scale = math.sqrt(2) * math.log(num_ids - 1) if num_ids > 2 else 1.0  # JDE's embedding scale

    def forward(self, features: list[torch.Tensor], images: torch.Tensor) -> dict:
        maps = [lat(features[i]) for lat, i in zip(self.lateral, self.level_idx)]
        fused = maps[0]
        for m in maps[1:]:
            fused = fused + F.interpolate(m, size=fused.shape[-2:], mode="nearest")
        return {"embeddings": self.fuse(fused), "image_size": (int(images.shape[-2]), int(images.shape[-1]))}

    def embed(self, outputs: dict, boxes: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per image, the L2-normalised embeddings (N x dim) of ``boxes`` (N x 4 xyxy in network-input pixels)."""
        return [sample_embeddings(outputs["embeddings"][i], b, outputs["image_size"]) for i, b in enumerate(boxes)]

    def loss(self, outputs: dict, targets: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        emb = torch.cat(self.embed(outputs, [t["boxes"] for t in targets]))
        ids = torch.cat([t["ids"] for t in targets]).to(emb.device)
        if len(ids) == 0:  # no objects in the batch: a zero that keeps the graph
            zero = outputs["embeddings"].sum() * 0.0
            return {"loss": zero, "id": zero.detach()}
        loss = F.cross_entropy(self.classifier(self.scale * emb), ids)
        return {"loss": loss, "id": loss.detach()}

    @torch.no_grad()
    def postprocess(self, outputs: dict, image_sizes: list[tuple[int, int]] | None = None) -> list[dict]:
        """Per image ``{"embedding_map": dim x h x w}``, L2-normalised along ``dim`` (the embedding of any point:
        :meth:`embed` samples it at box centres)."""
        return [{"embedding_map": F.normalize(m.float(), dim=0)} for m in outputs["embeddings"]]

    def format_result(self, result: dict, class_names: list[str], **options) -> dict:
        d, h, w = result["embedding_map"].shape
        return {"embedding_map": [int(d), int(h), int(w)]}

    def render(self, image, result: dict, class_names: list[str]) -> dict:
        return {}  # embeddings have no picture of their own; `ghostkit track --save` draws the identities
