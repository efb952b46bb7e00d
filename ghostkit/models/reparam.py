"""Deploy mode: fold BatchNorm into convolutions and merge GhostNetV3's re-parameterisable branches.

``reparameterize(model)`` returns a new model whose eval outputs equal ``model.eval()``'s (up to float error)
with no BatchNorm and no training-only branch left. It works on any module tree built from ghostkit parts
and plain ``nn.Sequential`` (conv, bn, ...) runs, so task heads fold too.

Modules take part by defining ``reparameterize(self) -> nn.Module | None``: it is called after the module's
children were processed, and may fold itself in place (return ``None``) or return a replacement module.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_conv_bn_weights

__all__ = ["reparameterize", "fuse_branches", "fold_sequential", "is_deployed"]


def fuse_branches(
    branches: list[tuple[nn.Conv2d | None, nn.BatchNorm2d]],
    kernel_size: tuple[int, int],
    in_per_group: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum parallel conv → BN branches into one ``kernel_size`` kernel and bias.

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
        weight = weight + nn.functional.pad(w.detach(), [pw, pw, ph, ph])
        bias = bias + b.detach()
    return weight, bias


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
def reparameterize(model: nn.Module) -> nn.Module:
    """Deploy copy of ``model``: BN folded everywhere, V3 branches merged; the input model is left untouched.

    Raises ``RuntimeError`` naming the modules that could not be folded instead of silently returning a model
    that still has BatchNorm layers.
    """
    model = _reparam(copy.deepcopy(model).eval())
    if not is_deployed(model):
        left = [n for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        raise RuntimeError(f"reparameterize: could not fold BatchNorm in {', '.join(left[:5])}")
    model.deployed = True
    return model
