"""Post-training static INT8 quantisation with ONNX Runtime, and the per-layer error that decides which layers stay
FP32.

``quantize_onnx`` calibrates activation ranges on real images fed through a ``CalibrationDataReader`` and writes a
QDQ model (``QuantizeLinear`` / ``DequantizeLinear`` pairs that ORT fuses into integer kernels): unsigned
asymmetric activations, signed symmetric per-channel weights, weight bits from the CPU
(:func:`ghostkit.deploy.cpu.int8_plan`). ``layer_errors`` measures, with ONNX Runtime's own QDQ debugging tools,
how much quantising each convolution's input and weights loses (signal-to-quantisation-noise ratio in dB); layers
below ``MIN_SQNR_DB`` are kept in FP32 by :mod:`ghostkit.deploy.int8`. What is quantised follows the measurements
in docs/benchmarks.md (``benchmarks/runtime_speed.py --ablation``).
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx

from ..io import atomic_write_bytes
from .cpu import int8_plan
from .runtime import INPUT_NAME

__all__ = ["Int8Options", "DEFAULT_INT8", "MIN_SQNR_DB", "quantize_onnx", "layer_errors"]

# A convolution whose input or weights keep less than this signal-to-quantisation-noise ratio stays FP32. 8-bit
# minmax quantisation of a well-spread tensor keeps about 6 dB per bit minus its peak-to-RMS ratio: 30-45 dB; a
# tensor whose range is ruled by a few outliers falls far below (20 dB: noise at a tenth of the signal).
MIN_SQNR_DB = 20.0


@dataclasses.dataclass(frozen=True)
class Int8Options:
    """How to quantise. ``per_channel``: one weight scale per output channel (depthwise and narrow convs need it);
    ``skip_depthwise``: keep depthwise convs in FP32; ``skip_ends``: keep the first conv and the final
    classifier in FP32; ``activation_int8``: signed activations (``QInt8``; default ``QUInt8``, what x86 VNNI
    kernels take); ``reduce_range``: 7-bit weights (``None``: where this CPU sums 8-bit products in 16 bits, see
    :mod:`ghostkit.deploy.cpu`); ``method``: calibration (``minmax``, ``entropy``, ``percentile``); ``op_types``:
    the op types to quantise (default: all ORT can); ``preprocess``: ORT's ``quant_pre_process`` (shape inference,
    portable fusions) first; ``qoperator``: write ``QLinearConv``-style integer ops directly instead of QDQ
    pairs; ``exclude``: node names kept in FP32."""

    per_channel: bool = True
    skip_depthwise: bool = False
    skip_ends: bool = False
    activation_int8: bool = False
    reduce_range: bool | None = None
    method: str = "minmax"
    op_types: tuple[str, ...] | None = None
    preprocess: bool = True
    qoperator: bool = False
    exclude: tuple[str, ...] = ()


DEFAULT_INT8 = Int8Options()


def _reader(batches: list[np.ndarray]):
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        """Feeds the calibration images one model batch at a time."""

        def __init__(self) -> None:
            self.items: Iterator[np.ndarray] = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self.items, None)
            return None if x is None else {INPUT_NAME: x}

        def rewind(self) -> None:
            self.items = iter(batches)

    return Reader()


def _excluded(model: onnx.ModelProto, opts: Int8Options) -> list[str]:
    inits = {t.name: t for t in model.graph.initializer}
    names = []
    convs = [n for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    for n in model.graph.node:
        if n.op_type == "Conv" and opts.skip_depthwise:
            group = next((a.i for a in n.attribute if a.name == "group"), 1)
            if group > 1 and n.input[1] in inits and inits[n.input[1]].dims[1] == 1:
                names.append(n.name)
    if opts.skip_ends and convs:
        first = [n for n in convs if n.input[0] == INPUT_NAME]
        names += [n.name for n in first] + [convs[-1].name]
    return names + list(opts.exclude)


def quantize_onnx(fp32: str | Path, out: str | Path, batches: list[np.ndarray],
                  opts: Int8Options = DEFAULT_INT8) -> Path:
    """Static INT8 (QDQ) quantisation of the ONNX model ``fp32`` calibrated on ``batches`` (each ``b x 3 x H x W``
    float32, ``b`` the model's batch size) → ``out``."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = Path(out)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(fp32)
        if opts.preprocess:  # shape inference + ORT's portable (basic) graph fusions before choosing what to quantise
            pre = Path(tmp) / "pre.onnx"
            quant_pre_process(str(src), str(pre), skip_optimization=False, skip_onnx_shape=False,
                              skip_symbolic_shape=True)
            src = pre
        model = onnx.load(str(src))
        methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                   "percentile": CalibrationMethod.Percentile}
        quantize_static(
            str(src), str(Path(tmp) / "int8.onnx"), _reader(batches),
            quant_format=QuantFormat.QOperator if opts.qoperator else QuantFormat.QDQ,
            per_channel=opts.per_channel,
            reduce_range=int8_plan().weight_bits == 7 if opts.reduce_range is None else opts.reduce_range,
            activation_type=QuantType.QInt8 if opts.activation_int8 else QuantType.QUInt8,
            weight_type=QuantType.QInt8, calibrate_method=methods[opts.method],
            nodes_to_exclude=_excluded(model, opts),
            op_types_to_quantize=list(opts.op_types) if opts.op_types else None,
            extra_options={"ActivationSymmetric": opts.activation_int8, "WeightSymmetric": True},
        )
        result = onnx.load(str(Path(tmp) / "int8.onnx"))
    source = onnx.load(str(fp32), load_external_data=False)
    del result.metadata_props[:]
    result.metadata_props.extend(source.metadata_props)  # keep the ghostkit config (mean/std, classes, outputs)
    atomic_write_bytes(out, result.SerializeToString())
    return out



def layer_errors(qdq: str | Path, batches: list[np.ndarray], fp32: str | Path | None = None) -> dict[str, float]:
    """Signal-to-quantisation-noise ratio (dB) of each quantised ``Conv`` / ``Gemm`` / ``MatMul`` node of the QDQ
    model ``qdq``: the worse of its weights' (``fp32``'s initializers against their dequantised int8 copies) and its
    input activation's (before against after its Q/DQ pair, on ``batches``). ORT's ``qdq_loss_debug`` tools run the
    model with every Q/DQ tensor as an output, so keep ``batches`` to a few images."""
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_signal_to_quantization_noice_ratio,
        compute_weight_error,
        create_activation_matching,
        create_weight_matching,
        modify_model_output_intermediate_tensors,
    )

    model = onnx.load(str(qdq))
    inits = {t.name: t for t in model.graph.initializer}
    dq_source = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    q_nodes = {n.output[0]: n for n in model.graph.node if n.op_type == "QuantizeLinear"}
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.onnx"
        modify_model_output_intermediate_tensors(str(qdq), str(probe), ["QuantizeLinear", "DequantizeLinear"])
        matched = create_activation_matching(collect_activations(str(probe), _reader(batches)))
    acts = {}
    for q in q_nodes.values():
        if q.input[0] in matched and q.input[1] in inits:
            m = matched[q.input[0]]
            lo, hi = _quantized_range(q, inits)
            # ORT folds a ReLU into its output's Q/DQ pair (zero point at the range's bottom): the clamp to the
            # range is intended, so the error is the rounding of the values inside it
            acts[q.input[0]] = compute_signal_to_quantization_noice_ratio(
                [np.clip(a, lo, hi) for a in m["pre_qdq"]], m["post_qdq"])
    weights = compute_weight_error(create_weight_matching(str(fp32), str(qdq))) if fp32 is not None else {}
    errors = {}
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul") or len(node.input) < 2:
            continue
        x, w = (dq_source.get(i) for i in node.input[:2])
        if x is None and w is None:  # not quantised
            continue
        values = [acts[q_nodes[x].input[0]]] if x in q_nodes and q_nodes[x].input[0] in acts else []
        if w is not None:
            values.append(weights.get(w.removesuffix("_quantized"), float("inf")))
        errors[node.name] = min(values, default=float("inf"))
    return errors



def _quantized_range(q: onnx.NodeProto, inits: dict) -> tuple[np.ndarray, np.ndarray]:
    """The float range ``[lo, hi]`` a ``QuantizeLinear`` node represents (its scale, zero point and integer type)."""
    from onnx import numpy_helper

    scale = numpy_helper.to_array(inits[q.input[1]]).astype(np.float32)
    zp = numpy_helper.to_array(inits[q.input[2]]) if len(q.input) > 2 and q.input[2] in inits else np.uint8(0)
    info = np.iinfo(zp.dtype)
    return scale * (info.min - zp.astype(np.float32)), scale * (info.max - zp.astype(np.float32))
