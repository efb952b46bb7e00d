"""Quality bars of the generate task on built-in digits at 32 px (class-conditional), from one default training run.

    python benchmarks/generate_quality.py [--epochs N] [--out runs/bench_generate]

Trains ``ghostkit train --task generate --data digits --model ghostnet_050`` (defaults otherwise), then checks:

* ``class_acc`` ≥ 0.90: the share of samples that the run's feature classifier (a GhostNet trained on the digits
  before and apart from the GAN; never the discriminator) assigns to the class they were generated for;
* diversity: per class, the mean pairwise distance between the classifier's pooled features of generated images is
  at least 0.7 x that of the real images of the class (no mode collapse); the worst class is reported;
* FID (same features, same number of images) below that of the training images with Gaussian noise of
  sigma 0.2 (on the [0, 1] scale) added.

Prints a table and writes ``quality.json`` into the run directory: the numbers, the bars, the wall and CPU time
of the training run (CPU time is the fair measure where other work shares the cores), and the CPU, torch version
and date. ``--eval-only`` scores the run already in ``--out``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import resource
import time
from pathlib import Path

import torch

import ghostkit
from ghostkit.data.generate import build_generate_data
from ghostkit.engine.generate import FeatureNet
from ghostkit.tasks.generate import load_generator
from ghostkit.tasks.model import load_task_model

BARS = {"class_acc": 0.90, "diversity_ratio": 0.7}
NOISE_SIGMA = 0.2


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _features(net: FeatureNet, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    return torch.cat([net(images[i:i + batch]) for i in range(0, len(images), batch)])


def _fid(net: FeatureNet, real: torch.Tensor, other: torch.Tensor) -> float:
    from torchmetrics.image.fid import FrechetInceptionDistance

    fid = FrechetInceptionDistance(feature=net)
    for i in range(0, len(real), 256):
        fid.update(real[i:i + 256], real=True)
    for i in range(0, len(other), 256):
        fid.update(other[i:i + 256], real=False)
    return float(fid.compute())


def _mean_pairwise(feats: torch.Tensor) -> float:
    d = torch.cdist(feats, feats)
    n = len(feats)
    return float(d.sum() / (n * (n - 1)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # one epoch (28 steps of 64 images, then evaluation on 1000 images) took about 50 CPU-seconds single-threaded
    # on an Intel Xeon (Sapphire Rapids class), torch 2.14.1; the feature classifier about 75: 10 epochs fit in
    # 10 CPU minutes (one thread)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", default="runs/bench_generate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-only", action="store_true", help="evaluate the run already in --out (its best.ckpt)")
    args = parser.parse_args()
    out = Path(args.out)

    wall, cpu = time.perf_counter(), _cpu_seconds()
    if args.eval_only:
        metrics = json.loads((out / "metrics.json").read_text()) if (out / "metrics.json").is_file() else {}
    else:
        metrics = ghostkit.train(task="generate", data="digits", model="ghostnet_050", epochs=args.epochs,
                                 out=str(out), seed=args.seed, workers=0, exist_ok=True)
    wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu

    model = load_generator(out / "best.ckpt")
    net = FeatureNet(load_task_model(out / "features.ckpt"))
    data = build_generate_data("digits", 32, batch=1)
    real = torch.stack([data.train[i][0] for i in range(len(data.train))])
    labels = torch.tensor([t for _, t in data.train.items])
    samples = model.generate(len(labels), classes=labels.tolist(), seed=args.seed + 1)
    fake = torch.from_numpy(samples).permute(0, 3, 1, 2).float() / 127.5 - 1
    noisy = (real + torch.randn(real.shape, generator=torch.Generator().manual_seed(0)) * 2 * NOISE_SIGMA).clamp(-1, 1)

    with torch.no_grad():
        class_acc = float((net.logits(fake).argmax(1) == labels).float().mean())
        f_real, f_fake = _features(net, real), _features(net, fake)
    ratios = {}
    for c, name in enumerate(model.class_names):
        keep = labels == c
        ratios[name] = _mean_pairwise(f_fake[keep].float()) / _mean_pairwise(f_real[keep].float())
    fid_gen, fid_noise = _fid(net, real, fake), _fid(net, real, noisy)
    result = {
        "class_acc": class_acc, "diversity_ratio_min": min(ratios.values()),
        "diversity_ratio_mean": sum(ratios.values()) / len(ratios), "diversity_ratio_per_class": ratios,
        "fid": fid_gen, "fid_noise_baseline": fid_noise, "run_metrics": metrics,
        "pass": {"class_acc": class_acc >= BARS["class_acc"],
                 "diversity": min(ratios.values()) >= BARS["diversity_ratio"], "fid": fid_gen < fid_noise},
        "train_wall_s": wall, "train_cpu_s": cpu, "epochs": args.epochs, "threads": torch.get_num_threads(),
        "cpu": _cpu_name(), "torch": torch.__version__, "date": datetime.date.today().isoformat(),
    }
    (out / "quality.json").write_text(json.dumps(result, indent=2))
    print(f"digits 32 px, {args.epochs} epochs: training {wall / 60:.1f} min wall, {cpu / 60:.1f} min CPU "
          f"({torch.get_num_threads()} threads) on {result['cpu']}")
    print("| check | value | bar | pass |\n| --- | --- | --- | --- |")
    print(f"| class_acc | {class_acc:.3f} | >= {BARS['class_acc']} | {result['pass']['class_acc']} |")
    print(f"| diversity (worst class, gen / real) | {result['diversity_ratio_min']:.2f} | >= "
          f"{BARS['diversity_ratio']} | {result['pass']['diversity']} |")
    print(f"| FID (generated) | {fid_gen:.2f} | < {fid_noise:.2f} (real + noise sigma {NOISE_SIGMA}) | "
          f"{result['pass']['fid']} |")


if __name__ == "__main__":
    main()
