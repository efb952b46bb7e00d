"""Training throughput of ``ghostkit train`` vs plain PyTorch loops on a real ImageFolder of PNG files.

The data: scikit-learn's 1797 digits written as 28 px PNG files (``train/<class>/*.png``, ``val/<class>/*.png``).
Three contenders train the same backbone with AdamW at the same batch size and image size (the one ghostkit's
recipe picks, 32 px):

- ``ghostkit``: ``ghostkit.train`` with its defaults (images decoded once into memory, loader workers from the
  cores, the recipe's random crops); epochs are timed by a callback from their start to Lightning's
  ``on_train_epoch_end``, which comes after the end-of-epoch validation: ghostkit's times include validating (and
  recomputing BatchNorm statistics) while the plain loops do not validate, so the ratio is conservative.
- ``imagefolder``: a plain loop over ``torchvision.datasets.ImageFolder`` reading the same files every epoch, with
  the same training transform, ``num_workers`` as ghostkit would choose for files.
- ``tensors``: a plain loop over images decoded, resized and normalised once (no augmentation): the upper bound.

The contenders take turns, ``--rounds`` times, each for ``--epochs`` epochs of which the first is warm-up; the
median epoch speed of each is reported. Run: ``python benchmarks/train_overhead.py [--model ghostnet_050]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets
from torchvision.transforms import v2

import ghostkit
from ghostkit.data.cache import default_workers
from ghostkit.data.common import IMAGENET_MEAN, IMAGENET_STD, split_items
from ghostkit.data.recipe import LIGHT, classify_transforms
from ghostkit.data.synthetic import load_digits, write_imagefolder


class EpochTimer(L.Callback):
    """Images per second of each training epoch."""

    def __init__(self) -> None:
        self.speeds: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.start, self.images = time.perf_counter(), 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self.images += len(batch[0])

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.speeds.append(self.images / (time.perf_counter() - self.start))


def make_folder(root: Path) -> None:
    images, labels, names = load_digits(28)
    train, val = split_items(list(zip(images, labels, strict=True)), 0.2, seed=0)
    write_imagefolder(root / "train", [i for i, _ in train], [t for _, t in train], names)
    write_imagefolder(root / "val", [i for i, _ in val], [t for _, t in val], names)


def run_ghostkit(root: Path, model: str, epochs: int, batch: int) -> list[float]:
    timer = EpochTimer()
    with tempfile.TemporaryDirectory() as out:
        ghostkit.train(data=str(root), model=model, epochs=epochs, batch=batch, out=out, exist_ok=True,
                       callbacks=[timer])
    return timer.speeds[1:]


def _train_epochs(model: nn.Module, batches, epochs: int) -> list[float]:
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    model.train()
    speeds = []
    for _ in range(epochs):
        start, images = time.perf_counter(), 0
        for x, y in batches():
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            images += len(y)
        speeds.append(images / (time.perf_counter() - start))
    return speeds[1:]


def run_imagefolder(root: Path, model: str, epochs: int, batch: int, imgsz: int) -> list[float]:
    tf = classify_transforms(imgsz, True, scale=(LIGHT["crop_scale"], 1.0))  # ghostkit's light training transform
    ds = datasets.ImageFolder(str(root / "train"), transform=tf)
    workers = default_workers(in_memory=False)
    loader = DataLoader(ds, batch_size=batch, shuffle=True, drop_last=True, num_workers=workers,
                        persistent_workers=workers > 0)
    return _train_epochs(ghostkit.create_model(model, num_classes=10), lambda: loader, epochs)


def run_tensors(root: Path, model: str, epochs: int, batch: int, imgsz: int) -> list[float]:
    tf = v2.Compose([v2.ToImage(), v2.Resize((imgsz, imgsz)), v2.ToDtype(torch.float32, scale=True),
                     v2.Normalize(list(IMAGENET_MEAN), list(IMAGENET_STD))])
    ds = datasets.ImageFolder(str(root / "train"), transform=tf)
    xs = torch.stack([ds[i][0] for i in range(len(ds))])
    ys = torch.tensor(ds.targets)

    def batches():
        for idx in torch.randperm(len(xs)).split(batch):
            if len(idx) == batch:
                yield xs[idx], ys[idx]

    return _train_epochs(ghostkit.create_model(model, num_classes=10), batches, epochs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ghostnet_050")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per turn (the first is warm-up)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    speeds: dict[str, list[float]] = {"ghostkit": [], "imagefolder": [], "tensors": []}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "digits"
        make_folder(root)
        for _ in range(args.rounds):
            speeds["ghostkit"] += run_ghostkit(root, args.model, args.epochs, args.batch)
            speeds["imagefolder"] += run_imagefolder(root, args.model, args.epochs, args.batch, 32)
            speeds["tensors"] += run_tensors(root, args.model, args.epochs, args.batch, 32)
            print({k: [round(s) for s in v] for k, v in speeds.items()}, flush=True)
    med = {k: statistics.median(v) for k, v in speeds.items()}
    print(f"\n{args.model}, batch {args.batch}, 32 px, {torch.get_num_threads()} torch threads\n"
          "| contender | images/s (median) | ghostkit / contender |\n|---|---|---|")
    for k, v in med.items():
        print(f"| {k} | {v:.0f} | {med['ghostkit'] / v:.2f} |")


if __name__ == "__main__":
    main()
