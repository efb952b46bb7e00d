"""Deploy mode: fold BatchNorm into convolutions and merge GhostNetV3's re-parameterisable branches.

``reparameterize(model)`` returns a new model whose eval outputs equal ``model.eval()``'s (up to float error)
with no BatchNorm and no training-only branch left. It works on any module tree built from ghostkit parts
and plain ``nn.Sequential`` (conv, bn, ...) runs, so task heads fold too.

Modules take part by defining ``reparameterize(self) -> nn.Module | None``: it is called before the module's
children are processed (a module that merges branches must see their BatchNorms), and may fold itself in place
(return ``None``) or return a replacement module. The branch arithmetic: :func:`~ghostkit.models.layers.fuse_branches`.

Deploy mode is also where speed is switched on: the returned model runs the CPU inference fast path
(:func:`ghostkit.models.fastpath.enable`; ``fast=False`` leaves it off), so forward hooks on its ReLU modules do not
fire on CPU inference. ``fastpath.disable(model)`` turns the deployed model back into plain modules.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from . import fastpath

__all__ = ["reparameterize", "fold_sequential", "is_deployed"]


def fold_sequential(seq: nn.Sequential) -> nn.Sequential:
    """Return ``seq`` with every Conv2d directly followed by BatchNorm2d fused into one biased Conv2d."""
    mods = list(seq)
    out: list[nn.Module] = []
    i = 0
    while i < len(mods):
        m = mods[i]
        nxt = mods[i + 1] if i + 1 < len(mods) else None
        if isinstance(m, nn.Conv2d) and isinstance(nxt, nn.BatchNorm2d):
            out.append(fuse_conv_bn_eval(m, nxt))
            i += 2
        else:
            out.append(m)
            i += 1
    return nn.Sequential(*out)


def _reparam(module: nn.Module) -> nn.Module:
    # pre-order: a module that merges branches must see its children's BatchNorms before they are folded
    if isinstance(module, nn.Sequential):
        module = fold_sequential(module)
    elif callable(hook := getattr(module, "reparameterize", None)):
        new = hook()
        module = module if new is None else new
    for name, child in list(module.named_children()):
        new = _reparam(child)
        if new is not child:
            setattr(module, name, new)
    return module


def is_deployed(model: nn.Module) -> bool:
    """True when no BatchNorm is left in ``model`` (every re-parameterisable branch carries one)."""
    return not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@torch.no_grad()
def reparameterize(model: nn.Module, fast: bool = True) -> nn.Module:
    """Deploy copy of ``model``: BN folded everywhere, V3 branches merged; the input model is left untouched.

    ``fast``: switch the copy's CPU inference fast path on (:func:`ghostkit.models.fastpath.enable`: fused,
    pre-packed oneDNN convolutions; forward hooks on the ReLU modules it fuses do not fire). Raises ``RuntimeError``
    naming the modules that could not be folded instead of silently returning a model that still has BatchNorm
    layers.
    """
    model = _reparam(copy.deepcopy(model).eval())
    if not is_deployed(model):
        left = [n for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        raise RuntimeError(f"reparameterize: could not fold BatchNorm in {', '.join(left[:5])}")
    model.deployed = True
    return fastpath.enable(model) if fast else fastpath.disable(model)
