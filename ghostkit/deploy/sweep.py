"""``ghostkit benchmark --sweep``: where INT8 pays. FP32 against INT8 in each runtime (ONNX Runtime, OpenVINO), at
batch 1 (latency) and a large batch (throughput), with one thread and with all of them.

Each batch size gets its own exports (static shapes, as ``ghostkit export --batch`` writes them); for each thread
count every runtime of that batch is timed in the interleaved, shuffled blocks of
:func:`ghostkit.deploy.benchmark.time_interleaved`, so load from other processes hits FP32 and INT8 alike. INT8 is
calibrated on synthetic images with the settings this CPU's features choose (:mod:`ghostkit.deploy.cpu`): its speed
is real, its accuracy is what ``ghostkit export --int8 --data`` reports.
"""

from __future__ import annotations

import os
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from ..errors import GhostkitError
from .benchmark import _cpu_name, _task_model, deploy_models, runtime_of, time_interleaved
from .cpu import cpu_features, int8_plan

__all__ = ["int8_sweep", "sweep_markdown"]


def _runs_for(batch: int, runs: int) -> int:
    """Timed runs at ``batch``: ``runs`` at batch 1, fewer for big batches (each run does ``batch`` images), at least
    one timed round of blocks."""
    return max(8, runs // batch)


def int8_sweep(weights: str | None = None, model: str | None = None, imgsz: int | None = None,
               batches: tuple[int, ...] = (1, 32), threads: tuple[int, ...] | None = None, runs: int = 40,
               warmup: int = 2, openvino: bool = True, log: Callable[[str], None] | None = None) -> dict:
    """Time FP32 and INT8 per runtime for every ``batches`` x ``threads`` (default threads: 1 and all cores) of a
    checkpoint or an untrained registered backbone (as :func:`ghostkit.deploy.benchmark.benchmark`). Returns a
    JSON-able dict: ``rows`` (runtime, precision, batch, threads, p50_ms, throughput, cpu_ms: median process CPU
    time per run, which other processes sharing the cores disturb less than wall time) and ``summary`` per batch and
    thread count (fastest FP32, fastest INT8, their ratio, INT8 vs FP32 per runtime)."""
    log = log or (lambda _: None)
    if (weights is None) == (model is None):
        raise GhostkitError("give exactly one of --weights FILE or --model NAME")
    if runs <= 0 or warmup < 0 or any(b <= 0 for b in batches):
        raise GhostkitError(f"--runs and batch sizes must be positive (got {runs}, {batches})")
    cores = os.cpu_count() or 1
    threads = tuple(sorted({1, cores})) if threads is None else threads
    if any(t <= 0 for t in threads):
        raise GhostkitError(f"--threads must be positive, got {threads}")
    size = imgsz if imgsz is not None else (224 if weights is None else None)
    net = _task_model(weights, model, (size or 224, size or 224))
    h, w = (size, size) if size else tuple(net.config.get("imgsz", (224, 224)))
    if min(h, w) < 32:
        raise GhostkitError(f"--imgsz must be at least 32, got {h} x {w}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp_dir:
        for batch in batches:
            folder = Path(tmp_dir) / f"batch{batch}"
            folder.mkdir()
            models = deploy_models(net, folder, (h, w), batch, True, openvino, log)
            x = torch.randn(batch, 3, h, w)
            for n in threads:
                runtimes = [runtime_of(m, n) for m in models]
                time_interleaved(runtimes, x, _runs_for(batch, runs), warmup, log)
                for rt in runtimes:
                    mean = statistics.fmean(rt.times)
                    rows.append({"runtime": rt.name.split()[0], "precision": rt.precision, "batch": batch,
                                 "threads": n, "p50_ms": statistics.median(rt.times), "throughput": batch * 1e3 / mean,
                                 "cpu_ms": statistics.median(rt.cpu)})
                    rt.run = None  # free the session before the next thread count builds its own
                log(f"timed batch {batch}, {n} thread(s)")
    return {"model": (net.config.get("backbone") or {}).get("name", "?"), "imgsz": [h, w], "cpu": _cpu_name(),
            "features": cpu_features().describe(), "int8_plan": int8_plan().as_dict(), "rows": rows,
            "summary": _summary(rows)}


def _summary(rows: list[dict]) -> list[dict]:
    out = []
    for batch, n in sorted({(r["batch"], r["threads"]) for r in rows}):
        group = [r for r in rows if r["batch"] == batch and r["threads"] == n]
        best = {p: min((r for r in group if r["precision"] == p), key=lambda r: r["p50_ms"], default=None)
                for p in ("fp32", "int8")}
        entry = {"batch": batch, "threads": n}
        if best["fp32"] and best["int8"]:
            entry.update(fastest_fp32=best["fp32"]["runtime"], fastest_int8=best["int8"]["runtime"],
                         int8_vs_fp32=best["fp32"]["p50_ms"] / best["int8"]["p50_ms"])
        for runtime in sorted({r["runtime"] for r in group}):
            pair = {r["precision"]: r for r in group if r["runtime"] == runtime}
            if {"fp32", "int8"} <= set(pair):
                entry[f"{runtime} int8 vs fp32"] = pair["fp32"]["p50_ms"] / pair["int8"]["p50_ms"]
        out.append(entry)
    return out


def sweep_markdown(result: dict) -> str:
    """The sweep as a markdown table: one row per batch and thread count, p50 latency (batch 1) or images/s."""
    runtimes = sorted({(r["runtime"], r["precision"]) for r in result["rows"]})
    head = "| batch | threads | " + " | ".join(f"{r} {p}" for r, p in runtimes) + " | fastest INT8 vs fastest FP32 |"
    lines = [head, "|---:|---:|" + "---:|" * (len(runtimes) + 1)]
    for s in result["summary"]:
        cells = []
        for runtime, precision in runtimes:
            row = next((r for r in result["rows"] if r["batch"] == s["batch"] and r["threads"] == s["threads"]
                        and r["runtime"] == runtime and r["precision"] == precision), None)
            cells.append("-" if row is None else f"{row['p50_ms']:.2f} ms" if s["batch"] == 1
                         else f"{row['throughput']:.1f} img/s")
        ratio = f"{s['int8_vs_fp32']:.2f}× ({s['fastest_int8']} vs {s['fastest_fp32']})" if "int8_vs_fp32" in s else "-"
        lines.append(f"| {s['batch']} | {s['threads']} | " + " | ".join(cells) + f" | {ratio} |")
    return "\n".join(lines)
