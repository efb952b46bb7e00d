"""Semantic segmentation heads on GhostNet features: LR-ASPP (default) and DeepLabV3.

* LR-ASPP, "Searching for MobileNetV3" (Howard et al., ICCV 2019, https://arxiv.org/abs/1905.02244): a 1x1 conv +
  BN + ReLU on the high-level (last) features, gated by a global-pool sigmoid branch, classified and added to a
  1x1 classifier on the stride-8 features. torchvision's ``LRASPPHead`` is used as it is.
* DeepLabV3, "Rethinking Atrous Convolution for Semantic Image Segmentation" (Chen et al., 2017,
  https://arxiv.org/abs/1706.05587): ASPP on the last features (torchvision's ``DeepLabHead``), with atrous rates
  scaled to the backbone's output stride (6, 12, 18 at stride 16, as in the paper).
* ``aux_loss``: torchvision's ``FCNHead`` on the stride-16 stage end, its cross-entropy weighted 0.5 (as torchvision's
  training reference), used in training only.

Logits are upsampled (bilinear) to the input size in the head, so any input size >= 32 px works, odd ones included.
Pixels labelled ``IGNORE_INDEX`` (255) take no part in the loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.segmentation.deeplabv3 import DeepLabHead
from torchvision.models.segmentation.fcn import FCNHead
from torchvision.models.segmentation.lraspp import LRASPPHead

from ..errors import GhostkitError
from . import register_head
from .registry import IGNORE_INDEX

__all__ = ["IGNORE_INDEX", "SEGMENT_HEADS", "DEFAULT_HEAD", "SegmentHead", "color_palette", "resize_argmax",
           "segment_head_config"]

SEGMENT_HEADS = ("lraspp", "deeplabv3")
DEFAULT_HEAD = "lraspp"
# positions in the backbone's feature list (stage ends at strides 4, 8, 16, 32; see tasks.model.BACKBONE_OUT_INDICES)
_LOW_INDEX = {4: 0, 8: 1}
_AUX = 2
_HIGH_INDEX = {16: 2, 32: 3}
# above this many logits (C x H x W) per image, postprocess resizes in row strips to bound memory
_MAX_RESIZE_ELEMS = 1 << 24


def segment_head_config(head: str, imgsz: int) -> dict:
    """The default head config of ``head`` for an ``imgsz`` input: stride 8 details (the stride-4 maps are the
    backbone's narrowest: 12 channels on ghostnet_050; shapes written to a folder, 200 images, 15 epochs: 0.316 mIoU
    against 0.281 with stride 4, benchmarks/recipe_dense.py); small inputs take stride 16 context (a 64 px image is
    2 x 2 at stride 32; on built-in shapes 0.336 mIoU after 6 epochs against 0.285 with stride 32)."""
    return {"head": head, "low_stride": 8, "high_stride": 16 if imgsz < 256 else 32}


def color_palette(n: int = 256) -> list[tuple[int, int, int]]:
    """The Pascal VOC colour map: class ``i``'s bits spread over the high bits of R, G and B (255: light grey)."""
    colours = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colours.append((r, g, b))
    return colours


def resize_argmax(logits: torch.Tensor, size: tuple[int, int], max_elems: int = _MAX_RESIZE_ELEMS) -> torch.Tensor:
    """Class index map ``H x W`` (int64) of ``logits`` ``C x h x w`` resized bilinearly to ``size = (H, W)``.

    Large outputs are resized in strips of rows with ``grid_sample`` (the same sampling positions as
    ``F.interpolate(mode="bilinear", align_corners=False)``), so memory stays at ``max_elems`` floats whatever the
    original image size.
    """
    c, h, w = logits.shape
    height, width = size
    x = logits.unsqueeze(0).float()
    if (height, width) == (h, w):
        return x[0].argmax(0)
    if c * height * width <= max_elems:
        return F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)[0].argmax(0)
    rows = max(1, max_elems // (c * width))
    # normalised source coordinates of output pixel centres (align_corners=False convention)
    gx = (torch.arange(width, device=x.device, dtype=x.dtype) + 0.5) * (2.0 / width) - 1.0
    gy = (torch.arange(height, device=x.device, dtype=x.dtype) + 0.5) * (2.0 / height) - 1.0
    out = torch.empty(height, width, dtype=torch.long, device=x.device)
    for y0 in range(0, height, rows):
        ys = gy[y0:y0 + rows]
        grid = torch.stack(torch.meshgrid(ys, gx, indexing="ij")[::-1], dim=-1).unsqueeze(0)  # 1 x r x W x (x, y)
        strip = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        out[y0:y0 + rows] = strip[0].argmax(0)
    return out


@register_head("segment")
class SegmentHead(nn.Module):
    """``head(features, images) -> logits B x num_classes x H x W`` at the input size ``H x W`` of ``images``.

    In training with ``aux_loss`` the output is ``{"out": logits, "aux": aux logits B x num_classes x H x W}``.

    Args:
        feature_info: the backbone's ``feature_info`` (stage ends at strides 4, 8, 16, 32; dilated backbones keep
            their reductions at 16 or 8).
        num_classes: number of classes, background included (at most 255; 255 is the ignore label).
        head: ``"lraspp"`` (low: stride-8 features, high: last features) or ``"deeplabv3"`` (ASPP on the last).
        aux_loss: add an FCN head on the stride-16 stage end, trained with weight ``aux_weight``.
        output_stride: the backbone's output stride (32, 16 or 8), recorded for the checkpoint; DeepLabV3 scales its
            atrous rates with it.
        inter_chs: LR-ASPP's high-level branch width (128 in the paper).
        aux_weight: weight of the auxiliary cross-entropy.
        low_stride: LR-ASPP's low-level branch: the stride-8 features (paper) or the stride-4 ones, which keep
            object outlines on small inputs (a stride-8 map of a 64 px image is 8 x 8).
    """

    preprocess = "resize"

    def __init__(
        self,
        feature_info: list[dict],
        num_classes: int,
        head: str = "lraspp",
        aux_loss: bool = False,
        output_stride: int = 32,
        inter_chs: int = 128,
        aux_weight: float = 0.5,
        low_stride: int = 8,
        high_stride: int = 32,
    ) -> None:
        super().__init__()
        if head not in SEGMENT_HEADS:
            raise GhostkitError(f"segment head must be one of {', '.join(SEGMENT_HEADS)}, got {head!r}")
        if not 1 <= num_classes <= IGNORE_INDEX:
            raise GhostkitError(f"segment: num_classes must be in 1..{IGNORE_INDEX}, got {num_classes}")
        if feature_info is None or len(feature_info) != 4:
            raise GhostkitError("segment heads need the backbone's 4 feature maps (strides 4, 8, 16, 32)")
        if low_stride not in _LOW_INDEX:
            raise GhostkitError(f"segment: low_stride must be 4 or 8, got {low_stride}")
        if high_stride not in _HIGH_INDEX:
            raise GhostkitError(f"segment: high_stride must be 16 or 32, got {high_stride}")
        self.low, self.high = _LOW_INDEX[low_stride], _HIGH_INDEX[high_stride]
        self.num_classes, self.kind, self.output_stride, self.aux_weight = num_classes, head, output_stride, aux_weight
        chs = [f["num_chs"] for f in feature_info]
        if head == "lraspp":
            self.classifier = LRASPPHead(chs[self.low], chs[self.high], num_classes, inter_chs)
        else:
            rates = tuple(r * 16 // output_stride for r in (6, 12, 18))  # paper's rates at output stride 16
            self.classifier = DeepLabHead(chs[self.high], num_classes, rates)
        self.aux = FCNHead(chs[_AUX], num_classes) if aux_loss else None

    def forward(self, features: list[torch.Tensor], images: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        size = images.shape[-2:]
        if self.kind == "lraspp":
            x = self.classifier({"low": features[self.low], "high": features[self.high]})
        else:
            x = self.classifier(features[self.high])
        logits = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        if self.aux is not None and self.training:
            aux = F.interpolate(self.aux(features[_AUX]), size=size, mode="bilinear", align_corners=False)
            return {"out": logits, "aux": aux}
        return logits

    @staticmethod
    def logits(outputs: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
        """The main logits ``B x C x H x W`` of the head's outputs (either form)."""
        return outputs["out"] if isinstance(outputs, dict) else outputs

    def loss(self, outputs: torch.Tensor | dict[str, torch.Tensor], targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Cross-entropy over pixels, ``IGNORE_INDEX`` excluded; ``targets``: class indices ``B x H x W`` (int64).

        Returns ``{"loss", "ce"}`` plus ``"aux"`` with the auxiliary head; a batch of ignored pixels only gives 0.
        """
        terms = {"ce": _masked_ce(self.logits(outputs), targets)}
        loss = terms["ce"]
        if isinstance(outputs, dict) and "aux" in outputs:
            terms["aux"] = _masked_ce(outputs["aux"], targets)
            loss = loss + self.aux_weight * terms["aux"]
        return {"loss": loss, **terms}

    def postprocess(self, outputs: torch.Tensor | dict[str, torch.Tensor],
                    image_sizes: list[tuple[int, int]] | None = None) -> list[dict]:
        """Per image ``{"mask": int64 H x W}`` at its original size ``image_sizes[i] = (H, W)``: logits resized
        bilinearly, then argmax (in strips for very large images)."""
        logits = self.logits(outputs).detach()
        sizes = image_sizes or [tuple(logits.shape[-2:])] * len(logits)
        return [{"mask": resize_argmax(lg, tuple(s)).cpu()} for lg, s in zip(logits, sizes)]

    def format_result(self, result: dict, class_names: list[str], **options) -> dict:
        """``{"size": [H, W], "classes_present": [...], "pixel_fraction": {class: fraction}}`` of the classes
        present; ``options`` (other tasks' ``topk``, ``threshold``) do not apply."""
        mask = result["mask"]
        counts = torch.bincount(mask.flatten(), minlength=self.num_classes).tolist()
        total = max(1, mask.numel())
        names = _names(class_names, self.num_classes)
        present = [i for i, n in enumerate(counts) if n > 0]
        return {"size": list(mask.shape), "classes_present": [names[i] for i in present],
                "pixel_fraction": {names[i]: round(counts[i] / total, 6) for i in present}}

    def render(self, image, result: dict, class_names: list[str]) -> dict:
        """``{"mask": palette PNG of class indices (mode "P"), "overlay": the image with classes tinted}``; a class
        called "background" is left untinted."""
        import numpy as np
        from PIL import Image

        mask = result["mask"].to(torch.uint8).numpy()
        palette = color_palette()
        pil_mask = Image.fromarray(mask)
        pil_mask.putpalette([v for rgb in palette for v in rgb])  # "L" → "P", indices kept
        rgb = image.convert("RGB")
        if rgb.size != pil_mask.size:  # a result of another size than the picture: draw at the result's size
            rgb = rgb.resize(pil_mask.size)
        colours = np.asarray(palette, dtype=np.float32)[mask]
        names = _names(class_names, self.num_classes)
        tint = mask != 0 if names[0].lower() in ("background", "_background_", "bg") else np.ones_like(mask, bool)
        base = np.asarray(rgb, dtype=np.float32)
        out = np.where(tint[..., None], 0.45 * base + 0.55 * colours, base)
        return {"mask": pil_mask, "overlay": Image.fromarray(out.round().astype(np.uint8))}


def _masked_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the non-ignored pixels (0, not NaN, when every pixel is ignored)."""
    if logits.shape[-2:] != targets.shape[-2:]:
        logits = F.interpolate(logits, size=targets.shape[-2:], mode="bilinear", align_corners=False)
    total = F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / (targets != IGNORE_INDEX).sum().clamp(min=1)


def _names(class_names: list[str], n: int) -> list[str]:
    return list(class_names) if len(class_names) >= n else [f"class_{i}" for i in range(n)]
