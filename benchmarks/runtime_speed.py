"""Runtime speed of a GhostNet classifier on the CPU: every ghostkit runtime vs timm's same-name model, plus where
the ONNX Runtime gain comes from (graph ablation) and what INT8 configuration pays (INT8 ablation).

    .venv/bin/python benchmarks/runtime_speed.py                      # ghostnet_100, 224 px, batch 1, all cores
    .venv/bin/python benchmarks/runtime_speed.py --ablation           # + ONNX graph variants and INT8 variants
    .venv/bin/python benchmarks/runtime_speed.py --model ghostnet_050 --imgsz 160 --runs 200

Quality bar: ghostkit's fastest FP32 runtime >= 1.1x timm's model exported to ONNX and run in ONNX Runtime in the
same run (``ghostkit benchmark`` prints the same table; see its docstring for the method). Models are untrained:
weights do not change the cost. The ablations time ONNX Runtime sessions on one input in interleaved blocks (the
first run of each block dropped) and report the median wall time with ``--threads`` threads and the median
single-thread CPU time, which a busy shared machine disturbs much less.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import torch

from ghostkit.deploy.benchmark import _export_reference, _task_model, benchmark, markdown_table
from ghostkit.deploy.cpu import int8_plan
from ghostkit.deploy.export import INT8_PASSES, _write_openvino, export, sample_images
from ghostkit.deploy.graph import count_ops
from ghostkit.deploy.quantize import Int8Options, quantize_onnx
from ghostkit.deploy.runtime import make_session

BAR = 1.1


def time_sessions(paths: dict[str, Path], imgsz: int, threads: int, rounds: int, block: int = 4) -> dict[str, dict]:
    """Median wall ms with ``threads`` threads and median CPU ms with one thread, interleaved per block. OpenVINO
    models (``.xml``) run in the plugin's own worker threads, so their one-thread time is wall time too."""
    x = np.random.default_rng(0).standard_normal((1, 3, imgsz, imgsz), dtype=np.float32)
    result = {}
    openvino = all(Path(p).suffix == ".xml" for p in paths.values())
    one_thread_clock = time.perf_counter if openvino else time.thread_time
    for key, n_threads, clock in (("wall_ms", threads, time.perf_counter), ("cpu1_ms", 1, one_thread_clock)):
        sessions = {name: make_session(p, n_threads, spinning=False) for name, p in paths.items()}
        times: dict[str, list[float]] = {name: [] for name in sessions}
        for _ in range(rounds):
            for name, s in sessions.items():
                for k in range(block):
                    t = clock()
                    s.run(None, {"images": x})
                    if k:
                        times[name].append((clock() - t) * 1e3)
        for name, ts in times.items():
            result.setdefault(name, {})[key] = statistics.median(ts)
    return result


def ablation(model_name: str, imgsz: int, threads: int, rounds: int) -> None:
    net = _task_model(None, model_name, (imgsz, imgsz))
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        timm_path = None
        try:
            import timm

            timm_path = _export_reference(timm.create_model(model_name, num_classes=1000).eval(), tmp / "timm.onnx", 1,
                                          (imgsz, imgsz))
        except (ImportError, RuntimeError):
            pass
        variants = {
            "plain (deploy, no rewrites)": dict(align=0, optimize=False),
            "fold+lift+pool (layout-neutral)": dict(align=0, optimize=("fold", "lift", "pool")),
            "+ split concats, no alignment": dict(align=0, optimize=("fold", "lift", "pool", "split")),
            "aligned, no split": dict(align=16, optimize=("fold", "lift", "pool", "gates")),
            "aligned + all rewrites": dict(align=16),
            "ghostkit export default": dict(),
        }
        paths, ops, macs = {}, {}, {}
        for i, (name, kw) in enumerate(variants.items()):
            r = export(net, out=tmp / f"v{i}.onnx", imgsz=(imgsz, imgsz), log=None, **kw)
            paths[name], ops[name], macs[name] = r.path, r.ops, r.macs
        if timm_path is not None:
            paths[f"timm {model_name}"] = timm_path
            ops[f"timm {model_name}"] = count_ops(onnx.load(str(timm_path)))
        times = time_sessions(paths, imgsz, threads, rounds)
        ref = times.get(f"timm {model_name}")
        print(f"\n### ONNX graph ablation ({model_name}, {imgsz} px, ONNX Runtime ORT_ENABLE_ALL)\n")
        print(f"| graph | MACs (M) | Conv | Concat | Slice | wall p50 ms ({threads} thr) | CPU ms (1 thr) | "
              "vs timm (CPU) |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for name, t in times.items():
            vs = f"{ref['cpu1_ms'] / t['cpu1_ms']:.2f}x" if ref else "-"
            o = ops[name]
            mac = f"{macs[name] / 1e6:.0f}" if name in macs else "-"
            print(f"| {name} | {mac} | {o.get('Conv', 0)} | {o.get('Concat', 0)} | "
                  f"{o.get('Slice', 0)} | {t['wall_ms']:.2f} | {t['cpu1_ms']:.2f} | {vs} |")

        plain = export(net, out=tmp / "plain.onnx", imgsz=(imgsz, imgsz), align=0, log=None, optimize=INT8_PASSES)
        aligned = paths["aligned + all rewrites"]
        images, _ = sample_images(net, (imgsz, imgsz), None, n=16)
        calib = [images[i:i + 1].numpy() for i in range(len(images))]
        int8 = {
            "QDQ u8s8 per-channel (default)": (plain.path, Int8Options()),
            "QDQ u8s8 per-tensor": (plain.path, Int8Options(per_channel=False)),
            "QDQ s8s8 per-channel": (plain.path, Int8Options(activation_int8=True)),
            "depthwise convs kept FP32": (plain.path, Int8Options(skip_depthwise=True)),
            "first conv + classifier kept FP32": (plain.path, Int8Options(skip_ends=True)),
            "only Conv quantised": (plain.path, Int8Options(op_types=("Conv",))),
            "only Conv quantised, depthwise FP32": (plain.path, Int8Options(op_types=("Conv",), skip_depthwise=True)),
            "QOperator u8s8 per-channel": (plain.path, Int8Options(qoperator=True)),
            "from the aligned + split graph": (aligned, Int8Options()),
        }
        qpaths = {"fp32 ghostkit export default": paths["ghostkit export default"],
                  "fp32 layout-neutral (INT8 source)": plain.path}
        for i, (name, (src, opts)) in enumerate(int8.items()):
            qpaths[name] = quantize_onnx(src, tmp / f"q{i}.onnx", calib, opts)
        times = time_sessions(qpaths, imgsz, threads, rounds)
        base = times["fp32 ghostkit export default"]
        print(f"\n### INT8 ablation ({model_name}, {imgsz} px; calibration: 16 synthetic images, speed only)\n")
        print(f"| model | wall p50 ms ({threads} thr) | CPU ms (1 thr) | speed-up vs fp32 default (CPU) |")
        print("| --- | ---: | ---: | ---: |")
        for name, t in times.items():
            print(f"| {name} | {t['wall_ms']:.2f} | {t['cpu1_ms']:.2f} | {base['cpu1_ms'] / t['cpu1_ms']:.2f}x |")

        # OpenVINO: FP32 as `ghostkit export --format openvino` writes it; INT8 as `--int8` does (from the
        # INT8 graph, `plain`), and from the FP32 export's own graph
        ov_src = export(net, out=tmp / "ov_src.onnx", imgsz=(imgsz, imgsz), align=0, optimize=False, log=None).path
        ov_paths = {"openvino fp32": tmp / "ov_fp32.xml"}
        _write_openvino(onnx.load(str(ov_src)), ov_paths["openvino fp32"], {})
        q = quantize_onnx(ov_src, tmp / "ovq_src.onnx", calib, Int8Options())
        ov_paths["openvino int8 from the FP32 export's graph (no rewrites)"] = tmp / "ovq_src.xml"
        _write_openvino(onnx.load(str(q)), tmp / "ovq_src.xml", {})
        ov_int8 = {
            f"openvino int8 from QDQ ({int8_plan().weight_bits}-bit weights, {int8_plan().cpu})": Int8Options(),
            "openvino int8, 8-bit weights": Int8Options(reduce_range=False),
            "openvino int8, per-tensor": Int8Options(per_channel=False),
            "openvino int8, only Conv": Int8Options(op_types=("Conv",)),
        }
        for i, (name, opts) in enumerate(ov_int8.items()):
            q = quantize_onnx(plain.path, tmp / f"ovq{i}.onnx", calib, opts)
            ov_paths[name] = tmp / f"ovq{i}.xml"
            _write_openvino(onnx.load(str(q)), ov_paths[name], {})
        times = time_sessions(ov_paths, imgsz, threads, rounds)
        base = times["openvino fp32"]
        print(f"\n### OpenVINO INT8 ({model_name}, {imgsz} px; same calibration; OpenVINO sessions only)\n")
        print(f"| model | wall p50 ms ({threads} thr) | wall ms (1 thr) | speed-up vs fp32 ({threads} thr) | "
              "speed-up (1 thr) |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for name, t in times.items():
            print(f"| {name} | {t['wall_ms']:.2f} | {t['cpu1_ms']:.2f} | {base['wall_ms'] / t['wall_ms']:.2f}x | "
                  f"{base['cpu1_ms'] / t['cpu1_ms']:.2f}x |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ghostnet_100")
    parser.add_argument("--imgsz", type=int, default=224)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--ablation", action="store_true", help="also time ONNX graph and INT8 variants")
    parser.add_argument("--ablation-rounds", type=int, default=25)
    args = parser.parse_args()
    torch.manual_seed(0)
    result = benchmark(model=args.model, imgsz=args.imgsz, batch=args.batch, threads=args.threads, runs=args.runs)
    print(f"\n### {args.model}, {args.imgsz} px, batch {args.batch}, {result['threads']} threads, {result['cpu']}\n")
    print(markdown_table(result))
    print(f"\npeak mem: {result['memory_metric']}; CPU (ms): median process CPU time per inference\n")
    print("| graph | exported nodes | nodes ONNX Runtime runs |")
    print("| --- | --- | --- |")
    for name, counts in result["nodes"].items():
        fmt = [", ".join(f"{k} {v}" for k, v in counts[stage].items()) for stage in ("exported", "ort")]
        print(f"| {name} | {fmt[0]} | {fmt[1]} |")
    print()
    for key, value in result["speedups"].items():
        print(f"- {key}: {value if isinstance(value, str) else f'{value:.2f}x'}")
    ref = next((k for k in result["speedups"] if k.startswith("vs timm") and k.endswith("onnxruntime")), None)
    ok = True
    if ref is not None:
        ratio = result["speedups"][ref]
        ok = ratio >= BAR
        same = result["speedups"].get("onnxruntime fp32 vs timm onnxruntime")
        print(f"\nquality bar (fastest ghostkit fp32 >= {BAR}x timm in ONNX Runtime): {ratio:.2f}x "
              f"({result['speedups']['fastest_ghostkit_fp32']}) -> {'PASS' if ok else 'FAIL'}; same runtime "
              f"(ONNX Runtime, graph only): {same:.2f}x")
    if args.ablation:
        ablation(args.model, args.imgsz, result["threads"], args.ablation_rounds)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
