"""Arbitrary style transfer with GhostNet: adaptive instance normalisation (AdaIN; Huang and Belongie, ICCV 2017,
https://arxiv.org/abs/1703.06868) between a frozen GhostNet encoder and a decoder of Ghost modules::

    photo c, style s (B x 3 x H x W, in [0, 1]) → GhostNet stages (frozen, ImageNet-normalised input) to the stride-8
    stage end (ADAIN_STAGE): f_c, f_s → t = σ(f_s) (f_c - μ(f_c)) / σ(f_c) + μ(f_s) (per channel, over positions)
    → t_α = α t + (1 - α) f_c → decoder: 3 x [Ghost module → nearest x2 → Ghost module] (channels 96, 48, 24)
    → 3x3 conv r → stylised image sigmoid(logit(b) + r), B x 3 x H x W

with ``b = c + α (match_colour(c, s) - c)``: the photo with its colour statistics moved towards the style's (the
colour-matching baseline, :func:`ghostkit.tasks.style.match_colour`). The style enters through AdaIN's statistics
``μ(f_s)``, ``σ(f_s)`` and through ``b``'s colours; the decoder renders texture on top of ``b`` (its last conv
starts at zero: the untrained head renders the baseline), which a short CPU training reaches where a decoder
that draws the whole image from features alone does not (a flat grey image after the same number of steps). The
decoder has no normalisation (a normalisation would undo the statistics AdaIN has just set), so its Ghost modules
keep the primary and cheap convolutions with ReLU only.

Losses (as the paper, with the loss network being the encoder itself, see :mod:`ghostkit.tasks.style`):

* content: the feature distance between the decoded image's stride-8 features and ``t`` (not the photo's features:
  the decoder is trained to invert AdaIN), divided by ``mean(t²)``;
* style: the Gram-matrix distance of :func:`ghostkit.tasks.style.style_distance` over the encoder's stride 2, 4, 8
  and 16 stages to each photo's own style image (the metric the one-style models and the evaluation use).

The encoder is :func:`ghostkit.tasks.style.loss_network` (``--model``, random weights from ``--seed`` or
``--pretrained`` weights), never trained. The head keeps one style image (``style_image``, saved in checkpoints):
the one :meth:`forward` renders in eval mode, and so the one an ONNX export bakes in (``ghostkit predict --style``
replaces it; the exported graph has one image input, as every ghostkit model, and runs the style branch on its
constant style image, which ONNX Runtime folds away at load time).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GhostkitError
from ..models.ghostnet import GhostModule
from .style import StyleHead, _features, content_distance, gram, loss_network, match_colour, style_distance

__all__ = ["AdaINHead", "GhostDecoder", "adain", "ADAIN_STAGE"]

ADAIN_STAGE = 2  # index into LOSS_STAGES: the stride-8 stage end, where the paper puts AdaIN (VGG's relu4_1)


def adain(content: torch.Tensor, style: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``B x C x H x W`` content features with the per-channel mean and standard deviation of ``style``'s
    (``B x C x h x w``, or ``1 x ...`` for one style)."""
    mu_c, mu_s = content.mean((2, 3), keepdim=True), style.mean((2, 3), keepdim=True)
    sd_c = (content.var((2, 3), keepdim=True, unbiased=False) + eps).sqrt()
    sd_s = (style.var((2, 3), keepdim=True, unbiased=False) + eps).sqrt()
    return sd_s * (content - mu_c) / sd_c + mu_s


def _plain_ghost(in_chs: int, out_chs: int) -> GhostModule:
    """A Ghost module with ReLU and no normalisation (its BatchNorms replaced by identities)."""
    module = GhostModule(in_chs, out_chs, act=True)
    for parent in list(module.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.BatchNorm2d):
                setattr(parent, name, nn.Identity())
    return module


class GhostDecoder(nn.Sequential):
    """Stride-8 features ``B x in_chs x H/8 x W/8`` → residual ``B x 3 x H x W`` in logit space (zero at
    initialisation; module docstring)."""

    def __init__(self, in_chs: int, widths: tuple[int, ...] = (96, 48, 24)) -> None:
        layers: list[nn.Module] = []
        chs = in_chs
        for w in widths:
            layers += [_plain_ghost(chs, w), nn.Upsample(scale_factor=2, mode="nearest"), _plain_ghost(w, w)]
            chs = w
        super().__init__(*layers, nn.Conv2d(chs, 3, 3, 1, 1, padding_mode="reflect"))
        nn.init.zeros_(self[-1].weight)
        nn.init.zeros_(self[-1].bias)


class AdaINHead(nn.Module):
    """``head(features, images) -> {"image": B x 3 x H x W}``: in eval mode the photos rendered in the kept style
    (``style_image``) at strength :attr:`alpha`; in training mode the photos themselves (the loss renders each photo
    in its own style from the targets, which the head's forward does not see).

    The targets of :meth:`loss` are ``{"content": photos B x 3 x H x W, "style": styles B x 3 x h x w}`` in [0, 1].

    Args:
        feature_info: unused (the head carries its own frozen encoder); kept for the head contract.
        head: ``"adain"`` (the key that selects this head in a style checkpoint's config).
        loss_model, loss_seed: the GhostNet variant of the encoder and the seed of its random weights.
        content_weight, style_weight: the weights of the two losses.
        max_size: longest side rendered at full resolution (larger photos: resized down and back).
        style_size: ``[h, w]`` of the kept style image.
    """

    needs_backbone = False
    preprocess = "none"
    arbitrary = True  # ``ghostkit predict --style`` may replace the kept style
    alpha = 1.0

    def __init__(self, feature_info: list[dict] | None = None, head: str = "adain", loss_model: str = "ghostnet_100",
                 loss_seed: int = 0, content_weight: float = 1.0, style_weight: float = 5.0, max_size: int = 1024,
                 style_size: list[int] | tuple[int, int] = (1, 1)) -> None:
        super().__init__()
        if min(content_weight, style_weight) < 0:
            raise GhostkitError("style: --content-weight and --style-weight must not be negative")
        if max_size < 32:
            raise GhostkitError(f"style: max_size must be at least 32 px, got {max_size}")
        self.weights = {"content": content_weight, "style": style_weight}
        self.max_size = max_size
        self.loss_net = loss_network(loss_model, loss_seed)
        self.decoder = GhostDecoder(self.loss_net.feature_info[ADAIN_STAGE]["num_chs"])
        self.register_buffer("style_image", torch.zeros(3, *style_size, dtype=torch.uint8))

    def set_style(self, style: torch.Tensor) -> None:
        """Keep ``style`` (``3 x h x w`` in [0, 1], any size) as the style eval mode renders."""
        self.style_image = (style.clamp(0, 1) * 255).round().to(torch.uint8).to(self.style_image.device)

    @property
    def style(self) -> torch.Tensor:
        """The kept style image, ``1 x 3 x h x w`` float in [0, 1]."""
        return self.style_image[None].float() / 255

    def train(self, mode: bool = True) -> AdaINHead:
        super().train(mode)
        self.loss_net.eval()  # frozen: its BatchNorm statistics never move
        return self

    def _encode(self, images: torch.Tensor) -> list[torch.Tensor]:
        return _features(self.loss_net, images)

    def decode(self, photos: torch.Tensor, styles: torch.Tensor, alpha: float = 1.0) -> dict[str, torch.Tensor]:
        """``photos`` ``B x 3 x H x W`` (H, W multiples of 8) in ``styles`` (``B`` or ``1 x 3 x h x w``):
        ``{"image": B x 3 x H x W, "target": t_α, the AdaIN features the decoder inverts}``."""
        f_c = self._encode(photos)[ADAIN_STAGE]
        f_s = self._encode(styles)[ADAIN_STAGE]
        t = adain(f_c, f_s)
        t = alpha * t + (1 - alpha) * f_c
        base = photos + alpha * (match_colour(photos, styles) - photos)
        return {"image": torch.sigmoid(torch.logit(base, eps=1e-3) + self.decoder(t)), "target": t}

    def stylise(self, photos: torch.Tensor, styles: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
        """``photos`` ``B x 3 x H x W`` of any size in ``styles``: padded to a multiple of 8 (reflection), or above
        ``max_size`` rendered at that size, and returned at the photos' size, ``B x 3 x H x W`` in (0, 1)."""
        h, w = photos.shape[-2:]
        x = photos
        if max(h, w) > self.max_size:
            s = self.max_size / max(h, w)
            x = F.interpolate(x, size=(max(8, round(h * s)), max(8, round(w * s))), mode="bilinear",
                              antialias=True, align_corners=False)
        ph, pw = -x.shape[-2] % 8, -x.shape[-1] % 8  # three stride-2 steps each way
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect")
        out = self.decode(x, styles, alpha)["image"][..., :x.shape[-2] - ph, :x.shape[-1] - pw]
        if out.shape[-2:] != (h, w):
            out = F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False)
        return out

    def forward(self, features: list[torch.Tensor] | None, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.training:
            return {"image": images}
        return {"image": self.stylise(images, self.style.to(images.dtype), self.alpha)}

    def loss(self, outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``content`` and ``style`` terms (unweighted) and their weighted sum ``loss``, each photo rendered in its
        own style."""
        styles = targets["style"]
        with torch.no_grad():
            style_grams = [gram(f) for f in self._encode(styles)]
        rendered = self.decode(targets["content"], styles)
        feats = self._encode(rendered["image"])
        terms = {"content": content_distance(feats[ADAIN_STAGE], rendered["target"].detach()).mean(),
                 "style": style_distance(feats, style_grams).mean()}
        terms["loss"] = sum(self.weights[k] * v for k, v in terms.items())
        return terms

    # results and pictures as the one-style head's
    postprocess = StyleHead.postprocess
    format_result = StyleHead.format_result
    render = StyleHead.render

