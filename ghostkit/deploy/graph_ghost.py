"""The ``ghost`` rewrite of :mod:`ghostkit.deploy.graph` (INT8 graphs): a ghost module's concat of its primary
output and the depthwise "cheap" features computed from it becomes two convolutions without a concat. Exact.

A ghost module computes ``a = primary(x)`` (a dense conv, optionally + ReLU), ``b = cheap(a)`` (a depthwise conv,
stride 1, "same" padding, optionally + ReLU) and returns ``concat(a, b)``. The same tensor comes out of

* ``a2 = primary2(x)``: the primary conv with its output rows (weights, bias) twice, so ``a2 = [a; a]``;
* ``cheap2(a2)``: a depthwise conv over ``2C`` channels whose first ``C`` kernels are the identity (1 at the centre
  tap, no bias) and whose last ``C`` are the cheap op's, with the cheap op's ReLU on all channels (the identity half
  is already non-negative when the primary has a ReLU; the rewrite requires that whenever the cheap op has one).

OpenVINO runs INT8 in the channels-last layout, where a channel concat is a copy it cannot avoid (``ref_I8``: 93-125
µs per 112x112 ghost concat of ghostnet_100 with 1 thread, docs/benchmarks.md). Its integer kernels work on vectors
of int32 lanes (16 with AVX-512) and pad narrower channel counts up to them, so where ``2C`` still fits in one vector
the doubled convolutions cost what the single ones did and the copy is gone: ghostnet_100's first block (8 + 8
channels at 112x112) went from 501 to 248 µs. With wider halves the doubled work costs more than the copy, hence
``max_channels`` (:attr:`ghostkit.deploy.cpu.Int8Plan.ghost_channels`).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .graph_base import consumers, node_attrs, prune, static_shapes

__all__ = ["fuse_ghost_concats"]


def _through_relu(name: str, producer: dict) -> tuple[onnx.NodeProto | None, onnx.NodeProto | None]:
    """``(conv, relu)`` producing ``name`` as ``conv`` or ``relu(conv)`` (``relu`` None for the first)."""
    node = producer.get(name)
    if node is not None and node.op_type == "Relu":
        return producer.get(node.input[0]), node
    return node, None


def _array(inits: dict, name: str | None, rows: int) -> np.ndarray:
    """An initializer as float32, or zeros of ``rows`` for a missing bias."""
    return numpy_helper.to_array(inits[name]).astype(np.float32) if name else np.zeros(rows, np.float32)


def fuse_ghost_concats(model: onnx.ModelProto, max_channels: int) -> int:
    """Rewrite every ghost concat whose halves have at most ``max_channels`` channels (module docstring). Returns
    the count."""
    if max_channels <= 0:
        return 0
    graph = model.graph
    shapes = static_shapes(model)
    inits = {t.name: t for t in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    uses = {name: len(readers) for name, readers in consumers(graph).items()}
    drop, added, done = set(), [], 0
    for cat in graph.node:
        if cat.op_type != "Concat" or node_attrs(cat).get("axis") != 1 or len(cat.input) != 2:
            continue
        a, b = cat.input
        primary, relu_a = _through_relu(a, producer)
        cheap, relu_b = _through_relu(b, producer)
        if primary is None or cheap is None or primary.op_type != "Conv" or cheap.op_type != "Conv":
            continue
        if cheap.input[0] != a or (relu_b is not None and relu_a is None) or uses.get(a) != 2 or uses.get(b) != 1:
            continue
        pairs = ((primary, relu_a), (cheap, relu_b))
        if any(relu is not None and uses.get(conv.output[0]) != 1 for conv, relu in pairs):
            continue
        if any(i and i not in inits for i in (*primary.input[1:], *cheap.input[1:])):
            continue
        chans = (shapes.get(a) or [None, None])[1]
        w = numpy_helper.to_array(inits[cheap.input[1]])
        attrs, k = node_attrs(cheap), w.shape[-1]
        if chans is None or chans > max_channels or attrs.get("group") != chans or w.shape[:2] != (chans, 1) \
                or w.shape[-2] != k or attrs.get("strides", [1, 1]) != [1, 1] \
                or attrs.get("dilations", [1, 1]) != [1, 1] or attrs.get("pads") != [k // 2] * 4 or k % 2 == 0:
            continue
        wp = numpy_helper.to_array(inits[primary.input[1]]).astype(np.float32)
        bp = _array(inits, primary.input[2] if len(primary.input) > 2 else None, wp.shape[0])
        bc = _array(inits, cheap.input[2] if len(cheap.input) > 2 else None, chans)
        identity = np.zeros_like(w, dtype=np.float32)
        identity[:, :, k // 2, k // 2] = 1
        out = cat.output[0]
        arrays = {"primary_w": np.concatenate([wp, wp]), "primary_b": np.concatenate([bp, bp]),
                  "cheap_w": np.concatenate([identity, w.astype(np.float32)]),
                  "cheap_b": np.concatenate([np.zeros_like(bc), bc])}
        graph.initializer.extend(numpy_helper.from_array(v, f"{out}/ghost_{k_}") for k_, v in arrays.items())
        x = f"{out}/ghost_primary"
        added.append(helper.make_node("Conv", [primary.input[0], f"{out}/ghost_primary_w", f"{out}/ghost_primary_b"],
                                      [x], name=x, **node_attrs(primary)))
        if relu_a is not None:
            added.append(helper.make_node("Relu", [x], [f"{x}_relu"], name=f"{x}_relu"))
            x = f"{x}_relu"
        y = f"{out}/ghost_cheap" if relu_b is not None else out
        added.append(helper.make_node("Conv", [x, f"{out}/ghost_cheap_w", f"{out}/ghost_cheap_b"], [y],
                                      name=f"{out}/ghost_cheap", **{**attrs, "group": 2 * chans}))
        if relu_b is not None:
            added.append(helper.make_node("Relu", [y], [out], name=f"{y}_relu"))
        drop |= {id(n) for n in (cat, primary, cheap, relu_a, relu_b) if n is not None}
        done += 1
    if done:
        kept = [n for n in graph.node if id(n) not in drop]
        del graph.node[:]
        graph.node.extend(kept + added)
        prune(graph)
    return done
