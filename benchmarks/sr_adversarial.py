"""The PSNR / sharpness trade-off of adversarial super-resolution against the plain restore model, on built-in photos.

    OMP_NUM_THREADS=1 python benchmarks/sr_adversarial.py [--scale 4] [--epochs 3] [--out runs/bench_sr_adv]

Trains ``ghostkit train --task restore --data photos --scale S`` twice with the same settings, once plain (L1) and
once with ``--adversarial`` (discriminator and perceptual network: ``--model``, random perceptual weights unless
``--pretrained`` is given), one after the other, and prints one table row per run: PSNR-Y, SSIM, ``sharpness``
(output / HR mean gradient magnitude; 1 = as sharp as the truth) and the training's CPU time; the bicubic baseline
is the first row. Writes ``sr_adversarial.json`` into ``--out`` with the CPU, torch version and date.
"""

from __future__ import annotations

import argparse
import datetime
import json
import resource
import time
from pathlib import Path

import torch

import ghostkit


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--model", default="ghostnet_050", help="discriminator and perceptual network")
    parser.add_argument("--pretrained", default=None, help="perceptual network weights (imagenet or a file)")
    parser.add_argument("--out", default="runs/bench_sr_adv")
    args = parser.parse_args()
    out = Path(args.out)
    rows = {}
    for name, extra in (("plain", {}), ("adversarial", {"adversarial": True, "pretrained": args.pretrained})):
        wall, cpu = time.perf_counter(), _cpu_seconds()
        metrics = ghostkit.train(task="restore", data="photos", scale=args.scale, epochs=args.epochs,
                                 batch=args.batch, model=args.model, workers=0, seed=0, out=str(out / name),
                                 exist_ok=True, **extra)
        rows[name] = {**metrics, "train_wall_s": time.perf_counter() - wall, "train_cpu_s": _cpu_seconds() - cpu}
    base = rows["plain"]
    result = {"rows": rows, "bicubic": {"psnr": base["psnr_baseline"], "ssim": base["ssim_baseline"],
                                        "sharpness": base["sharpness_baseline"]},
              "settings": vars(args), "threads": torch.get_num_threads(), "torch": torch.__version__,
              "date": datetime.date.today().isoformat()}
    out.mkdir(parents=True, exist_ok=True)
    (out / "sr_adversarial.json").write_text(json.dumps(result, indent=2))
    print(f"photos x{args.scale}, {args.epochs} epochs, batch {args.batch}, {torch.get_num_threads()} thread(s)")
    print("| model | PSNR-Y (dB) | SSIM | sharpness | training CPU s |\n| --- | --- | --- | --- | --- |")
    b = result["bicubic"]
    print(f"| bicubic | {b['psnr']:.2f} | {b['ssim']:.4f} | {b['sharpness']:.3f} | |")
    for name, r in rows.items():
        print(f"| {name} | {r['psnr']:.2f} | {r['ssim']:.4f} | {r['sharpness']:.3f} | {r['train_cpu_s']:.0f} |")


if __name__ == "__main__":
    main()
