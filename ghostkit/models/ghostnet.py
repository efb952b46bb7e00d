"""GhostNet v1, v2 and v3.

* GhostNet: More Features from Cheap Operations (Han et al., CVPR 2020) https://arxiv.org/abs/1911.11907
* GhostNetV2: Enhance Cheap Operation with Long-Range Attention (Tang et al., NeurIPS 2022)
  https://arxiv.org/abs/2211.12905
* GhostNetV3: Exploring the Training Strategies for Compact Models (Liu et al., 2024) https://arxiv.org/abs/2404.11202

One architecture table serves all three versions; the version picks the ghost module: v1 plain, v2 adds DFC
attention to the expanding ghost module of every block after the second, v3 is v2 with re-parameterisable
branches (three parallel conv-BN branches plus scale and identity branches) that :func:`reparameterize` merges.

Parameter names equal the official Huawei release and timm, so both checkpoint families load strictly.

Feature stages (``features_only=True``), taken at the last module of each resolution::

    index  stride  module     channels (1.0x)
    0      2       blocks.0   16
    1      4       blocks.2   24
    2      8       blocks.4   40
    3      16      blocks.6   112
    4      32      blocks.9   960   (the final 1x1 ConvBnAct)

timm taps the first block of each resolution instead (blocks.1/3/5/7); ghostkit's taps carry the stage's full
processing, which is what dense heads want. ``output_stride`` 16 or 8 replaces the last stride(s) by dilation of
the spatial convolutions that follow (DFC attention keeps its 2x2 pooling), so pretrained weights stay usable.

Speed (CPU inference). The model picks its memory layout: on CPU in eval mode it runs channels-last (NHWC), which
oneDNN's convolutions need to avoid re-ordering every activation (``channels_last=False`` / ``True`` forces either);
feature maps are handed back in the caller's layout. Gates and residual sums are applied in place where no gradient
can need the overwritten values. Otherwise every module runs as written, so forward hooks fire as on any PyTorch
model. The fused oneDNN fast path (:mod:`ghostkit.models.fastpath`) is switched on by deploy mode
(:func:`~ghostkit.models.reparameterize`) or ``fastpath.enable(model)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .layers import ConvBnAct, SqueezeExcite, branch_sum, dfc_branch, dfc_gate, fused_conv, make_divisible, maybe_relu

__all__ = ["GhostModule", "GhostModuleV3", "GhostBottleneck", "GhostNet", "GHOSTNET_CFGS"]

NUM_HEAD_FEATURES = 1280
DEFAULT_CFG = dict(input_size=(3, 224, 224), crop_pct=0.875, interpolation="bicubic",
                   mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


class GhostModule(nn.Module):
    """Ghost module (v1), optionally with DFC attention (v2).

    A 1x1 primary conv makes ``ceil(out / ratio)`` intrinsic maps; a cheap depthwise ``dw_size`` conv makes the
    ghost maps from them; both are concatenated and cut to ``out_chs``. ``B x in_chs x H x W → B x out_chs x H x W``.
    """

    def __init__(self, in_chs: int, out_chs: int, ratio: int = 2, dw_size: int = 3, stride: int = 1, act: bool = True,
                 attn: bool = False, dilation: int = 1) -> None:
        super().__init__()
        self.out_chs = out_chs
        init_chs = math.ceil(out_chs / ratio)
        new_chs = init_chs * (ratio - 1)
        self.trim = init_chs + new_chs != out_chs  # a static flag, not a shape test: tracers see no branch
        pad = dilation * (dw_size - 1) // 2
        self.primary_conv = nn.Sequential(
            nn.Conv2d(in_chs, init_chs, 1, stride, 0, bias=False), nn.BatchNorm2d(init_chs), maybe_relu(act)
        )
        self.cheap_operation = nn.Sequential(
            nn.Conv2d(init_chs, new_chs, dw_size, 1, pad, dilation=dilation, groups=init_chs, bias=False),
            nn.BatchNorm2d(new_chs),
            maybe_relu(act),
        )
        self.short_conv = dfc_branch(in_chs, out_chs, stride) if attn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.primary_conv(x)
        out = torch.cat([x1, self.cheap_operation(x1)], dim=1)
        if self.trim:
            out = out[:, : self.out_chs]
        if self.short_conv is not None:
            gate = dfc_gate(x, self.short_conv, out.shape[-2:])
            out = out * gate if torch.is_grad_enabled() else out.mul_(gate)
        return out


class GhostModuleV3(nn.Module):
    """GhostNetV3 ghost module: the same function as :class:`GhostModule` in deploy form, trained with
    ``num_branches`` parallel conv-BN branches for the primary and cheap convs, plus a 1x1 scale branch and a BN
    identity branch for the cheap op. :meth:`reparameterize` returns the equivalent plain :class:`GhostModule`.
    """

    def __init__(self, in_chs: int, out_chs: int, ratio: int = 2, dw_size: int = 3, stride: int = 1, act: bool = True,
                 attn: bool = False, dilation: int = 1, num_branches: int = 3) -> None:
        super().__init__()
        if ratio != 2:
            raise ValueError("GhostModuleV3's identity branch needs ratio=2")
        self.in_chs, self.out_chs, self.stride, self.dw_size, self.act, self.dilation = (
            in_chs, out_chs, stride, dw_size, act, dilation)
        init_chs = math.ceil(out_chs / ratio)
        self.trim = 2 * init_chs != out_chs
        self.primary_rpr_conv = nn.ModuleList(
            [ConvBnAct(in_chs, init_chs, 1, stride, act=False) for _ in range(num_branches)]
        )
        self.primary_activation = maybe_relu(act)
        self.cheap_rpr_skip = nn.BatchNorm2d(init_chs)
        self.cheap_rpr_conv = nn.ModuleList(
            [ConvBnAct(init_chs, init_chs, dw_size, dilation=dilation, groups=init_chs, act=False)
             for _ in range(num_branches)]
        )
        self.cheap_rpr_scale = ConvBnAct(init_chs, init_chs, 1, groups=init_chs, act=False)
        self.cheap_activation = maybe_relu(act)
        self.short_conv = dfc_branch(in_chs, out_chs, stride) if attn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.primary_activation(branch_sum(self.primary_rpr_conv, x))
        x2 = self.cheap_rpr_scale(x1)
        x2 = x2 + self.cheap_rpr_skip(x1) if torch.is_grad_enabled() else x2.add_(self.cheap_rpr_skip(x1))
        x2 = self.cheap_activation(branch_sum(self.cheap_rpr_conv, x1, x2))
        out = torch.cat([x1, x2], dim=1)
        if self.trim:
            out = out[:, : self.out_chs]
        if self.short_conv is not None:
            gate = dfc_gate(x, self.short_conv, out.shape[-2:])
            out = out * gate if torch.is_grad_enabled() else out.mul_(gate)
        return out

    @torch.no_grad()
    def reparameterize(self) -> GhostModule:
        deploy = GhostModule(self.in_chs, self.out_chs, 2, self.dw_size, self.stride, self.act,
                             self.short_conv is not None, self.dilation)
        primary = fused_conv(deploy.primary_conv[0], [(m.conv, m.bn1) for m in self.primary_rpr_conv])
        deploy.primary_conv = nn.Sequential(primary, maybe_relu(self.act))
        branches = [(m.conv, m.bn1) for m in [*self.cheap_rpr_conv, self.cheap_rpr_scale]]
        cheap = fused_conv(deploy.cheap_operation[0], branches + [(None, self.cheap_rpr_skip)])
        deploy.cheap_operation = nn.Sequential(cheap, maybe_relu(self.act))
        deploy.short_conv = self.short_conv
        return deploy.to(cheap.weight.device).eval()


class GhostBottleneck(nn.Module):
    """Ghost bottleneck: ghost module (expand, ReLU) → depthwise ``dw_kernel`` conv when downsampling → optional SE
    → ghost module (project, linear), plus an identity or (depthwise conv → 1x1 conv) shortcut.

    ``dilation`` applies to the convs before the depthwise one and the shortcut; ``out_dilation`` to the project
    module (they differ in the block whose stride was replaced by dilation for output strides 16 / 8).
    """

    def __init__(self, in_chs: int, mid_chs: int, out_chs: int, dw_kernel: int = 3, stride: int = 1,
                 se_ratio: float = 0.0, version: str = "v1", attn: bool = False, dilation: int = 1,
                 out_dilation: int | None = None, downsample: bool | None = None) -> None:
        super().__init__()
        out_dilation = out_dilation or dilation
        downsample = stride > 1 if downsample is None else downsample
        Module = GhostModuleV3 if version == "v3" else GhostModule
        self.ghost1 = Module(in_chs, mid_chs, act=True, attn=attn, dilation=dilation)
        pad = dilation * (dw_kernel - 1) // 2
        # every optional slot is registered (as None) in one order, so the deploy form of v3 has exactly v2's layout
        for slot in ("conv_dw", "bn_dw", "dw_rpr_conv", "dw_rpr_scale", "se"):
            self.register_module(slot, None)
        if downsample and version == "v3":
            self.dw_rpr_conv = nn.ModuleList(
                [ConvBnAct(mid_chs, mid_chs, dw_kernel, stride, dilation, groups=mid_chs, act=False) for _ in range(3)]
            )
            self.dw_rpr_scale = ConvBnAct(mid_chs, mid_chs, 1, stride, groups=mid_chs, act=False)
        elif downsample:
            self.conv_dw = nn.Conv2d(mid_chs, mid_chs, dw_kernel, stride, pad, dilation, groups=mid_chs, bias=False)
            self.bn_dw = nn.BatchNorm2d(mid_chs)
        if se_ratio > 0:
            self.se = SqueezeExcite(mid_chs, se_ratio)
        self.ghost2 = Module(mid_chs, out_chs, act=False, attn=False, dilation=out_dilation)
        if in_chs == out_chs and not downsample:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_chs, in_chs, dw_kernel, stride, pad, dilation, groups=in_chs, bias=False),
                nn.BatchNorm2d(in_chs),
                nn.Conv2d(in_chs, out_chs, 1, 1, 0, bias=False),
                nn.BatchNorm2d(out_chs),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.shortcut(x)
        x = self.depthwise(self.ghost1(x))
        if self.se is not None:
            x = self.se(x)
        x = self.ghost2(x)
        x += residual  # x is this block's own fresh tensor (cat output): safe in place, also under autograd
        return x

    def depthwise(self, x: torch.Tensor) -> torch.Tensor:
        """The downsampling depthwise conv (→ BN) of the expanded map, or ``x`` itself where the block has none."""
        if self.conv_dw is not None:
            x = self.conv_dw(x)
            return x if self.bn_dw is None else self.bn_dw(x)
        if self.dw_rpr_conv is not None:
            return branch_sum(self.dw_rpr_conv, x, self.dw_rpr_scale(x))
        return x

    @torch.no_grad()
    def reparameterize(self) -> None:
        if self.dw_rpr_conv is not None:
            branches = [(m.conv, m.bn1) for m in [*self.dw_rpr_conv, self.dw_rpr_scale]]
            self.conv_dw = fused_conv(self.dw_rpr_conv[0].conv, branches)
            self.dw_rpr_conv = self.dw_rpr_scale = None
        elif self.bn_dw is not None:
            self.conv_dw = fuse_conv_bn_eval(self.conv_dw, self.bn_dw)
            self.bn_dw = None


class GhostNet(nn.Module):
    """GhostNet backbone and ImageNet-style classifier (v1, v2 or v3 by ``version``).

    Classifier: ``forward(x)`` maps ``B x 3 x H x W`` (any H, W ≥ 32) to ``B x num_classes`` logits through
    ``forward_features`` (``B x num_features x H/32 x W/32``) and ``forward_head`` (global average pool → 1x1 conv to
    1280 → ReLU → dropout → linear). With ``features_only=True`` the head is left out and ``forward(x)`` returns the
    list of feature maps selected by ``out_indices`` (see the module docstring for the stages).

    ``cfgs``: the architecture table (default :data:`GHOSTNET_CFGS`). ``channels_last``: the memory layout inside
    (``None``: channels-last on CPU in eval mode, the input's layout otherwise). It changes speed only, never
    results; returned feature maps keep the input's layout.
    """

    def __init__(self, cfgs: Sequence[Sequence[tuple[int, int, int, float, int]]] | None = None, width: float = 1.0,
                 version: str = "v1", num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.2,
                 output_stride: int = 32, features_only: bool = False, out_indices: Sequence[int] = (1, 2, 3, 4),
                 channels_last: bool | None = None) -> None:
        super().__init__()
        cfgs = GHOSTNET_CFGS if cfgs is None else cfgs
        if version not in ("v1", "v2", "v3"):
            raise ValueError(f"unknown GhostNet version {version!r} (v1, v2, v3)")
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
        self.version, self.width, self.drop_rate = version, width, drop_rate
        self.output_stride, self.features_only, self.channels_last = output_stride, features_only, channels_last

        stem_chs = make_divisible(16 * width, 4)
        self.conv_stem = nn.Conv2d(in_chans, stem_chs, 3, 2, 1, bias=False)
        self.bn1: nn.BatchNorm2d | None = nn.BatchNorm2d(stem_chs)
        self.act1 = nn.ReLU(inplace=True)

        stages: list[nn.Module] = []
        stage_info: list[dict] = []
        prev_chs, net_stride, dilation, layer_idx = stem_chs, 2, 1, 0
        for stage_idx, cfg in enumerate(cfgs):
            if cfg[0][4] > 1:  # a new resolution starts: the previous stage ended the last one
                module = f"blocks.{stage_idx - 1}" if stage_idx else "act1"
                stage_info.append(dict(num_chs=prev_chs, reduction=net_stride, module=module))
            layers = []
            for k, exp, c, se, s in cfg:
                out_chs, mid_chs = make_divisible(c * width, 4), make_divisible(exp * width, 4)
                block_dilation = dilation
                if s > 1 and net_stride * s > output_stride:
                    dilation, s_eff = dilation * s, 1
                else:
                    net_stride, s_eff = net_stride * s, s
                layers.append(GhostBottleneck(
                    prev_chs, mid_chs, out_chs, k, s_eff, se, version, attn=version != "v1" and layer_idx > 1,
                    dilation=block_dilation, out_dilation=dilation, downsample=s > 1))
                prev_chs = out_chs
                layer_idx += 1
            stages.append(nn.Sequential(*layers))
        self.num_features = make_divisible(cfgs[-1][-1][1] * width, 4)
        stages.append(nn.Sequential(ConvBnAct(prev_chs, self.num_features, 1)))
        self.blocks = nn.Sequential(*stages)
        stage_info.append(dict(num_chs=self.num_features, reduction=net_stride, module=f"blocks.{len(stages) - 1}"))

        self.stage_info = stage_info
        # block index after which each stage ends (-1: the stem)
        self._stage_ends = [int(i["module"].split(".")[1]) if "." in i["module"] else -1 for i in stage_info]
        if features_only:
            self.num_classes = 0
            self.select_features(out_indices)
        else:
            self.out_indices = _check_indices(out_indices, len(stage_info))
            self.feature_info = stage_info
            self.head_hidden_size = NUM_HEAD_FEATURES
            self.conv_head = nn.Conv2d(self.num_features, NUM_HEAD_FEATURES, 1, 1, 0, bias=True)
            self.act2 = nn.ReLU(inplace=True)
            self.reset_classifier(num_classes)
        self.default_cfg = dict(DEFAULT_CFG)
        self._init_weights()

    def _init_weights(self) -> None:
        # The official initialisation. Zero-initialising each bottleneck's last BN (Goyal et al., 2017) slowed
        # learning from scratch: 0.40 against 0.48 mIoU after 500 steps on built-in shapes.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def select_features(self, out_indices: Sequence[int]) -> None:
        """Return the stages at ``out_indices`` (features-only models) and drop the blocks after the last of them:
        stages no head reads cost forward time and, at stride 32, most of the parameters (1.0x: 2.1 of 2.7 M).
        The blocks kept are untouched, so a model cut here after being built computes what one built cut does."""
        if not self.features_only:
            raise RuntimeError("only a features_only model selects its feature stages")
        self.out_indices = _check_indices(out_indices, len(self.stage_info))
        if any(self._stage_ends[i] >= len(self.blocks) for i in self.out_indices):
            raise ValueError(f"out_indices {self.out_indices}: stages past the blocks this model kept")
        self.feature_info = [self.stage_info[i] for i in self.out_indices]
        self.blocks = self.blocks[: max(self._stage_ends[i] for i in self.out_indices) + 1]

    def removed_prefixes(self) -> tuple[str, ...]:
        """Parameter-name prefixes of a full classifier that this (features-only) model does not have."""
        if not self.features_only:
            return ()
        return ("conv_head.", "classifier.") + tuple(f"blocks.{i}." for i in range(len(self.blocks), 10))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final linear layer by a freshly initialised one for ``num_classes`` (0: no classifier)."""
        if self.features_only:
            raise RuntimeError("a features_only model has no classifier")
        self.num_classes = num_classes
        self.classifier = nn.Linear(NUM_HEAD_FEATURES, num_classes) if num_classes > 0 else nn.Identity()

    def _internal_layout(self, x: torch.Tensor) -> torch.Tensor:
        cl = self.channels_last
        if cl is None:
            cl = x.device.type == "cpu" and not self.training
        return x.contiguous(memory_format=torch.channels_last) if cl and x.dim() == 4 else x

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_stem(x)
        return self.act1(x if self.bn1 is None else self.bn1(x))

    def _forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.forward_stem(self._internal_layout(x)))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``B x 3 x H x W`` → ``B x num_features x ceil(H/os) x ceil(W/os)`` (os: output_stride)."""
        return _layout_like(self._forward_features(x), x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``B x num_features x h x w`` → ``B x num_classes`` (``B x 1280`` with ``pre_logits``)."""
        # the 1x1 conv acts on a pooled B x C vector: a matrix product (conv_head's own hooks do not fire)
        x = self.act2(F.linear(x.mean((2, 3)), self.conv_head.weight.flatten(1), self.conv_head.bias))
        if self.drop_rate > 0.0:
            x = F.dropout(x, self.drop_rate, self.training)
        return x if pre_logits else self.classifier(x)

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps at ``out_indices``: each ``B x feature_info[i]['num_chs'] x H/r x W/r``."""
        taps = {self._stage_ends[i] for i in self.out_indices}
        inp, x = x, self.forward_stem(self._internal_layout(x))
        feats = [x] if -1 in taps else []
        for idx, stage in enumerate(self.blocks):
            x = stage(x)
            if idx in taps:
                feats.append(x)
        return [_layout_like(f, inp) for f in feats]

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if self.features_only:
            return self.forward_stages(x)
        return self.forward_head(self._forward_features(x))

    @torch.no_grad()
    def reparameterize(self) -> None:
        if self.bn1 is not None:
            self.conv_stem = fuse_conv_bn_eval(self.conv_stem, self.bn1)
            self.bn1 = None


def _check_indices(out_indices: Sequence[int], num_stages: int) -> tuple[int, ...]:
    """``out_indices`` sorted without repeats (features come out in network order), each a stage index."""
    indices = tuple(sorted(set(out_indices)))
    if not indices or any(not 0 <= i < num_stages for i in indices):
        raise ValueError(f"out_indices must be within 0..{num_stages - 1}, got {indices}")
    return indices


def _layout_like(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``y`` in ``x``'s memory layout (NCHW-contiguous input: contiguous output)."""
    return y.contiguous() if x.is_contiguous() else y


# One inner list per stage (nn.Sequential in ``blocks``); the final 1x1 ConvBnAct stage is appended by GhostNet.
# k: depthwise kernel, exp: expansion (mid) channels, out: output channels, se: SE ratio (0 = none), stride
GHOSTNET_CFGS: list[list[tuple[int, int, int, float, int]]] = [
    # k, exp, out, se, stride
    [(3, 16, 16, 0, 1)],
    [(3, 48, 24, 0, 2)],
    [(3, 72, 24, 0, 1)],
    [(5, 72, 40, 0.25, 2)],
    [(5, 120, 40, 0.25, 1)],
    [(3, 240, 80, 0, 2)],
    [(3, 200, 80, 0, 1), (3, 184, 80, 0, 1), (3, 184, 80, 0, 1), (3, 480, 112, 0.25, 1), (3, 672, 112, 0.25, 1)],
    [(5, 672, 160, 0.25, 2)],
    [(5, 960, 160, 0, 1), (5, 960, 160, 0.25, 1), (5, 960, 160, 0, 1), (5, 960, 160, 0.25, 1)],
]
