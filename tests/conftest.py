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
    """``model(x)`` without autograd with ghostkit's CPU fast path switched on (``fastpath.enable``; checked to have
    run: plans made for this model's convs; the plan cache is left as it is, so stale entries would show) and again
    with it switched off (``fastpath.disable``). The model's switch is restored afterwards. Skips the test where this
    PyTorch build lacks the fused op."""
    from ghostkit.models import fastconv, fastpath

    if not fastpath.available():
        pytest.skip("no oneDNN fused convolution in this PyTorch build")
    was_on = fastpath.is_enabled(model)
    try:
        with torch.no_grad():
            fast = fastpath.enable(model)(x)
            assert any(m in fastconv._PACKED for m in model.modules())  # the fast path did run
            plain = fastpath.disable(model)(x)
    finally:
        (fastpath.enable if was_on else fastpath.disable)(model)
    return fast, plain
