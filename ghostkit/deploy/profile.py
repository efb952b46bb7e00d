"""Where an exported model spends its time, per kind of layer, from the runtimes' own profilers: OpenVINO's per-layer
performance counters (layer type, kernel, runtime precision) and ONNX Runtime's profiling trace (op type, kernel).

This is how the INT8 graphs were examined (docs/benchmarks.md, INT8): which layers run in an integer kernel, which
stay FP32 or fall to reference kernels, and where reorders and Q/DQ work sit. ``benchmarks/int8_speed.py --profile``
prints the tables.
"""

from __future__ import annotations

import collections
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from .runtime import INPUT_NAME

__all__ = ["profile_model", "profile_markdown"]


def _openvino(path: Path, x: np.ndarray, threads: int, runs: int) -> dict[tuple[str, str, str], list[float]]:
    import openvino as ov

    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "PERF_COUNT": True,
              "INFERENCE_PRECISION_HINT": "f32"}  # as OpenVinoSession compiles it
    compiled = core.compile_model(str(path), "CPU", config)
    request = compiled.create_infer_request()
    # the runtime model knows each executed layer's precision; the counters know its kernel and time
    precision = {op.get_friendly_name(): op.get_rt_info()["runtimePrecision"].astype(str)
                 for op in compiled.get_runtime_model().get_ops() if "runtimePrecision" in op.get_rt_info()}
    request.infer([x])
    totals: dict[tuple[str, str, str], list[float]] = collections.defaultdict(lambda: [0, 0.0])
    for _ in range(runs):
        request.infer([x])
        for p in request.profiling_info:
            if p.status == p.Status.EXECUTED:
                key = (p.node_type, p.exec_type, precision.get(p.node_name, "?"))
                totals[key][0] += 1
                totals[key][1] += p.real_time.total_seconds() * 1e3
    return totals


def _onnxruntime(path: Path, x: np.ndarray, threads: int, runs: int) -> dict[tuple[str, str, str], list[float]]:
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads, opts.log_severity_level = threads, 1, 3
        opts.enable_profiling, opts.profile_file_prefix = True, os.path.join(tmp, "ort")
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        session.run(None, {INPUT_NAME: x})
        for _ in range(runs):
            session.run(None, {INPUT_NAME: x})
        events = json.loads(Path(session.end_profiling()).read_text())
    totals: dict[tuple[str, str, str], list[float]] = collections.defaultdict(lambda: [0, 0.0])
    runs_seen = 0
    for e in events:
        if e.get("cat") == "Session" and e.get("name") == "model_run":
            runs_seen += 1
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time") or runs_seen < 1:
            continue  # the first run (and the session's set-up) is warm-up
        args = e.get("args", {})
        types = [t for d in args.get("input_type_shape", []) for t in d][:1]
        key = (args.get("op_name", "?"), args.get("provider", "?").replace("ExecutionProvider", ""),
               ",".join(types) or "?")
        totals[key][0] += 1
        totals[key][1] += e.get("dur", 0) / 1e3
    return totals


def profile_model(path: str | Path, batch: int = 1, threads: int = 1, runs: int = 10) -> dict:
    """Profile the exported model ``path`` (``.onnx``: ONNX Runtime; ``.xml``: OpenVINO) on ``runs`` random
    ``batch x 3 x H x W`` inputs. Returns ``{"runtime", "total_ms" (per run), "rows": [{"layer", "kernel",
    "precision", "count" (per run), "ms" (per run), "share"}]}``, slowest first. ``precision``: OpenVINO's runtime
    precision of the layer; for ONNX Runtime the element type of the op's first input."""
    path = Path(path)
    openvino = path.suffix.lower() == ".xml"
    if openvino:
        import openvino as ov

        shape = [d.get_length() for d in ov.Core().read_model(str(path)).inputs[0].get_partial_shape()]
    else:
        import onnx

        dims = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
        shape = [d.dim_value or 1 for d in dims]
    shape[0] = batch if not shape[0] or shape[0] == 1 else shape[0]
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    totals = (_openvino if openvino else _onnxruntime)(path, x, threads, runs)
    total = sum(ms for _, ms in totals.values()) / runs
    rows = [{"layer": k[0], "kernel": k[1], "precision": k[2], "count": n // runs, "ms": ms / runs,
             "share": ms / runs / total if total else 0.0} for k, (n, ms) in totals.items()]
    return {"runtime": "openvino" if openvino else "onnxruntime", "total_ms": total,
            "rows": sorted(rows, key=lambda r: -r["ms"])}


def profile_markdown(result: dict, top: int = 12) -> str:
    """The ``top`` slowest rows of :func:`profile_model` as a markdown table."""
    lines = ["| layer | kernel | precision | per run | ms | share |", "|---|---|---|---:|---:|---:|"]
    for r in result["rows"][:top]:
        lines.append(f"| {r['layer']} | {r['kernel']} | {r['precision']} | {r['count']} | {r['ms']:.2f} | "
                     f"{100 * r['share']:.1f}% |")
    return "\n".join(lines)
