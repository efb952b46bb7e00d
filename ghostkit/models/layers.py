"""Small building blocks shared by the GhostNet family, and the weight arithmetic of their deploy form.

Module attribute names (``conv``, ``bn1``, ``conv_reduce``, ``short_conv`` ...) follow the official Huawei code and
timm on purpose: their checkpoints then load into ghostkit without renaming keys.

Every layer here is a plain PyTorch module: its ``forward`` calls its submodules, so forward hooks on each conv, BN
and activation fire. The CPU inference fast path (BN folded on the fly, fused oneDNN convolutions) lives in
:mod:`ghostkit.models.fastpath` and is switched on per model by deploy mode or ``fastpath.enable(model)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_conv_bn_weights

__all__ = [
    "make_divisible",
    "ConvBnAct",
    "SqueezeExcite",
    "dfc_branch",
    "dfc_gate",
    "maybe_relu",
    "branch_sum",
    "fuse_branches",
    "fused_conv",
]


def make_divisible(value: float, divisor: int = 4, min_value: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` without going more than 10% below it."""
    min_value = min_value or divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def maybe_relu(act: bool) -> nn.Module:
    """``nn.ReLU(inplace=True)`` where ``act``, else ``nn.Identity()`` (GhostNet's only activation is ReLU)."""
    return nn.ReLU(inplace=True) if act else nn.Identity()


def branch_sum(branches: nn.ModuleList, x: torch.Tensor, start: torch.Tensor | None = None) -> torch.Tensor:
    """``start + sum(branch(x))`` over parallel branches, accumulated in place when autograd is off."""
    total = start
    for branch in branches:
        y = branch(x)
        if total is None:
            total = y
        elif torch.is_grad_enabled():
            total = total + y
        else:
            total += y
    return total


class ConvBnAct(nn.Module):
    """Conv2d → BatchNorm2d → optional ReLU. After BN folding ``bn1`` is ``None`` and ``conv`` has a bias."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int | tuple[int, int] = 1,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        act: bool = True,
    ) -> None:
        super().__init__()
        k = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        padding = (dilation * (k[0] - 1) // 2, dilation * (k[1] - 1) // 2)
        self.conv = nn.Conv2d(in_chs, out_chs, k, stride, padding, dilation=dilation, groups=groups, bias=False)
        self.bn1: nn.BatchNorm2d | None = nn.BatchNorm2d(out_chs)
        self.act1 = maybe_relu(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return self.act1(x if self.bn1 is None else self.bn1(x))

    @torch.no_grad()
    def reparameterize(self) -> None:
        if self.bn1 is not None:
            self.conv = fuse_conv_bn_eval(self.conv, self.bn1)
            self.bn1 = None


class SqueezeExcite(nn.Module):
    """Channel gate: global average pool → 1x1 reduce → ReLU → 1x1 expand → hard-sigmoid (GhostNet's SE).

    ``B x C x H x W → B x C x H x W``. The 1x1 convs (``nn.Conv2d`` for checkpoint compatibility) act on a pooled
    ``B x C`` vector, so they run as matrix products (their own forward hooks do not fire; ``act1``'s do).
    """

    def __init__(self, chs: int, rd_ratio: float = 0.25, divisor: int = 4) -> None:
        super().__init__()
        rd_chs = make_divisible(chs * rd_ratio, divisor)
        self.conv_reduce = nn.Conv2d(chs, rd_chs, 1, bias=True)
        self.act1 = nn.ReLU(inplace=True)
        self.conv_expand = nn.Conv2d(rd_chs, chs, 1, bias=True)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """The ``B x C x 1 x 1`` gate in [0, 1] of ``x``."""
        return self.pooled_gate(x.mean((2, 3)))

    def pooled_gate(self, s: torch.Tensor) -> torch.Tensor:
        """The ``B x C x 1 x 1`` gate of the ``B x C`` channel means ``s``."""
        s = self.act1(F.linear(s, self.conv_reduce.weight.flatten(1), self.conv_reduce.bias))
        s = F.linear(s, self.conv_expand.weight.flatten(1), self.conv_expand.bias)
        # F.hardsigmoid is exactly relu6(x + 3) / 6, the paper's hard sigmoid, in one kernel
        return F.hardsigmoid(s)[:, :, None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


def dfc_branch(in_chs: int, out_chs: int, stride: int = 1) -> nn.Sequential:
    """GhostNetV2's decoupled fully connected (DFC) attention branch.

    1x1 conv → BN → depthwise (1 x 5) conv → BN → depthwise (5 x 1) conv → BN: horizontal and vertical
    long-range mixing, applied at half resolution by :func:`dfc_gate`.
    """
    return nn.Sequential(
        nn.Conv2d(in_chs, out_chs, 1, stride, 0, bias=False),
        nn.BatchNorm2d(out_chs),
        nn.Conv2d(out_chs, out_chs, (1, 5), 1, (0, 2), groups=out_chs, bias=False),
        nn.BatchNorm2d(out_chs),
        nn.Conv2d(out_chs, out_chs, (5, 1), 1, (2, 0), groups=out_chs, bias=False),
        nn.BatchNorm2d(out_chs),
    )


def dfc_gate(x: torch.Tensor, branch: nn.Module, size: tuple[int, int] | torch.Size,
             run: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Sigmoid attention map of ``branch`` computed on ``x`` pooled 2x2, resized (nearest) to ``size``; ``run(branch,
    pooled)`` instead of ``branch(pooled)`` where given (the fast path's fused runner).

    The official code pools with a fixed 2x2 window, which fails once a feature map is 1 pixel high or wide
    (32 px inputs, thin images). The window shrinks to 1 along such a side; elsewhere results are identical.
    """
    h, w = x.shape[-2:]
    k = (min(2, h), min(2, w))
    pooled = F.avg_pool2d(x, k, k)
    gate = branch(pooled) if run is None else run(branch, pooled)
    gate = torch.sigmoid(gate) if torch.is_grad_enabled() else gate.sigmoid_()
    return F.interpolate(gate, size=size, mode="nearest")


def fuse_branches(
    branches: list[tuple[nn.Conv2d | None, nn.BatchNorm2d]],
    kernel_size: tuple[int, int],
    in_per_group: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum parallel conv → BN branches into one ``kernel_size`` kernel and bias (GhostNetV3's deploy form).

    A branch whose conv is ``None`` is an identity (BN only) branch; smaller kernels (1x1 "scale" branches) are
    zero-padded to the centre. All branches must share stride, dilation and groups.
    """
    weight, bias = 0.0, 0.0
    kh, kw = kernel_size
    for conv, bn in branches:
        if conv is None:
            out_chs = bn.num_features
            k = torch.zeros(out_chs, in_per_group, kh, kw, dtype=bn.weight.dtype, device=bn.weight.device)
            k[torch.arange(out_chs), torch.arange(out_chs) % in_per_group, kh // 2, kw // 2] = 1.0
            conv_w, conv_b = k, None
        else:
            conv_w, conv_b = conv.weight, conv.bias
        w, b = fuse_conv_bn_weights(conv_w, conv_b, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias)
        ph, pw = (kh - w.shape[-2]) // 2, (kw - w.shape[-1]) // 2
        weight = weight + F.pad(w.detach(), [pw, pw, ph, ph])
        bias = bias + b.detach()
    return weight, bias


def fused_conv(template: nn.Conv2d, branches: list[tuple[nn.Conv2d | None, nn.BatchNorm2d]]) -> nn.Conv2d:
    """One biased conv with ``template``'s geometry computing the sum of the parallel conv → BN ``branches``
    (:func:`fuse_branches`), on their device."""
    t = template
    weight, bias = fuse_branches(branches, t.kernel_size, t.in_channels // t.groups)
    conv = nn.Conv2d(t.in_channels, t.out_channels, t.kernel_size, t.stride, t.padding, t.dilation, t.groups, True)
    conv = conv.to(weight.device)
    conv.weight.data.copy_(weight)
    conv.bias.data.copy_(bias)
    return conv
