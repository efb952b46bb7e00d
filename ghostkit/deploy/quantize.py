"""Post-training static INT8 quantisation with ONNX Runtime, and the FP32 vs INT8 comparison ``export`` reports.

``quantize_onnx`` calibrates activation ranges on real images fed through a ``CalibrationDataReader`` and writes a
QDQ model (``QuantizeLinear`` / ``DequantizeLinear`` pairs that ORT fuses into integer kernels). What is quantised
follows the measurements in the README (``benchmarks/runtime_speed.py --int8``): see ``DEFAULT_INT8``.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnx

from ..data.tasks import data_for_model
from ..errors import GhostkitError
from ..io import atomic_write_bytes
from ..tasks.registry import get_task
from .evaluate import MetricsFactory, evaluate
from .runtime import INPUT_NAME, OnnxTaskModel, make_session, run_session
from .samples import sample_images

__all__ = ["Int8Options", "DEFAULT_INT8", "cpu_has_vnni", "quantize_onnx", "quantize_calibrated", "compare_int8",
           "evaluate_onnx", "time_session"]


@dataclasses.dataclass(frozen=True)
class Int8Options:
    """How to quantise. ``per_channel``: one weight scale per output channel (depthwise and narrow convs need it);
    ``skip_depthwise``: keep depthwise convs in FP32; ``skip_ends``: keep the first conv and the final
    classifier in FP32; ``activation_int8``: signed activations (``QInt8``; default ``QUInt8``, what x86 VNNI
    kernels take); ``reduce_range``: 7-bit weights (``None``: where this x86 CPU has no VNNI, see
    :func:`cpu_has_vnni`); ``method``: calibration (``minmax``, ``entropy``, ``percentile``); ``op_types``: the
    op types to quantise (default: all ORT can); ``preprocess``: ORT's ``quant_pre_process`` (shape inference,
    portable fusions) first; ``qoperator``: write ``QLinearConv``-style integer ops directly instead of QDQ
    pairs."""

    per_channel: bool = True
    skip_depthwise: bool = False
    skip_ends: bool = False
    activation_int8: bool = False
    reduce_range: bool | None = None
    method: str = "minmax"
    op_types: tuple[str, ...] | None = None
    preprocess: bool = True
    qoperator: bool = False


DEFAULT_INT8 = Int8Options()


def cpu_has_vnni() -> bool:
    """Whether this CPU multiplies 8-bit integers without intermediate saturation: x86 with AVX-512 VNNI or AVX-VNNI,
    or any non-x86 CPU. Without VNNI, x86 INT8 kernels (ONNX Runtime's and OpenVINO's) sum pairs of u8 x s8 products
    in 16 bits, which overflows for full-range weights; 7-bit weights (``reduce_range``) cannot overflow. On a 2-core
    AVX2 VM, the demo digits classifier lost 5.0 top1 points in ONNX Runtime and 0.56 in OpenVINO with 8-bit
    weights, none with 7-bit ones. An INT8 export is meant for the kind of CPU it was made on."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686"):
        return True
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False  # unknown: 7-bit weights are the safe choice
    return "avx512_vnni" in flags or "avx_vnni" in flags


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
    return names


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
            reduce_range=not cpu_has_vnni() if opts.reduce_range is None else opts.reduce_range,
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


def time_session(session, images: np.ndarray, runs: int = 20, warmup: int = 3) -> float:
    """Median latency (ms) of ``session`` on ``images``."""
    for _ in range(warmup):
        run_session(session, images)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        run_session(session, images)
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.median(times))


def evaluate_onnx(path: str | Path, td, metrics: MetricsFactory, limit: int | None = None) -> dict:
    """The metrics (``metrics.json`` keys, scalars) of the exported model ``path`` on ``td.val``; ``metrics``
    builds the metric modules for it (see :func:`ghostkit.deploy.export.export`)."""
    model = OnnxTaskModel(path)
    values = evaluate(model, td.val, metrics(model), collate=td.collate, limit=limit)
    task = next(iter(values))
    return {k: v for k, v in values[task].items() if isinstance(v, (int, float))}


def quantize_calibrated(fp32: Path, out: Path, model, data: str, imgsz: tuple[int, int], calib: int = 256,
                        opts: Int8Options = DEFAULT_INT8, log: Callable[[str], None] = print) -> Path:
    """Quantise the ONNX model ``fp32`` into the QDQ model ``out``, calibrated on ``calib`` training images of
    ``data``."""
    images, _ = sample_images(model, imgsz, data, n=calib, split="train")
    b = _batch_of(fp32)
    x = images.numpy()
    batches = [x[i:i + b] for i in range(0, len(x) // b * b, b)]
    start = time.perf_counter()
    quantize_onnx(fp32, out, batches, opts)
    log(f"int8: calibrated on {len(x)} {data} training images in {time.perf_counter() - start:.1f} s")
    return out


def _batch_of(path: Path) -> int:
    b = make_session(path).get_inputs()[0].shape[0]
    return b if isinstance(b, int) else 1


def compare_int8(fp32: Path, int8: Path, model, data: str, imgsz: tuple[int, int], metrics: MetricsFactory,
                 log: Callable[[str], None] = print) -> dict:
    """The validation metric on ``data`` and the batch-1 latency of the FP32 and INT8 exports (both ONNX, or both
    OpenVINO IR: the same runtime). Returns ``{"fp32": {...}, "int8": {...}, "metric": key}``."""
    td = data_for_model(model.config, data, max(imgsz))
    b = _batch_of(fp32)
    one = sample_images(model, imgsz, data, n=b, split="train")[0].numpy()
    report = {}
    for name, path in (("fp32", fp32), ("int8", int8)):
        values = evaluate_onnx(path, td, metrics)
        values["latency_ms"] = time_session(make_session(path), one)
        files = [Path(path)] + ([Path(path).with_suffix(".bin")] if Path(path).suffix == ".xml" else [])
        values["size_mb"] = sum(f.stat().st_size for f in files) / 2**20  # IR: its .bin of weights too
        report[name] = values
    key = get_task(next(iter(model.config["heads"]))).primary if report["fp32"] else None
    if key is None:
        raise GhostkitError(f"{data}: no validation metric to compare FP32 and INT8 with")
    f, q = report["fp32"], report["int8"]
    runtime = "OpenVINO" if Path(int8).suffix == ".xml" else "ONNX Runtime"
    log(f"int8 vs fp32 on {data} val: {key} {q[key]:.4f} vs {f[key]:.4f} ({q[key] - f[key]:+.4f}), batch-{b} latency "
        f"in {runtime} {q['latency_ms']:.2f} vs {f['latency_ms']:.2f} ms ({f['latency_ms'] / q['latency_ms']:.2f}x), "
        f"size {q['size_mb']:.2f} vs {f['size_mb']:.2f} MB")
    report["metric"] = key
    return report
