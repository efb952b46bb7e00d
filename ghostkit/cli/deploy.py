"""``ghostkit export`` and ``ghostkit benchmark``. onnx, onnxruntime, openvino and timm load only when a command
runs. An INT8 export's accuracy check gets the task's metrics through ``ghostkit.api.export``."""

from __future__ import annotations

import json

import typer

from ..errors import GhostkitError

__all__ = ["export", "benchmark"]


def export(
    weights: str = typer.Option(..., help="checkpoint to export (best.ckpt / last.ckpt)"),
    format: str = typer.Option("onnx", help="onnx, openvino (.xml + .bin) or torchscript"),
    imgsz: tuple[int, int] = typer.Option(None, help="input height and width (default: the training size)"),
    batch: int = typer.Option(1, help="fixed batch size (a runtime feeds bigger batches in chunks)"),
    dynamic: bool = typer.Option(False, "--dynamic", help="free batch, height and width"),
    int8: bool = typer.Option(False, "--int8", help="static INT8 quantisation (ONNX or OpenVINO; needs --data)"),
    data: str = typer.Option(None, help="data for sample images, INT8 calibration and the INT8 accuracy check "
                                        "(default: built-in synthetic shapes as sample images)"),
    out: str = typer.Option(None, help="output file (default: beside the weights, as .onnx, .int8.onnx, .xml, "
                                       ".int8.xml or .torchscript.pt)"),
    opset: int = typer.Option(17, help="ONNX opset"),
    align: str = typer.Option("auto", help="pad channels to ONNX Runtime's CPU block: auto (this CPU's, where it "
                                           "pays), 0 (off), 8 or 16"),
    optimize: bool = typer.Option(True, "--optimize/--no-optimize", help="exact graph rewrites for ONNX Runtime"),
    int8_fallback: bool = typer.Option(True, "--int8-fallback/--no-int8-fallback",
                                       help="--int8: write the FP32 model where INT8 is not faster on this CPU"),
) -> None:
    """Export a checkpoint to ONNX (optionally INT8) or TorchScript, checked against PyTorch on sample images."""
    from ..api import export as run_export

    size = tuple(imgsz) if imgsz else None
    result = run_export(weights, format=format.lower(), imgsz=size, batch=batch, dynamic=dynamic, int8=int8, data=data,
                        out=out, opset=opset, align=align, optimize=optimize,
                        int8_fallback=int8_fallback)
    if result.ops:
        print("nodes: " + ", ".join(f"{k} {v}" for k, v in result.ops.items()))


def benchmark(
    weights: str = typer.Option(None, help="checkpoint to benchmark"),
    model: str = typer.Option(None, help="or a registered backbone (untrained, ImageNet classifier)"),
    imgsz: int = typer.Option(None, help="input size (default: 224, or the checkpoint's)"),
    batch: int = typer.Option(1, help="batch size"),
    threads: int = typer.Option(None, help="CPU threads per runtime (default: all cores)"),
    runs: int = typer.Option(50, help="timed runs per runtime (interleaved)"),
    warmup: int = typer.Option(5, help="warm-up runs per runtime"),
    int8: bool = typer.Option(True, "--int8/--no-int8", help="include INT8 in ONNX Runtime and OpenVINO (synthetic "
                                                                  "calibration)"),
    reference: bool = typer.Option(True, "--reference/--no-reference", help="include timm's model of the same name"),
    openvino: bool = typer.Option(True, "--openvino/--no-openvino", help="include OpenVINO when installed"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object instead of tables"),
    sweep: bool = typer.Option(False, "--sweep", help="FP32 vs INT8 per runtime at batch 1 and --sweep-batch, with "
                                                      "1 thread and --threads (where INT8 pays)"),
    sweep_batch: int = typer.Option(32, help="--sweep: the throughput batch size"),
) -> None:
    """Params, MACs, latency p50/p90, throughput and peak memory of every runtime of a model, with timm's model as
    the reference (CPU); or, with --sweep, FP32 vs INT8 over batch sizes and thread counts."""
    from ..deploy.benchmark import benchmark as run_benchmark

    if threads is not None and threads <= 0:
        raise GhostkitError(f"--threads must be positive, got {threads}")
    if sweep:
        _sweep(weights, model, imgsz, sweep_batch, threads, runs, warmup, openvino, as_json)
        return
    result = run_benchmark(weights=weights, model=model, imgsz=imgsz, batch=batch, threads=threads, runs=runs,
                           warmup=warmup, int8=int8, reference=reference, openvino=openvino,
                           log=None if as_json else print)
    if as_json:
        print(json.dumps(result))
        return
    _print_result(result)


def _sweep(weights, model, imgsz, batch, threads, runs, warmup, openvino, as_json) -> None:
    import os

    from ..deploy.sweep import int8_sweep, sweep_markdown

    if batch <= 0:
        raise GhostkitError(f"--sweep-batch must be positive, got {batch}")
    top = threads or os.cpu_count() or 1
    result = int8_sweep(weights=weights, model=model, imgsz=imgsz, batches=tuple(sorted({1, batch})),
                        threads=tuple(sorted({1, top})), runs=runs, warmup=warmup, openvino=openvino,
                        log=None if as_json else print)
    if as_json:
        print(json.dumps(result))
        return
    print(f"{result['model']} at {result['imgsz'][0]} x {result['imgsz'][1]}, {result['cpu']} ({result['features']}; "
          f"INT8 with {result['int8_plan']['weight_bits']}-bit weights); batch 1: p50 latency, larger: images/s")
    print(sweep_markdown(result))


def _print_result(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    title = (f"{result['model']} {'/'.join(result['tasks'])} at {result['imgsz'][0]} x {result['imgsz'][1]}, batch "
             f"{result['batch']}, {result['threads']} threads, {result['cpu']}")
    table = Table(title=title)
    for col in ("runtime", "params (M)", "MACs (M)", "p50 (ms)", "p90 (ms)", "img/s", "CPU (ms)", "peak mem (MB)"):
        table.add_column(col, justify="left" if col == "runtime" else "right")
    for r in result["runtimes"]:
        mem = f"{r['peak_mb']:.0f}" if r["peak_mb"] is not None else "n/a"
        table.add_row(r["runtime"], f"{r['params'] / 1e6:.2f}", f"{r['macs'] / 1e6:.0f}", f"{r['p50_ms']:.2f}",
                      f"{r['p90_ms']:.2f}", f"{r['throughput']:.1f}", f"{r['cpu_ms']:.2f}", mem)
    console.print(table)
    console.print(f"peak mem: {result['memory_metric']}")
    for name, counts in result["nodes"].items():
        for stage, ops in counts.items():
            console.print(f"{name} nodes ({stage}): " + ", ".join(f"{k} {v}" for k, v in ops.items()))
    for key, value in result["speedups"].items():
        console.print(f"{key}: {value if isinstance(value, str) else f'{value:.2f}x'}")
