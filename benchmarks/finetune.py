"""Fine-tuning from ImageNet weights against training from scratch, on a classification data set given as argument.

Two runs of ``ghostkit train --task classify`` per seed, identical but for ``--pretrained``: one starts from the
ImageNet weights timm publishes on the Hugging Face Hub (``--pretrained imagenet``), one from a random
initialisation; same data, epochs, image size, batch, learning rate and seed. The table gives the final validation
top1 / top5 of each run and the gain of fine-tuning (points of top1), averaged over the seeds.

Real numbers need the real weights: run it where the Hub can be reached (the first run downloads
``timm/<model>.in1k`` into the Hugging Face cache), or with the files already in that cache and ``HF_HUB_OFFLINE=1``.
Any ImageFolder works (``train/<class>/*``, ``val/<class>/*``); a small real data set shows the effect best::

    .venv/bin/python benchmarks/finetune.py path/to/data --model ghostnet_100 --epochs 10 --seeds 0 1 2

The weights are looked up before any training: when they are neither in the cache nor reachable, or the data set or
an option is wrong, the script prints one line saying so (the same messages as ``ghostkit train``) and exits with 2.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import torch

import ghostkit
from ghostkit.deploy.benchmark import _cpu_name
from ghostkit.errors import GhostkitError
from ghostkit.models.hub import HUB_WEIGHTS, hub_weights

RUNS = {"imagenet": "imagenet", "scratch": None}  # run name → --pretrained


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", help="ImageFolder data set (train/<class>/*, val/<class>/*)")
    p.add_argument("--model", default="ghostnet_100", choices=list(HUB_WEIGHTS), help="a variant with hub weights")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--imgsz", type=int, default=224)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: ghostkit's)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--out", default="runs/finetune", help="folder for the runs and finetune.json")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> list[dict]:
    """Both runs for every seed, interleaved → ``[{"run", "seed", "top1", "top5", "minutes"}, ...]``."""
    rows = []
    for seed in args.seeds:
        for name, pretrained in RUNS.items():
            t0 = time.perf_counter()
            metrics = ghostkit.train(task="classify", data=args.data, model=args.model, epochs=args.epochs,
                                     imgsz=args.imgsz, batch=args.batch, lr=args.lr, workers=args.workers, seed=seed,
                                     pretrained=pretrained, out=str(Path(args.out) / f"{name}_seed{seed}"),
                                     exist_ok=True)
            rows.append({"run": name, "seed": seed, "top1": metrics["top1"], "top5": metrics["top5"],
                         "minutes": (time.perf_counter() - t0) / 60})
    return rows


def table(rows: list[dict], args: argparse.Namespace) -> str:
    """Markdown: one line per run, then the mean top1 gain of fine-tuning over scratch."""
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else _cpu_name()
    lines = [f"{args.model} on {args.data}: {args.epochs} epochs, {args.imgsz} px, batch {args.batch}; "
             f"{device}, torch {torch.__version__}, {date.today()}",
             "", "| run | seed | top1 | top5 | minutes |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['run']} | {r['seed']} | {r['top1']:.4f} | {r['top5']:.4f} | {r['minutes']:.1f} |" for r in rows]
    gain = statistics.mean(a["top1"] - b["top1"] for a, b in zip(rows[::2], rows[1::2]))
    lines += ["", f"fine-tuning gain: {100 * gain:+.2f} points top1 (mean over seeds {args.seeds})"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    try:
        hub_weights(args.model)  # fetched, or found in the cache, before the first run: no half-done comparison
        rows = run(args)
    except GhostkitError as e:
        print(f"finetune.py: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    text = table(rows, args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "finetune.json").write_text(json.dumps({"args": vars(args), "runs": rows}, indent=2))
    print(text)
    return text


if __name__ == "__main__":
    main()
