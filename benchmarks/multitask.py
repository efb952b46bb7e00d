"""Multi-task quality bars on built-in shapes: one joint classify + detect + segment model vs three single-task models.

1. Latency (CPU, batch 1, eval, 64 x 64 as trained): the joint model against the sum of the three single-task
   models (same backbone and heads; each single model runs the backbone once more). Bar: joint <= 0.6 x the sum.
   Models are untrained (weights do not change the cost); runs are interleaved and the median reported.
2. Quality (``--train``): the joint model and each single-task model trained for the same epochs on the same images
   with the same transforms (the multi-task data pipeline with one task), compared on the validation set: classify
   top1, detect mAP (0.50:0.95) and mAP50, segment mIoU. Bar: every task within 2 points of its single model.

    .venv/bin/python benchmarks/multitask.py                     # latency
    .venv/bin/python benchmarks/multitask.py --train --epochs 10 # + the four trainings
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ghostkit.engine.config import TrainConfig
from ghostkit.engine.multitask import MultiTaskSpec
from ghostkit.engine.run import train
from ghostkit.tasks.model import build_task_model

TASKS = ["classify", "detect", "segment"]
PRIMARY = {"classify": ["top1"], "detect": ["map", "map50"], "segment": ["miou"]}


def build(model: str, tasks: list[str], imgsz: int) -> torch.nn.Module:
    spec = MultiTaskSpec(",".join(tasks), min_tasks=1)
    cfg = TrainConfig(task=",".join(tasks), data="shapes", model=model, imgsz=imgsz)
    data = spec.build_data(cfg)
    config = {"backbone": {"name": model, "kwargs": {}}, "heads": spec.head_configs(cfg, data),
              "class_names": data.class_names, "imgsz": [imgsz, imgsz]}
    return build_task_model(config).eval()


def median_ms(fns: dict[str, Callable[[], object]], rounds: int, calls: int, warmup: int) -> dict[str, float]:
    """Median milliseconds per call of each function, timed interleaved: ``rounds`` rounds in which every function
    runs ``calls`` times in turn, after ``warmup`` calls each."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            times[name].append((time.perf_counter() - t0) / calls)
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


@torch.inference_mode()
def latency(model: str, imgsz: int, rounds: int, calls: int) -> list[str]:
    joint = build(model, TASKS, imgsz)
    singles = {t: build(model, [t], imgsz) for t in TASKS}
    x = torch.randn(1, 3, imgsz, imgsz)
    fns = {"joint": lambda: joint(x), **{t: (lambda m=m: m(x)) for t, m in singles.items()}}
    med = median_ms(fns, rounds, calls, warmup=5)
    total = sum(med[t] for t in TASKS)
    rows = ["| model | ms / image (batch 1) |", "|---|---:|"]
    rows += [f"| single {t} | {med[t]:.2f} |" for t in TASKS]
    rows += [f"| sum of the three | {total:.2f} |", f"| joint classify+detect+segment | {med['joint']:.2f} |",
             f"| **joint / sum** | **{med['joint'] / total:.2f}** (bar <= 0.60) |"]
    return rows


def quality(model: str, epochs: int, batch: int | None, imgsz: int, workers: int) -> list[str]:
    results, seconds = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for tasks in [TASKS, *[[t] for t in TASKS]]:
            name = "+".join(tasks)
            cfg = TrainConfig(task=",".join(tasks), data="shapes", model=model, epochs=epochs, batch=batch,
                              imgsz=imgsz, workers=workers, out=str(Path(tmp) / name))
            t0 = time.perf_counter()
            results[name] = train(cfg, spec=MultiTaskSpec(cfg.task, min_tasks=1))
            seconds[name] = time.perf_counter() - t0
            print(f"trained {name} in {seconds[name]:.0f} s", flush=True)
    joint = results["+".join(TASKS)]
    rows = ["| task | metric | single-task | joint | joint - single (points) |", "|---|---|---:|---:|---:|"]
    for t in TASKS:
        for key in PRIMARY[t]:
            single, multi = results[t][key], joint[t][key]
            rows.append(f"| {t} | {key} | {single:.4f} | {multi:.4f} | {100 * (multi - single):+.1f} |")
    rows.append("")
    rows.append("training wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="ghostnet_100")
    parser.add_argument("--imgsz", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--train", action="store_true", help="also train the four models and compare metrics")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch", type=int, default=None, help="default: the multi-task default (16)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    print(f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__}, {args.model}, {args.imgsz} px")
    print("\n".join(latency(args.model, args.imgsz, args.rounds, args.calls)))
    if args.train:
        print()
        print("\n".join(quality(args.model, args.epochs, args.batch, args.imgsz, args.workers)))


if __name__ == "__main__":
    main()
