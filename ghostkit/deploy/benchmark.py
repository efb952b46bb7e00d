"""``benchmark``: every runtime of one model side by side, with a comparable reference model, in one run.

Runtimes: PyTorch eager (training structure, eval), PyTorch deploy (re-parameterised, channels-last), ONNX Runtime
FP32 (the ``ghostkit export`` graph), ONNX Runtime INT8 (calibrated on synthetic images: its speed is real, its
accuracy is not measured here; ``ghostkit export --int8 --data`` reports that), OpenVINO FP32 (the graph
``ghostkit export --format openvino`` converts, compiled in f32) and INT8 (that ONNX Runtime INT8 model, whose Q/DQ
pairs OpenVINO runs as FakeQuantize, as ``export --format openvino --int8`` converts it) when installed; and
for classifiers timm's model of the same name (when timm is installed), eager and exported to ONNX Runtime with the
same exporter settings and session options, so the ratios compare graphs, not settings.

Method: ``torch.inference_mode``, one input of ``batch x 3 x H x W``, warm-up runs, then rounds in which every
runtime runs a block of ``BLOCK`` consecutive inferences in turn (interleaved, so load from other processes hits all
alike; the first inference of a block is not timed, as it wakes the runtime's threads and refills its caches).
Every runtime keeps its default threading (ONNX Runtime's workers spin between ops and between the runs of a block),
and each block starts only once the previous runtime's threads have stopped spinning (:func:`wait_quiet`): ONNX
Runtime's workers spin for about 40 ms after a run, which held one of two cores through most of the next runtime's
block (OpenVINO INT8 at batch 1 gained nothing from a second thread that way, docs/benchmarks.md). The order is
shuffled every round (seeded), so no runtime always follows the same one; latency percentiles over all timed runs,
throughput = batch / mean latency; ``cpu_ms`` is the median process CPU time per inference, all threads (steadier
than wall time on a shared machine, but it counts threads spinning while they wait).

Memory: peak RSS increase (Linux ``VmHWM`` after resetting it through ``/proc/self/clear_refs``) while the runtime
is created and warmed up: weights, packed copies, arenas, activations.
Parameters and MACs are those of the network each runtime executes (MACs from ``torch.utils.flop_counter`` at batch
1; the aligned ONNX graph is padded, see :mod:`ghostkit.deploy.align`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import platform
import random
import re
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import GhostkitError

__all__ = ["benchmark", "markdown_table", "Runtime", "MEMORY_METRIC"]

MEMORY_METRIC = "peak RSS increase while loading and warming up (MB)"
BLOCK = 5  # consecutive runs of one runtime per turn; the first is not timed


@dataclass
class Runtime:
    """One way of running the model: ``build()`` loads it and returns ``run(x)``."""

    name: str
    build: Callable[[], Callable[[object], object]]
    params: int
    macs: int
    ghostkit: bool = True
    precision: str = "fp32"
    run: Callable | None = None
    times: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    peak_mb: float | None = None


def _rss_kb() -> tuple[int, int] | None:
    try:
        with open("/proc/self/status") as f:
            status = f.read()
        return (int(re.search(r"VmRSS:\s+(\d+)", status).group(1)), int(re.search(r"VmHWM:\s+(\d+)", status).group(1)))
    except (OSError, AttributeError):
        return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _load(rt: Runtime, x, warmup: int) -> None:
    resettable = _reset_peak()
    before = _rss_kb()
    rt.run = rt.build()
    for _ in range(warmup):
        rt.run(x)
    after = _rss_kb()
    if resettable and before and after:
        rt.peak_mb = max(0, after[1] - before[0]) / 1024


def _cpu_name() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        found = re.search(r"model name\s*:\s*(.+)", f.read())
        if found:
            return found.group(1).strip()
    return platform.processor() or platform.machine()


def _torch_runtime(name: str, make: Callable[[], torch.nn.Module], imgsz, ghostkit: bool, channels_last: bool):
    from ..models.summary import count_macs, count_params

    probe = make()

    def build():
        model = make().eval()
        if channels_last:
            model = model.to(memory_format=torch.channels_last)

        def run(x):
            with torch.inference_mode():
                return model(x.contiguous(memory_format=torch.channels_last) if channels_last else x)

        return run

    return Runtime(name, build, count_params(probe), count_macs(probe, imgsz), ghostkit)


def _ort_ops(path: Path, threads: int, tmp: Path) -> dict[str, int]:
    """Node counts of the graph ONNX Runtime actually runs (after its ORT_ENABLE_ALL optimisations)."""
    import onnx

    from .graph import count_ops
    from .runtime import make_session

    out = tmp / f"{path.stem}.ort.onnx"
    make_session(path, threads, optimized_path=out)
    try:
        return count_ops(onnx.load(str(out)))
    except Exception:  # noqa: BLE001 - ORT may save contrib ops or formats onnx cannot parse; counts are a bonus
        return {}


def _reference_model(name: str, num_classes: int):
    try:
        import timm
    except ImportError:
        return None
    if name not in timm.list_models():
        return None
    return lambda: timm.create_model(name, pretrained=False, num_classes=num_classes).eval()


def _task_model(weights: str | None, model: str | None, imgsz: tuple[int, int]):
    from ..tasks.model import build_task_model, load_task_model

    if weights:
        return load_task_model(weights)
    from ..models import list_models

    if model not in list_models():
        from ..models.registry import model_entrypoint

        model_entrypoint(model)  # raises the registry's error with suggestions
    config = {"format": 1, "backbone": {"name": model, "kwargs": {"output_stride": 32}},
              "heads": {"classify": {"num_classes": 1000}}, "class_names": {"classify": [str(i) for i in range(1000)]},
              "imgsz": list(imgsz), "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "deployed": False}
    return build_task_model(config).eval()


def benchmark(weights: str | None = None, model: str | None = None, imgsz: int | tuple[int, int] | None = None,
              batch: int = 1, threads: int | None = None, runs: int = 50, warmup: int = 5, int8: bool = True,
              reference: bool = True, openvino: bool = True, log: Callable[[str], None] | None = None) -> dict:
    """Benchmark a checkpoint (``weights``) or an untrained registered backbone with an ImageNet classifier
    (``model``) on the CPU; see the module docstring. ``runs``: timed inferences per runtime (at least; in blocks
    of ``BLOCK - 1``). Returns a JSON-able dict (``runtimes`` rows, node counts,
    speed-ups)."""
    log = log or (lambda _: None)
    if (weights is None) == (model is None):
        raise GhostkitError("give exactly one of --weights FILE or --model NAME")
    if batch <= 0 or runs <= 0 or warmup < 0:
        raise GhostkitError(f"--batch and --runs must be positive (got {batch}, {runs})")
    threads = threads or os.cpu_count() or 1
    if imgsz is None and weights is None:
        imgsz = 224
    size = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
    net = _task_model(weights, model, size or (224, 224))
    h, w = size or tuple(net.config.get("imgsz", (224, 224)))
    if min(h, w) < 32:
        raise GhostkitError(f"--imgsz must be at least 32, got {h} x {w}")
    torch.set_num_threads(threads)
    name = (net.config.get("backbone") or {}).get("name", "?")
    tasks = list(net.config["heads"])
    x = torch.randn(batch, 3, h, w)

    from ..models import reparameterize

    runtimes = [_torch_runtime("pytorch eager", lambda: net, (h, w), True, False),
                _torch_runtime("pytorch deploy", lambda: reparameterize(net), (h, w), True, True)]
    nodes = {}
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        models = deploy_models(net, tmp, (h, w), batch, int8, openvino, log)
        runtimes += [runtime_of(m, threads) for m in models]
        nodes["onnxruntime fp32"] = {"exported": models[0].ops, "ort": _ort_ops(models[0].path, threads, tmp)}
        ref = _reference_model(name, net.heads[tasks[0]].num_classes) if reference and tasks in (
            ["classify"], ["multilabel"]) else None
        if ref is not None:
            runtimes.append(_torch_runtime(f"timm {name} eager", ref, (h, w), False, False))
            ref_path = _export_reference(ref(), tmp / "timm.onnx", batch, (h, w))
            from ..models.summary import count_macs, count_params

            probe = ref()
            ref_model = DeployModel("onnxruntime", "fp32", ref_path, count_params(probe), count_macs(probe, (h, w)))
            runtimes.append(runtime_of(ref_model, threads, f"timm {name} onnxruntime", ghostkit=False))
            import onnx

            from .graph import count_ops

            nodes[f"timm {name} onnxruntime"] = {"exported": count_ops(onnx.load(str(ref_path))),
                                                 "ort": _ort_ops(ref_path, threads, tmp)}
            if openvino and importlib.util.find_spec("openvino") is not None:
                ov_ref = DeployModel("openvino", "fp32", _as_openvino(ref_path), ref_model.params, ref_model.macs)
                runtimes.append(runtime_of(ov_ref, threads, f"timm {name} openvino", ghostkit=False))
        time_interleaved(runtimes, x, runs, warmup, log)
    return _report(runtimes, nodes, name, tasks, (h, w), batch, threads, runs)


@dataclass
class DeployModel:
    """One exported model file of the benchmark: ``runtime`` (``onnxruntime`` / ``openvino``), ``precision``."""

    runtime: str
    precision: str
    path: Path
    params: int
    macs: int
    ops: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.runtime} {self.precision}"


def deploy_models(net, tmp: Path, imgsz: tuple[int, int], batch: int, int8: bool, openvino: bool,
                  log: Callable[[str], None]) -> list[DeployModel]:
    """The files ``ghostkit export`` writes for ``net`` at ``batch``: ONNX Runtime FP32 (the default export) and
    INT8 (ORT's QDQ model of the INT8 graph, ``INT8_PASSES``), OpenVINO FP32 (``--format openvino``) and INT8 (that QDQ
    model as IR, as ``--format openvino --int8``) when installed. INT8 is calibrated on synthetic
    images and plain CPU-chosen settings (no per-layer fallback: speed only)."""
    from .export import INT8_PASSES, export, sample_images
    from .quantize import Int8Options, quantize_onnx

    h, w = imgsz
    t = time.perf_counter()
    fp32 = export(net, out=tmp / "model.onnx", imgsz=(h, w), log=None, batch=batch)
    log(f"exported ONNX in {time.perf_counter() - t:.1f} s")
    models = [DeployModel("onnxruntime", "fp32", fp32.path, fp32.params, fp32.macs, fp32.ops)]
    if int8:
        images, _ = sample_images(net, (h, w), None, n=8)
        calib = [images[i:i + batch].numpy() for i in range(0, len(images) // batch * batch, batch)] or \
            [images[:1].expand(batch, -1, -1, -1).numpy()]
        plain = export(net, out=tmp / "plain.onnx", imgsz=(h, w), align=0, log=None, batch=batch,
                       optimize=INT8_PASSES)
        t = time.perf_counter()
        quantize_onnx(plain.path, tmp / "int8.onnx", calib, Int8Options())
        log(f"quantised in {time.perf_counter() - t:.1f} s")
        models.append(DeployModel("onnxruntime", "int8", tmp / "int8.onnx", plain.params, plain.macs))
    if openvino and importlib.util.find_spec("openvino") is not None:
        ov_src = export(net, out=tmp / "openvino.onnx", imgsz=(h, w), align=0, log=None, batch=batch,
                        optimize=False)
        models.append(DeployModel("openvino", "fp32", _as_openvino(ov_src.path), ov_src.params, ov_src.macs))
        if int8:
            models.append(DeployModel("openvino", "int8", _as_openvino(tmp / "int8.onnx"), plain.params, plain.macs))
    return models


def runtime_of(model: DeployModel, threads: int, name: str | None = None, ghostkit: bool = True) -> Runtime:
    """A benchmark runtime for an exported file: an ONNX Runtime session, or an OpenVINO model compiled in FP32
    (``OpenVinoSession``: on CPUs with BF16 the plugin would otherwise compute an FP32 model in bfloat16)."""
    from .runtime import INPUT_NAME, make_session

    def build():
        session = make_session(model.path, threads)
        return lambda x: session.run(None, {INPUT_NAME: x.numpy()})

    return Runtime(name or model.name, build, model.params, model.macs, ghostkit, model.precision)


def _as_openvino(path: Path) -> Path:
    """An ONNX file converted to OpenVINO IR beside it (``make_session`` opens ``.xml`` files in OpenVINO)."""
    import onnx

    from .export import _write_openvino

    _write_openvino(onnx.load(str(path)), path.with_suffix(".xml"), {})
    return path.with_suffix(".xml")


def wait_quiet(max_s: float = 0.5, tick_s: float = 0.01) -> None:
    """Return once this process's threads have stopped using the CPU (under a tenth of a core for two ticks of
    ``tick_s`` in a row), or after ``max_s``. A runtime's worker threads keep busy-waiting for work after a run
    returns: ONNX Runtime's for about 40 ms, a whole core, on the Sapphire Rapids class Xeon of docs/benchmarks.md,
    so the next runtime's block would start with one core taken."""
    end, quiet = time.perf_counter() + max_s, 0
    while time.perf_counter() < end and quiet < 2:
        cpu = time.process_time()
        time.sleep(tick_s)
        quiet = quiet + 1 if time.process_time() - cpu < tick_s / 10 else 0


def time_interleaved(runtimes: list[Runtime], x: torch.Tensor, runs: int, warmup: int,
                     log: Callable[[str], None]) -> None:
    """Load and warm up each runtime, then time them in shuffled interleaved blocks (module docstring); the times
    land in each ``Runtime``."""
    for rt in runtimes:
        _load(rt, x, warmup)
        log(f"loaded {rt.name}")
    order, shuffle = list(runtimes), random.Random(0).shuffle
    for _ in range(-(-runs // (BLOCK - 1))):
        shuffle(order)
        for rt in order:
            wait_quiet()
            for k in range(BLOCK):
                start, cpu = time.perf_counter(), time.process_time()
                rt.run(x)
                if k:  # the first run of a block wakes its threads and refills the caches the others used
                    rt.times.append((time.perf_counter() - start) * 1e3)
                    rt.cpu.append((time.process_time() - cpu) * 1e3)


def _export_reference(model: torch.nn.Module, path: Path, batch: int, imgsz: tuple[int, int]) -> Path:
    """timm's model exported exactly like ghostkit's (TorchScript exporter, same opset, constants folded)."""
    import warnings

    from .export import DEFAULT_OPSET
    from .runtime import INPUT_NAME

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(batch, 3, *imgsz),), str(path), dynamo=False, opset_version=DEFAULT_OPSET,
                          input_names=[INPUT_NAME], output_names=["logits"], do_constant_folding=True)
    return path


def _report(runtimes: list[Runtime], nodes: dict, name: str, tasks: list[str], imgsz, batch: int, threads: int,
            runs: int) -> dict:
    rows = []
    for rt in runtimes:
        ts = sorted(rt.times)
        rows.append({"runtime": rt.name, "precision": rt.precision, "ghostkit": rt.ghostkit, "params": rt.params,
                     "macs": rt.macs, "p50_ms": statistics.median(ts), "p90_ms": float(np.percentile(ts, 90)),
                     "mean_ms": statistics.fmean(ts), "throughput": batch * 1e3 / statistics.fmean(ts),
                     "cpu_ms": statistics.median(rt.cpu),
                     "peak_mb": rt.peak_mb})
    by = {r["runtime"]: r for r in rows}
    fastest = min((r for r in rows if r["ghostkit"] and r["precision"] == "fp32"), key=lambda r: r["p50_ms"])
    speedups = {"fastest_ghostkit_fp32": fastest["runtime"]}
    for ref in (r for r in rows if not r["ghostkit"]):
        speedups[f"vs {ref['runtime']}"] = ref["p50_ms"] / fastest["p50_ms"]
    ort_ref = next((r for r in rows if not r["ghostkit"] and r["runtime"].endswith("onnxruntime")), None)
    if ort_ref is not None and "onnxruntime fp32" in by:
        speedups["onnxruntime fp32 vs timm onnxruntime"] = ort_ref["p50_ms"] / by["onnxruntime fp32"]["p50_ms"]
    for runtime in ("onnxruntime", "openvino"):
        if f"{runtime} int8" in by and f"{runtime} fp32" in by:
            speedups[f"int8 vs fp32 {runtime}"] = by[f"{runtime} fp32"]["p50_ms"] / by[f"{runtime} int8"]["p50_ms"]
    return {"model": name, "tasks": tasks, "imgsz": list(imgsz), "batch": batch, "threads": threads, "runs": runs,
            "cpu": _cpu_name(), "memory_metric": MEMORY_METRIC, "runtimes": rows, "nodes": nodes,
            "speedups": speedups}


def markdown_table(result: dict) -> str:
    """The result's runtime rows as a markdown table."""
    lines = ["| runtime | params (M) | MACs (M) | p50 (ms) | p90 (ms) | img/s | CPU (ms) | peak mem (MB) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in result["runtimes"]:
        mem = f"{r['peak_mb']:.0f}" if r["peak_mb"] is not None else "n/a"
        lines.append(f"| {r['runtime']} | {r['params'] / 1e6:.2f} | {r['macs'] / 1e6:.0f} | {r['p50_ms']:.2f} | "
                     f"{r['p90_ms']:.2f} | {r['throughput']:.1f} | {r['cpu_ms']:.2f} | {mem} |")
    return "\n".join(lines)

