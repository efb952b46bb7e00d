"""The registered GhostNet variants (``create_model(name)``): v1 at 0.5x, 1.0x and 1.3x width, v2 at 1.0x, 1.3x and
1.6x, v3 at 0.5x, 1.0x, 1.3x and 1.6x, all on the one architecture table of :mod:`ghostkit.models.ghostnet`."""

from __future__ import annotations

from .ghostnet import GHOSTNET_CFGS, GhostNet
from .registry import register_model


@register_model
def ghostnet_050(**kwargs) -> GhostNet:
    """GhostNet 0.5x (2.59M params, ~42M MACs at 224)."""
    return GhostNet(GHOSTNET_CFGS, 0.5, "v1", **kwargs)


@register_model
def ghostnet_100(**kwargs) -> GhostNet:
    """GhostNet 1.0x (5.18M params, ~141M MACs at 224)."""
    return GhostNet(GHOSTNET_CFGS, 1.0, "v1", **kwargs)


@register_model
def ghostnet_130(**kwargs) -> GhostNet:
    """GhostNet 1.3x (7.36M params, ~226M MACs at 224)."""
    return GhostNet(GHOSTNET_CFGS, 1.3, "v1", **kwargs)


@register_model
def ghostnetv2_100(**kwargs) -> GhostNet:
    """GhostNetV2 1.0x with DFC attention."""
    return GhostNet(GHOSTNET_CFGS, 1.0, "v2", **kwargs)


@register_model
def ghostnetv2_130(**kwargs) -> GhostNet:
    """GhostNetV2 1.3x with DFC attention."""
    return GhostNet(GHOSTNET_CFGS, 1.3, "v2", **kwargs)


@register_model
def ghostnetv2_160(**kwargs) -> GhostNet:
    """GhostNetV2 1.6x with DFC attention."""
    return GhostNet(GHOSTNET_CFGS, 1.6, "v2", **kwargs)


@register_model
def ghostnetv3_050(**kwargs) -> GhostNet:
    """GhostNetV3 0.5x: re-parameterisable branches + DFC attention."""
    return GhostNet(GHOSTNET_CFGS, 0.5, "v3", **kwargs)


@register_model
def ghostnetv3_100(**kwargs) -> GhostNet:
    """GhostNetV3 1.0x: re-parameterisable branches + DFC attention."""
    return GhostNet(GHOSTNET_CFGS, 1.0, "v3", **kwargs)


@register_model
def ghostnetv3_130(**kwargs) -> GhostNet:
    """GhostNetV3 1.3x: re-parameterisable branches + DFC attention."""
    return GhostNet(GHOSTNET_CFGS, 1.3, "v3", **kwargs)


@register_model
def ghostnetv3_160(**kwargs) -> GhostNet:
    """GhostNetV3 1.6x: re-parameterisable branches + DFC attention."""
    return GhostNet(GHOSTNET_CFGS, 1.6, "v3", **kwargs)
