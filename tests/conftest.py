"""Shared test helpers."""

from __future__ import annotations

import pytest
import torch
from torch import nn


@torch.no_grad()
def realistic_bn(model: nn.Module, sizes: list[tuple[int, int]] | tuple = ((96, 80),), seed: int = 0) -> nn.Module:
    """Random BN affine parameters and running statistics measured on random images at ``sizes`` (train-mode
    passes, cumulative average), then eval mode: fresh BNs are identities and would hide folding / mapping bugs.
    The default 96 x 80 gives 3 x 3 (odd) maps at stride 32: DFC pooling with a remainder, cheap for every variant."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
            m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    model.train()
    for size in sizes:
        model(torch.randn(4, 3, *size, generator=g))
    return model.eval()


def fast_and_plain(model: nn.Module, x: torch.Tensor) -> tuple:
    """``model(x)`` without autograd through ghostkit's oneDNN fast path (checked to have run; the packed-weight
    cache is left as it is, so stale entries would show) and again with the path switched off. Skips the test where
    this PyTorch build lacks the fused op."""
    from ghostkit.models import layers

    if not layers.fast_path_enabled():
        pytest.skip("no oneDNN fused convolution in this PyTorch build")
    with torch.no_grad():
        fast = model(x)
        assert len(layers._PACKED) > 0  # the fast path did run
        try:
            layers.fast_path_enabled(False)
            plain = model(x)
        finally:
            layers.fast_path_enabled(True)
    return fast, plain
