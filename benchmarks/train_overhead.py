"""Training throughput of ``ghostkit train`` (Lightning) vs a plain PyTorch loop: same model, data, batch size.

Both sides train the same classification TaskModel on the same DataLoader settings for the same number of epochs;
only training epochs are timed (validation excluded on both sides), after one warm-up epoch. Ratios > 1 mean
ghostkit is faster. Run: ``.venv/bin/python benchmarks/train_overhead.py [--model ghostnet_100 --epochs 3]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings

import lightning as L
import torch
from torch.utils.data import DataLoader

import ghostkit
from ghostkit.engine.config import TrainConfig
from ghostkit.engine.spec import get_spec
from ghostkit.tasks.model import build_task_model


class EpochTimer(L.Callback):
    def __init__(self) -> None:
        self.times: list[float] = []
        self.samples = 0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.times.append(time.perf_counter() - self.start)


def plain_loop(cfg: TrainConfig, epochs: int) -> list[float]:
    torch.manual_seed(cfg.seed)
    spec = get_spec(cfg.task)
    data = spec.build_data(cfg)
    config = {"backbone": {"name": cfg.model, "kwargs": {}}, "heads": {cfg.task: spec.head_config(cfg, data)}}
    model = build_task_model(config).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr or spec.default_lr, weight_decay=cfg.weight_decay)
    loader = DataLoader(data.train, batch_size=cfg.batch, shuffle=True, num_workers=cfg.workers,
                        collate_fn=data.collate, drop_last=True, persistent_workers=cfg.workers > 0)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        for images, targets in loader:
            loss = model.loss(model(images), targets)["loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ghostnet_100")
    parser.add_argument("--data", default="digits")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(torch.get_num_threads())
    common = dict(data=args.data, model=args.model, batch=args.batch, workers=args.workers, epochs=args.epochs)
    cfg = TrainConfig(**common)
    cfg.imgsz = cfg.imgsz or 32
    n_train = len(get_spec("classify").build_data(cfg).train)
    steps = n_train // args.batch
    timer = EpochTimer()
    with tempfile.TemporaryDirectory() as tmp:
        ghostkit.train(callbacks=[timer], out=tmp, exist_ok=True, **common)
    plain = plain_loop(cfg, args.epochs)
    # first epoch of each is warm-up (worker start, allocator)
    gk = steps * args.batch / min(timer.times[1:] or timer.times)
    pt = steps * args.batch / min(plain[1:] or plain)
    print(f"| model | data | batch | plain PyTorch img/s | ghostkit train img/s | ratio |\n|---|---|---|---|---|---|\n"
          f"| {args.model} | {args.data} | {args.batch} | {pt:.0f} | {gk:.0f} | {gk / pt:.2f} |")


if __name__ == "__main__":
    main()
