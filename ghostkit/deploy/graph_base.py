"""What the ONNX graph rewrites share (:mod:`ghostkit.deploy.graph`, :mod:`ghostkit.deploy.graph_split`): op
families, node attributes, statically inferred shapes, node counts."""

from __future__ import annotations

import collections
import itertools

import onnx
from onnx import helper, shape_inference

__all__ = ["CHANNELWISE", "BINARY", "UNARY", "consumers", "count_ops", "node_attrs", "prune", "static_shapes"]

# per-channel ops: run on channel parts independently (their extra inputs, if any, are not per channel)
CHANNELWISE = {"Relu", "Sigmoid", "HardSigmoid", "HardSwish", "Clip", "LeakyRelu", "Tanh", "Identity",
                "GlobalAveragePool", "GlobalMaxPool", "AveragePool", "MaxPool", "Resize", "Upsample"}
BINARY = {"Add", "Mul", "Sub", "Div"}
UNARY = {"Relu", "Sigmoid", "HardSigmoid", "HardSwish", "Clip", "LeakyRelu", "Tanh", "Identity"}


def count_ops(model: onnx.ModelProto) -> dict[str, int]:
    """Node count per op type, most frequent first."""
    return dict(collections.Counter(n.op_type for n in model.graph.node).most_common())


def consumers(graph: onnx.GraphProto) -> collections.defaultdict[str, list[onnx.NodeProto | None]]:
    """Every value's readers: the nodes taking it as an input (once per input slot), and ``None`` for each graph
    output it is, since an output can never be rewritten away."""
    uses: collections.defaultdict[str, list[onnx.NodeProto | None]] = collections.defaultdict(list)
    for n in graph.node:
        for i in n.input:
            uses[i].append(n)
    for o in graph.output:
        uses[o.name].append(None)
    return uses


def node_attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def static_shapes(model: onnx.ModelProto) -> dict[str, list[int | None]]:
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
