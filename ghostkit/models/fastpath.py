"""CPU inference fast path for GhostNet models, switched on per model: ``enable(model)`` / ``disable(model)``.

A plain ghostkit model (``create_model(...).eval()``) runs its modules as written, like any PyTorch model. Deploy
mode (:func:`~ghostkit.models.reparameterize`, which export and deployed task models use) switches the fast path on
for its copy; ``enable(model)`` switches it on in place for any model built from ghostkit parts (training structure
included: BN is then folded on the fly), ``disable(model)`` off again, ``is_enabled(model)`` tells.

What it does. A convolution → BatchNorm (eval) → ReLU run is one affine map and a clamp, i.e. one oneDNN primitive.
The fast path folds the BN into the convolution's weight and bias, pre-packs the folded weight once into oneDNN's
blocked layout and calls ``torch.ops.mkldnn._convolution_pointwise`` with the ReLU fused. ``F.conv2d`` re-packs the
weight on every call, and BN and ReLU are two more passes over memory: together a large share of a batch-1 pass
through a net of small convolutions. A 1x1 convolution over at most ``MATMUL_MAX_ROWS`` pixels (batch x height x
width) of a channels-last map is one matrix product with the folded weight (oneDNN spends about 45 us setting up
each call on a 2-core VM, a matrix product about 3 us). Where PyTorch itself would pick its native kernel rather
than oneDNN (single-threaded unstrided 1x1 convs, tiny batch-1 inputs) the folded weight goes to ``F.conv2d``. On
large maps a ghost bottleneck hands its expanded halves on as two tensors instead of concatenating them
(``PARTS_MIN_NUMEL``). Each plan (:class:`~ghostkit.models.fastconv.Plan`) lives in a side cache keyed by the
storage and version counter of every tensor it was made from, the input shape, the thread count and the oneDNN
switch: loading weights, an optimizer step, ``.to()``, ``deepcopy`` and ``state_dict`` are unaffected and never see
stale values.

When it steps aside. Under autograd, tracing, ``torch.compile`` / ``torch.export``, dispatch modes
(``FlopCounterMode``, fake tensors), for non-float32 or non-CPU tensors, and for BN layers in training mode or without
running statistics, an enabled model runs its modules as written (exporters see standard convolutions). If the
private op is missing from this PyTorch build or fails a one-time self-check (:func:`available`), it is never tried.

Hooks. Where it runs, the convolution, BatchNorm and ReLU modules it fuses (and the ``nn.Sequential`` runs holding
them) are not called: forward hooks on those do not fire. Hooks on blocks (``GhostBottleneck``, ``GhostModule``,
``ConvBnAct``, ``SqueezeExcite``) and on the model do. For hooks everywhere use the plain model, ``reparameterize(model,
fast=False)`` or ``disable(model)``.

How it is switched. ``enable`` changes the class of each ``ConvBnAct``, ``GhostModule``, ``GhostBottleneck`` and
``GhostNet`` in the tree to a subclass defined here whose forward runs the fast path (as
``torch.nn.utils.parametrize`` does): parameters, state-dict keys and module structure stay the same. Other modules
(task heads' own layers, ``GhostModuleV3``'s training branches apart from their ``ConvBnAct``) run as written.
"""

from __future__ import annotations

import torch
from torch import nn

from .fastconv import (
    available,
    conv_bn_act,
    conv_bn_act_modules,
    conv_bn_act_parts,
    fast_inference,
    fast_scope,
    sequential_act,
)
from .ghostnet import GhostBottleneck, GhostModule, GhostNet
from .layers import ConvBnAct, dfc_gate

__all__ = ["enable", "disable", "is_enabled", "available"]

# Ghost bottlenecks skip their expanded concat (_bottleneck_parts) from this many elements on: timed block by block
# on a 2-core AVX2 VM (ghostnet_100, 224 px), the split path won every block at batch 32 (1.2M elements and more; up
# to 4x on the widest), won at batch 4 from 0.75M elements on, and lost 2-12% on every block at batch 1 (0.6M and
# less), where the extra op calls cost more than the copy saves.
PARTS_MIN_NUMEL = 1 << 20


# --------------------------------------------------------------------------------------------------- the switch


def enable(model: nn.Module) -> nn.Module:
    """Switch the fast path on for ``model`` and every ghostkit module in it, in place; returns ``model``."""
    return _swap_classes(model, _TWINS)


def disable(model: nn.Module) -> nn.Module:
    """Switch the fast path off for ``model``, in place: plain modules again; returns ``model``."""
    return _swap_classes(model, _PLAIN)


def _swap_classes(model: nn.Module, classes: dict[type, type]) -> nn.Module:
    """Give every submodule whose class is a key of ``classes`` the class it maps to (same parameters and keys)."""
    for m in model.modules():
        target = classes.get(type(m))
        if target is not None:
            m.__class__ = target
    return model


def is_enabled(model: nn.Module) -> bool:
    """Whether any module of ``model`` runs the fast path (see :func:`enable`)."""
    return any(type(m) in _PLAIN for m in model.modules())


# --------------------------------------------------------------------------------------------------- split ghosts


def _use_parts(block: GhostBottleneck, x: torch.Tensor) -> bool:
    """Inference on a map whose expanded (ghost1) output has at least ``PARTS_MIN_NUMEL`` elements."""
    if not isinstance(block.ghost1, GhostModule) or not isinstance(block.ghost2, GhostModule):
        return False  # GhostNetV3's training structure
    # fast_inference first: under tracing, shape arithmetic would make tensors (and tracer warnings)
    return fast_inference(x) and x.shape[0] * block.ghost1.out_chs * x.shape[-2] * x.shape[-1] >= PARTS_MIN_NUMEL


def _ghost_parts(m: GhostModule, x: torch.Tensor) -> list[torch.Tensor]:
    """``m(x)`` as ``[intrinsic maps, ghost maps]``, not concatenated; one part if trimmed."""
    if m.trim:
        return [m(x)]
    x1 = sequential_act(m.primary_conv, x)
    x2 = sequential_act(m.cheap_operation, x1)
    if m.short_conv is not None:
        gate = dfc_gate(x, m.short_conv, x1.shape[-2:], sequential_act)
        x1.mul_(gate[:, : x1.shape[1]])
        x2.mul_(gate[:, x1.shape[1] :])
    return [x1, x2]


def _ghost_from_parts(m: GhostModule, parts: list[torch.Tensor]) -> torch.Tensor:
    """``m(torch.cat(parts, 1))`` (no DFC attention, which needs the input), its primary conv split by part."""
    seq = m.primary_conv  # Conv2d [→ BatchNorm2d] → ReLU | Identity
    bn = seq[1] if isinstance(seq[1], nn.BatchNorm2d) else None
    x1 = conv_bn_act_parts(seq[0], bn, parts, type(seq[-1]) is nn.ReLU)[0]
    out = torch.cat([x1, sequential_act(m.cheap_operation, x1)], dim=1)
    return out[:, : m.out_chs] if m.trim else out


def _bottleneck_parts(block: GhostBottleneck, x: torch.Tensor) -> torch.Tensor:
    """``block(x)`` without its shortcut: ghost1's intrinsic and ghost maps stay two tensors up to ghost2's primary
    conv (its input channels split in two), so the block's widest concat is never made."""
    parts = _ghost_parts(block.ghost1, x)
    if block.conv_dw is not None:
        parts = conv_bn_act_parts(block.conv_dw, block.bn_dw, parts)
    if block.se is not None:
        gate = block.se.pooled_gate(torch.cat([p.mean((2, 3)) for p in parts], 1))
        lo = 0
        for p in parts:  # every part is this block's own fresh tensor
            p.mul_(gate[:, lo : lo + p.shape[1]])
            lo += p.shape[1]
    return _ghost_from_parts(block.ghost2, parts)


# --------------------------------------------------------------------------------------------------- fast twins


# Each twin runs its plain parent's forward, module by module, wherever fast_inference says no (autograd, tracing, ...)


class _FastConvBnAct(ConvBnAct):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not fast_inference(x):
            return super().forward(x)
        return conv_bn_act_modules(self.conv, self.bn1, self.act1, x)


class _FastGhostModule(GhostModule):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not fast_inference(x):
            return super().forward(x)
        x1 = sequential_act(self.primary_conv, x)
        out = torch.cat([x1, sequential_act(self.cheap_operation, x1)], dim=1)
        if self.trim:
            out = out[:, : self.out_chs]
        if self.short_conv is not None:
            out.mul_(dfc_gate(x, self.short_conv, out.shape[-2:], sequential_act))
        return out


class _FastGhostBottleneck(GhostBottleneck):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not fast_inference(x):
            return super().forward(x)
        residual = sequential_act(self.shortcut, x) if type(self.shortcut) is nn.Sequential else self.shortcut(x)
        if _use_parts(self, x):
            x = _bottleneck_parts(self, x)
        else:
            x = self.depthwise(self.ghost1(x))
            x = self.ghost2(x if self.se is None else self.se(x))
        x += residual
        return x

    def depthwise(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv_dw is None or not fast_inference(x):
            return super().depthwise(x)
        return conv_bn_act(self.conv_dw, self.bn_dw, x)


class _FastGhostNet(GhostNet):
    """One :class:`fast_scope` per forward; the stem fused."""

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        if not fast_inference(x):
            return super().forward_stem(x)
        return conv_bn_act_modules(self.conv_stem, self.bn1, self.act1, x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        with fast_scope(x):
            return super().forward_features(x)

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        with fast_scope(x):
            return super().forward_stages(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        with fast_scope(x):
            return super().forward(x)


# plain class -> its fast twin (a subclass)
_TWINS: dict[type, type] = {ConvBnAct: _FastConvBnAct, GhostModule: _FastGhostModule,
                            GhostBottleneck: _FastGhostBottleneck, GhostNet: _FastGhostNet}
_PLAIN = {twin: plain for plain, twin in _TWINS.items()}
