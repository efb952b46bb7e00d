"""The ``split`` rewrite of :mod:`ghostkit.deploy.graph`: a channel ``Concat`` is pushed into its consumers (a dense
conv becomes one conv per part plus a sum, per-channel ops run per part, an ``Add`` / ``Mul`` partner is split the
same way when its producer can be split without copying), so the ghost module's concat, and its copy, disappear.
Exact: outputs equal."""

from __future__ import annotations

import itertools

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .graph_base import BINARY, CHANNELWISE, consumers, node_attrs, prune, static_shapes

__all__ = ["split_concats"]


class _Splitter:
    """State of :func:`split_concats`: producers, uses and channel counts of the graph, and the plan (nodes and
    initializers to add, nodes to drop) of the rewrite being tried, committed only when the whole rewrite works."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.graph = model.graph
        shapes = static_shapes(model)
        self.rank4 = {k for k, v in shapes.items() if len(v) == 4}
        self.chans = {k: v[1] for k, v in shapes.items() if len(v) == 4 and v[1] is not None}
        self.counter = itertools.count()
        self.refresh()

    def refresh(self) -> None:
        self.inits = {t.name: t for t in self.graph.initializer}
        self.producer = {o: n for n in self.graph.node for o in n.output}
        self.uses = consumers(self.graph)  # a graph output (None) can never be replaced by parts
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
        return conv.op_type == "Conv" and node_attrs(conv).get("group", 1) == 1 and self.weights(conv) is not None

    def is_depthwise(self, conv: onnx.NodeProto) -> bool:
        wb = self.weights(conv) if conv.op_type == "Conv" else None
        group = node_attrs(conv).get("group", 1)
        return wb is not None and group > 1 and wb[0].shape[1] == 1 and wb[0].shape[0] == group

    def depthwise_parts(self, conv: onnx.NodeProto, parts: list[str], sizes: list[int]) -> list[str]:
        w, b = self.weights(conv)
        attrs, out, off = node_attrs(conv), [], 0
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
        if p.op_type == "Concat" and node_attrs(p).get("axis") == 1 and [self.chans.get(i) for i in p.input] == sizes:
            return list(p.input)
        parts = self._split_producer(p, name, sizes)
        if parts is not None and len(self.uses[name]) > 1:
            # other users get the parts concatenated: a concat to push on later, never extra computation
            self.drop.add(id(p))
            self.node("Concat", parts, name, chans, out=name, axis=1)
        return parts

    def _split_producer(self, p: onnx.NodeProto, name: str, sizes: list[int]) -> list[str] | None:
        attrs = node_attrs(p)
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
        if p.op_type in CHANNELWISE:
            parts = self.split(p.input[0], sizes)
            if parts is None:
                return None
            return [self.node(p.op_type, [x, *p.input[1:]], name, s, **attrs) for x, s in zip(parts, sizes)]
        if p.op_type in BINARY:
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
        attrs, out = node_attrs(use), None
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
        elif first_only and use.op_type in CHANNELWISE:
            out = [self.node(use.op_type, [x, *use.input[1:]], use.output[0], s, **attrs) for x, s in zip(parts, sizes)]
        elif use.op_type in BINARY and list(use.input).count(concat) == 1:
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
            if concat.op_type != "Concat" or node_attrs(concat).get("axis") != 1 or out in stuck:
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
