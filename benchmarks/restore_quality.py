"""Restoration quality bars and CPU throughput; prints markdown tables.

1. x2 super-resolution and sigma-25 denoising, each trained with ``ghostkit.train(task="restore", data="photos", ...)``
   at the default options (30 epochs) and validated on the bottom 25% of scikit-learn's two sample photos, which
   training never sees. Bars: SR PSNR >= bicubic + 1.0 dB; denoising PSNR >= noisy input + 8 dB. PSNR is on the Y
   channel (the metrics.json ``psnr``); the RGB PSNR is shown too.
2. Throughput of the x2 model on a 256 x 256 input (512 x 512 output) against bicubic interpolation alone, with the
   model's parameters and MACs.

    .venv/bin/python benchmarks/restore_quality.py                 # both trainings (2-4 min each on 2 cores)
    .venv/bin/python benchmarks/restore_quality.py --skip-train    # throughput only
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import ghostkit
from ghostkit.models.summary import count_macs, count_params
from ghostkit.tasks.restore import RestoreHead

BARS = {"sr_x2": ("x2 super-resolution", dict(scale=2, noise="0"), 1.0, "bicubic"),
        "denoise_25": ("denoising sigma 25", dict(scale=1, noise="25"), 8.0, "noisy input")}


def _cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run_quality(out: Path, epochs: int | None, workers: int | None) -> list[str]:
    rows = ["| task | PSNR Y (model) | PSNR Y (baseline) | gain | bar | pass | PSNR RGB (model) | SSIM (model / "
            "baseline) | train wall | train CPU |", "|" + " --- |" * 10]
    for key, (title, options, bar, baseline) in BARS.items():
        kw = dict(task="restore", data="photos", out=str(out / key), exist_ok=True, **options)
        if epochs is not None:
            kw["epochs"] = epochs
        if workers is not None:
            kw["workers"] = workers
        wall, cpu = time.perf_counter(), _cpu_seconds()
        m = ghostkit.train(**kw)
        wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
        gain = m["psnr"] - m["psnr_baseline"]
        rows.append(f"| {title} | {m['psnr']:.2f} | {m['psnr_baseline']:.2f} ({baseline}) | {gain:+.2f} | "
                    f"+{bar:.1f} | {'yes' if gain >= bar else 'NO'} | {m['psnr_rgb']:.2f} | "
                    f"{m['ssim']:.4f} / {m['ssim_baseline']:.4f} | {wall / 60:.1f} min | {cpu / 60:.1f} min |")
        (out / key / "benchmark.json").write_text(json.dumps({"metrics": m, "wall_s": wall, "cpu_s": cpu}))
    return rows


@torch.inference_mode()
def run_speed(size: int = 256, repeats: int = 10) -> list[str]:
    head = RestoreHead(scale=2).eval()
    x = torch.rand(1, 3, size, size)

    def bench(fn) -> float:
        fn()
        t = time.perf_counter()
        for _ in range(repeats):
            fn()
        return (time.perf_counter() - t) / repeats

    model_s = bench(lambda: head(None, x))
    bicubic_s = bench(lambda: F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False))
    macs = count_macs(_Wrapped(head), (size, size))
    return ["| method | input → output | params | MACs | ms / image | images / s |", "|" + " --- |" * 6,
            f"| ghost restore x2 (width 32, depth 6) | {size}² → {2 * size}² | {count_params(head) / 1e3:.1f} K | "
            f"{macs / 1e9:.2f} G | {model_s * 1e3:.1f} | {1 / model_s:.1f} |",
            f"| bicubic (F.interpolate) | {size}² → {2 * size}² | 0 | - | {bicubic_s * 1e3:.1f} | "
            f"{1 / bicubic_s:.1f} |"]


class _Wrapped(torch.nn.Module):
    """The head as ``model(x)`` for the MAC counter."""

    def __init__(self, head: RestoreHead) -> None:
        super().__init__()
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(None, x)["image"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="run directories (default: a temporary folder)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: TrainConfig's, 30)")
    parser.add_argument("--workers", type=int, default=None, help="data loader workers (default: TrainConfig's)")
    parser.add_argument("--skip-train", action="store_true", help="throughput only")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if not args.skip_train:
        with tempfile.TemporaryDirectory() as tmp:
            print("\n".join(run_quality(args.out or Path(tmp), args.epochs, args.workers)))
    print()
    print("\n".join(run_speed()))


if __name__ == "__main__":
    main()
