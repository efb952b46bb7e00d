"""Image classification head (single- and multi-label) on a GhostNet backbone.

The head is GhostNet's own: global average pool → 1x1 conv to 1280 → ReLU → dropout → linear. Its parameter names
(``conv_head``, ``classifier``) equal the ImageNet classifier's, so pretrained heads transfer as they are.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import register_head

__all__ = ["ClassifyHead"]


@register_head("classify", "multilabel")
class ClassifyHead(nn.Module):
    """``head(features, images) -> logits (B x num_classes)`` from the last (stride 32) feature map.

    Args:
        feature_info: the backbone's ``feature_info`` (the last entry's ``num_chs`` is used).
        num_classes: number of classes.
        multilabel: sigmoid + binary cross-entropy per class instead of softmax cross-entropy.
        hidden: width of the 1x1 conv before the classifier (GhostNet: 1280).
        dropout: dropout before the classifier.
        label_smoothing: for single-label cross-entropy.
        prior: multi-label only: the fraction of training images showing each class (``num_classes`` values); the
            classifier's biases start at its log-odds, so every sigmoid starts at its class's frequency instead of
            0.5 (as RetinaNet initialises its classification biases). A zero-bias start spends the first steps
            pushing all scores down to the frequencies, and in short runs the features learn little while the
            loss is dominated by that.
        threshold: multi-label decision threshold of ``format_result`` and ``render`` when none is given (training
            chooses it on the training images: ``ghostkit.engine.classify.choose_threshold``).
    """

    preprocess = "resize"

    def __init__(
        self,
        feature_info: list[dict],
        num_classes: int,
        multilabel: bool = False,
        hidden: int = 1280,
        dropout: float = 0.2,
        label_smoothing: float = 0.0,
        prior: list[float] | None = None,
        threshold: float = 0.5,
    ) -> None:
        super().__init__()
        self.num_classes, self.multilabel, self.label_smoothing = num_classes, multilabel, label_smoothing
        self.threshold = threshold
        self.conv_head = nn.Conv2d(feature_info[-1]["num_chs"], hidden, 1, bias=True)
        self.act2 = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, num_classes)
        if multilabel and prior is not None:
            if len(prior) != num_classes:
                raise ValueError(f"prior has {len(prior)} values for {num_classes} classes")
            p = torch.tensor(prior, dtype=torch.float32).clamp(1e-3, 1 - 1e-3)  # a class seen never / always
            with torch.no_grad():
                self.classifier.bias.copy_(torch.log(p / (1 - p)))

    def forward(self, features: list[torch.Tensor], images: torch.Tensor | None = None) -> torch.Tensor:
        x = self.act2(self.conv_head(features[-1].mean((2, 3), keepdim=True))).flatten(1)
        return self.classifier(self.dropout(x))

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """``targets``: class indices ``B`` or (soft, from Mixup/CutMix, or multi-hot) ``B x num_classes``."""
        if self.multilabel:
            loss = F.binary_cross_entropy_with_logits(logits, targets.float())
        else:
            loss = F.cross_entropy(logits, targets, label_smoothing=self.label_smoothing)
        return {"loss": loss}

    def postprocess(self, logits: torch.Tensor, image_sizes: list[tuple[int, int]] | None = None) -> list[dict]:
        """Per image ``{"scores": probabilities (num_classes,)}``: softmax, or sigmoid for multi-label."""
        probs = logits.sigmoid() if self.multilabel else logits.softmax(-1)
        return [{"scores": p} for p in probs]

    def format_result(self, result: dict, class_names: list[str], topk: int = 5,
                      threshold: float | None = None) -> dict:
        """Top-k ``[{"class", "index", "score"}]`` (softmax), or for multi-label the classes scoring ≥ ``threshold``
        (default: the head's) under ``"labels"`` plus every class's score under ``"scores"``."""
        scores = result["scores"].float().cpu()
        threshold = self.threshold if threshold is None else threshold
        if self.multilabel:
            idx = [int(i) for i in torch.nonzero(scores >= threshold).flatten()]
            return {"labels": [{"class": class_names[i], "index": i, "score": float(scores[i])} for i in idx],
                    "scores": {c: float(s) for c, s in zip(class_names, scores)}}
        vals, idx = scores.topk(min(topk, len(scores)))
        return {"topk": [{"class": class_names[int(i)], "index": int(i), "score": float(v)} for v, i in zip(vals, idx)]}

    def render(self, image, result: dict, class_names: list[str]) -> dict:
        """The image with its top class (or the multi-label classes) written on it."""
        from PIL import ImageDraw

        scores = result["scores"].float().cpu()
        if self.multilabel:
            text = ", ".join(class_names[i] for i in torch.nonzero(scores >= self.threshold).flatten().tolist()) or "-"
        else:
            i = int(scores.argmax())
            text = f"{class_names[i]} {float(scores[i]):.2f}"
        out = image.convert("RGB").copy()
        draw = ImageDraw.Draw(out)
        draw.rectangle([0, 0, min(out.width, 8 + 7 * len(text)), 14], fill=(0, 0, 0))
        draw.text((3, 2), text, fill=(255, 255, 0))
        return {"": out}
