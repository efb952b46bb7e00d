"""GhostNet-SSDLite-320 vs torchvision's SSDLite320-MobileNetV3-Large: CPU latency, parameters and MACs; optionally
the detection heads trained on built-in shapes, and mAP with and without test-time augmentation.

    .venv/bin/python benchmarks/detect_speed.py                         # latency table (batch 1, 320 x 320, eval)
    .venv/bin/python benchmarks/detect_speed.py --compare --epochs 10   # + each head trained on shapes, same epochs
    .venv/bin/python benchmarks/detect_speed.py --weights runs/x/best.ckpt  # + mAP with / without TTA on shapes val

Both SSDLite models are untrained (weights do not change the network's cost), 91 class outputs (COCO's 90 + background
in torchvision's convention), in eval mode under ``torch.inference_mode``. "Network" times backbone + head on a
normalised 1 x 3 x 320 x 320 tensor (default boxes cached on both sides); box decoding and NMS depend on the scores,
which untrained weights make meaningless, so they are left out. Runs of the models are interleaved and the median
is reported, so that load from other processes on a shared machine hits all alike. MACs come from
``torch.utils.flop_counter`` (FLOPs / 2).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models.detection import ssdlite320_mobilenet_v3_large

from ghostkit.models import reparameterize
from ghostkit.tasks.detect import DETECT_ARCHS, detect_head_config
from ghostkit.tasks.model import build_task_model


def ghost_detector(model: str, arch: str, imgsz: int, num_classes: int) -> torch.nn.Module:
    config = {"backbone": {"name": model, "kwargs": {}}, "class_names": {}, "imgsz": [imgsz, imgsz],
              "heads": {"detect": {"num_classes": num_classes, "arch": arch, **detect_head_config(arch, imgsz)}}}
    return build_task_model(config).eval()


def macs(fn: Callable, x: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        fn(x)
    return counter.get_total_flops() // 2


def latency(fns: dict[str, Callable], x: torch.Tensor, runs: int, warmup: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    with torch.inference_mode():
        for i in range(warmup + runs):
            for name in names[i % len(names):] + names[:i % len(names)]:  # the order rotates from run to run
                t = time.perf_counter()
                fns[name](x)
                if i >= warmup:
                    times[name].append(time.perf_counter() - t)
    return {name: statistics.median(t) * 1000 for name, t in times.items()}


def speed_table(args: argparse.Namespace) -> None:
    tv = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None).eval()
    ours = ghost_detector(args.model, "ssdlite", args.imgsz, 90)
    deploy = reparameterize(ours)
    ref = "torchvision ssdlite320_mobilenet_v3_large"
    fns = {
        ref: lambda x: tv.head(list(tv.backbone(x).values())),
        f"{args.model} SSDLite": ours,
        f"{args.model} SSDLite, deploy (BN folded)": deploy,
    }
    params = {ref: tv, f"{args.model} SSDLite": ours, f"{args.model} SSDLite, deploy (BN folded)": deploy}
    x = torch.randn(1, 3, args.imgsz, args.imgsz)
    ms = latency(fns, x, args.runs, args.warmup)
    print(f"CPU, {torch.get_num_threads()} threads, batch 1, {args.imgsz} x {args.imgsz}, eval, inference_mode, "
          f"median of {args.runs} interleaved runs (order rotating); network = backbone + head (no decoding / NMS)\n")
    print("| model | params (M) | MACs (G) | latency (ms) | latency vs torchvision |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, fn in fns.items():
        n = sum(p.numel() for p in params[name].parameters()) / 1e6
        print(f"| {name} | {n:.2f} | {macs(fn, x) / 1e9:.3f} | {ms[name]:.1f} | {ms[name] / ms[ref]:.2f} |")


def compare_heads(args: argparse.Namespace) -> None:
    import ghostkit

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch in DETECT_ARCHS:
            t = time.perf_counter()
            m = ghostkit.train(task="detect", data="shapes", head=arch, epochs=args.epochs, workers=args.workers,
                               out=f"{tmp}/{arch}")
            wall = time.perf_counter() - t
            net = ghost_detector(args.model, arch, 64, 3)
            x = torch.randn(1, 3, 64, 64)
            ms = latency({arch: net}, x, args.runs, args.warmup)[arch]
            params = sum(p.numel() for p in net.parameters()) / 1e6
            rows.append(f"| {arch} | {m['map50']:.4f} | {m['map']:.4f} | {wall / 60:.1f} | {params:.2f} | "
                        f"{macs(net, x) / 1e6:.1f} | {ms:.1f} |")
    print(f"\nbuilt-in shapes (1250 new training images per epoch, 200 val, 64 px), {args.epochs} epochs, other "
          "options at their defaults\n")
    print("| head | map50 | map | train wall (min) | params (M) | MACs at 64 px (M) | latency at 64 px (ms) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    print("\n".join(rows))


def tta_table(args: argparse.Namespace) -> None:
    from torch.utils.data import DataLoader
    from torchmetrics.detection import MeanAveragePrecision

    from ghostkit.data.detect import build_detect_data, collate_detect
    from ghostkit.engine.detect import EVAL_CONF
    from ghostkit.tasks.detect_results import tta_predict
    from ghostkit.tasks.model import load_task_model

    model = load_task_model(args.weights)
    head = model.heads["detect"]
    data = build_detect_data(args.data, imgsz=model.config["imgsz"][0])
    loader = DataLoader(data.val, batch_size=32, collate_fn=collate_detect)
    results = {}
    for name, fn in {
        "plain": lambda x: head.postprocess(model(x)["detect"], None, conf=EVAL_CONF),
        "TTA (flip)": lambda x: tta_predict(model, x, scales=(1.0,), conf=EVAL_CONF),
        "TTA (flip x scales 1, 0.83, 1.2)": lambda x: tta_predict(model, x, conf=EVAL_CONF),
    }.items():
        metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", backend="pycocotools")
        t = time.perf_counter()
        with torch.inference_mode():
            for images, targets in loader:
                metric.update(fn(images), [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets["detect"]])
        wall = time.perf_counter() - t
        r = metric.compute()
        results[name] = (float(r["map_50"]), float(r["map"]), wall)
    print(f"\n{args.weights} on {args.data} val ({len(data.val)} images)\n")
    print("| inference | map50 | map | wall (s) |")
    print("| --- | ---: | ---: | ---: |")
    for name, (m50, m, wall) in results.items():
        print(f"| {name} | {m50:.4f} | {m:.4f} | {wall:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ghostnet_100")
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--compare", action="store_true", help="train every head on built-in shapes")
    parser.add_argument("--epochs", type=int, default=30, help="--compare: training epochs")
    parser.add_argument("--workers", type=int, default=2, help="--compare: data loader workers")
    parser.add_argument("--weights", help="a detection checkpoint: mAP with and without TTA")
    parser.add_argument("--data", default="shapes", help="--weights: the validation data")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    speed_table(args)
    if args.compare:
        compare_heads(args)
    if args.weights:
        tta_table(args)


if __name__ == "__main__":
    main()
