"""Small building blocks shared by the GhostNet family.

Module attribute names (``conv``, ``bn1``, ``conv_reduce``, ``short_conv`` ...) follow the official Huawei code and
timm on purpose: their checkpoints then load into ghostkit without renaming keys.

CPU inference fast path (:func:`conv_bn_act`). A convolution → BatchNorm (eval) → ReLU run is one affine map and a
clamp, i.e. one oneDNN primitive. Without autograd on CPU, ghostkit folds the BN into the convolution's weight and
bias (as :func:`~ghostkit.models.reparameterize` does, but on the fly), pre-packs the folded weight once into
oneDNN's blocked layout and calls ``torch.ops.mkldnn._convolution_pointwise`` with the ReLU fused. ``F.conv2d``
re-packs the weight on every call, and BN and ReLU are two more passes over memory: together a large share of a
batch-1 pass through a net of small convolutions. So the training-structure model in eval mode runs about as fast
as its deploy form, and the deploy form gets the pre-packing and fused ReLU.

The folded, packed copy lives in a side cache keyed by the storage and version counter of every tensor it was made
from and by the input shape: loading weights, an optimizer step, ``.to()``, ``deepcopy`` and ``state_dict`` are
unaffected and never see stale values. The fused op is used only where PyTorch itself would call oneDNN for that
convolution; where it picks its native kernel (single-threaded unstrided 1x1 convs, tiny batch-1 inputs) the folded
weight goes to ``F.conv2d`` instead. A 1x1 convolution over at most ``MATMUL_MAX_ROWS`` pixels (batch x height x
width) of a channels-last map is one matrix product with the folded weight: oneDNN spends about 45 us setting up
each call on a 2-core VM (a 4 x 4 map takes 49 us, the kernel itself 5 us), a matrix product about 3 us, and at
batch 1 the ~40 small 1x1 convs of a GhostNet made that overhead 3-5% of a pass. Neither happens under autograd,
tracing, ``torch.compile`` / ``torch.export``, dispatch modes (``FlopCounterMode``, fake tensors), for non-float32
or non-CPU tensors, or for BN layers in training mode or without running statistics; all of it is switched off for
good if the op is missing or fails a one-time self-check (:func:`fast_path_enabled`). Forward hooks on the BN and
ReLU modules of such runs do not fire.
"""

from __future__ import annotations

import threading
import weakref

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
    "conv_bn_act",
    "conv_bn_act_parts",
    "conv_act",
    "sequential_act",
    "fast_path_enabled",
    "fast_inference",
    "fast_scope",
]


def make_divisible(value: float, divisor: int = 4, min_value: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` without going more than 10% below it."""
    min_value = min_value or divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


# --------------------------------------------------------------------------------------------------- fast path

_PACKED: weakref.WeakKeyDictionary[nn.Conv2d, dict] = weakref.WeakKeyDictionary()  # conv -> {part: entry}
_FAST: dict[str, bool | None] = {"ok": None}  # None: not checked yet
_LOCAL = threading.local()  # .trusted: inside a fast_scope that said yes
# Largest 1x1-conv input (batch x height x width) run as a matrix product. ghostnet_100 at 224 px, 2-core VM: all
# 1x1 convs up to 4096 rows as matmuls made a pass 3% faster at batch 1, 3% at 2, 0.7% at 8; larger maps were
# faster in oneDNN (the 16 -> 8 conv on 112 x 112: 80 us against 172 us).
MATMUL_MAX_ROWS = 4096


def _fast_op_works() -> bool:
    """One-time check that the fused oneDNN op exists here and agrees with ``F.conv2d``."""
    try:
        if not torch.backends.mkldnn.is_available():
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


def fast_path_enabled(enabled: bool | None = None) -> bool:
    """Whether CPU inference may use the folded, fused, pre-packed oneDNN convolutions (module docstring); pass
    ``False`` to switch them off, ``True`` to switch them back on (if they work here)."""
    if enabled is not None:
        _FAST["ok"] = _fast_op_works() if enabled else False
        _PACKED.clear()
    if _FAST["ok"] is None:
        _FAST["ok"] = _fast_op_works()
    return bool(_FAST["ok"])


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
    compiling or dispatch mode, and the fused op works here (:func:`fast_path_enabled`). Inside a
    :class:`fast_scope` that said yes, yes without looking again."""
    if getattr(_LOCAL, "trusted", False):
        return True
    if torch.is_grad_enabled() or type(x) is not torch.Tensor or not x.is_cpu or x.dtype != torch.float32:
        return False
    if torch.jit.is_tracing() or torch.compiler.is_compiling() or x.dim() != 4:
        return False
    if torch._C._len_torch_dispatch_stack() > 0:  # FlopCounterMode, FakeTensorMode, ...: let them see aten ops
        return False
    return bool(_FAST["ok"]) if _FAST["ok"] is not None else fast_path_enabled()


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


def _stamp(t: torch.Tensor | None) -> tuple | None:
    if t is None:
        return None
    try:
        return t.data_ptr(), t._version
    except RuntimeError:  # inference tensors have no version counter (and cannot change outside inference mode)
        return t.data_ptr(), -1


def _plan(conv: nn.Conv2d, bn: nn.Module | None, x: torch.Tensor, part: tuple[int, int] | None = None) -> tuple | None:
    """How :func:`conv_bn_act` computes on ``x`` (the caller checked :func:`fast_inference`): ``None`` (the modules as
    they are), or ``(route, weight, bias, geometry)`` with the BN-folded weight and bias and route ``"matmul"``
    (a small 1x1 conv; the weight as ``Cin x Cout``), ``"onednn"`` (the weight pre-packed for the fused op) or
    ``"folded"`` (``F.conv2d``: where PyTorch's native kernel is the faster one). Cached per conv until a source
    tensor, the input shape, the thread count or the oneDNN switch changes. ``part = (lo, hi)`` takes input
    channels ``lo:hi`` only: of a dense conv (bias on the first part only) or of a depthwise one (its own
    groups), see :func:`conv_bn_act_parts`."""
    if not _FAST["ok"]:
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
        geometry = (list(conv.padding), list(conv.stride), list(conv.dilation), groups)
        if matmul:
            plan = ("matmul", w.flatten(1).t().contiguous(), b, geometry)  # Cin x Cout
        elif onednn:
            w = torch.ops.mkldnn._reorder_convolution_weight(w, *geometry, list(x.shape))
            plan = ("onednn", w, b, geometry)
        else:
            plan = ("folded", w, b, geometry)
    cache[part] = (key, plan)
    return plan


def _onednn(x: torch.Tensor, plan: tuple, relu: bool) -> torch.Tensor:
    """The fused, pre-packed oneDNN convolution of an ``"onednn"`` plan."""
    return torch.ops.mkldnn._convolution_pointwise(x, plan[1], plan[2], *plan[3], "relu" if relu else "none", [], "")


def conv_bn_act(conv: nn.Conv2d, bn: nn.Module | None, x: torch.Tensor, relu: bool = False) -> torch.Tensor:
    """``relu(bn(conv(x)))``, ``bn`` optional (``None``: a biased deploy conv), ``relu`` optional.

    On CPU inference BN is folded into the convolution and, where PyTorch would call oneDNN, the whole run is one
    fused op on pre-packed weights (module docstring; it returns channels-last tensors). Otherwise the modules
    themselves run.
    """
    plan = _plan(conv, bn, x) if fast_inference(x) else None
    if plan is not None and plan[0] == "onednn":
        try:
            return _onednn(x, plan, relu)
        except RuntimeError:
            fast_path_enabled(False)  # an input this op cannot take: never try again in this process
            plan = None
    if plan is not None and plan[0] == "matmul" and x.is_contiguous(memory_format=torch.channels_last):
        n, c, h, w = x.shape
        rows = x.permute(0, 2, 3, 1).reshape(-1, c)  # a view of the NHWC storage
        y = rows @ plan[1] if plan[2] is None else torch.addmm(plan[2], rows, plan[1])
        y = y.view(n, h, w, -1).permute(0, 3, 1, 2)  # channels-last, as oneDNN's output
    elif plan is not None and plan[0] == "matmul":
        y = conv._conv_forward(x, plan[1].t()[:, :, None, None], plan[2])
    elif plan is not None:
        y = conv._conv_forward(x, plan[1], plan[2])
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
            if plan is None or plan[0] != "onednn":
                break
            try:
                if depthwise or not outs:
                    outs.append(_onednn(x, plan, relu))
                else:  # outs[0] += conv(x), in place
                    torch.ops.mkldnn._convolution_pointwise_(
                        outs[0], x, plan[1], plan[2], *plan[3], "add", None, None, [], None)
            except RuntimeError:
                fast_path_enabled(False)  # as in conv_bn_act: never try again in this process
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


# --------------------------------------------------------------------------------------------------- layers


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
        relu = type(self.act1) is nn.ReLU
        x = conv_bn_act(self.conv, self.bn1, x, relu)
        return x if relu else self.act1(x)

    @torch.no_grad()
    def reparameterize(self) -> None:
        if self.bn1 is not None:
            self.conv = fuse_conv_bn_eval(self.conv, self.bn1)
            self.bn1 = None


class SqueezeExcite(nn.Module):
    """Channel gate: global average pool → 1x1 reduce → ReLU → 1x1 expand → hard-sigmoid (GhostNet's SE).

    ``B x C x H x W → B x C x H x W``. The 1x1 convs (kept as ``nn.Conv2d`` for checkpoint compatibility) act on a
    ``B x C`` vector, so they run as matrix products.
    """

    def __init__(self, chs: int, rd_ratio: float = 0.25, divisor: int = 4) -> None:
        super().__init__()
        rd_chs = make_divisible(chs * rd_ratio, divisor)
        self.conv_reduce = nn.Conv2d(chs, rd_chs, 1, bias=True)
        self.act1 = nn.ReLU(inplace=True)
        self.conv_expand = nn.Conv2d(rd_chs, chs, 1, bias=True)

    def gate(self, x: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        """The ``B x C x 1 x 1`` gate in [0, 1] of ``x`` or of the channel concatenation of the list ``x``."""
        s = torch.cat([p.mean((2, 3)) for p in x], 1) if isinstance(x, list) else x.mean((2, 3))
        s = F.relu(F.linear(s, self.conv_reduce.weight.flatten(1), self.conv_reduce.bias))
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


def dfc_gate(x: torch.Tensor, branch: nn.Module, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Sigmoid attention map of ``branch`` computed on ``x`` pooled 2x2, resized (nearest) to ``size``.

    The official code pools with a fixed 2x2 window, which fails once a feature map is 1 pixel high or wide
    (32 px inputs, thin images). The window shrinks to 1 along such a side; elsewhere results are identical.
    """
    h, w = x.shape[-2:]
    k = (min(2, h), min(2, w))
    pooled = F.avg_pool2d(x, k, k)
    gate = sequential_act(branch, pooled) if isinstance(branch, nn.Sequential) else branch(pooled)
    gate = torch.sigmoid(gate) if torch.is_grad_enabled() else gate.sigmoid_()
    return F.interpolate(gate, size=size, mode="nearest")
