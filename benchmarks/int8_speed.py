"""Where INT8 pays: FP32 vs INT8 in ONNX Runtime and OpenVINO, batch 1 latency and batch 32 throughput, 1 and 2
threads (``ghostkit benchmark --sweep``), plus the INT8 accuracy of a trained classifier in both runtimes.

    .venv/bin/python benchmarks/int8_speed.py                                   # ghostnet_100, 224 px: the speed bars
    .venv/bin/python benchmarks/int8_speed.py --weights runs/x/best.ckpt --data digits   # + top1, FP32 vs INT8

Bars (INT8 that pays on VNNI / AMX CPUs), 2 threads: the fastest INT8 runtime >= 1.3x the fastest FP32 runtime at
batch 1 and >= 1.6x at batch 32; that runtime's INT8 top1 within 0.5 points of FP32 (both runtimes without the
sweep). Speed is measured on the untrained model
(weights do not change the cost); top1 needs a trained checkpoint and its data, exported as ``ghostkit export --int8``
does (per-layer FP32 fallback included; the speed fallback is off here so that the INT8 model is the one measured).
Exit status 1 when a bar is missed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

import ghostkit
from ghostkit.deploy.sweep import int8_sweep, sweep_markdown

BARS = {1: 1.3, 32: 1.6}  # batch: fastest INT8 / fastest FP32, at the largest thread count
MAX_TOP1_DROP = 0.005


def accuracy(weights: str, data: str, judged: set[str]) -> bool:
    """FP32 vs INT8 top1 in both runtimes; the bar applies to the runtimes in ``judged`` (the fastest INT8 one)."""
    ok = True
    print("\n| runtime | FP32 top1 | INT8 top1 | change (points) | INT8 layers kept FP32 | INT8 vs FP32 latency |")
    print("|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, suffix in (("onnx", ".onnx"), ("openvino", ".xml")):
            r = ghostkit.export(weights, format=fmt, int8=True, data=data, out=Path(tmp) / f"m.int8{suffix}",
                                int8_fallback=False, log=None).int8
            f, q = r["fp32"]["top1"], r["int8"]["top1"]
            ok &= f - q <= MAX_TOP1_DROP or ("onnxruntime" if fmt == "onnx" else "openvino") not in judged
            print(f"| {'ONNX Runtime' if fmt == 'onnx' else 'OpenVINO'} | {f:.4f} | {q:.4f} | {100 * (q - f):+.2f} | "
                  f"{len(r['fp32_layers'])} | {r['speedup']:.2f}× |")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ghostnet_100")
    parser.add_argument("--imgsz", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=120, help="timed runs per runtime at batch 1 (batch 32: fewer)")
    parser.add_argument("--weights", help="a trained classifier for the top1 check")
    parser.add_argument("--data", help="its data (calibration: training split; top1: validation split)")
    parser.add_argument("--no-speed", action="store_true", help="only the top1 check")
    parser.add_argument("--profile", action="store_true", help="also profile each runtime's FP32 and INT8 graph "
                                                               "(batch 1, 1 thread): time per kind of layer")
    args = parser.parse_args()
    if bool(args.weights) != bool(args.data):
        parser.error("--weights and --data go together")
    torch.manual_seed(0)
    start = time.perf_counter()
    judged = {"onnxruntime", "openvino"}  # without the sweep, both runtimes must hold top1
    ok = True
    if not args.no_speed:
        ok, fastest = speed(args)
        judged = {fastest} if fastest else judged
    if args.profile:
        profile(args)
    if args.weights:
        passed = accuracy(args.weights, args.data, judged)
        ok &= passed
        print(f"\nbar: INT8 top1 within {100 * MAX_TOP1_DROP:.1f} points of FP32 in {', '.join(sorted(judged))} -> "
              f"{'PASS' if passed else 'FAIL'}")
    print(f"\n{time.perf_counter() - start:.0f} s in all")
    return 0 if ok else 1


def profile(args: argparse.Namespace) -> None:
    from ghostkit.deploy.benchmark import _task_model, deploy_models
    from ghostkit.deploy.profile import profile_markdown, profile_model

    net = _task_model(None, args.model, (args.imgsz, args.imgsz))
    with tempfile.TemporaryDirectory() as tmp:
        for m in deploy_models(net, Path(tmp), (args.imgsz, args.imgsz), 1, True, True, lambda _: None):
            r = profile_model(m.path, threads=1)
            print(f"\n#### {m.name}: {r['total_ms']:.2f} ms per run in its layers (profiled, 1 thread)\n")
            print(profile_markdown(r))


def speed(args: argparse.Namespace) -> tuple[bool, str | None]:
    """The sweep, its bars, and the fastest INT8 runtime at batch 1 (the one whose top1 the accuracy bar judges)."""
    result = int8_sweep(model=args.model, imgsz=args.imgsz, batches=tuple(BARS), threads=(1, args.threads),
                        runs=args.runs, log=lambda s: print(s, file=sys.stderr))
    print(f"\n### {args.model}, {args.imgsz} px, {result['cpu']} ({result['features']}), "
          f"{result['int8_plan']['weight_bits']}-bit INT8 weights, load average {os.getloadavg()[0]:.1f}\n")
    print(sweep_markdown(result))
    ok = True
    for s in result["summary"]:
        if s["threads"] == args.threads and s["batch"] in BARS and "int8_vs_fp32" in s:
            passed = s["int8_vs_fp32"] >= BARS[s["batch"]]
            ok &= passed
            print(f"\nbar, batch {s['batch']}, {args.threads} threads: fastest INT8 ({s['fastest_int8']}) "
                  f"{s['int8_vs_fp32']:.2f}x the fastest FP32 ({s['fastest_fp32']}), >= {BARS[s['batch']]}x -> "
                  f"{'PASS' if passed else 'FAIL'}")
    one = {(r["runtime"], r["precision"], r["batch"]): r["cpu_ms"] for r in result["rows"] if r["threads"] == 1}
    print("\nCPU time per run, 1 thread (steadier than wall time on shared cores), INT8 vs FP32 of the same runtime:")
    for runtime, _, batch in sorted(k for k in one if k[1] == "int8"):
        if (runtime, "fp32", batch) in one:
            print(f"- {runtime}, batch {batch}: {one[(runtime, 'fp32', batch)] / one[(runtime, 'int8', batch)]:.2f}x")
    at_one = [s for s in result["summary"] if s["batch"] == 1 and s["threads"] == args.threads]
    fastest = at_one[0].get("fastest_int8") if at_one else None
    return ok, fastest


if __name__ == "__main__":
    sys.exit(main())
