"""Object detection heads on GhostNet's multi-scale features, assembled from torchvision's detection parts.

* ``ssdlite`` — SSDLite (SSD, https://arxiv.org/abs/1512.02325, with the depthwise-separable prediction blocks of
  MobileNetV2, https://arxiv.org/abs/1801.04381, section 6.2): torchvision's ``SSDLiteHead`` on the stride 16 and 32
  maps plus extra stride-2 blocks, ``DefaultBoxGenerator`` default boxes, ``SSDMatcher``, softmax cross-entropy with
  3:1 hard negative mining and smooth-L1 regression (``BoxCoder`` weights 10, 10, 5, 5).
* ``fcos`` — FCOS (https://arxiv.org/abs/1904.01355): ``FeaturePyramidNetwork`` + torchvision's ``FCOSHead`` (focal,
  GIoU and centre-ness losses, plus ghostkit's softmax cross-entropy between the classes at object locations);
  anchor-free: one point per location, centre sampling and a size range per level.
* ``retinanet`` — RetinaNet (https://arxiv.org/abs/1708.02002): FPN + ``RetinaNetHead`` + ``AnchorGenerator``
  (3 scales x 3 aspect ratios per level), IoU ``Matcher`` (0.5 / 0.4) and focal loss.

Every head takes targets as a list (one per image) of ``{"boxes": N x 4 xyxy in input pixels, "labels": N int64 in
0..C-1}`` (an image without objects is a valid negative) and returns outputs as a dict of ``cls_logits`` (B x A x K),
``bbox_regression`` (B x A x 4), ``bbox_ctrness`` (FCOS, B x A x 1), ``anchors`` (A x 4, xyxy input pixels) and
``image_size`` (the network input's H, W). ``postprocess`` thresholds (``conf``), runs class-wise NMS (``iou``), keeps
``max_det`` boxes and maps them from the input size to each original image size.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.anchor_utils import AnchorGenerator, DefaultBoxGenerator
from torchvision.models.detection.fcos import FCOSHead
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.models.detection.ssdlite import SSDLiteHead, _extra_block
from torchvision.ops import FeaturePyramidNetwork, batched_nms, box_iou, clip_boxes_to_image
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from ..errors import GhostkitError
from . import register_head
from .detect_results import draw_detections, format_detections, rescale_boxes

__all__ = ["DetectHead", "SSDLiteDetect", "FCOSDetect", "RetinaNetDetect", "DETECT_ARCHS", "DEFAULT_ARCH",
           "detect_head_config", "draw_detections"]

DETECT_ARCHS: dict[str, type[DetectHead]] = {}
DEFAULT_ARCH = "fcos"  # trains best in CPU-sized runs on built-in shapes (benchmarks/detect_speed.py --compare)


def _arch(name: str):
    def wrap(cls: type[DetectHead]) -> type[DetectHead]:
        cls.arch = name
        DETECT_ARCHS[name] = cls
        return cls

    return wrap


@register_head("detect")
class DetectHead(nn.Module):
    """Base of the detection heads. ``DetectHead(feature_info, arch=NAME, **cfg)`` builds the head class registered
    under ``NAME`` (``ssdlite``, ``fcos`` or ``retinanet``), so a checkpoint's head config alone rebuilds it.

    Args (common to every head):
        num_classes: object classes (no background class; labels are 0..num_classes-1).
        conf: score threshold of ``postprocess`` (predictions; validation passes a lower one for mAP).
        iou: IoU threshold of the class-wise NMS.
        max_det: detections kept per image.
        topk_candidates: highest-scoring (anchor, class) pairs decoded per image before NMS.
    """

    shared_outputs = ("anchors", "image_size")  # the same for every image of a batch (``TaskModel.select``)
    preprocess = "resize"
    arch = ""

    def __new__(cls, *args, arch: str = DEFAULT_ARCH, **kwargs):
        if cls is DetectHead:
            if arch not in DETECT_ARCHS:
                raise GhostkitError(f"unknown detection head {arch!r}; available: {', '.join(DETECT_ARCHS)}")
            cls = DETECT_ARCHS[arch]
        return super().__new__(cls)

    def __init__(self, num_classes: int, conf: float = 0.25, iou: float = 0.5, max_det: int = 100,
                 topk_candidates: int = 1000) -> None:
        super().__init__()
        if num_classes < 1:
            raise GhostkitError(f"detection needs at least one class, got num_classes={num_classes}")
        self.num_classes, self.conf, self.iou, self.max_det = num_classes, conf, iou, max_det
        self.topk_candidates = topk_candidates
        self._anchor_cache: dict[tuple, torch.Tensor] = {}

    # -- per-architecture parts -------------------------------------------------------------------------------
    def predict_levels(self, features: list[torch.Tensor]) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        """Feature maps the anchors live on, and the raw head outputs over all their locations."""
        raise NotImplementedError

    def make_anchors(self, levels: list[torch.Tensor], image_size: tuple[int, int]) -> torch.Tensor:
        """Anchors / default boxes / points of all levels: A x 4, xyxy in input pixels. ``levels`` are empty float32
        stand-ins with the maps' sizes."""
        raise NotImplementedError

    def class_scores(self, outputs: dict) -> torch.Tensor:
        """Per (anchor, class) confidence in [0, 1]: B x A x num_classes."""
        raise NotImplementedError

    def decode(self, rel_codes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """Regression outputs (N x 4) of ``anchors`` (N x 4) → boxes, xyxy input pixels."""
        raise NotImplementedError

    def loss(self, outputs: dict, targets: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------------------------------------
    def forward(self, features: list[torch.Tensor], images: torch.Tensor) -> dict:
        levels, outputs = self.predict_levels(features)
        size = (int(images.shape[-2]), int(images.shape[-1]))
        key = (size, tuple(tuple(f.shape[-2:]) for f in levels), levels[0].device)
        anchors = self._anchor_cache.get(key)
        if anchors is None:  # anchors depend only on the sizes: made once per input size, in float32 also under
            # mixed precision (bfloat16 would round 320 px coordinates to 2 px); the generators only read the shapes
            shapes = [torch.empty(0, 0, *f.shape[-2:], device=f.device) for f in levels]
            anchors = self._anchor_cache[key] = self.make_anchors(shapes, size)
        outputs["anchors"] = anchors
        outputs["image_size"] = size
        return outputs

    def _apply(self, fn, recurse: bool = True):
        self._anchor_cache = {}  # .to(device / dtype) invalidates cached anchors
        return super()._apply(fn, recurse)

    @torch.no_grad()
    def postprocess(self, outputs: dict, image_sizes: list[tuple[int, int]] | None = None,
                    conf: float | None = None) -> list[dict[str, torch.Tensor]]:
        """Per image ``{"boxes": N x 4 xyxy, "scores": N, "labels": N int64}`` in the coordinates of
        ``image_sizes`` (original ``(H, W)`` per image; default: the network input size), best first."""
        conf = self.conf if conf is None else conf
        if "detections" in outputs:  # already decoded and merged (test-time augmentation, ``tta_outputs``)
            return [rescale_boxes({k: v[d["scores"] > conf] for k, v in d.items()}, outputs["image_size"], image_sizes,
                                  i) for i, d in enumerate(outputs["detections"])]
        scores_all = self.class_scores(outputs)
        anchors, (in_h, in_w) = outputs["anchors"], outputs["image_size"]
        results = []
        for i in range(scores_all.shape[0]):
            scores = scores_all[i].flatten()
            idx = torch.nonzero(scores > conf).flatten()
            if idx.numel() > self.topk_candidates:
                idx = idx[scores[idx].topk(self.topk_candidates).indices]
            scores, anchor_idx, labels = scores[idx], idx // self.num_classes, idx % self.num_classes
            boxes = self.decode(outputs["bbox_regression"][i, anchor_idx].float(), anchors[anchor_idx].float())
            boxes = clip_boxes_to_image(boxes, (in_h, in_w))
            keep = batched_nms(boxes, scores.float(), labels, self.iou)[: self.max_det]
            result = {"boxes": boxes[keep], "scores": scores[keep].float(), "labels": labels[keep]}
            results.append(rescale_boxes(result, (in_h, in_w), image_sizes, i))
        return results

    def format_result(self, result: dict, class_names: list[str], **options) -> dict:
        """``{"detections": [{"class", "index", "score", "box": [x1, y1, x2, y2]}]}`` (original image pixels)."""
        return {"detections": format_detections(result, class_names)}

    def render(self, image, result: dict, class_names: list[str]) -> dict:
        """``{"": the image with its boxes and "class score" labels}``; small images are enlarged first so the
        labels stay legible."""
        return {"": draw_detections(image, result, class_names)}


def _levels_of(feature_info: list[dict], strides: list[int]) -> list[int]:
    """Indices into the backbone's feature list of the maps with the given strides."""
    by_stride = {f["reduction"]: i for i, f in enumerate(feature_info)}
    missing = [s for s in strides if s not in by_stride]
    if missing:
        raise GhostkitError(f"the backbone has no stride {missing} features (has {sorted(by_stride)})")
    return [by_stride[s] for s in strides]


def _grid_anchors(generator: AnchorGenerator, levels: list[torch.Tensor], strides: list[int]) -> torch.Tensor:
    """``generator``'s anchors on the true stride of each level, shifted half a stride so that each one is centred
    on its cell (torchvision puts them on the cell's corner; it also derives strides by integer division, which is
    wrong for input sizes that are not multiples of the stride)."""
    ref = levels[0]
    generator.set_cell_anchors(ref.dtype, ref.device)
    grid = [list(f.shape[-2:]) for f in levels]
    steps = [[torch.tensor(s, device=ref.device), torch.tensor(s, device=ref.device)] for s in strides]
    per_level = generator.grid_anchors(grid, steps)
    return torch.cat([a + s / 2 for a, s in zip(per_level, strides)])


class _FPNHead(DetectHead):
    """Shared FPN neck of FCOS and RetinaNet: ``FeaturePyramidNetwork`` over the backbone maps at ``strides``, plus
    torchvision's P6/P7 (``LastLevelP6P7``) when ``p6p7``; the subclass sets ``head`` (run on every level) and
    ``anchor_generator``."""

    def _build_fpn(self, feature_info: list[dict], strides: list[int], fpn_chs: int, p6p7: bool) -> None:
        self.level_idx = _levels_of(feature_info, strides)
        in_chs = [feature_info[i]["num_chs"] for i in self.level_idx]
        self.fpn = FeaturePyramidNetwork(in_chs, fpn_chs, extra_blocks=LastLevelP6P7(fpn_chs, fpn_chs) if p6p7
                                         else None)
        self.strides = list(strides) + ([strides[-1] * 2, strides[-1] * 4] if p6p7 else [])

    def predict_levels(self, features):
        levels = list(self.fpn(OrderedDict((str(i), features[i]) for i in self.level_idx)).values())
        return levels, self.head(levels)

    def make_anchors(self, levels, image_size):
        # ``anchor_generator``: one point per location (FCOS) or RetinaNet's scales x ratios, set by the subclass
        return _grid_anchors(self.anchor_generator, levels, self.strides)


@_arch("fcos")
class FCOSDetect(_FPNHead):
    """FCOS on a GhostNet FPN.

    Args:
        feature_info: the backbone's ``feature_info``.
        num_classes, conf, iou, max_det, topk_candidates: see :class:`DetectHead`.
        strides: backbone maps feeding the FPN (P3-P5 by default).
        fpn_chs: FPN and head width (a multiple of 32: the head's GroupNorm has 32 groups).
        p6p7: add the stride 64 and 128 levels (for inputs of about 256 px and more).
        num_convs: conv + GroupNorm + ReLU layers of each head tower (FCOS: 4).
        separable: the tower convs are depthwise 3x3 + pointwise 1x1 pairs (as in NanoDet's head; PyTorch's default
            initialisation) instead of FCOS's full 3x3 convs: about 8x fewer multiply-adds per layer.
        scale_range: a level of stride s learns the objects whose largest distance from a location to a box side
            lies in (scale_range * s, 2 * scale_range * s] (FCOS: 4, i.e. 64 px on P3; the first level takes all
            smaller objects, the last all larger ones).
        center_radius: centre sampling: positive locations lie within ``center_radius * s`` of the box centre.
        class_ce: weight of a softmax cross-entropy over the class logits at the positive locations, added to
            FCOS's losses (0: FCOS's alone): the sigmoid focal loss barely pushes down a wrong class of middling
            score, so similar small objects stay confused. 0.25 (with the box start) raised held-out mAP50 in 7 of
            8 recipe_dense runs, level in the last (docs/benchmarks.md, Tracking); weight 1 cost recall.
    """

    def __init__(self, feature_info: list[dict], num_classes: int, arch: str = "fcos", conf: float = 0.25,
                 iou: float = 0.5, max_det: int = 100, topk_candidates: int = 1000, strides: list[int] = (8, 16, 32),
                 fpn_chs: int = 64, p6p7: bool = False, num_convs: int = 4, scale_range: float = 4.0,
                 center_radius: float = 1.5, class_ce: float = 0.25, separable: bool = False) -> None:
        super().__init__(num_classes, conf, iou, max_det, topk_candidates)
        if not math.isfinite(class_ce) or class_ce < 0:
            raise GhostkitError(f"fcos: class_ce must be a finite weight >= 0, got {class_ce}")
        if fpn_chs % 32:
            raise GhostkitError(f"fcos: fpn_chs must be a multiple of 32 (GroupNorm groups), got {fpn_chs}")
        self._build_fpn(feature_info, list(strides), fpn_chs, p6p7)
        self.scale_range, self.center_radius, self.class_ce = scale_range, center_radius, class_ce
        self.head = FCOSHead(fpn_chs, num_anchors=1, num_classes=num_classes, num_convs=num_convs)
        for tower in (self.head.classification_head.conv, self.head.regression_head.conv) if separable else ():
            for i in [i for i, layer in enumerate(tower) if isinstance(layer, nn.Conv2d)]:
                tower[i] = nn.Sequential(nn.Conv2d(fpn_chs, fpn_chs, 3, padding=1, groups=fpn_chs, bias=False),
                                         nn.Conv2d(fpn_chs, fpn_chs, 1))
        # box distances start at one stride, not torchvision's 0 (half the ReLU outputs at the floor): a side whose
        # outputs all fall below 0 never learns again (one died in an 8-epoch run, mAP50 0.07; 0.38 with this start)
        nn.init.constant_(self.head.regression_head.bbox_reg.bias, 1.0)
        # one "anchor" per location, as big as its stride: the regression is normalised by it
        self.anchor_generator = AnchorGenerator(tuple((s,) for s in self.strides), ((1.0,),) * len(self.strides))

    def class_scores(self, outputs):
        return torch.sqrt(outputs["cls_logits"].sigmoid() * outputs["bbox_ctrness"].sigmoid())

    def decode(self, rel_codes, anchors):
        return self.head.box_coder.decode(rel_codes, anchors)

    def match(self, anchors: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """FCOS assignment: index of the box each location regresses (A, int64), -1 for background."""
        if boxes.numel() == 0:
            return torch.full((anchors.shape[0],), -1, dtype=torch.int64, device=anchors.device)
        points = (anchors[:, :2] + anchors[:, 2:]) / 2
        stride = anchors[:, 2] - anchors[:, 0]
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        near = (points[:, None] - centres[None]).abs().amax(2) < self.center_radius * stride[:, None]
        x, y = points[:, 0:1], points[:, 1:2]
        dist = torch.stack([x - boxes[:, 0], y - boxes[:, 1], boxes[:, 2] - x, boxes[:, 3] - y], dim=2)  # A x M x 4
        lower, upper = self.scale_range * stride, 2 * self.scale_range * stride
        lower[stride == stride.min()] = 0
        upper[stride == stride.max()] = float("inf")
        reach = dist.amax(2)
        ok = near & (dist.amin(2) > 0) & (reach > lower[:, None]) & (reach <= upper[:, None])
        # a location inside several boxes regresses the smallest one
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        cost = torch.where(ok, area[None].expand_as(ok), torch.full_like(dist[..., 0], float("inf")))
        best, idx = cost.min(1)
        idx[torch.isinf(best)] = -1
        return idx

    def loss(self, outputs, targets):
        anchors = outputs["anchors"]
        matched = [self.match(anchors, t["boxes"]) for t in targets]
        head_out = {k: outputs[k].float() for k in ("cls_logits", "bbox_regression", "bbox_ctrness")}
        terms = self.head.compute_loss(targets, head_out, [anchors.float()] * len(targets), matched)
        cls, box, ctr = terms["classification"], terms["bbox_regression"], terms["bbox_ctrness"]
        out = {"loss": cls + box + ctr, "cls": cls.detach(), "box": box.detach(), "ctr": ctr.detach()}
        if self.class_ce:
            ce = self.class_cross_entropy(head_out["cls_logits"], matched, targets)
            out.update(loss=out["loss"] + self.class_ce * ce, ce=ce.detach())
        return out

    @staticmethod
    def class_cross_entropy(logits: torch.Tensor, matched: list[torch.Tensor], targets: list[dict]) -> torch.Tensor:
        """Mean softmax cross-entropy of the class logits (B x A x K) at the locations matched to a box, against
        that box's label; 0 (with a gradient path) when no location is matched."""
        labels = torch.cat([t["labels"][m[m >= 0]] for m, t in zip(matched, targets)])
        return F.cross_entropy(logits[torch.stack(matched) >= 0], labels) if len(labels) else logits.sum() * 0


@_arch("retinanet")
class RetinaNetDetect(_FPNHead):
    """RetinaNet on a GhostNet FPN.

    Args:
        feature_info, num_classes, conf, iou, max_det, topk_candidates: see :class:`DetectHead`.
        strides, fpn_chs, p6p7: FPN levels and width (see :class:`FCOSDetect`).
        anchor_scale: base anchor size in strides (RetinaNet: 4, i.e. 32 px on P3), with octave scales 2^0, 2^(1/3),
            2^(2/3) and aspect ratios 0.5, 1, 2 per location.
        group_norm: GroupNorm(32) in the head towers (torchvision's RetinaNet v2) instead of none.
        giou: GIoU box loss (torchvision's RetinaNet v2) instead of L1 on the encoded offsets.
    """

    def __init__(self, feature_info: list[dict], num_classes: int, arch: str = "retinanet", conf: float = 0.25,
                 iou: float = 0.5, max_det: int = 100, topk_candidates: int = 1000, strides: list[int] = (8, 16, 32),
                 fpn_chs: int = 64, p6p7: bool = False, anchor_scale: float = 4.0, group_norm: bool = True,
                 giou: bool = True) -> None:
        super().__init__(num_classes, conf, iou, max_det, topk_candidates)
        if group_norm and fpn_chs % 32:
            raise GhostkitError(f"retinanet: fpn_chs must be a multiple of 32 with group_norm, got {fpn_chs}")
        self._build_fpn(feature_info, list(strides), fpn_chs, p6p7)
        sizes = tuple(tuple(anchor_scale * s * 2 ** (k / 3) for k in range(3)) for s in self.strides)
        self.anchor_generator = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))
        norm = partial(nn.GroupNorm, 32) if group_norm else None
        self.head = RetinaNetHead(fpn_chs, self.anchor_generator.num_anchors_per_location()[0], num_classes,
                                  norm_layer=norm)
        if giou:
            self.head.regression_head._loss_type = "giou"
        self.matcher = det_utils.Matcher(0.5, 0.4, allow_low_quality_matches=True)

    def class_scores(self, outputs):
        return outputs["cls_logits"].sigmoid()

    def decode(self, rel_codes, anchors):
        return self.head.regression_head.box_coder.decode_single(rel_codes, anchors)

    def match(self, anchors: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        if boxes.numel() == 0:  # torchvision's Matcher refuses images without boxes
            return torch.full((anchors.shape[0],), -1, dtype=torch.int64, device=anchors.device)
        return self.matcher(box_iou(boxes, anchors))

    def loss(self, outputs, targets):
        anchors = outputs["anchors"].float()
        matched = [self.match(anchors, t["boxes"]) for t in targets]
        head_out = {k: outputs[k].float() for k in ("cls_logits", "bbox_regression")}
        terms = self.head.compute_loss(targets, head_out, [anchors] * len(targets), matched)
        cls, box = terms["classification"], terms["bbox_regression"]
        return {"loss": cls + box, "cls": cls.detach(), "box": box.detach()}


@_arch("ssdlite")
class SSDLiteDetect(DetectHead):
    """SSDLite on GhostNet: prediction blocks on the backbone maps at ``strides`` and on ``extra_chs`` extra blocks.

    Args:
        feature_info, num_classes, conf, iou, max_det, topk_candidates: see :class:`DetectHead`.
        strides: backbone maps with prediction blocks (SSDLite: 16 and 32).
        extra_chs: output channels of the extra stride-2 blocks after the last map (SSDLite-320: 512, 256, 256, 128
            give the 5, 3, 2 and 1 px maps; smaller inputs need fewer).
        min_ratio, max_ratio: default box scales, as a fraction of the input size, of the first and last level.
        neg_ratio: hard negatives per positive in the classification loss.
    """

    def __init__(self, feature_info: list[dict], num_classes: int, arch: str = "ssdlite", conf: float = 0.25,
                 iou: float = 0.5, max_det: int = 100, topk_candidates: int = 1000, strides: list[int] = (16, 32),
                 extra_chs: list[int] = (512, 256, 256, 128), min_ratio: float = 0.2, max_ratio: float = 0.95,
                 neg_ratio: int = 3) -> None:
        super().__init__(num_classes, conf, iou, max_det, topk_candidates)
        self.level_idx = _levels_of(feature_info, list(strides))
        norm = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)  # SSDLite's BN settings
        chs = [feature_info[i]["num_chs"] for i in self.level_idx]
        extras = []
        for out_chs in extra_chs:
            extras.append(_extra_block(chs[-1], out_chs, norm))
            chs.append(out_chs)
        self.extras = nn.ModuleList(extras)
        for m in self.extras.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.03)
        self.box_generator = DefaultBoxGenerator([[2, 3]] * len(chs), min_ratio=min_ratio, max_ratio=max_ratio)
        # class 0 of the softmax is the background
        self.head = SSDLiteHead(chs, self.box_generator.num_anchors_per_location(), num_classes + 1, norm)
        self.box_coder = det_utils.BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
        self.matcher = det_utils.SSDMatcher(0.5)
        self.neg_ratio = neg_ratio

    def predict_levels(self, features):
        levels = [features[i] for i in self.level_idx]
        for block in self.extras:
            levels.append(block(levels[-1]))
        return levels, self.head(levels)

    def make_anchors(self, levels, image_size):
        fake = ImageList(levels[0].new_empty(1, 3, *image_size), [image_size])
        return self.box_generator(fake, levels)[0]

    def class_scores(self, outputs):
        return outputs["cls_logits"].softmax(-1)[..., 1:]

    def decode(self, rel_codes, anchors):
        return self.box_coder.decode_single(rel_codes, anchors)

    def loss(self, outputs, targets):
        anchors = outputs["anchors"].float()
        logits, regression = outputs["cls_logits"].float(), outputs["bbox_regression"].float()
        cls_target = torch.zeros(logits.shape[:2], dtype=torch.int64, device=logits.device)
        box_loss = logits.new_zeros(())
        for i, t in enumerate(targets):
            if t["boxes"].numel() == 0:
                continue
            matched = self.matcher(box_iou(t["boxes"], anchors))
            fg = torch.nonzero(matched >= 0).flatten()
            gt = matched[fg]
            cls_target[i, fg] = t["labels"][gt] + 1
            encoded = self.box_coder.encode_single(t["boxes"][gt], anchors[fg])
            box_loss = box_loss + F.smooth_l1_loss(regression[i, fg], encoded, reduction="sum")
        ce = F.cross_entropy(logits.flatten(0, 1), cls_target.flatten(), reduction="none").view_as(cls_target)
        positive = cls_target > 0
        # hard negative mining; at least neg_ratio negatives so that images without objects still teach background
        num_neg = (self.neg_ratio * positive.sum(1, keepdim=True)).clamp(min=self.neg_ratio)
        rank = ce.detach().masked_fill(positive, -1.0).argsort(1, descending=True).argsort(1)
        negative = (rank < num_neg) & ~positive
        n = max(1, int(positive.sum()))
        cls = (ce[positive].sum() + ce[negative].sum()) / n
        box = box_loss / n
        return {"loss": cls + box, "cls": cls.detach(), "box": box.detach()}


def detect_head_config(arch: str, imgsz: int) -> dict:
    """The default head config of ``arch`` for an ``imgsz`` input. Small inputs (built-in 64 px shapes) use the stride
    8-32 maps (FCOS under 128 px: stride 4-16, towers of 2 separable convs: the fastest head measured, as accurate), a
    smaller FCOS size range, smaller RetinaNet anchors and fewer SSDLite extra blocks; from 256 px on, the papers'
    settings (P6/P7, FCOS ranges of 64 px on P3, RetinaNet anchors of 4 strides, SSDLite on strides 16 / 32)."""
    small = imgsz < 256
    if arch == "fcos":  # under 128 px: the stride 4-16 maps (8 x 8 at stride 8 is too coarse for 10 px objects),
        # 2-conv towers (shapes, 30 epochs: mAP50 0.724 in 426 s against 0.706 in 559 s with FCOS's 4; recipe_dense's
        # scenes 0.683 / 0.783 against 0.633 / 0.628, its shapes 0.594 / 0.636 against 0.534 / 0.520; tracks, where 4
        # do better, 0.697 / 0.693 against 0.751 / 0.790), separable (1.2x faster training on tracks at the same mAP50
        # and tracking scores over 5 seeds; recipe_dense 0.394 / 0.401 against 0.359 / 0.406): docs/benchmarks.md
        tiny = imgsz < 128
        return {"strides": [4, 8, 16] if tiny else [8, 16, 32], "fpn_chs": 64, "p6p7": not small,
                "num_convs": 2 if tiny else 4, "separable": tiny,
                "scale_range": min(4.0, max(1.0, imgsz / 64))}
    if arch == "retinanet":
        return {"strides": [8, 16, 32], "fpn_chs": 64, "p6p7": not small,
                "anchor_scale": min(4.0, max(1.5, imgsz / 64))}
    # ssdlite: extra blocks until the last map is 1 px
    strides = [16, 32] if not small else [8, 16, 32]
    n_extra = max(0, math.ceil(math.log2(max(1.0, imgsz / 32))))
    extra = ([512, 256, 256, 128] + [128] * n_extra)[:n_extra]
    return {"strides": strides, "extra_chs": extra, "min_ratio": 0.2, "max_ratio": 0.95}
