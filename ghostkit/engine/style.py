"""Style transfer: data, head config and metrics for the engine.

The metrics are measured by one fixed evaluation network, whatever loss network a model was trained with, so that
runs compare: ``ghostnet_100`` ``features_only`` with random weights drawn from seed :data:`EVAL_SEED` (stage ends
at strides 2, 4, 8, 16; ImageNet-normalised input), a different draw from any training loss network (those use the
run's ``--seed``, default 0), so a model is not scored by the network it was optimised against.

* ``content_loss``: mean over val photos of the content distance at stride 8 (:func:`content_distance`);
* ``style_loss``: mean of the Gram-matrix style distance to the style image over the four stages
  (:func:`style_distance`);
* ``ssim_content``: SSIM (torchmetrics, 11 px Gaussian window) between the luma (BT.601) of the stylised image and
  of the photo: how much of the photo's structure is kept, whatever the colours;
* the same three for the colour-matching baseline (:func:`match_colour`: the photo's RGB mean and covariance
  mapped onto the style's) under ``*_baseline``;
* ``style_reduction = 1 - style_loss / style_loss_baseline``: how far below the baseline's style loss the model
  gets (higher is better; the primary metric).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torchmetrics.image import StructuralSimilarityIndexMeasure

from ..data.tasks import build_task_data
from ..errors import GhostkitError
from ..tasks.style import (
    CONTENT_STAGE,
    STYLE_DEPTH,
    STYLE_HEADS,
    STYLE_WIDTH,
    _features,
    content_distance,
    gram,
    loss_network,
    match_colour,
    style_distance,
)
from .config import TrainConfig
from .spec import TaskData, TaskSpec, register_spec

__all__ = ["EVAL_SEED", "StyleMetrics", "StyleSpec"]

EVAL_SEED = 2016
_LUMA = (0.299, 0.587, 0.114)


def _luma(x: torch.Tensor) -> torch.Tensor:
    return (x * x.new_tensor(_LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)


class StyleMetrics(nn.Module):
    """``update(outputs, targets)``: the head's ``{"image"}`` and ``{"content", "style"}`` (module docstring).

    ``style``: a one-style model's own style image ``1 x 3 x h x w`` (None: the targets'); ``render``: an
    arbitrary-style model's ``(photos, styles) -> images``, which renders each photo in its target style (the
    outputs then go unused: in eval mode they show the model's kept style); ``net``: another evaluation network
    (``benchmarks/style_quality.py`` scores with a trained classifier's stages too; default: the fixed random one)."""

    def __init__(self, style: torch.Tensor | None = None, render: Callable | None = None,
                 net: nn.Module | None = None) -> None:
        super().__init__()
        self.style = style
        self.render = [render]  # in a list: the head is the model's, not a submodule of the metric
        self.net = net if net is not None else loss_network("ghostnet_100", EVAL_SEED)
        self.ssim = StructuralSimilarityIndexMeasure(data_range=1.0)
        self.ssim_baseline = StructuralSimilarityIndexMeasure(data_range=1.0)
        self.sums: dict[str, float] = {}
        self.count = 0

    @torch.no_grad()
    def update(self, outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> None:
        photos = targets["content"].float()
        style = (self.style if self.style is not None else targets["style"]).float().to(photos.device)
        out = outputs["image"] if self.render[0] is None else self.render[0](photos, style)
        out = out.detach().float().clamp(0, 1)
        base = match_colour(photos, style)
        grams = [gram(f) for f in _features(self.net, style)]
        target = _features(self.net, photos)[CONTENT_STAGE]
        for suffix, image in (("", out), ("_baseline", base)):
            feats = _features(self.net, image)
            for key, value in (("content_loss", content_distance(feats[CONTENT_STAGE], target)),
                               ("style_loss", style_distance(feats, grams))):
                self.sums[key + suffix] = self.sums.get(key + suffix, 0.0) + float(value.sum())
        self.count += photos.shape[0]
        self.ssim.update(_luma(out), _luma(photos))
        self.ssim_baseline.update(_luma(base), _luma(photos))

    def compute(self) -> dict:
        n = max(1, self.count)
        values = {k: v / n for k, v in self.sums.items()}
        values["ssim_content"] = float(self.ssim.compute())
        values["ssim_content_baseline"] = float(self.ssim_baseline.compute())
        values["style_reduction"] = 1.0 - values["style_loss"] / max(values["style_loss_baseline"], 1e-12)
        return values

    def reset(self) -> None:
        self.sums, self.count = {}, 0
        self.ssim.reset()
        self.ssim_baseline.reset()


class StyleSpec(TaskSpec):
    """``--task style``: ``--head johnson`` (default: one style per model, ``--style IMAGE``, default the built-in
    ``mosaic``; ``--width`` / ``--depth`` of the transform network) or ``--head adain`` (any style; ``--style DIR``
    of style images, default the built-in set ``styles``); ``--content-weight``, ``--style-weight``, ``--tv-weight``
    (johnson), ``--model`` the GhostNet of the loss network / AdaIN encoder (``--pretrained FILE``: its weights;
    otherwise random weights drawn from ``--seed``), ``--imgsz`` the training crop. Images stay in [0, 1]
    (mean 0, std 1)."""

    name = "style"

    def __init__(self) -> None:
        self._style = None  # the style image of the data last built (training)

    def build_data(self, cfg: TrainConfig) -> TaskData:
        if cfg.head not in (None, *STYLE_HEADS):
            raise GhostkitError(f"--head {cfg.head!r}: style heads are {', '.join(STYLE_HEADS)}")
        data = build_task_data(self.name, cfg.data, cfg.imgsz, cfg.val_fraction, cfg.seed, style=cfg.style,
                               style_set=cfg.head == "adain")
        self._style = data.source.style
        return data

    def attach_data(self, data: TaskData) -> None:
        # a multi-task run (--task classify,style) builds the data elsewhere: its style image comes along
        self._style = getattr(data.source, "style", None)

    def head_config(self, cfg: TrainConfig, data: TaskData) -> dict:
        if cfg.head == "adain":
            if data.imgsz % 8:
                raise GhostkitError(f"--imgsz must be a multiple of 8 for --head adain, got {data.imgsz}")
            return {"head": "adain", "loss_model": cfg.model, "loss_seed": cfg.seed,
                    "content_weight": cfg.content_weight, "style_weight": cfg.style_weight,
                    "style_size": list(data.source.style.shape[-2:])}
        if data.imgsz % 4:
            raise GhostkitError(f"--imgsz must be a multiple of 4 for style transfer, got {data.imgsz}")
        return {"width": cfg.width or STYLE_WIDTH, "depth": cfg.depth or STYLE_DEPTH, "loss_model": cfg.model,
                "loss_seed": cfg.seed,
                "content_weight": cfg.content_weight, "style_weight": cfg.style_weight, "tv_weight": cfg.tv_weight,
                "style_size": list(data.source.style.shape[-2:])}

    def metrics(self, class_names: list[str], cfg: TrainConfig, head: nn.Module) -> nn.Module:
        # a fresh head (training) keeps its data's style; a trained one (ghostkit val) is measured against its own
        if not bool(head.style_image.any()) and self._style is not None:
            head.set_style(self._style)
        self._style = None
        if getattr(head, "arbitrary", False):
            return StyleMetrics(render=head.stylise)
        return StyleMetrics(head.style)


register_spec(StyleSpec())
