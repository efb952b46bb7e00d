"""The INT8 export: calibrate, keep the layers that quantise badly in FP32, compare with FP32 in the same runtime,
and keep FP32 where INT8 would be slower.

Steps (``export --int8``, :func:`write_int8`):

1. the CPU's features choose the settings once (:func:`ghostkit.deploy.cpu.int8_plan`: 8-bit weights with VNNI or
   AMX, 7-bit without);
2. ONNX Runtime's quantiser writes a QDQ model calibrated on ``--data``'s training images; every convolution whose
   input or weights keep less than ``MIN_SQNR_DB`` after quantisation (:func:`ghostkit.deploy.quantize.layer_errors`)
   is excluded and the model quantised again: those layers stay FP32 and are listed in the report;
3. ONNX: that QDQ model is the INT8 model. OpenVINO: the same QDQ model converted to IR; OpenVINO reads each Q/DQ
   pair as a FakeQuantize and runs the convolutions in its INT8 kernels. NNCF's own OpenVINO quantisation (its
   ``performance`` and ``mixed`` presets) ran no faster on ghostnet_100 and lost more top1 (docs/benchmarks.md), so
   one quantiser serves both runtimes;
4. FP32 and INT8 run on the validation split (the task's metric) and are timed interleaved in the same runtime;
   when INT8 is not faster, the FP32 model is written instead and the report says so.

The choice is recorded in the file's metadata (``export.int8`` is true only when the file holds the INT8 model;
``export.int8_report`` has the CPU, settings, FP32 layers, metric and speed-up) and in one log line.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..data.tasks import data_for_model
from ..errors import GhostkitError
from ..tasks.registry import get_task
from .benchmark import wait_quiet
from .cpu import int8_plan
from .evaluate import MetricsFactory, evaluate
from .quantize import MIN_SQNR_DB, Int8Options, layer_errors, quantize_onnx
from .runtime import OnnxTaskModel, make_session, run_session
from .samples import sample_images

__all__ = ["write_int8", "time_interleaved", "choose_precision", "ERROR_IMAGES"]

ERROR_IMAGES = 4  # images for the per-layer error: ORT keeps every Q/DQ tensor of each as an output


def time_interleaved(paths: dict[str, Path], images: np.ndarray, rounds: int = 6, block: int = 4) -> dict[str, float]:
    """Median latency (ms) of each model on ``images``, the sessions run in turn, ``block`` runs each (the first
    untimed: it wakes the session's threads), each block once the previous session's threads have stopped spinning
    (:func:`ghostkit.deploy.benchmark.wait_quiet`), so load from other processes hits all and no session runs on
    cores the other one holds."""
    sessions = {k: make_session(p) for k, p in paths.items()}
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for s in sessions.values():
        run_session(s, images)
    for _ in range(rounds):
        for k, s in sessions.items():
            wait_quiet()
            for i in range(block):
                t = time.perf_counter()
                run_session(s, images)
                if i:
                    times[k].append((time.perf_counter() - t) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def choose_precision(fp32_ms: float, int8_ms: float) -> str:
    """``"int8"`` when the INT8 model ran faster than FP32, else ``"fp32"`` (INT8 must never cost speed)."""
    return "int8" if int8_ms < fp32_ms else "fp32"


def _evaluate(path: Path, td, metrics: MetricsFactory) -> dict:
    model = OnnxTaskModel(path)
    values = evaluate(model, td.val, metrics(model), collate=td.collate)
    task = next(iter(values))
    return {k: v for k, v in values[task].items() if isinstance(v, (int, float))}


def _calibration(fp32: Path, model, data: str, imgsz: tuple[int, int], calib: int) -> list[np.ndarray]:
    images, _ = sample_images(model, imgsz, data, n=calib, split="train")
    b = make_session(fp32).get_inputs()[0].shape[0]
    b = b if isinstance(b, int) else 1
    x = images.numpy()
    return [x[i:i + b] for i in range(0, len(x) // b * b, b)] or [np.repeat(x[:1], b, axis=0)]


def write_int8(onnx_model, out: Path, model, data: str, imgsz: tuple[int, int], format: str, meta: dict,
               metrics: MetricsFactory, write_openvino: Callable, fallback: bool = True, calib: int = 256,
               log: Callable[[str], None] = print) -> dict:
    """Quantise the FP32 ``onnx_model`` (steps in the module docstring) and write ``out`` (ONNX, or OpenVINO IR via
    ``write_openvino(model, path, meta)``) with ``meta["export"]`` updated. ``fallback``: write FP32 where INT8 is
    slower. Returns the report: ``{"fp32": metrics + latency_ms + size_mb, "int8": ..., "metric", "plan",
    "fp32_layers", "speedup", "precision"}``."""
    import onnx

    plan = int8_plan()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        fp32, qdq = tmp / "fp32.onnx", tmp / "int8.onnx"
        fp32.write_bytes(onnx_model.SerializeToString())
        batches = _calibration(fp32, model, data, imgsz, calib)
        opts = Int8Options(reduce_range=plan.weight_bits == 7)
        quantize_onnx(fp32, qdq, batches, opts)
        n_err = max(1, ERROR_IMAGES // len(batches[0]))
        errors = layer_errors(qdq, batches[:n_err], fp32)
        kept = sorted(n for n, db in errors.items() if db < MIN_SQNR_DB)
        if kept:
            quantize_onnx(fp32, qdq, batches, Int8Options(reduce_range=opts.reduce_range, exclude=tuple(kept)))
        quantizer = "onnxruntime qdq"
        if format == "openvino":
            write_openvino(onnx.load(str(qdq)), tmp / "int8.xml", meta)
            write_openvino(onnx_model, tmp / "fp32.xml", meta)
            fp32, qdq = tmp / "fp32.xml", tmp / "int8.xml"
        n_img = sum(len(b) for b in batches)
        log(f"int8: calibrated on {n_img} {data} training images ({plan.cpu}: {plan.weight_bits}-bit weights, "
            f"{quantizer}) in {time.perf_counter() - start:.1f} s")
        report = _compare(fp32, qdq, model, data, imgsz, metrics)
        report.update(plan=plan.as_dict(), quantizer=quantizer, fp32_layers=kept,
                      speedup=report["fp32"]["latency_ms"] / report["int8"]["latency_ms"])
        report["precision"] = choose_precision(report["fp32"]["latency_ms"], report["int8"]["latency_ms"]) \
            if fallback else "int8"
        meta["export"].update(int8=report["precision"] == "int8",
                              int8_report={k: report[k] for k in ("plan", "quantizer", "fp32_layers", "speedup",
                                                                  "precision", "metric")})
        chosen = qdq if report["precision"] == "int8" else fp32
        if format == "onnx":
            final = onnx.load(str(chosen))
            del final.metadata_props[:]
            onnx.helper.set_model_props(final, {"ghostkit": json.dumps(meta)})
            from ..io import atomic_write_bytes

            atomic_write_bytes(out, final.SerializeToString())
        else:
            import openvino as ov

            write_openvino(ov.Core().read_model(str(chosen)), out, meta)
    _log_report(report, data, format, log)
    return report


def _compare(fp32: Path, int8: Path, model, data: str, imgsz: tuple[int, int], metrics: MetricsFactory) -> dict:
    """The validation metric on ``data`` and the interleaved latency of the FP32 and INT8 models (one runtime)."""
    td = data_for_model(model.config, data, max(imgsz))
    b = make_session(fp32).get_inputs()[0].shape[0]
    one = sample_images(model, imgsz, data, n=b if isinstance(b, int) else 1, split="train")[0].numpy()
    latency = time_interleaved({"fp32": fp32, "int8": int8}, one)
    report = {}
    for name, path in (("fp32", fp32), ("int8", int8)):
        values = _evaluate(path, td, metrics)
        values["latency_ms"] = latency[name]
        files = [path] + ([path.with_suffix(".bin")] if path.suffix == ".xml" else [])
        values["size_mb"] = sum(f.stat().st_size for f in files) / 2**20  # IR: its .bin of weights too
        report[name] = values
    key = get_task(next(iter(model.config["heads"]))).primary if report["fp32"] else None
    if key is None or key not in report["fp32"]:
        raise GhostkitError(f"{data}: no validation metric to compare FP32 and INT8 with")
    report["metric"] = key
    return report


def _log_report(r: dict, data: str, format: str, log: Callable[[str], None]) -> None:
    f, q, key = r["fp32"], r["int8"], r["metric"]
    runtime = "OpenVINO" if format == "openvino" else "ONNX Runtime"
    kept = f", {len(r['fp32_layers'])} layers kept FP32 ({', '.join(r['fp32_layers'])})" if r["fp32_layers"] else ""
    verdict = ("; INT8 is not faster than FP32 on this CPU, so the FP32 model was written"
               if r["precision"] == "fp32" else "")
    log(f"int8 vs fp32 on {data} val: {key} {q[key]:.4f} vs {f[key]:.4f} ({q[key] - f[key]:+.4f}), latency in "
        f"{runtime} {q['latency_ms']:.2f} vs {f['latency_ms']:.2f} ms ({r['speedup']:.2f}x), size {q['size_mb']:.2f} "
        f"vs {f['size_mb']:.2f} MB; {r['plan']['cpu']}, {r['plan']['weight_bits']}-bit weights{kept}{verdict}")
