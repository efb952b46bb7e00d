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
  concat of the same parts). The ghost module's concat, and with it the copy, disappears.

:func:`optimize_graph` runs them all; :func:`count_ops` counts node types to check the result.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Iterable

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

__all__ = ["optimize_graph", "fold_constants", "lift_pooled_vectors", "reduce_mean_to_pool", "broadcast_gates",
           "split_concats", "count_ops", "prune"]

# per-channel ops: run on channel parts independently (their extra inputs, if any, are not per channel)
_CHANNELWISE = {"Relu", "Sigmoid", "HardSigmoid", "HardSwish", "Clip", "LeakyRelu", "Tanh", "Identity",
                "GlobalAveragePool", "GlobalMaxPool", "AveragePool", "MaxPool", "Resize", "Upsample"}
_BINARY = {"Add", "Mul", "Sub", "Div"}
_UNARY = {"Relu", "Sigmoid", "HardSigmoid", "HardSwish", "Clip", "LeakyRelu", "Tanh", "Identity"}


def count_ops(model: onnx.ModelProto) -> dict[str, int]:
    """Node count per op type, most frequent first."""
    return dict(collections.Counter(n.op_type for n in model.graph.node).most_common())


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _shapes(model: onnx.ModelProto) -> dict[str, list[int | None]]:
    """Static shapes of every tensor ONNX shape inference can tell (``None`` for symbolic dimensions)."""
    inferred = shape_inference.infer_shapes(model)
    out: dict[str, list[int | None]] = {}
    for vi in itertools.chain(inferred.graph.value_info, inferred.graph.input, inferred.graph.output):
        t = vi.type.tensor_type
        if t.HasField("shape"):
            out[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
    for t in model.graph.initializer:
        out[t.name] = list(t.dims)
    return out


def prune(graph: onnx.GraphProto) -> None:
    """Drop nodes and initializers nothing reaches from the graph outputs, and sort the nodes topologically."""
    producer = {o: n for n in graph.node for o in n.output}
    needed, stack, keep = set(), [o.name for o in graph.output], set()
    while stack:
        name = stack.pop()
        if name in needed:
            continue
        needed.add(name)
        node = producer.get(name)
        if node is not None and id(node) not in keep:
            keep.add(id(node))
            stack.extend(node.input)
    ready = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, order = [n for n in graph.node if id(n) in keep], []
    while pending:  # Kahn's algorithm; the graph is small (hundreds of nodes)
        rest = []
        for n in pending:
            if all(i in ready for i in n.input):
                order.append(n)
                ready.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise RuntimeError(f"graph has a cycle or a missing input at {rest[0].name}")
        pending = rest
    inits = [t for t in graph.initializer if t.name in needed]
    del graph.node[:], graph.initializer[:]
    graph.node.extend(order)
    graph.initializer.extend(inits)


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
    axes = _attrs(node).get("axes")
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
    shapes = _shapes(model)
    inits = {t.name: t for t in graph.initializer}
    uses = collections.defaultdict(list)
    for n in graph.node:
        for i in n.input:
            uses[i].append(n)
    outputs = {o.name for o in graph.output}
    for pool in [n for n in graph.node if n.op_type == "ReduceMean"]:
        a = _attrs(pool)
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
                ua = _attrs(use)
                if use.op_type == "Gemm" and use.input[0] == name and use.input[1] in inits \
                        and ua.get("transA", 0) == 0 and ua.get("alpha", 1.0) == 1.0 and ua.get("beta", 1.0) == 1.0 \
                        and (len(use.input) < 3 or (use.input[2] in inits and len(inits[use.input[2]].dims) == 1)):
                    region.append(use)
                    stack.append(use.output[0])
                elif use.op_type in _UNARY and use.input[0] == name:
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
            w = (w if _attrs(node).get("transB", 0) else w.T)[:, :, None, None]
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
    shapes, graph, done = _shapes(model), model.graph, 0
    inits = {t.name: t for t in graph.initializer}
    for i, node in enumerate(graph.node):
        if node.op_type != "ReduceMean" or len(shapes.get(node.input[0], ())) != 4:
            continue
        a = _attrs(node)
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
    shapes, graph, done = _shapes(model), model.graph, 0
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


class _Splitter:
    """State of :func:`split_concats`: producers, uses and channel counts of the graph, and the plan (nodes and
    initializers to add, nodes to drop) of the rewrite being tried, committed only when the whole rewrite works."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.graph = model.graph
        shapes = _shapes(model)
        self.rank4 = {k for k, v in shapes.items() if len(v) == 4}
        self.chans = {k: v[1] for k, v in shapes.items() if len(v) == 4 and v[1] is not None}
        self.counter = itertools.count()
        self.refresh()

    def refresh(self) -> None:
        self.inits = {t.name: t for t in self.graph.initializer}
        self.producer = {o: n for n in self.graph.node for o in n.output}
        self.uses: dict[str, list] = collections.defaultdict(list)
        for n in self.graph.node:
            for i in n.input:
                self.uses[i].append(n)
        for o in self.graph.output:
            self.uses[o.name].append(None)  # a graph output can never be replaced by parts
        self.new_nodes: list[onnx.NodeProto] = []
        self.new_inits: list[onnx.TensorProto] = []
        self.drop: set[int] = set()

    def commit(self) -> None:
        kept = [n for n in self.graph.node if id(n) not in self.drop]
        del self.graph.node[:]
        self.graph.node.extend(kept + self.new_nodes)
        self.graph.initializer.extend(self.new_inits)
        prune(self.graph)
        self.refresh()

    def name(self, base: str) -> str:
        return f"{base}/part{next(self.counter)}"

    def const(self, array: np.ndarray, base: str) -> str:
        name = self.name(base)
        self.new_inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], base: str, chans: int | None, out: str | None = None, **attrs) -> str:
        out = out or self.name(base)
        self.new_nodes.append(helper.make_node(op, inputs, [out], name=self.name(base), **attrs))
        self.rank4.add(out)
        if chans is not None:
            self.chans[out] = chans
        return out

    def weights(self, conv: onnx.NodeProto) -> tuple[np.ndarray, np.ndarray | None] | None:
        if conv.input[1] not in self.inits or (len(conv.input) > 2 and conv.input[2] not in self.inits):
            return None
        w = numpy_helper.to_array(self.inits[conv.input[1]])
        b = numpy_helper.to_array(self.inits[conv.input[2]]) if len(conv.input) > 2 and conv.input[2] else None
        return w, b

    def is_dense_conv(self, conv: onnx.NodeProto) -> bool:
        return conv.op_type == "Conv" and _attrs(conv).get("group", 1) == 1 and self.weights(conv) is not None

    def is_depthwise(self, conv: onnx.NodeProto) -> bool:
        wb = self.weights(conv) if conv.op_type == "Conv" else None
        group = _attrs(conv).get("group", 1)
        return wb is not None and group > 1 and wb[0].shape[1] == 1 and wb[0].shape[0] == group

    def depthwise_parts(self, conv: onnx.NodeProto, parts: list[str], sizes: list[int]) -> list[str]:
        w, b = self.weights(conv)
        attrs, out, off = _attrs(conv), [], 0
        for x, size in zip(parts, sizes):
            args = [x, self.const(w[off:off + size], conv.input[1])]
            if b is not None:
                args.append(self.const(b[off:off + size], conv.input[2]))
            out.append(self.node("Conv", args, conv.output[0], size, **{**attrs, "group": size}))
            off += size
        return out

    def split(self, name: str, sizes: list[int]) -> list[str] | None:
        """``name`` as channel parts of ``sizes`` without copying, or ``None`` when that is not possible."""
        if name not in self.rank4:
            return None
        chans = self.chans.get(name)
        if chans == 1:  # broadcast over channels: every part uses it as it is
            return [name] * len(sizes)
        if chans != sum(sizes):
            return None
        if name in self.inits:
            arr, out, off = numpy_helper.to_array(self.inits[name]), [], 0
            for size in sizes:
                out.append(self.const(arr[:, off:off + size], name))
                off += size
            return out
        p = self.producer.get(name)
        if p is None or id(p) in self.drop:
            return None
        if p.op_type == "Concat" and _attrs(p).get("axis") == 1 and [self.chans.get(i) for i in p.input] == sizes:
            return list(p.input)
        parts = self._split_producer(p, name, sizes)
        if parts is not None and len(self.uses[name]) > 1:
            # other users get the parts concatenated: a concat to push on later, never extra computation
            self.drop.add(id(p))
            self.node("Concat", parts, name, chans, out=name, axis=1)
        return parts

    def _split_producer(self, p: onnx.NodeProto, name: str, sizes: list[int]) -> list[str] | None:
        attrs = _attrs(p)
        if self.is_dense_conv(p):
            w, b = self.weights(p)
            out, off = [], 0
            for size in sizes:  # one conv per block of output channels (rows of the weight): no extra work
                args = [p.input[0], self.const(w[off:off + size], p.input[1])]
                if b is not None:
                    args.append(self.const(b[off:off + size], p.input[2]))
                out.append(self.node("Conv", args, name, size, **attrs))
                off += size
            return out
        if self.is_depthwise(p):
            parts = self.split(p.input[0], sizes)
            return None if parts is None else self.depthwise_parts(p, parts, sizes)
        if p.op_type in _CHANNELWISE:
            parts = self.split(p.input[0], sizes)
            if parts is None:
                return None
            return [self.node(p.op_type, [x, *p.input[1:]], name, s, **attrs) for x, s in zip(parts, sizes)]
        if p.op_type in _BINARY:
            left = self.split(p.input[0], sizes)
            right = self.split(p.input[1], sizes) if left is not None else None
            if right is None:
                return None
            return [self.node(p.op_type, [x, y], name, s) for x, y, s in zip(left, right, sizes)]
        return None

    def rewrite_use(self, use: onnx.NodeProto | None, concat: str, parts: list[str], sizes: list[int]) -> bool:
        """Plan ``use`` (a consumer of ``concat``) in terms of ``parts``; False when it cannot be."""
        if use is None:
            return False
        attrs, out = _attrs(use), None
        first_only = use.input[0] == concat and concat not in use.input[1:]
        if first_only and self.is_dense_conv(use):
            w, _ = self.weights(use)
            partial, off = [], 0
            for k, (x, size) in enumerate(zip(parts, sizes)):  # conv(concat(a, b)) = conv_a(a) + conv_b(b)
                args = [x, self.const(w[:, off:off + size], use.input[1])] + ([use.input[2]] if k == 0 and
                                                                              len(use.input) > 2 else [])
                partial.append(self.node("Conv", args, use.output[0], w.shape[0], **attrs))
                off += size
            total = partial[0]
            for k, x in enumerate(partial[1:], 1):
                total = self.node("Add", [total, x], use.output[0], w.shape[0],
                                  out=use.output[0] if k == len(partial) - 1 else None)
            return True
        if use.op_type == "Concat" and attrs.get("axis") == 1:  # flatten nested concats
            inputs = [x for i in use.input for x in (parts if i == concat else [i])]
            self.node("Concat", inputs, use.output[0], self.chans.get(use.output[0]), out=use.output[0], axis=1)
            return True
        if first_only and self.is_depthwise(use):
            out = self.depthwise_parts(use, parts, sizes)
        elif first_only and use.op_type in _CHANNELWISE:
            out = [self.node(use.op_type, [x, *use.input[1:]], use.output[0], s, **attrs) for x, s in zip(parts, sizes)]
        elif use.op_type in _BINARY and list(use.input).count(concat) == 1:
            k = list(use.input).index(concat)
            other = self.split(use.input[1 - k], sizes)
            if other is None:
                return False
            out = [self.node(use.op_type, [x, y] if k == 0 else [y, x], use.output[0], s)
                   for x, y, s in zip(parts, other, sizes)]
        if out is None:
            return False
        # the parts stay separate until their own consumers are rewritten (or a graph output needs them whole)
        self.node("Concat", out, use.output[0], self.chans.get(use.output[0]), out=use.output[0], axis=1)
        return True


def split_concats(model: onnx.ModelProto, max_rewrites: int = 10_000) -> int:
    """Push channel concats into their consumers (module docstring) until none can move. Returns the rewrites."""
    s = _Splitter(model)
    done, stuck = 0, set()
    while done < max_rewrites:
        for concat in list(s.graph.node):
            out = concat.output[0]
            if concat.op_type != "Concat" or _attrs(concat).get("axis") != 1 or out in stuck:
                continue
            sizes = [s.chans.get(i) for i in concat.input]
            uses = list({id(u): u for u in s.uses[out]}.values())  # a node using the concat twice is planned once
            s.drop = {id(u) for u in uses if u is not None} | {id(concat)}
            if None in sizes or not all(s.rewrite_use(u, out, list(concat.input), sizes) for u in uses):
                stuck.add(out)
                s.refresh()  # forget the partial plan
                continue
            s.commit()
            stuck.clear()  # a rewrite can make another concat's partner splittable
            done += 1
            break
        else:
            break
    return done


def _clear_value_info(model: onnx.ModelProto) -> None:
    del model.graph.value_info[:]


def optimize_graph(model: onnx.ModelProto, align: int = 0, passes: Iterable[str] | None = None) -> dict[str, int]:
    """Run the rewrites in place (all by default; ``passes`` picks some of ``fold``, ``lift``, ``pool``, ``gates``,
    ``split``) and
    return how many places each changed. ``align``: the channel block the model was padded to (0: not padded);
    gates are only broadcast on block-aligned tensors, where the blocked Mul pays off."""
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
    prune(model.graph)
    _clear_value_info(model)
    return done
