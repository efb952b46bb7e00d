"""Style transfer: the quality bar and 512 x 512 CPU speed in ONNX Runtime; prints markdown tables.

1. Quality: ``ghostkit.train(task="style", data="photos")`` with the built-in mosaic style (the recipe below) and
   the metrics of the best checkpoint on the validation photos (right 30% of scikit-learn's two sample photos,
   never trained on), measured by the fixed evaluation network of ``ghostkit.engine.style``. Bar: ``style_loss`` at
   least 40% below the colour-matching baseline's (``style_reduction >= 0.4``) with ``ssim_content >= 0.3``.
   Wall and CPU time of the training are printed.
2. Speed: one 512 x 512 image through ONNX Runtime (CPU, all graph optimisations, ``--threads`` threads), median
   ms over interleaved rounds, for the Ghost transform network at the recipe's width and depth and at Johnson et
   al.'s width (32) and depth (5), against two references built here with torchvision parts, untrained (only
   their cost is measured): Johnson et al.'s transform network (plain 9x9 / 3x3 convolutions, 32-64-128 channels,
   5 residual blocks, instance norm) and a VGG-16-based style network (torchvision's ``vgg16().features`` up to
   relu4_3 as the encoder and its mirror image, nearest upsampling + 3x3 convs, as the decoder, the structure of
   VGG-encoder style networks such as AdaIN's).

    .venv/bin/python benchmarks/style_quality.py                 # training (about 10 minutes on 2 idle cores)
    .venv/bin/python benchmarks/style_quality.py --skip-train    # speed only
    .venv/bin/python benchmarks/style_quality.py --skip-speed    # training only
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchvision.models import vgg16

import ghostkit
from ghostkit.deploy.runtime import make_session
from ghostkit.tasks.style import GhostTransformNet

RECIPE = dict(epochs=40, width=16, depth=3, imgsz=96, batch=4, lr=5e-3)  # 400 steps of 4 crops


def _cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run_quality(out: Path, epochs: int | None, workers: int) -> list[str]:
    recipe = {**RECIPE, **({"epochs": epochs} if epochs else {})}
    wall, cpu = time.perf_counter(), _cpu_seconds()
    m = ghostkit.train(task="style", data="photos", out=str(out / "style"), exist_ok=True, workers=workers, **recipe)
    wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
    ok = m["style_reduction"] >= 0.4 and m["ssim_content"] >= 0.3
    (out / "style" / "benchmark.json").write_text(json.dumps({"metrics": m, "wall_s": wall, "cpu_s": cpu,
                                                              "recipe": recipe}))
    return ["| | style loss | content loss | SSIM with the photo |", "| --- | --- | --- | --- |",
            f"| ghostkit style ({', '.join(f'{k} {v}' for k, v in recipe.items())}) | {m['style_loss']:.4f} | "
            f"{m['content_loss']:.4f} | {m['ssim_content']:.4f} |",
            f"| colour matching | {m['style_loss_baseline']:.4f} | {m['content_loss_baseline']:.4f} | "
            f"{m['ssim_content_baseline']:.4f} |", "",
            f"style loss {100 * m['style_reduction']:.1f}% below colour matching, SSIM {m['ssim_content']:.3f}: bar "
            f"(>= 40%, SSIM >= 0.3) {'met' if ok else 'NOT met'}; training {wall / 60:.1f} min wall, "
            f"{cpu / 60:.1f} min CPU"]


def _conv_in(in_chs: int, out_chs: int, k: int, stride: int = 1, relu: bool = True) -> list[nn.Module]:
    layers = [nn.Conv2d(in_chs, out_chs, k, stride, k // 2, padding_mode="reflect"),
              nn.InstanceNorm2d(out_chs, affine=True)]
    return layers + [nn.ReLU(inplace=True)] if relu else layers


class _Residual(nn.Module):
    def __init__(self, chs: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*_conv_in(chs, chs, 3), *_conv_in(chs, chs, 3, relu=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def johnson_net() -> nn.Module:
    """Johnson et al.'s transform network (supplementary material, Table 1), nearest upsampling + conv."""
    up = [nn.Upsample(scale_factor=2, mode="nearest")]
    return nn.Sequential(*_conv_in(3, 32, 9), *_conv_in(32, 64, 3, 2), *_conv_in(64, 128, 3, 2),
                         *[_Residual(128) for _ in range(5)], *up, *_conv_in(128, 64, 3), *up, *_conv_in(64, 32, 3),
                         nn.Conv2d(32, 3, 9, 1, 4, padding_mode="reflect"))


def vgg16_style_net() -> nn.Module:
    """torchvision's VGG-16 ``features`` to relu4_3 (stride 8), then the mirrored decoder back to 3 channels."""
    encoder = vgg16().features[:23]
    chs = [512, 256, 128, 64]
    decoder: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(chs, chs[1:] + [64])):
        decoder += [nn.Conv2d(a, b, 3, 1, 1), nn.ReLU(inplace=True)]
        if i < 3:
            decoder += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(b, b, 3, 1, 1), nn.ReLU(inplace=True)]
    return nn.Sequential(encoder, *decoder, nn.Conv2d(64, 3, 3, 1, 1))


def run_speed(size: int, threads: int, rounds: int) -> list[str]:
    nets = {f"Ghost transform (width {RECIPE['width']}, depth {RECIPE['depth']})":
            GhostTransformNet(RECIPE["width"], RECIPE["depth"]),
            "Ghost transform (width 32, depth 5)": GhostTransformNet(32, 5),
            "Johnson transform (plain convs)": johnson_net(), "VGG-16 encoder + decoder": vgg16_style_net()}
    x = torch.rand(1, 3, size, size)
    sessions = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, net in nets.items():
            path = Path(tmp) / f"{len(sessions)}.onnx"
            torch.onnx.export(net.eval(), (x,), str(path), input_names=["images"], dynamo=False, opset_version=17)
            sessions[name] = make_session(path, threads=threads)
    feed = {"images": x.numpy()}
    times: dict[str, list[float]] = {n: [] for n in nets}
    for s in sessions.values():
        s.run(None, feed)  # warm-up
    for _ in range(rounds):  # interleaved: every network sees the same load
        for name, s in sessions.items():
            t0 = time.perf_counter()
            s.run(None, feed)
            times[name].append(1000 * (time.perf_counter() - t0))
    ref = statistics.median(times["VGG-16 encoder + decoder"])
    rows = [f"| network ({size} x {size}, ONNX Runtime, {threads} threads) | params | ms per image (median of "
            f"{rounds}) | vs VGG-16 |", "| --- | --- | --- | --- |"]
    for name, net in nets.items():
        ms = statistics.median(times[name])
        params = sum(p.numel() for p in net.parameters())
        rows.append(f"| {name} | {params / 1e6:.2f} M | {ms:.0f} | {ref / ms:.1f}x faster |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--epochs", type=int, default=None, help=f"training epochs (default {RECIPE['epochs']})")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default="runs/bench_style")
    args = parser.parse_args()
    torch.manual_seed(0)
    np.random.seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if not args.skip_speed:
        print("\n".join(run_speed(args.size, args.threads, args.rounds)))
    if not args.skip_train:
        print()
        print("\n".join(run_quality(Path(args.out), args.epochs, args.workers)))


if __name__ == "__main__":
    main()
