"""ONNX graph rewrites that make exported GhostNets cheaper for ONNX Runtime's CPU provider (exact: outputs equal).

ONNX Runtime runs convolutions fastest in its blocked "NCHWc" layout (channels in blocks of 8 on AVX2, 16 on AVX-512).
Every op it cannot run in that layout costs a ``ReorderOutput`` / ``ReorderInput`` copy on each side. A ghost module
concatenates two halves along channels, which ORT can only do blocked when both halves are block-aligned, and an SE
gate multiplies with channel broadcasting, which ORT never does blocked. These passes remove both patterns:

* :func:`fold_constants`: nodes computed from constants only (e.g. ``weight.flatten(1)``) become initializers;
* :func:`lift_pooled_vectors`: a channel gate computed on ``x.mean((2, 3))`` with ``Gemm`` s and unsqueezed back to
  ``B x C x 1 x 1`` (how PyTorch code often writes SE) runs on the pooled ``B x C x 1 x 1`` map with 1x1 ``Conv`` s
  instead, so the pattern below applies and no 2-D detour forces a layout change;
* :func:`reduce_mean_to_pool`: ``ReduceMean`` over H and W (``x.mean((2, 3), keepdim=True)``) → ``GlobalAveragePool``
  (a blocked op; ReduceMean is not);
* :func:`broadcast_gates`: ``Mul(x B x C x H x W, gate B x C x 1 x 1)`` → the gate repeated to H x W by a nearest
  ``Resize`` first (static H, W and block-aligned C only), so both operands have one shape and the Mul runs blocked;
* :func:`split_concats`: a channel ``Concat`` is pushed into its consumers: a dense conv becomes one conv per part
  plus a sum (ORT fuses the sum into the second conv), per-channel ops run per part, an ``Add`` / ``Mul`` partner is
  split the same way when its producer can be split without copying (a conv by output rows, a per-channel op, or a
  concat of the same parts). The ghost module's concat, and with it the copy, disappears;
* :func:`fuse_ghost_concats` (INT8 graphs, OpenVINO's channels-last layout): a narrow ghost module becomes a
  primary conv with its rows twice and a depthwise conv whose first half is the identity, without a concat
  (:mod:`ghostkit.deploy.graph_ghost`).

:func:`optimize_graph` runs them (by default all but ``ghost``, which is for INT8 graphs); :func:`count_ops` counts
node types to check the result.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .cpu import int8_plan
from .graph_base import UNARY, count_ops, node_attrs, prune, static_shapes
from .graph_ghost import fuse_ghost_concats
from .graph_split import split_concats

__all__ = ["optimize_graph", "fold_constants", "lift_pooled_vectors", "reduce_mean_to_pool", "broadcast_gates",
           "split_concats", "fuse_ghost_concats", "count_ops", "prune"]


def fold_constants(model: onnx.ModelProto) -> int:
    """Replace ``Constant`` nodes and nodes whose inputs are all constant by initializers. Returns the count."""
    from onnx.reference import ReferenceEvaluator

    graph, done = model.graph, 0
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    keep = []
    for node in graph.node:
        inputs = [i for i in node.input if i]
        if node.op_type == "Constant" or (inputs and all(i in values for i in inputs) and not node.domain
                                          and node.op_type not in ("RandomNormal", "RandomUniform", "Multinomial")):
            small = helper.make_model(
                helper.make_graph([node], "fold", [], [helper.make_tensor_value_info(o, 0, None) for o in node.output],
                                  [numpy_helper.from_array(values[i], i) for i in inputs]),
                opset_imports=model.opset_import)
            try:
                results = ReferenceEvaluator(small).run(None, {})
            except Exception:  # an op the reference evaluator lacks: leave it to the runtime
                keep.append(node)
                continue
            for name, value in zip(node.output, results):
                values[name] = np.asarray(value)
                graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
            done += 1
        else:
            keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)
    prune(graph)
    return done


def _unsqueeze_axes(node: onnx.NodeProto, inits: dict) -> list[int] | None:
    axes = node_attrs(node).get("axes")
    if axes is None and len(node.input) > 1 and node.input[1] in inits:
        axes = numpy_helper.to_array(inits[node.input[1]]).tolist()
    return None if axes is None else [int(a) for a in axes]


def _unsqueeze_to_4d(node: onnx.NodeProto, inits: dict, uses: dict) -> list[onnx.NodeProto] | None:
    """The Unsqueeze node(s) turning a ``B x C`` tensor into ``B x C x 1 x 1`` (one node, or ``[2]`` then ``[3]``)."""
    axes = _unsqueeze_axes(node, inits)
    if axes is None:
        return None
    if sorted(a % 4 for a in axes) == [2, 3]:
        return [node]
    nxt = uses.get(node.output[0], [])
    if [a % 3 for a in axes] == [2] and len(nxt) == 1 and nxt[0].op_type == "Unsqueeze":
        second = _unsqueeze_axes(nxt[0], inits)
        if second is not None and [a % 4 for a in second] == [3]:
            return [node, nxt[0]]
    return None


def lift_pooled_vectors(model: onnx.ModelProto) -> int:
    """``ReduceMean(x, [2, 3], keepdims=0)`` → (``Gemm`` with constant weights | unary op)* → ``Unsqueeze`` to
    ``B x C x 1 x 1`` becomes ``GlobalAveragePool`` → (1x1 ``Conv`` | unary op)* (module docstring). Returns the
    number of pooled vectors lifted."""
    graph, done = model.graph, 0
    shapes = static_shapes(model)
    inits = {t.name: t for t in graph.initializer}
    uses = collections.defaultdict(list)
    for n in graph.node:
        for i in n.input:
            uses[i].append(n)
    outputs = {o.name for o in graph.output}
    for pool in [n for n in graph.node if n.op_type == "ReduceMean"]:
        a = node_attrs(pool)
        axes = _unsqueeze_axes(pool, inits) if "axes" not in a else a["axes"]
        if a.get("keepdims", 1) != 0 or len(shapes.get(pool.input[0], ())) != 4 or axes is None \
                or sorted(x % 4 for x in axes) != [2, 3]:
            continue
        region, ends, stack, ok = [], [], [pool.output[0]], True
        while stack and ok:
            name = stack.pop()
            if name in outputs:
                ok = False
            for use in uses[name]:
                ua = node_attrs(use)
                if use.op_type == "Gemm" and use.input[0] == name and use.input[1] in inits \
                        and ua.get("transA", 0) == 0 and ua.get("alpha", 1.0) == 1.0 and ua.get("beta", 1.0) == 1.0 \
                        and (len(use.input) < 3 or (use.input[2] in inits and len(inits[use.input[2]].dims) == 1)):
                    region.append(use)
                    stack.append(use.output[0])
                elif use.op_type in UNARY and use.input[0] == name:
                    region.append(use)
                    stack.append(use.output[0])
                elif use.op_type == "Unsqueeze" and _unsqueeze_to_4d(use, inits, uses) is not None:
                    ends.extend(_unsqueeze_to_4d(use, inits, uses))
                else:
                    ok = False
        if not ok or not ends:
            continue
        pool.CopyFrom(helper.make_node("GlobalAveragePool", [pool.input[0]], list(pool.output), name=pool.name))
        for node in region:
            if node.op_type != "Gemm":
                continue
            w = numpy_helper.to_array(inits[node.input[1]])
            w = (w if node_attrs(node).get("transB", 0) else w.T)[:, :, None, None]
            name = f"{node.input[1]}_as_conv"
            graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(w), name))
            node.CopyFrom(helper.make_node("Conv", [node.input[0], name, *node.input[2:3]], list(node.output),
                                           name=node.name))
        for end in ends:  # already B x C x 1 x 1: the unsqueeze becomes a no-op
            end.CopyFrom(helper.make_node("Identity", [end.input[0]], list(end.output), name=end.name))
        done += 1
    _remove_identities(graph)
    prune(graph)
    return done


def _remove_identities(graph: onnx.GraphProto) -> None:
    outputs = {o.name for o in graph.output}
    rename = {}
    for n in graph.node:
        if n.op_type == "Identity" and n.output[0] not in outputs:
            rename[n.output[0]] = rename.get(n.input[0], n.input[0])
    for n in graph.node:
        for k, i in enumerate(n.input):
            if i in rename:
                n.input[k] = rename[i]
    keep = [n for n in graph.node if not (n.op_type == "Identity" and n.output[0] in rename)]
    del graph.node[:]
    graph.node.extend(keep)


def reduce_mean_to_pool(model: onnx.ModelProto) -> int:
    """``ReduceMean(x, axes=[2, 3], keepdims=1)`` on 4-D ``x`` → ``GlobalAveragePool(x)``. Returns the count."""
    shapes, graph, done = static_shapes(model), model.graph, 0
    inits = {t.name: t for t in graph.initializer}
    for i, node in enumerate(graph.node):
        if node.op_type != "ReduceMean" or len(shapes.get(node.input[0], ())) != 4:
            continue
        a = node_attrs(node)
        axes = a.get("axes")
        if axes is None and len(node.input) > 1 and node.input[1] in inits:  # opset 18: axes is an input
            axes = numpy_helper.to_array(inits[node.input[1]]).tolist()
        if a.get("keepdims", 1) != 1 or axes is None or sorted(x % 4 for x in axes) != [2, 3]:
            continue
        pool = helper.make_node("GlobalAveragePool", [node.input[0]], list(node.output), name=node.name)
        graph.node[i].CopyFrom(pool)
        done += 1
    return done


def broadcast_gates(model: onnx.ModelProto, align: int) -> int:
    """``Mul(x, gate)`` with ``x`` ``B x C x H x W`` (static H, W; C a multiple of ``align``) and ``gate``
    ``B x C x 1 x 1`` → ``Mul(x, Resize(gate, nearest, scales 1 x 1 x H x W))``. Returns the count."""
    if align <= 0:
        return 0
    shapes, graph, done = static_shapes(model), model.graph, 0
    for node in list(graph.node):
        if node.op_type != "Mul":
            continue
        a, b = (shapes.get(x) for x in node.input)
        if not a or not b or len(a) != 4 or len(b) != 4:
            continue
        big = 1 if a[2:] == [1, 1] else 0
        x_shape, g_shape = (b, a) if big else (a, b)
        if g_shape[2:] != [1, 1] or None in x_shape[1:] or x_shape[2] * x_shape[3] == 1 or x_shape[1] % align:
            continue
        gate = node.input[1 - big]
        scales = numpy_helper.from_array(np.array([1, 1, x_shape[2], x_shape[3]], np.float32), f"{node.name}_scales")
        graph.initializer.append(scales)
        full = f"{gate}_{node.name}_full"
        resize = helper.make_node("Resize", [gate, "", scales.name], [full], name=f"{node.name}_gate", mode="nearest",
                                  coordinate_transformation_mode="asymmetric", nearest_mode="floor")
        graph.node.insert(list(graph.node).index(node), resize)
        node.input[1 - big] = full
        done += 1
    return done


def _clear_value_info(model: onnx.ModelProto) -> None:
    del model.graph.value_info[:]


def optimize_graph(model: onnx.ModelProto, align: int = 0, passes: Iterable[str] | None = None) -> dict[str, int]:
    """Run the rewrites in place (by default all FP32 ones; ``passes`` picks some of ``fold``, ``lift``, ``pool``,
    ``gates``, ``split``, ``ghost``) and return how many places each changed. ``align``: the channel block the model
    was padded to (0: not padded); gates are only broadcast on block-aligned tensors, where the blocked Mul pays off.
    ``ghost`` fuses ghost modules as narrow as this CPU's INT8 plan says (:func:`ghostkit.deploy.cpu.int8_plan`)."""
    chosen = set(passes) if passes is not None else {"fold", "lift", "pool", "gates", "split"}
    done = {}
    if "fold" in chosen:
        done["fold"] = fold_constants(model)
    if "lift" in chosen:
        done["lift"] = lift_pooled_vectors(model)
    if "pool" in chosen:
        done["pool"] = reduce_mean_to_pool(model)
    if "gates" in chosen:
        done["gates"] = broadcast_gates(model, align)
    if "split" in chosen:
        done["split"] = split_concats(model)
    if "ghost" in chosen:
        done["ghost"] = fuse_ghost_concats(model, int8_plan().ghost_channels)
    prune(model.graph)
    _clear_value_info(model)
    return done
