"""Fast CPU inference of convolution [→ BatchNorm] [→ ReLU] runs: the operations behind
:mod:`ghostkit.models.fastpath` (read that docstring first; models switch this on there, not here).

:func:`conv_bn_act` computes ``relu(bn(conv(x)))`` by a :class:`Plan`, made once per conv and input shape and kept in
a side cache: BN folded into the weight and bias; then the fused, pre-packed oneDNN op
(``torch.ops.mkldnn._convolution_pointwise``, ReLU fused), a matrix product for small 1x1 convs, or ``F.conv2d``
with the folded weight where PyTorch would pick its native kernel. :func:`conv_bn_act_parts` does the same on a
channel concatenation it never makes; :func:`sequential_act` runs an ``nn.Sequential`` with its runs fused.
"""

from __future__ import annotations

import threading
import weakref
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

__all__ = ["Plan", "Geometry", "available", "fast_inference", "fast_scope", "conv_bn_act", "conv_bn_act_parts",
           "sequential_act", "conv_bn_act_modules"]

# Largest 1x1-conv input (batch x height x width) run as a matrix product. ghostnet_100 at 224 px, 2-core VM: all
# 1x1 convs up to 4096 rows as matmuls made a pass 3% faster at batch 1, 3% at 2, 0.7% at 8; larger maps were
# faster in oneDNN (the 16 -> 8 conv on 112 x 112: 80 us against 172 us).
MATMUL_MAX_ROWS = 4096

_PACKED: weakref.WeakKeyDictionary[nn.Conv2d, dict] = weakref.WeakKeyDictionary()  # conv -> {part: (key, plan)}
_FAST: dict[str, bool | None] = {"ok": None}  # None: not checked yet
_LOCAL = threading.local()  # .trusted: inside a fast_scope that said yes


class Geometry(NamedTuple):
    """A convolution's ``padding, stride, dilation, groups``, in the argument order of the oneDNN ops."""

    padding: list[int]
    stride: list[int]
    dilation: list[int]
    groups: int


class Plan(NamedTuple):
    """How :func:`conv_bn_act` computes one conv (BN folded) on one input shape.

    ``route``: ``"matmul"`` (a small 1x1 conv; ``weight`` is ``Cin x Cout``), ``"onednn"`` (``weight`` pre-packed
    for the fused op) or ``"folded"`` (``F.conv2d`` with the folded ``weight``: PyTorch's native kernel is faster).
    """

    route: Literal["matmul", "onednn", "folded"]
    weight: torch.Tensor
    bias: torch.Tensor | None
    geometry: Geometry


def available() -> bool:
    """Whether the fused oneDNN op exists in this PyTorch build and passed its one-time self-check. Where it does
    not, a model with the fast path enabled runs its modules as written."""
    if _FAST["ok"] is None:
        _FAST["ok"] = _fast_op_works()
    return bool(_FAST["ok"])


def _fast_op_works() -> bool:
    """One-time check that the fused oneDNN ops and the private helpers used here exist in this PyTorch build (any
    version: none of them is public API) and that the op agrees with ``F.conv2d``."""
    try:
        if not torch.backends.mkldnn.is_available():
            return False
        private = [(torch._C, "_len_torch_dispatch_stack"), (torch._C, "_get_mkldnn_enabled"),
                   (torch.ops.mkldnn, "_convolution_pointwise_"), (torch.ops.mkldnn, "_reorder_convolution_weight")]
        if not all(hasattr(owner, name) for owner, name in private):
            return False
        op = torch.ops.mkldnn._convolution_pointwise
        g = torch.Generator().manual_seed(0)
        x = torch.randn(2, 4, 7, 6, generator=g).contiguous(memory_format=torch.channels_last)
        w, b = torch.randn(6, 2, 3, 3, generator=g), torch.randn(6, generator=g)
        with torch.no_grad():
            packed = torch.ops.mkldnn._reorder_convolution_weight(w, [1, 1], [2, 2], [1, 1], 2, list(x.shape))
            fast = op(x, packed, b, [1, 1], [2, 2], [1, 1], 2, "relu", [], "")
            ref = F.relu(F.conv2d(x, w, b, 2, 1, 1, 2))
        return fast.shape == ref.shape and bool(torch.allclose(fast, ref, atol=1e-5, rtol=1e-5))
    except Exception:
        return False


def _give_up() -> None:
    """An input the fused op could not take: never try it again in this process."""
    _FAST["ok"] = False
    _PACKED.clear()


# --------------------------------------------------------------------------------------------------- when


def _aten_would_use_onednn(conv: nn.Conv2d, x: torch.Tensor) -> bool:
    """PyTorch's own CPU choice between oneDNN and its native ("thnn") convolution for float32 (``use_mkldnn`` in
    ATen's Convolution.cpp): native wins for single-threaded unstrided 1x1 convs and tiny batch-1 inputs. The fast
    path only replaces oneDNN calls, so it never moves a convolution onto a kernel PyTorch judged slower."""
    kh, kw = conv.kernel_size
    one_thread_1x1 = (
        conv.stride == (1, 1)
        and conv.dilation == (1, 1)
        and x.shape[0] < 16
        and (kh, kw) == (1, 1)
        and torch.get_num_threads() == 1
    )
    tiny = conv.groups == 1 and (kh <= 3 or kw <= 3) and x.shape[0] <= 1 and x.numel() <= 20480
    return not one_thread_1x1 and not tiny


def fast_inference(x: torch.Tensor) -> bool:
    """Whether the fast path may run on ``x``: float32 CPU ``B x C x H x W`` inference, autograd off, no tracing,
    compiling or dispatch mode (module docstring). Inside a :class:`fast_scope` that said yes, yes without looking
    again."""
    if getattr(_LOCAL, "trusted", False):
        return True
    if torch.is_grad_enabled() or torch.jit.is_tracing() or torch.compiler.is_compiling():
        return False
    if type(x) is not torch.Tensor or not x.is_cpu or x.dtype != torch.float32 or x.dim() != 4:
        return False
    # available() after the tracing check: its one-time self-check runs ops a tracer would record. Before the
    # dispatch-stack check: that private call exists where available() says yes
    if not available():
        return False
    return torch._C._len_torch_dispatch_stack() == 0  # FlopCounterMode, FakeTensorMode, ...: let them see aten ops


class fast_scope:
    """``with fast_scope(x):`` around a whole model's forward on ``x``: one :func:`fast_inference` check of the
    input stands for every convolution inside (on a slow CPU, checking each of a GhostNet's ~75 convs cost about
    4% of a batch-1 pass). Thread-local, as autograd's grad mode is."""

    def __init__(self, x: torch.Tensor) -> None:
        self.on = not getattr(_LOCAL, "trusted", False) and fast_inference(x)

    def __enter__(self) -> None:
        if self.on:
            _LOCAL.trusted = True

    def __exit__(self, *exc: object) -> None:
        if self.on:
            _LOCAL.trusted = False


# --------------------------------------------------------------------------------------------------- how


def _stamp(t: torch.Tensor | None) -> tuple | None:
    if t is None:
        return None
    try:
        return t.data_ptr(), t._version
    except RuntimeError:  # inference tensors have no version counter (and cannot change outside inference mode)
        return t.data_ptr(), -1


def _plan(conv: nn.Conv2d, bn: nn.Module | None, x: torch.Tensor, part: tuple[int, int] | None = None) -> Plan | None:
    """The :class:`Plan` for ``conv`` (→ ``bn``) on ``x`` (the caller checked :func:`fast_inference`), or ``None``:
    the modules as they are. Cached per conv until a source tensor, the input shape, the thread count or the oneDNN
    switch changes. ``part = (lo, hi)`` takes input channels ``lo:hi`` only: of a dense conv (bias on the first part
    only) or of a depthwise one (its own groups), see :func:`conv_bn_act_parts`."""
    if not available():
        return None
    if bn is not None and (bn.training or bn.running_mean is None or type(bn) is not nn.BatchNorm2d):
        return None  # BN in training mode (or without running statistics) normalises with batch statistics
    sources = (conv.weight, conv.bias) if bn is None else (conv.weight, conv.bias, bn.weight, bn.bias)
    if bn is not None:
        sources += (bn.running_mean, bn.running_var)
    mkldnn_on = torch._C._get_mkldnn_enabled()  # torch.backends.mkldnn.enabled, without the Python wrapper
    key = (tuple(_stamp(t) for t in sources), None if bn is None else bn.eps, tuple(x.shape), torch.get_num_threads(),
           mkldnn_on)
    cache = _PACKED.setdefault(conv, {})
    hit = cache.get(part)
    if hit is not None and hit[0] == key:
        return hit[1]
    matmul = (
        part is None
        and conv.kernel_size == conv.stride == conv.dilation == (1, 1)
        and conv.groups == 1
        and x.shape[0] * x.shape[2] * x.shape[3] <= MATMUL_MAX_ROWS
        and conv.padding in ((0, 0), "valid")
    )
    padded = conv.padding_mode == "zeros" and isinstance(conv.padding, tuple)
    onednn = mkldnn_on and padded and _aten_would_use_onednn(conv, x)
    plan = None
    if matmul or onednn or bn is not None:
        w, b = conv.weight.detach(), conv.bias
        if bn is not None:
            w, b = fuse_conv_bn_weights(w, b, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias)
            w = w.detach()
        b = None if b is None else b.detach()
        groups = conv.groups
        lo, hi = part or (0, None)
        if part is not None and conv.groups == 1:
            w, b = w[:, lo:hi].contiguous(), b if lo == 0 else None
        elif part is not None:
            w, b, groups = w[lo:hi].contiguous(), None if b is None else b[lo:hi], hi - lo
        geometry = Geometry(list(conv.padding), list(conv.stride), list(conv.dilation), groups)
        if matmul:
            plan = Plan("matmul", w.flatten(1).t().contiguous(), b, geometry)
        elif onednn:
            w = torch.ops.mkldnn._reorder_convolution_weight(w, *geometry, list(x.shape))
            plan = Plan("onednn", w, b, geometry)
        else:
            plan = Plan("folded", w, b, geometry)
    cache[part] = (key, plan)
    return plan


def _onednn(x: torch.Tensor, plan: Plan, relu: bool) -> torch.Tensor:
    """The fused, pre-packed oneDNN convolution of an ``"onednn"`` plan."""
    return torch.ops.mkldnn._convolution_pointwise(
        x, plan.weight, plan.bias, *plan.geometry, "relu" if relu else "none", [], "")


def conv_bn_act(conv: nn.Conv2d, bn: nn.Module | None, x: torch.Tensor, relu: bool = False) -> torch.Tensor:
    """``relu(bn(conv(x)))``, ``bn`` optional (``None``: a biased deploy conv), ``relu`` optional, by its
    :class:`Plan` on CPU inference (oneDNN routes return channels-last tensors); otherwise the modules themselves."""
    plan = _plan(conv, bn, x) if fast_inference(x) else None
    if plan is not None and plan.route == "onednn":
        try:
            return _onednn(x, plan, relu)
        except RuntimeError:
            _give_up()
            plan = None
    if plan is not None and plan.route == "matmul" and x.is_contiguous(memory_format=torch.channels_last):
        n, c, h, w = x.shape
        rows = x.permute(0, 2, 3, 1).reshape(-1, c)  # a view of the NHWC storage
        y = rows @ plan.weight if plan.bias is None else torch.addmm(plan.bias, rows, plan.weight)
        y = y.view(n, h, w, -1).permute(0, 3, 1, 2)  # channels-last, as oneDNN's output
    elif plan is not None and plan.route == "matmul":
        y = conv._conv_forward(x, plan.weight.t()[:, :, None, None], plan.bias)
    elif plan is not None:
        y = conv._conv_forward(x, plan.weight, plan.bias)
    else:
        y = conv(x)
        if bn is not None:
            y = bn(y)
    return F.relu(y, inplace=True) if relu else y


def conv_bn_act_parts(
    conv: nn.Conv2d, bn: nn.Module | None, parts: list[torch.Tensor], relu: bool = False
) -> list[torch.Tensor]:
    """:func:`conv_bn_act` of ``torch.cat(parts, 1)`` without making the concatenation.

    A depthwise conv gives one output per part; a dense 1x1 conv gives ``[sum of each part's conv]``, the sum
    accumulated by oneDNN's fused add into the first part's output (``relu`` needs a single part there). Channel
    concats of wide NHWC maps cost as much as the convolutions on this path (ghost modules make one per module),
    so ghost bottlenecks hand their halves on as parts. Where the fused oneDNN op is not the route, the parts are
    concatenated and :func:`conv_bn_act` runs: the same result either way.
    """
    depthwise = conv.groups == conv.in_channels == conv.out_channels and conv.groups > 1
    dense = conv.groups == 1 and conv.kernel_size == (1, 1) and not relu
    if len(parts) > 1 and (depthwise or dense) and fast_inference(parts[0]):
        outs, lo = [], 0
        for x in parts:
            plan = _plan(conv, bn, x, (lo, lo + x.shape[1]))
            if plan is None or plan.route != "onednn":
                break
            try:
                if depthwise or not outs:
                    outs.append(_onednn(x, plan, relu))
                else:  # outs[0] += conv(x), in place
                    torch.ops.mkldnn._convolution_pointwise_(
                        outs[0], x, plan.weight, plan.bias, *plan.geometry, "add", None, None, [], None)
            except RuntimeError:
                _give_up()
                break
            lo += x.shape[1]
        else:
            return outs
    return [conv_bn_act(conv, bn, parts[0] if len(parts) == 1 else torch.cat(parts, 1), relu)]


def conv_act(conv: nn.Conv2d, x: torch.Tensor, relu: bool = False) -> torch.Tensor:
    """``relu(conv(x))`` or ``conv(x)``: :func:`conv_bn_act` without BN."""
    return conv_bn_act(conv, None, x, relu)


def sequential_act(seq: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """Run ``seq`` with every ``Conv2d [→ BatchNorm2d] [→ ReLU]`` run through :func:`conv_bn_act`; any other module
    runs as is. Same result as ``seq(x)``."""
    mods = list(seq._modules.values())
    i, n = 0, len(mods)
    while i < n:
        m = mods[i]
        if type(m) is nn.Conv2d:
            j = i + 1
            bn = mods[j] if j < n and type(mods[j]) is nn.BatchNorm2d else None
            j += bn is not None
            relu = j < n and type(mods[j]) is nn.ReLU
            x = conv_bn_act(m, bn, x, relu)
            i = j + relu
        else:
            x = m(x)
            i += 1
    return x


def conv_bn_act_modules(conv: nn.Conv2d, bn: nn.Module | None, act: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``act(bn(conv(x)))`` through :func:`conv_bn_act`, the activation fused where it is a ReLU."""
    relu = type(act) is nn.ReLU
    x = conv_bn_act(conv, bn, x, relu)
    return x if relu else act(x)
