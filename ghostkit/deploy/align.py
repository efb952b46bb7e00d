"""Channel alignment of a deployed GhostNet for ONNX Runtime's blocked (NCHWc) CPU kernels. Exact: outputs are equal.

ONNX Runtime runs a convolution in its fast blocked layout only when its input channels are a multiple of the block
(8 on AVX2, 16 on AVX-512), and concatenates blocked tensors only when every part is block-aligned. GhostNet's widths
(36, 60, 92, 100 ... intrinsic maps per ghost module) mostly are not, so ORT falls back to plain NCHW kernels and
copies tensors between layouts around them. Here every ghost module's two halves (intrinsic and ghost maps) are
zero-padded up to the block, and every consumer's weights get zero columns at the padded positions: the padded
channels are always zero (or ignored), so the network computes the same function with block-aligned tensors.
Padding costs MACs (ghostnet_100 at 224 x 224: 141M → 196M, mostly in the narrow early layers), but every layer
then runs blocked with no layout copies; padding only the cheap places measured slower than padding all (the
unpadded layers bring the copies back).

A :class:`Layout` records where each true channel lives in a padded tensor. The block inputs and outputs use the
layout of a ghost module's output (``[intrinsic | pad | ghost | pad]``), so identity shortcuts add like with like.
Feature maps handed to task heads are gathered back to their true channels (a no-op for aligned widths).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from ..models.ghostnet import GhostBottleneck, GhostModule, GhostNet
from ..models.layers import ConvBnAct, SqueezeExcite

__all__ = ["Layout", "AlignedBackbone", "align_channels", "cpu_block_size"]


def cpu_block_size() -> int:
    """The channel block of ONNX Runtime's blocked CPU kernels of the running CPU: 16 with AVX-512, 8 with AVX2, else 0
    (no blocked kernels, e.g. ARM: alignment would only add work)."""
    from .cpu import cpu_features

    features = cpu_features()
    return 16 if features.avx512 else 8 if features.avx2 else 0


def _round_up(c: int, block: int) -> int:
    return -(-c // block) * block



@dataclass
class Layout:
    """True channel ``i`` of a tensor lives at channel ``pos[i]`` of its padded form with ``size`` channels."""

    pos: torch.Tensor
    size: int

    @classmethod
    def dense(cls, chs: int, block: int = 1) -> Layout:
        return cls(torch.arange(chs), _round_up(chs, block))

    @classmethod
    def ghost(cls, init_chs: int, new_chs: int, out_chs: int, block: int) -> Layout:
        """A ghost module's output: intrinsic maps, then the ghost maps, each half padded, cut to ``out_chs``."""
        init_pad = _round_up(init_chs, block)
        pos = torch.cat([torch.arange(init_chs), init_pad + torch.arange(new_chs)])[:out_chs]
        return cls(pos, init_pad + _round_up(new_chs, block))

    @property
    def is_identity(self) -> bool:
        return self.size == len(self.pos) and bool((self.pos == torch.arange(len(self.pos))).all())

    def same(self, other: Layout) -> bool:
        return self.size == other.size and torch.equal(self.pos, other.pos)


class AlignmentError(ValueError):
    """The model holds a part the alignment does not know; export it unaligned."""


def align_conv(conv: nn.Conv2d, lin: Layout, lout: Layout) -> nn.Conv2d:
    """A biased copy of ``conv`` on padded tensors: ``lin.size`` → ``lout.size`` channels, zero at padded positions.
    Depthwise convs (groups = channels) keep one layout for input and output."""
    depthwise = conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels
    if conv.groups > 1 and not (depthwise and lin.same(lout)):
        raise AlignmentError(f"grouped conv {conv} cannot be aligned")
    groups = lin.size if depthwise else 1
    new = nn.Conv2d(lin.size, lout.size, conv.kernel_size, conv.stride, conv.padding, conv.dilation, groups, bias=True,
                    padding_mode=conv.padding_mode).to(conv.weight.device, conv.weight.dtype)
    with torch.no_grad():
        new.weight.zero_()
        new.bias.zero_()
        if depthwise:
            new.weight[lout.pos] = conv.weight
        else:
            new.weight[lout.pos[:, None], lin.pos[None, :]] = conv.weight
        if conv.bias is not None:
            new.bias[lout.pos] = conv.bias
    return new


def _conv_of(seq: nn.Sequential) -> nn.Conv2d:
    if not isinstance(seq[0], nn.Conv2d) or any(isinstance(m, nn.BatchNorm2d) for m in seq):
        raise AlignmentError("expected a deployed (BN-folded) conv sequence")
    return seq[0]


def _align_ghost(m: GhostModule, lin: Layout, block: int) -> Layout:
    primary, cheap = _conv_of(m.primary_conv), _conv_of(m.cheap_operation)
    init_chs, new_chs = primary.out_channels, cheap.out_channels
    init = Layout.dense(init_chs, block)
    ratio = new_chs // init_chs
    # the cheap op maps intrinsic channel i to ghost channels i*(ratio)..: padding the input keeps those positions
    ghost = Layout(torch.arange(new_chs), init.size * ratio)
    m.primary_conv[0] = align_conv(primary, lin, init)
    if cheap.groups != init_chs or new_chs % init_chs:
        raise AlignmentError("unexpected cheap operation")
    new_cheap = nn.Conv2d(init.size, ghost.size, cheap.kernel_size, cheap.stride, cheap.padding, cheap.dilation,
                          init.size, bias=True).to(cheap.weight.device, cheap.weight.dtype)
    with torch.no_grad():
        new_cheap.weight.zero_()
        new_cheap.bias.zero_()
        new_cheap.weight[ghost.pos] = cheap.weight
        if cheap.bias is not None:
            new_cheap.bias[ghost.pos] = cheap.bias
    m.cheap_operation[0] = new_cheap
    out = Layout(torch.cat([init.pos, init.size + ghost.pos])[: m.out_chs], init.size + ghost.size)
    m.out_chs = out.size  # the padded concat is never cut: channels past out_chs are simply ignored downstream
    if m.short_conv is not None:  # DFC attention: its gate must come out in the module's layout
        convs = list(m.short_conv)
        if len(convs) != 3 or not all(isinstance(c, nn.Conv2d) for c in convs):
            raise AlignmentError("expected a deployed DFC branch")
        m.short_conv = nn.Sequential(align_conv(convs[0], lin, out), align_conv(convs[1], out, out),
                                     align_conv(convs[2], out, out))
    return out


def _align_se(se: SqueezeExcite, layout: Layout, block: int) -> None:
    reduced = Layout.dense(se.conv_reduce.out_channels, block)
    se.conv_reduce = align_conv(se.conv_reduce, layout, reduced)
    se.conv_expand = align_conv(se.conv_expand, reduced, layout)


def _align_block(b: GhostBottleneck, lin: Layout, block: int) -> Layout:
    if not isinstance(b.ghost1, GhostModule) or getattr(b, "dw_rpr_conv", None) is not None or b.bn_dw is not None:
        raise AlignmentError("expected a deployed ghost bottleneck")
    mid = _align_ghost(b.ghost1, lin, block)
    if b.conv_dw is not None:
        b.conv_dw = align_conv(b.conv_dw, mid, mid)
    if b.se is not None:
        _align_se(b.se, mid, block)
    out = _align_ghost(b.ghost2, mid, block)
    if isinstance(b.shortcut, nn.Identity):
        if not lin.same(out):
            raise AlignmentError("identity shortcut between different layouts")
    else:
        dw, pw = _conv_of(b.shortcut[:1]), _conv_of(b.shortcut[1:])
        b.shortcut = nn.Sequential(align_conv(dw, lin, lin), align_conv(pw, lin, out))
    return out


def _stream_layout(chs: int, block: int) -> Layout:
    """Layout of a block input / output with ``chs`` channels: what a ratio-2 ghost module produces."""
    init = math.ceil(chs / 2)
    return Layout.ghost(init, init, chs, block)


class AlignedBackbone(nn.Module):
    """A channel-aligned ``features_only`` GhostNet returning the same feature maps as the original."""

    def __init__(self, net: GhostNet, layouts: list[Layout]) -> None:
        super().__init__()
        self.net = net
        self.feature_info = net.feature_info
        self.gather = [None if lay.is_identity else f"gather{i}" for i, lay in enumerate(layouts)]
        for i, lay in enumerate(layouts):
            if not lay.is_identity:
                self.register_buffer(f"gather{i}", lay.pos.clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.net(x)
        return [f if g is None else f.index_select(1, getattr(self, g)) for f, g in zip(feats, self.gather)]


def align_channels(net: GhostNet, block: int) -> AlignedBackbone:
    """Aligned copy of a deployed ``features_only`` GhostNet (see the module docstring). Raises ``AlignmentError``
    (a ValueError) for parts it does not know, e.g. a model that was not re-parameterised."""
    if not isinstance(net, GhostNet) or not net.features_only or net.bn1 is not None:
        raise AlignmentError("expected a deployed features_only GhostNet")
    net = copy.deepcopy(net)
    stem = net.conv_stem
    layout = _stream_layout(stem.out_channels, block)
    net.conv_stem = align_conv(stem, Layout.dense(stem.in_channels), layout)
    stage_layouts = {"act1": layout}
    for idx, stage in enumerate(net.blocks):
        for module in stage:
            if isinstance(module, GhostBottleneck):
                layout = _align_block(module, layout, block)
            elif isinstance(module, ConvBnAct) and module.bn1 is None:
                out = Layout.dense(module.conv.out_channels, block)
                module.conv = align_conv(module.conv, layout, out)
                layout = out
            else:
                raise AlignmentError(f"unexpected stage module {type(module).__name__}")
        stage_layouts[f"blocks.{idx}"] = layout
    return AlignedBackbone(net, [stage_layouts[info["module"]] for info in net.feature_info])
