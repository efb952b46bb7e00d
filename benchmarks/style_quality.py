"""Style transfer: the quality bar, the cost of the random-weight loss network, AdaIN, and 512 x 512 CPU speed in
ONNX Runtime; prints markdown tables.

1. Quality: ``ghostkit train --task style --data photos`` with every default (the built-in mosaic style, the Ghost
   transform network at width 16 / depth 3, 30 epochs of 128 px crops, batch 4, ``ghostnet_100`` loss network with
   random weights from seed 0) and the metrics of the best checkpoint on the validation photos (right 30% of
   scikit-learn's two sample photos, never trained on), measured by the fixed evaluation network of
   ``ghostkit.engine.style`` (random weights, seed 2016). Bar: ``style_loss`` at least 40% below the
   colour-matching baseline's (``style_reduction >= 0.4``) with ``ssim_content >= 0.3``. Wall and CPU time of each
   training are printed.
2. Loss network: the same training with the stages of a classifier ghostkit trains (``ghostnet_100`` on the
   built-in ``shapes``, 64 px, 4 epochs, the run's top-1 printed) as the loss network (``--pretrained``), against
   the random-weight default; both models scored by the random evaluation network and by the trained classifier's
   stages (each loss network favours models trained against its own kind of features: both views are shown).
3. AdaIN: ``--head adain`` with every default (the built-in style set), scored on the validation photos, each
   paired with a style of the set.
4. Speed: one 512 x 512 image through ONNX Runtime (CPU, all graph optimisations, ``--threads`` threads), median
   ms over interleaved rounds, for the Ghost transform network at the default width and depth and at Johnson et
   al.'s width (32) and depth (5), against two references built here with torchvision parts, untrained (only
   their cost is measured): Johnson et al.'s transform network (plain 9x9 / 3x3 convolutions, 32-64-128 channels,
   5 residual blocks, instance norm) and a VGG-16-based style network (torchvision's ``vgg16().features`` up to
   relu4_3 as the encoder and its mirror image, nearest upsampling + 3x3 convs, as the decoder, the structure of
   VGG-encoder style networks such as AdaIN's).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/style_quality.py --skip-speed   # trainings (see docs/benchmarks.md)
    .venv/bin/python benchmarks/style_quality.py --skip-train                     # speed only
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
from ghostkit.data.style import task_data
from ghostkit.deploy.runtime import make_session
from ghostkit.engine.style import StyleMetrics
from ghostkit.models import create_model
from ghostkit.models.weights import load_weights
from ghostkit.tasks.model import load_task_model
from ghostkit.tasks.style import LOSS_STAGES, STYLE_DEPTH, STYLE_WIDTH, GhostTransformNet

CLASSIFIER = dict(task="classify", data="shapes", model="ghostnet_100", imgsz=64, epochs=4)


def _cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _train(out: Path, **options) -> tuple[dict, float, float]:
    wall, cpu = time.perf_counter(), _cpu_seconds()
    metrics = ghostkit.train(out=str(out), exist_ok=True, workers=0, **options)
    wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
    (out / "benchmark.json").write_text(json.dumps({"metrics": metrics, "wall_s": wall, "cpu_s": cpu,
                                                    "options": options}))
    return metrics, wall, cpu


def _row(name: str, m: dict, suffix: str = "") -> str:
    return (f"| {name} | {m['style_loss' + suffix]:.4f} | {m['content_loss' + suffix]:.4f} | "
            f"{m['ssim_content' + suffix]:.3f} |")


def _score(weights: Path, net: nn.Module) -> dict:
    """The metrics of a style checkpoint on the built-in validation photos with ``net`` as evaluation network."""
    model = load_task_model(weights)
    head = model.heads["style"]
    data = task_data("style", "photos", model.config["imgsz"][0])
    metrics = StyleMetrics(head.style, net=net)
    photos = torch.stack([data.val[i][0] for i in range(len(data.val))])
    with torch.no_grad():
        metrics.update(head(None, photos), {"content": photos, "style": head.style})
    return metrics.compute()


def _classifier_stages(weights: Path) -> nn.Module:
    net = create_model("ghostnet_100", features_only=True, out_indices=LOSS_STAGES)
    state = torch.load(weights, map_location="cpu", weights_only=True)["state_dict"]
    load_weights(net, {k[len("model.backbone."):]: v for k, v in state.items() if k.startswith("model.backbone.")})
    return net.eval().requires_grad_(False)


def run_quality(out: Path, epochs: int | None) -> list[str]:
    extra = {"epochs": epochs} if epochs else {}
    m, wall, cpu = _train(out / "style", task="style", data="photos", **extra)
    ok = m["style_reduction"] >= 0.4 and m["ssim_content"] >= 0.3
    rows = ["| default training | style loss | content loss | SSIM with the photo |", "| --- | --- | --- | --- |",
            _row("ghostkit style (defaults)", m), _row("colour matching", m, "_baseline"), "",
            f"style loss {100 * m['style_reduction']:.1f}% below colour matching, SSIM {m['ssim_content']:.3f}: bar "
            f"(>= 40%, SSIM >= 0.3) {'met' if ok else 'NOT met'}; training {wall / 60:.1f} min wall, "
            f"{cpu / 60:.1f} min CPU", ""]
    cm, cwall, _ = _train(out / "classifier", **CLASSIFIER)
    tm, twall, tcpu = _train(out / "style_trained_loss", task="style", data="photos",
                             pretrained=str(out / "classifier" / "best.ckpt"), **extra)
    trained_net = _classifier_stages(out / "classifier" / "best.ckpt")
    rows += [f"loss network: a ghostnet_100 classifier trained on shapes ({CLASSIFIER['epochs']} epochs, top-1 "
             f"{cm['top1']:.3f}) against random weights (seed 0); the trained-loss run took {twall / 60:.1f} min wall, "
             f"{tcpu / 60:.1f} min CPU", "",
             "| loss network | evaluation network | style reduction vs colour matching | SSIM with the photo |",
             "| --- | --- | --- | --- |"]
    for name, run in (("random (default)", out / "style"), ("trained classifier", out / "style_trained_loss")):
        for ename, net in (("random (seed 2016)", None), ("trained classifier", trained_net)):
            s = _score(run / "best.ckpt", net)
            rows.append(f"| {name} | {ename} | {100 * s['style_reduction']:.1f}% | {s['ssim_content']:.3f} |")
    am, awall, acpu = _train(out / "adain", task="style", head="adain", data="photos", **extra)
    rows += ["", "| AdaIN (defaults, built-in style set) | style loss | content loss | SSIM with the photo |",
             "| --- | --- | --- | --- |", _row("ghostkit style --head adain", am),
             _row("colour matching", am, "_baseline"), "",
             f"AdaIN: style loss {100 * am['style_reduction']:.1f}% below colour matching; training {awall / 60:.1f} "
             f"min wall, {acpu / 60:.1f} min CPU"]
    return rows


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
    nets = {f"Ghost transform (width {STYLE_WIDTH}, depth {STYLE_DEPTH})": GhostTransformNet(),
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
    parser.add_argument("--epochs", type=int, default=None, help="style training epochs (default: ghostkit's)")
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
        print("\n".join(run_quality(Path(args.out), args.epochs)))


if __name__ == "__main__":
    main()
