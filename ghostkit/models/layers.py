"""Small building blocks shared by the GhostNet family.

Module attribute names (``conv``, ``bn1``, ``conv_reduce``, ``short_conv`` ...) follow the official Huawei
code and timm on purpose: their checkpoints then load into ghostkit without renaming keys.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = ["make_divisible", "ConvBnAct", "SqueezeExcite", "dfc_branch", "dfc_gate"]


def make_divisible(value: float, divisor: int = 4, min_value: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` without going more than 10% below it."""
    min_value = min_value or divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


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
        self.act1 = nn.ReLU(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn1 is not None:
            x = self.bn1(x)
        return self.act1(x)

    @torch.no_grad()
    def reparameterize(self) -> None:
        if self.bn1 is not None:
            self.conv = fuse_conv_bn_eval(self.conv, self.bn1)
            self.bn1 = None


class SqueezeExcite(nn.Module):
    """Channel gate: global average pool → 1x1 reduce → ReLU → 1x1 expand → hard-sigmoid (GhostNet's SE)."""

    def __init__(self, chs: int, rd_ratio: float = 0.25, divisor: int = 4) -> None:
        super().__init__()
        rd_chs = make_divisible(chs * rd_ratio, divisor)
        self.conv_reduce = nn.Conv2d(chs, rd_chs, 1, bias=True)
        self.act1 = nn.ReLU(inplace=True)
        self.conv_expand = nn.Conv2d(rd_chs, chs, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        s = self.conv_expand(self.act1(self.conv_reduce(s)))
        # F.hardsigmoid is exactly relu6(x + 3) / 6, the paper's hard sigmoid, in one kernel
        return x * F.hardsigmoid(s)


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


def dfc_gate(x: torch.Tensor, branch: nn.Module, size: tuple[int, int]) -> torch.Tensor:
    """Sigmoid attention map of ``branch`` computed on ``x`` pooled 2x2, resized (nearest) to ``size``.

    The official code pools with a fixed 2x2 window, which fails once a feature map is 1 pixel high or wide
    (32 px inputs, thin images). The window shrinks to 1 along such a side; elsewhere results are identical.
    """
    h, w = x.shape[-2:]
    k = (min(2, h), min(2, w))
    gate = torch.sigmoid(branch(F.avg_pool2d(x, k, k)))
    return F.interpolate(gate, size=size, mode="nearest")
