"""Model registry: ``register_model`` (decorator), ``create_model`` and ``list_models``."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from pathlib import Path

from torch import nn

from ..errors import GhostkitError
from .hub import resolve_weights

__all__ = ["register_model", "create_model", "list_models", "model_entrypoint"]

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register ``fn`` under its function name; registering a name twice is an error."""
    name = fn.__name__
    if name in _MODELS:
        raise RuntimeError(f"model {name!r} is already registered")
    _MODELS[name] = fn
    return fn


def list_models(pattern: str = "*") -> list[str]:
    """Sorted registered names matching the glob ``pattern`` (e.g. ``"ghostnetv2*"``)."""
    return sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))


def model_entrypoint(name: str) -> Callable[..., nn.Module]:
    """The registered constructor for ``name``; an unknown name raises with the closest names suggested."""
    if name not in _MODELS:
        close = difflib.get_close_matches(name, list(_MODELS), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; available: {', '.join(list_models())}"
        raise GhostkitError(f"unknown model {name!r}{hint}")
    return _MODELS[name]


def create_model(name: str, weights: str | Path | None = None, **kwargs) -> nn.Module:
    """Build a registered model, optionally loading ``weights``.

    Args:
        name: registered name, see :func:`list_models`.
        weights: ``"imagenet"`` (``"imagenet@REV"`` pins a revision) for the ImageNet weights timm publishes on the
            Hugging Face Hub (see :mod:`ghostkit.models.hub`), or an official Huawei file, a timm state dict or a
            ghostkit checkpoint (.pth/.pt/.safetensors). With ``num_classes`` different from the weights', the
            classifier is freshly initialised (transfer learning); with ``features_only`` the head's weights are
            ignored. Hub weights leave their normalisation in ``model.pretrained_cfg`` (mean, std, input size).
        **kwargs: passed to the model: ``num_classes``, ``features_only``, ``out_indices``, ``output_stride``,
            ``drop_rate``, ``in_chans``.
    """
    build = model_entrypoint(name)
    # hub weights are fetched (or found in the cache) before building, so a failed download fails fast
    path, pretrained_cfg = resolve_weights(name, weights) if weights is not None else (None, None)
    model = build(**kwargs)
    model.model_name = name
    model.model_kwargs = dict(kwargs)
    if path is not None:
        from .weights import load_weights

        load_weights(model, path, allow_new_classifier="num_classes" in kwargs)
    if pretrained_cfg is not None:
        model.pretrained_cfg = pretrained_cfg
    return model
