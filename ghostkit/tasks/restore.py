"""Image restoration head: super-resolution (x2, x3, x4), denoising, or both at once, built from Ghost modules.

The network works on the image itself at full (input) resolution, so it needs no GhostNet backbone
(``needs_backbone = False``) and reads the ``images`` argument of the head contract directly::

    x (B x 3 x h x w, in [0, 1]) → 3x3 conv (width) → depth x GhostBottleneck (width → 2 width → width, identity
    shortcut, BatchNorm removed) → 3x3 conv, + the first conv's features (long skip) → 3x3 conv to 3 s² channels
    → PixelShuffle(s) (scale 1: a 3x3 conv to 3 channels) → + baseline

The baseline is the bicubic upscale of the input (``F.interpolate(mode="bicubic")``) for super-resolution and the
(noisy) input itself at scale 1, so the network learns only the residual detail. The last conv is zero-initialised:
an untrained model returns exactly the baseline, and training starts from it instead of from noise.

Ghost modules: GhostNet, Han et al., CVPR 2020, https://arxiv.org/abs/1911.11907. The sub-pixel (PixelShuffle)
upsampler: ESPCN, Shi et al., CVPR 2016, https://arxiv.org/abs/1609.05158. The global residual over the bicubic
upscale: VDSR, Kim et al., CVPR 2016, https://arxiv.org/abs/1511.04587.

In a multi-task model at scale s > 1 the restore head also decides how the other heads reach its HR frame
(``join``; ``TaskModel`` routes the features): ``"lr"`` — the heads read the backbone's features of the LR input and
predict in the HR frame (masks upsampled, boxes in HR px); ``"restored"`` — the backbone runs on the restored image
only, and the heads read those features (their losses stop at the restored image, which the restore loss alone
shapes); ``"fused"`` — as ``"lr"``, plus a fusion of the two branches in the spirit of DSRL (Wang et al., CVPR 2020,
https://arxiv.org/abs/2003.00480): the HR mask logits are corrected by two 3x3 convs over the restore body's
features and the logits pooled to the input size, pixel-shuffled to HR (``fuse``, zero-initialised: it starts as
``"lr"``), so mask edges are placed at HR precision from the detail the restore network finds. With ``"lr"`` and
``"fused"`` the restore network also reads the backbone's stride-4 features of its input (``reuse_features``: a
1x1 conv, upsampled and added to its first features), and is lighter by default (``JOINT_WIDTH`` 16,
``JOINT_DEPTH`` 4, against 32 and 6 for a restore model).

Measured on built-in shapes at x2 (``benchmarks/sr_multitask.py``: HR 64 px, input 32 px, ghostnet_050, 6 epochs
of 640 images (240 steps), seed 0; Intel Xeon, 1 thread, other work on the cores; docs/benchmarks.md): HR mIoU
30.9 (``fused``), 29.1 (``lr``), 36.3 (``restored``) against 28.2 for a segmentation model trained on the LR
images; mAP50 26.5 (``restored``), 24.7 (``lr``) against 24.5 for a detector trained on the LR images; restore PSNR
within 0.2 dB of the restore-only model in every case; batch-1 latency at a 160 x 120 input 0.52 (``fused``), 0.50
(``lr``) and 1.01 (``restored``) x restoring then segmenting the restored image. Hence :func:`default_join`:
``"fused"`` (meets the latency bar of 0.7 x and the mIoU bar of +2 points), ``"restored"`` when boxes are asked
for (``"lr"`` does not beat the LR-trained detector). ``"restored"`` gives the best masks, at the cascade's cost.

Large images are processed in overlapping tiles when the head is not training (bounded memory): each ``tile`` x
``tile`` input tile is run with ``tile_overlap`` px of context on every side, and only its centre is kept. The
network's receptive field reaches ``2 depth + 3`` input px, so with the defaults (depth 6, overlap 16) tiled and
whole-image outputs agree to float precision; deeper models need a larger overlap for an exact match.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GhostkitError
from ..models.ghostnet import GhostBottleneck
from . import register_head

__all__ = ["RestoreHead", "JOINS", "JOINT_WIDTH", "JOINT_DEPTH", "default_join", "bicubic_upscale", "drop_batchnorm",
           "to_pil_image"]

# how the other heads of a multi-task super-resolution model reach the HR frame (module docstring)
JOINS = ("lr", "restored", "fused")
# the restore branch of a multi-task model reading the backbone's features (module docstring): its default size
JOINT_WIDTH, JOINT_DEPTH = 16, 4


def default_join(tasks: list[str]) -> str:
    """The ``join`` of a multi-task super-resolution run of ``tasks`` without ``--sr-join``: ``"restored"`` when
    it detects (boxes from the HR image's features), else ``"fused"`` (module docstring: the measured choice)."""
    return "restored" if "detect" in tasks else "fused"


def drop_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``Conv2d → BatchNorm2d`` in ``module``'s ``nn.Sequential`` runs by a biased ``Conv2d`` (in place).

    Restoration networks train better without BN (EDSR, Lim et al., 2017: it normalises away the intensity range
    the output must keep), and BN was 40% of a CPU training step here.
    """
    for seq in [m for m in module.modules() if isinstance(m, nn.Sequential)]:
        for i in range(1, len(seq)):
            if isinstance(seq[i], nn.BatchNorm2d) and isinstance(seq[i - 1], nn.Conv2d):
                conv = seq[i - 1]
                if conv.bias is None:
                    conv.bias = nn.Parameter(torch.zeros(conv.out_channels))
                seq[i] = nn.Identity()
    return module


def bicubic_upscale(x: torch.Tensor, scale: int) -> torch.Tensor:
    """``B x C x h x w → B x C x sh x sw`` bicubic (a = -0.75, not clamped); the identity at scale 1."""
    if scale == 1:
        return x
    return F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)


def to_pil_image(image: torch.Tensor):
    """``3 x H x W`` float in [0, 1] → 8-bit RGB PIL image (rounded)."""
    from PIL import Image

    arr = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr)


@register_head("restore")
class RestoreHead(nn.Module):
    """``head(features, images) -> {"image": restored, "baseline": bicubic or input}``, both ``B x 3 x sH x sW``.

    ``images`` is the network input ``B x 3 x H x W`` in [0, 1] (restore models keep mean 0, std 1). ``"image"`` is
    not clamped (the L1 loss sees the raw output); :meth:`postprocess` clamps. ``"baseline"`` is what the model
    improves on, returned for the ``psnr_baseline`` metric.

    Args:
        feature_info: unused (no backbone); kept for the head contract.
        scale: upscaling factor 1..4 (1: denoising only).
        width: channels of the body.
        depth: number of residual ghost blocks.
        noise: the training noise sigma (0-255 scale, e.g. "25" or "0-50"); recorded so that validation can
            synthesise the same degradation. The network does not use it.
        jpeg: the training JPEG quality (0: none), recorded likewise.
        tile: input tile size in px for inference on large images (0: never tile).
        tile_overlap: context in input px around each tile.
        mean, std: the normalisation of the input (multi-task models), undone first; None: input in [0, 1].
        join: multi-task models at scale > 1: how the other heads reach the HR frame (``JOINS``, module docstring).
        fuse_classes: with ``join="fused"``: the segmentation head's classes (0: no segmentation head to refine).
        reuse_features: multi-task models at scale > 1 with join ``"lr"`` / ``"fused"``: the network also reads the
            backbone's stride-4 features of its input (``feature_info[0]``, module docstring).
    """

    needs_backbone = False
    preprocess = "none"

    def __init__(
        self,
        feature_info: list[dict] | None = None,
        scale: int = 2,
        width: int = 32,
        depth: int = 6,
        noise: str = "0",
        jpeg: int = 0,
        tile: int = 256,
        tile_overlap: int = 16,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        join: str = "lr",  # the join of checkpoints written before the option existed
        fuse_classes: int = 0,
        reuse_features: bool = False,
    ) -> None:
        super().__init__()
        if not (isinstance(scale, int) and 1 <= scale <= 4):
            raise GhostkitError(f"--scale must be 1, 2, 3 or 4, got {scale!r}")
        if width < 4 or depth < 0:
            raise GhostkitError(f"restore: --width must be at least 4 and --depth at least 0, got {width}, {depth}")
        if tile < 0 or tile_overlap < 0 or (tile and tile <= 2 * tile_overlap):
            raise GhostkitError(f"restore: tile ({tile}) must be 0 or more than twice tile_overlap ({tile_overlap})")
        if join not in JOINS:
            raise GhostkitError(f"--sr-join must be one of {', '.join(JOINS)}, got {join!r}")
        self.scale, self.noise, self.tile, self.tile_overlap = scale, str(noise), tile, tile_overlap
        self.join = join
        self.jpeg = jpeg
        # a multi-task model feeds every head the normalised image: undo it (None: the input is in [0, 1])
        norm = mean is not None and std is not None
        self.register_buffer("in_mean", torch.tensor(mean).view(1, 3, 1, 1) if norm else None, persistent=False)
        self.register_buffer("in_std", torch.tensor(std).view(1, 3, 1, 1) if norm else None, persistent=False)
        self.conv_first = nn.Conv2d(3, width, 3, 1, 1)
        self.body = drop_batchnorm(nn.Sequential(*[GhostBottleneck(width, 2 * width, width) for _ in range(depth)]))
        self.conv_body = nn.Conv2d(width, width, 3, 1, 1)
        self.upsample = nn.Sequential(nn.Conv2d(width, 3 * scale * scale, 3, 1, 1), nn.PixelShuffle(scale))
        # zero residual at init: the untrained model returns the baseline exactly
        nn.init.zeros_(self.upsample[0].weight)
        nn.init.zeros_(self.upsample[0].bias)
        self.lift = None
        if reuse_features:
            if not feature_info or join == "restored":
                raise GhostkitError("restore: reuse_features needs the backbone's features of the LR input (a "
                                    "multi-task model with --sr-join lr or fused)")
            self.lift = nn.Conv2d(feature_info[0]["num_chs"], width, 1)
        self.fusion = None
        if join == "fused" and fuse_classes:  # body features + LR logits → an HR correction of the logits
            k = fuse_classes
            self.fusion = nn.Sequential(nn.Conv2d(width + k, 32, 3, 1, 1), nn.ReLU(inplace=True),
                                        nn.Conv2d(32, k * scale * scale, 3, 1, 1), nn.PixelShuffle(scale))
            nn.init.zeros_(self.fusion[2].weight)
            nn.init.zeros_(self.fusion[2].bias)
        # NHWC: the depthwise and 1x1 convs of ghost modules run about 1.6x faster on CPU (oneDNN) in this layout
        self.to(memory_format=torch.channels_last)

    def residual(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The learnt detail ``B x 3 x sh x sw`` of ``x`` ``B x 3 x h x w`` (the whole network but the baseline) and
        the body's features ``B x width x h x w`` it is shuffled from; ``extra`` (``B x width x h x w``) is added to
        the first conv's features (the lifted backbone features)."""
        feat = self.conv_first(x)
        if extra is not None:
            feat = feat + extra
        body = self.conv_body(self.body(feat)) + feat
        return self.upsample(body), body

    def _tiled_residual(self, x: torch.Tensor, extra: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, h, w = x.shape
        s, t, ov = self.scale, self.tile, self.tile_overlap
        out, feats = x.new_empty(b, 3, h * s, w * s), x.new_empty(b, self.conv_body.out_channels, h, w)
        for y0 in range(0, h, t):
            for x0 in range(0, w, t):
                y1, x1 = min(y0 + t, h), min(x0 + t, w)
                ey0, ex0 = max(0, y0 - ov), max(0, x0 - ov)
                window = (slice(None), slice(None), slice(ey0, min(h, y1 + ov)), slice(ex0, min(w, x1 + ov)))
                r, f = self.residual(x[window], None if extra is None else extra[window])
                oy, ox = (y0 - ey0) * s, (x0 - ex0) * s
                out[:, :, y0 * s:y1 * s, x0 * s:x1 * s] = r[:, :, oy:oy + (y1 - y0) * s, ox:ox + (x1 - x0) * s]
                feats[:, :, y0:y1, x0:x1] = f[:, :, y0 - ey0:y1 - ey0, x0 - ex0:x1 - ex0]
        return out, feats

    def restore(self, features: list[torch.Tensor] | None, images: torch.Tensor
                ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """:meth:`forward`'s outputs and the body's features ``B x width x h x w`` (what :meth:`fuse` reads).
        ``features``: the backbone's feature maps of ``images`` (used with ``reuse_features``)."""
        if self.in_mean is not None:
            images = images * self.in_std + self.in_mean
        images = images.contiguous(memory_format=torch.channels_last)
        extra = None
        if self.lift is not None:  # stride-4 maps, lifted at their own size, then brought to the input's
            extra = F.interpolate(self.lift(features[0]), size=images.shape[-2:], mode="bilinear",
                                  align_corners=False)
        baseline = bicubic_upscale(images, self.scale)
        big = self.tile and max(images.shape[-2:]) > self.tile
        residual, feats = self._tiled_residual(images, extra) if big and not self.training else self.residual(
            images, extra)
        return {"image": baseline + residual, "baseline": baseline}, feats

    def forward(self, features: list[torch.Tensor] | None, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.restore(features, images)[0]

    def normalise(self, image: torch.Tensor) -> torch.Tensor:
        """A restored ``B x 3 x H x W`` image in [0, 1] → the normalisation the backbone reads (``join="restored"``)."""
        image = image.clamp(0, 1)
        return (image - self.in_mean) / self.in_std if self.in_mean is not None else image

    def fuse(self, logits: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        """Segmentation ``logits`` ``B x K x sh x sw`` (upsampled to HR from the LR features) plus a correction read
        off the body's features ``feats`` (``B x width x h x w``, :meth:`restore`) and the logits pooled to the input
        size, computed there and pixel-shuffled to HR: each input pixel predicts its s x s HR pixels, as it does
        the restored image's detail."""
        return logits + self.fusion(torch.cat([feats, F.avg_pool2d(logits, self.scale)], 1))

    def loss(self, outputs: dict[str, torch.Tensor], targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """L1 between the restored image and the clean target ``B x 3 x sH x sW`` (L1 rather than L2: sharper
        results and the usual choice since EDSR)."""
        return {"loss": F.l1_loss(outputs["image"], targets)}

    def postprocess(self, outputs: dict[str, torch.Tensor], image_sizes: list[tuple[int, int]] | None = None
                    ) -> list[dict]:
        """Per image ``{"image": restored 3 x sH x sW in [0, 1]}`` (s x the input size)."""
        return [{"image": img.clamp(0, 1)} for img in outputs["image"]]

    def format_result(self, result: dict, class_names: list[str] | None = None, **options) -> dict:
        """``{"size": [H, W], "scale": s}`` of the restored image."""
        return {"size": list(result["image"].shape[-2:]), "scale": self.scale}

    def render(self, image, result: dict, class_names: list[str] | None = None) -> dict:
        """``{"": restored image, "compare": input (nearest upscale) | baseline | restored, side by side}``."""
        from PIL import Image, ImageDraw

        out = to_pil_image(result["image"])
        image = image.convert("RGB")
        x = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float() / 255
        baseline = to_pil_image(bicubic_upscale(x[None], self.scale)[0])
        if self.scale > 1:
            panels = [image.resize(out.size, Image.NEAREST), baseline, out]
            names = ["input", "bicubic", "restored"]
        else:  # the input is the baseline
            panels, names = [baseline, out], ["input", "restored"]
        compare = Image.new("RGB", (out.width * len(panels), out.height))
        draw = ImageDraw.Draw(compare)
        for i, (panel, name) in enumerate(zip(panels, names)):
            compare.paste(panel, (i * out.width, 0))
            draw.rectangle([i * out.width, 0, i * out.width + 8 + 7 * len(name), 14], fill=(0, 0, 0))
            draw.text((i * out.width + 3, 2), name, fill=(255, 255, 0))
        return {"": out, "compare": compare}
