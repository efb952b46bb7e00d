"""Neural style transfer with GhostNet: a feed-forward transform network built from Ghost modules, trained for one
style with a GhostNet loss network (Johnson, Alahi and Fei-Fei, ECCV 2016, https://arxiv.org/abs/1603.08155)::

    photo (B x 3 x H x W, in [0, 1]) → 9x9 conv (width) → 2 x [3x3 depthwise stride 2 → Ghost module (x2 channels)]
    → depth x ghost residual block (Ghost module → Ghost module, + shortcut) → 2 x [nearest x2 → 3x3 depthwise →
    Ghost module (/2 channels)] → 9x9 conv to 3 channels r → stylised image sigmoid(logit(c) + r), B x 3 x H x W

where ``c`` is the photo with its colour statistics matched to the style's (:func:`match_colour`, the baseline the
metrics compare with): the untrained network renders the baseline, and training adds the style's texture.

Every normalisation is instance norm (Ulyanov et al., 2016, https://arxiv.org/abs/1607.08022): it drops each
photo's own contrast, which a style must replace; the upsampling is nearest + convolution rather than a transposed
convolution (no checkerboard artefacts, Odena et al., 2016). Ghost modules: Han et al., CVPR 2020,
https://arxiv.org/abs/1911.11907.

Losses (Gatys et al., CVPR 2016; Johnson et al.), measured by a frozen GhostNet ``features_only`` loss network on
ImageNet-normalised images, at its stride 2, 4, 8 and 16 stage ends:

* content: squared feature distance to the photo's at stride :data:`CONTENT_STAGE`, divided by the photo's mean
  squared feature (scale-free, so that one default weight fits any loss network);
* style: per stage ``||G(out) - G(style)||² / ||G(style)||²`` of the Gram matrices ``G = F Fᵀ / (H W)``, summed
  over the stages (again scale-free);
* total variation: mean absolute difference of neighbouring pixels.

The loss network is the head's ``loss_net``, never trained and never exported (the forward pass does not use it).
It takes ImageNet weights with ``--pretrained FILE``; without them it keeps fixed random weights drawn from
``loss_seed``: random convolutional features still carry texture statistics (Ustyuzhaninov et al., 2017,
https://arxiv.org/abs/1606.00021), which is why the style loss above works with them (README: how much quality the
fallback costs).

Trained jointly with a classifier (``--task classify,style``, ``loss_model=None``), the loss network is the multi-task
model's own backbone (:meth:`StyleHead.share_backbone`), at its stride 4, 8, 16 and 32 stage ends (content at stride
8), on images normalised as the classifier's. The style losses pass through its current weights in eval mode (no
batch statistics from stylised images) with the weights detached: the style head learns from the classifier's
features, but the style losses never reshape them. A loss network that learned from its own style loss could
lower it by discarding texture statistics instead of rendering them, so only the classification loss trains it.

Prediction: the photo at its own size in one pass (instance norm sees the whole photo, so there are no tile seams);
a photo whose longer side exceeds ``max_size`` is stylised at that size and the result resized back to the
photo's size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ..errors import GhostkitError
from ..models import create_model
from ..models.ghostnet import GhostModule
from . import register_head
from .restore import to_pil_image

__all__ = ["StyleHead", "GhostTransformNet", "loss_network", "gram", "style_distance", "content_distance",
           "match_colour", "LOSS_STAGES", "CONTENT_STAGE", "STYLE_WIDTH", "STYLE_DEPTH", "STYLE_HEADS",
           "style_head"]

LOSS_STAGES = (0, 1, 2, 3)  # GhostNet stage ends at strides 2, 4, 8, 16: the style loss uses them all
CONTENT_STAGE = 2  # index into LOSS_STAGES: stride 8 keeps the photo's layout without pinning its pixels
# the transform network's default size: 0.04 M parameters, 512 x 512 in ONNX Runtime 4.8x faster than a VGG-16
# encoder-decoder (width 32 / depth 5: 2.1x; docs/benchmarks.md), and the quality bar is met at this size (README)
STYLE_WIDTH, STYLE_DEPTH = 16, 3
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _instance_norm(module: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm2d`` in ``module`` by an affine ``InstanceNorm2d`` of the same width (in place)."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, nn.InstanceNorm2d(child.num_features, affine=True))
        else:
            _instance_norm(child)
    return module


def _ghost(in_chs: int, out_chs: int, act: bool = True) -> GhostModule:
    return _instance_norm(GhostModule(in_chs, out_chs, act=act))


class _Down(nn.Sequential):
    """3x3 depthwise stride-2 conv → instance norm → Ghost module (``in_chs → out_chs``): ``H → H / 2``."""

    def __init__(self, in_chs: int, out_chs: int) -> None:
        super().__init__(nn.Conv2d(in_chs, in_chs, 3, 2, 1, groups=in_chs, bias=False), nn.InstanceNorm2d(in_chs,
                         affine=True), _ghost(in_chs, out_chs))


class _Up(nn.Sequential):
    """Nearest x2 → 3x3 depthwise conv → instance norm → Ghost module (``in_chs → out_chs``): ``H → 2 H``."""

    def __init__(self, in_chs: int, out_chs: int) -> None:
        super().__init__(nn.Upsample(scale_factor=2, mode="nearest"),
                         nn.Conv2d(in_chs, in_chs, 3, 1, 1, groups=in_chs, bias=False),
                         nn.InstanceNorm2d(in_chs, affine=True), _ghost(in_chs, out_chs))


class _GhostResidual(nn.Module):
    """Ghost module (``c → 2c``, ReLU) → Ghost module (``2c → c``, linear), plus the input."""

    def __init__(self, chs: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_ghost(chs, 2 * chs), _ghost(2 * chs, chs, act=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class GhostTransformNet(nn.Module):
    """The transform network above: ``B x 3 x H x W → B x 3 x H x W`` (H, W multiples of 4). ``forward(x, base)``
    adds the network's output to ``logit(base)`` (default ``base``: ``x``) and maps back through a sigmoid: the result
    stays in (0, 1), so the loss network never sees colours a PNG cannot hold, and the last conv starts at zero (the
    untrained network returns ``base``).

    Args:
        width: channels after the first conv (then 2 x and 4 x width after the two downsamplings).
        depth: number of ghost residual blocks at stride 4.
    """

    def __init__(self, width: int = STYLE_WIDTH, depth: int = STYLE_DEPTH) -> None:
        super().__init__()
        w = width
        self.net = nn.Sequential(
            nn.Conv2d(3, w, 9, 1, 4, padding_mode="reflect"), nn.InstanceNorm2d(w, affine=True), nn.ReLU(inplace=True),
            _Down(w, 2 * w), _Down(2 * w, 4 * w),
            *[_GhostResidual(4 * w) for _ in range(depth)],
            _Up(4 * w, 2 * w), _Up(2 * w, w),
            nn.Conv2d(w, 3, 9, 1, 4, padding_mode="reflect"),
        )

        # zero residual at init: training starts from the photo itself (content loss 0, finite style loss) instead
        # of from noise whose Gram matrices are far off every style's
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x: torch.Tensor, base: torch.Tensor | None = None) -> torch.Tensor:
        base = x if base is None else base
        return torch.sigmoid(torch.logit(base.clamp(0, 1), eps=1e-3) + self.net(x))


def loss_network(name: str = "ghostnet_100", seed: int = 0) -> nn.Module:
    """A frozen GhostNet ``features_only`` network (stage ends :data:`LOSS_STAGES`) with random weights drawn from
    ``seed`` (the global random state is left as it was); ``--pretrained`` loads real weights into it later."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = create_model(name, features_only=True, out_indices=LOSS_STAGES)
    return net.eval().requires_grad_(False)


def _features(net: nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    """``net``'s stage features of ``images`` (``B x 3 x H x W`` in [0, 1]), ImageNet-normalised first."""
    mean = images.new_tensor(_IMAGENET_MEAN).view(1, 3, 1, 1)
    std = images.new_tensor(_IMAGENET_STD).view(1, 3, 1, 1)
    return list(net((images - mean) / std))


def gram(features: torch.Tensor) -> torch.Tensor:
    """``B x C x H x W → B x C x C``: ``F Fᵀ / (H W)`` (independent of the image size)."""
    b, c, h, w = features.shape
    f = features.reshape(b, c, h * w)
    return f @ f.transpose(1, 2) / (h * w)


def style_distance(features: list[torch.Tensor], style_grams: list[torch.Tensor]) -> torch.Tensor:
    """Per image, the sum over stages of ``||G(f) - G_style||² / ||G_style||²`` (``B``); ``style_grams``: ``1 x C x
    C`` (one style) or ``B x C x C`` (one per image) each."""
    total = 0.0
    for f, g in zip(features, style_grams):
        total = total + ((gram(f) - g) ** 2).sum((1, 2)) / (g ** 2).sum((1, 2)).clamp_min(1e-12)
    return total


def content_distance(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per image ``mean((f - t)²) / mean(t²)`` (``B``) of ``B x C x H x W`` features."""
    return ((features - target) ** 2).mean((1, 2, 3)) / (target ** 2).mean((1, 2, 3)).clamp_min(1e-12)


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of vertically and horizontally neighbouring pixels (a scalar)."""
    return ((images[..., 1:, :] - images[..., :-1, :]).abs().mean()
            + (images[..., :, 1:] - images[..., :, :-1]).abs().mean())


def _sqrt_and_inverse(c: torch.Tensor, steps: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    """``(C^½, C^-½)`` of symmetric positive definite ``B x 3 x 3`` matrices by coupled Newton-Schulz iterations
    (Higham, "Functions of Matrices", 2008, eq. 6.35). Matrix products only, unlike an eigendecomposition, so that
    the ONNX export of a model that colour-matches inside its forward pass carries it."""
    eye = torch.eye(3, dtype=c.dtype, device=c.device).expand_as(c)
    n = (c * eye).sum((1, 2), keepdim=True)  # divided by the trace: eigenvalues in (0, 1]
    y, z = c / n, eye
    for _ in range(steps):
        t = 0.5 * (3 * eye - z @ y)
        y, z = y @ t, t @ z
    return y * n.sqrt(), z / n.sqrt()


def _colour_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """RGB mean ``B x 3 x 1`` and covariance ``B x 3 x 3`` (plus 1e-5 I) of ``B x 3 x H x W`` images."""
    flat = x.flatten(2)
    mu = flat.mean(2, keepdim=True)
    d = flat - mu
    return mu, d @ d.transpose(1, 2) / d.shape[2] + 1e-5 * torch.eye(3, dtype=x.dtype, device=x.device)


def match_colour(photos: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """The colour-matching baseline: each photo's RGB mean and covariance mapped onto the style image's by the
    affine map ``x → C_s^½ C_p^-½ (x - μ_p) + μ_s`` (symmetric matrix square roots), clamped to [0, 1].
    ``photos`` ``B x 3 x H x W``, ``style`` ``1 x 3 x h x w`` (or ``B x ...``: one style per photo), both in [0, 1].
    Written here because no library of the stack has it (scikit-image's ``match_histograms`` matches each channel
    alone)."""
    mu_p, cov_p = _colour_stats(photos)
    mu_s, cov_s = _colour_stats(style)
    style_half = _sqrt_and_inverse(cov_s)[0]
    photo_inv_half = _sqrt_and_inverse(cov_p)[1]
    flat = style_half @ photo_inv_half @ (photos.flatten(2) - mu_p) + mu_s
    return flat.view_as(photos).clamp(0, 1)


class StyleHead(nn.Module):
    """``head(features, images) -> {"image": stylised B x 3 x H x W in (0, 1)}``.

    ``images`` are photos ``B x 3 x H x W`` in [0, 1] (style models keep mean 0, std 1). The targets of
    :meth:`loss` are ``{"content": photos B x 3 x H x W, "style": style image 1 x 3 x h x w}``, both in [0, 1].

    Args:
        feature_info: unused (the transform network reads the photo itself); kept for the head contract.
        width, depth: of :class:`GhostTransformNet`.
        loss_model: the GhostNet variant of the loss network; ``None``: the multi-task model's backbone, given by
            :meth:`share_backbone` (``feature_info`` then says its stage strides).
        loss_seed: seed of its random weights (replaced by ``--pretrained`` weights).
        content_weight, style_weight, tv_weight: the weights of the three losses.
        max_size: longest side stylised at full resolution (larger photos: resized down and back).
        style_size: ``[h, w]`` of the style image the head keeps (``style_image``, uint8 ``3 x h x w``, saved in
            checkpoints, so that ``ghostkit val`` measures against the style the model was trained for).
        mean, std: the normalisation of the input (multi-task models), undone first; None: input in [0, 1].
    """

    needs_backbone = False
    preprocess = "none"
    alpha = 1.0  # prediction: stylised = photo + alpha (network output - photo) (``ghostkit predict --alpha``)

    def __init__(self, feature_info: list[dict] | None = None, width: int = STYLE_WIDTH, depth: int = STYLE_DEPTH,
                 loss_model: str | None = "ghostnet_100", loss_seed: int = 0, content_weight: float = 1.0,
                 style_weight: float = 5.0, tv_weight: float = 0.0, max_size: int = 1024,
                 style_size: list[int] | tuple[int, int] = (1, 1), mean: list[float] | None = None,
                 std: list[float] | None = None) -> None:
        super().__init__()
        if width < 4 or depth < 0:
            raise GhostkitError(f"style: --width must be at least 4 and --depth at least 0, got {width}, {depth}")
        if min(content_weight, style_weight, tv_weight) < 0:
            raise GhostkitError("style: --content-weight, --style-weight and --tv-weight must not be negative")
        if max_size < 32:
            raise GhostkitError(f"style: max_size must be at least 32 px, got {max_size}")
        self.weights = {"content": content_weight, "style": style_weight, "tv": tv_weight}
        self.max_size = max_size
        self.transform = GhostTransformNet(width, depth)
        self.loss_net = loss_network(loss_model, loss_seed) if loss_model else None
        self._shared: list[nn.Module] = []  # the multi-task backbone (in a list: not a submodule of the head)
        self.content_index = CONTENT_STAGE
        if loss_model is None:  # the stride-8 stage of the backbone's
            self.content_index = [f["reduction"] for f in feature_info or []].index(8)
        self.register_buffer("style_image", torch.zeros(3, *style_size, dtype=torch.uint8))
        norm = mean is not None and std is not None  # a multi-task model feeds every head the normalised image
        self.register_buffer("in_mean", torch.tensor(mean).view(1, 3, 1, 1) if norm else None, persistent=False)
        self.register_buffer("in_std", torch.tensor(std).view(1, 3, 1, 1) if norm else None, persistent=False)

    def share_backbone(self, backbone: nn.Module | None) -> None:
        """Measure the losses with ``backbone`` (the multi-task model's) when the head has no loss network."""
        if self.loss_net is None:
            self._shared = [backbone]

    def _loss_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The loss network's stage features of ``images`` (``B x 3 x H x W`` in [0, 1]): the own frozen network's,
        or the shared backbone's in eval mode with its weights detached (module docstring)."""
        if self.loss_net is not None:
            return _features(self.loss_net, images)
        backbone = self._shared[0]
        was_training = backbone.training
        backbone.eval()
        try:
            weights = {name: p.detach() for name, p in backbone.named_parameters()}
            return list(functional_call(backbone, weights, ((images - self.in_mean) / self.in_std,)))
        finally:
            backbone.train(was_training)

    def set_style(self, style: torch.Tensor) -> None:
        """Keep ``style`` (``3 x h x w`` in [0, 1], of ``style_size``) as the model's style image."""
        self.style_image.copy_((style.clamp(0, 1) * 255).round().to(torch.uint8))

    @property
    def style(self) -> torch.Tensor:
        """The kept style image, ``1 x 3 x h x w`` float in [0, 1]."""
        return self.style_image[None].float() / 255

    def train(self, mode: bool = True) -> StyleHead:
        super().train(mode)
        if self.loss_net is not None:
            self.loss_net.eval()  # frozen: its BatchNorm statistics never move
        return self

    def forward(self, features: list[torch.Tensor] | None, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.in_mean is not None:
            images = images * self.in_std + self.in_mean
        h, w = images.shape[-2:]
        x = images
        if not self.training and max(h, w) > self.max_size:
            s = self.max_size / max(h, w)
            x = F.interpolate(x, size=(max(4, round(h * s)), max(4, round(w * s))), mode="bilinear",
                              antialias=True, align_corners=False)
        ph, pw = -x.shape[-2] % 4, -x.shape[-1] % 4  # two stride-2 steps: pad to a multiple of 4, crop after
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect")
        # the network refines the colour-matched photo (the baseline) rather than the photo: colour statistics
        # dominate the Gram matrices of early stages, and learning them per photo costs most of a short training
        out = self.transform(x, match_colour(x, self.style.to(x.dtype)))[..., :x.shape[-2] - ph, :x.shape[-1] - pw]
        if out.shape[-2:] != images.shape[-2:]:
            out = F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False)
        if self.alpha != 1.0 and not self.training:
            out = images + self.alpha * (out - images)
        return {"image": out}

    def loss(self, outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``content``, ``style`` and ``tv`` terms (unweighted) and their weighted sum ``loss``."""
        out = outputs["image"]
        with torch.no_grad():
            target = self._loss_features(targets["content"])[self.content_index]
            style_grams = [gram(f) for f in self._loss_features(targets["style"])]
        feats = self._loss_features(out)
        terms = {"content": content_distance(feats[self.content_index], target).mean(),
                 "style": style_distance(feats, style_grams).mean(), "tv": total_variation(out)}
        terms["loss"] = sum(self.weights[k] * v for k, v in terms.items())
        return terms

    def postprocess(self, outputs: dict[str, torch.Tensor], image_sizes: list[tuple[int, int]] | None = None
                    ) -> list[dict]:
        """Per image ``{"image": stylised 3 x H x W in [0, 1]}`` at the photo's size (a multi-task model's input was
        resized to its training size: the result is resized back)."""
        from .model import _resize

        sizes = image_sizes or [tuple(img.shape[-2:]) for img in outputs["image"]]
        return [{"image": _resize(img.clamp(0, 1), size)} for img, size in zip(outputs["image"], sizes)]

    def format_result(self, result: dict, class_names: list[str] | None = None, **options) -> dict:
        """``{"size": [H, W]}`` of the stylised image."""
        return {"size": list(result["image"].shape[-2:])}

    def render(self, image, result: dict, class_names: list[str] | None = None) -> dict:
        """``{"": stylised image, "compare": photo | stylised, side by side}``."""
        from PIL import Image

        out = to_pil_image(result["image"])
        compare = Image.new("RGB", (2 * out.width, out.height))
        compare.paste(image.convert("RGB").resize(out.size), (0, 0))
        compare.paste(out, (out.width, 0))
        return {"": out, "compare": compare}


STYLE_HEADS = ("johnson", "adain")  # --head: one style per model (the default), or any style (AdaIN)


@register_head("style")
def style_head(feature_info: list[dict] | None = None, head: str = "johnson", **config) -> nn.Module:
    """The style head a checkpoint's config names: :class:`StyleHead` (``head="johnson"``, one style per model) or
    :class:`ghostkit.tasks.style_adain.AdaINHead` (``head="adain"``, any style)."""
    if head not in STYLE_HEADS:
        raise GhostkitError(f"--head {head!r}: style heads are {', '.join(STYLE_HEADS)}")
    if head == "adain":
        from .style_adain import AdaINHead

        return AdaINHead(feature_info, **config)
    return StyleHead(feature_info, **config)


style_head.needs_backbone = False  # read from the registered callable by build_task_model
