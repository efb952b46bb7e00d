"""GhostNet LR-ASPP vs torchvision's LR-ASPP MobileNetV3-Large: CPU latency, parameters and MACs; optionally the
default segmentation training on built-in shapes.

    .venv/bin/python benchmarks/segment_speed.py                 # latency table (batch 1, 512 x 512, eval)
    .venv/bin/python benchmarks/segment_speed.py --train         # + `ghostkit train --task segment --data shapes`

Both models are untrained (weights do not change the cost), 21 classes (Pascal VOC), in eval mode under
``torch.inference_mode``. Runs of the models are interleaved and the median is reported, so that load from other
processes on a shared machine hits both alike. MACs come from ``torch.utils.flop_counter`` (FLOPs / 2).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models.segmentation import lraspp_mobilenet_v3_large

from ghostkit.tasks.model import build_task_model


def ghost_lraspp(model: str, output_stride: int, num_classes: int) -> torch.nn.Module:
    config = {"backbone": {"name": model, "kwargs": {"output_stride": output_stride}},
              "heads": {"segment": {"num_classes": num_classes, "head": "lraspp", "output_stride": output_stride}},
              "class_names": {}, "imgsz": [512, 512]}
    return build_task_model(config)


def macs(model: torch.nn.Module, x: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(x)
    return counter.get_total_flops() // 2


def latency(models: dict[str, torch.nn.Module], x: torch.Tensor, runs: int, warmup: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for i in range(warmup + runs):
            for name, model in models.items():
                t = time.perf_counter()
                model(x)
                if i >= warmup:
                    times[name].append(time.perf_counter() - t)
    return {name: statistics.median(t) * 1000 for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ghostnet_100")
    parser.add_argument("--imgsz", type=int, default=512)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--train", action="store_true", help="also time the default training on built-in shapes")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    ref = "torchvision lraspp_mobilenet_v3_large"
    models = {
        ref: lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21),
        f"{args.model} LR-ASPP, output stride 32": ghost_lraspp(args.model, 32, 21),
        f"{args.model} LR-ASPP, output stride 16": ghost_lraspp(args.model, 16, 21),
    }
    for m in models.values():
        m.eval()
    x = torch.randn(1, 3, args.imgsz, args.imgsz)
    ms = latency(models, x, args.runs, args.warmup)
    print(f"CPU, {torch.get_num_threads()} threads, batch 1, {args.imgsz} x {args.imgsz}, eval, inference_mode, "
          f"median of {args.runs}\n")
    print("| model | params (M) | MACs (G) | latency (ms) | latency vs torchvision |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, m in models.items():
        params = sum(p.numel() for p in m.parameters()) / 1e6
        # the auxiliary head (off here) is the only part not run in eval; every parameter counted is used
        print(f"| {name} | {params:.2f} | {macs(m, x) / 1e9:.2f} | {ms[name]:.1f} | {ms[name] / ms[ref]:.2f} |")
    if args.train:
        import ghostkit

        with tempfile.TemporaryDirectory() as tmp:
            t, c = time.perf_counter(), time.process_time()
            metrics = ghostkit.train(task="segment", data="shapes", out=f"{tmp}/run")
            wall, cpu = time.perf_counter() - t, time.process_time() - c
        print("\n| training (`ghostkit train --task segment --data shapes`, defaults) | miou | pixel_acc | wall (min) "
              "| CPU time of the main process (min) |")
        print("| --- | ---: | ---: | ---: | ---: |")
        print(f"| {args.model} LR-ASPP, output stride 32 | {metrics['miou']:.4f} | {metrics['pixel_acc']:.4f} | "
              f"{wall / 60:.1f} | {cpu / 60:.1f} |")


if __name__ == "__main__":
    main()
