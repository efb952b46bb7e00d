"""CPU inference speed of ghostkit's GhostNet backbones vs timm's, same weights, fp32.

Contenders for each model and batch size (images per second, higher is better):

* ``timm eager NCHW`` / ``timm eager channels_last``: ``timm.create_model(name)`` in eval mode, input (and model)
  in that memory layout;
* ``ghostkit eager NCHW`` / ``ghostkit eager channels_last``: ``ghostkit.create_model(name)`` (training structure,
  BN not folded) with timm's state dict loaded, same input layouts: plain modules, as any PyTorch model (no fast
  path). On CPU in eval mode ghostkit runs channels-last inside whatever the input layout (``channels_last=None``,
  see ``ghostkit/models/ghostnet.py``);
* ``ghostkit deploy channels_last`` / ``ghostkit deploy NCHW``: ``ghostkit.reparameterize(model)`` (BN folded,
  GhostNetV3 branches merged, CPU fast path on: ``ghostkit/models/fastpath.py``), input in that layout;
* ``ghostkit deploy TorchScript channels_last``: the deploy model traced and frozen (``torch.jit.freeze``), as
  ``ghostkit export --format torchscript`` writes it, and ``timm TorchScript channels_last``, timm's model treated
  the same way, so the gain that freezing gives any model is visible.

Ratios: eager NCHW vs timm eager NCHW, eager channels_last vs timm eager channels_last, deploy and TorchScript vs
timm eager channels_last (timm's fastest eager form). Fairness on a small, noisy machine: one process,
``torch.inference_mode``, warm-up calls first, then ``--repeats`` rounds in which every contender is timed once, in
an order that rotates from round to round (a burst of background load hits all contenders alike); the reported time
is the median over rounds. Each timed sample runs enough forward passes to last about ``--sample-s`` seconds.

Run: ``.venv/bin/python benchmarks/backbone_speed.py [--models ghostnet_100 --batch 1 32 --repeats 7 --json out.json]``
(``--quick``: batch 1 only, 3 rounds). Needs timm (the ``dev`` extra).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

import ghostkit
from ghostkit.models.weights import load_weights

DEFAULT_MODELS = ("ghostnet_100", "ghostnetv2_100", "ghostnetv3_100")
CL = torch.channels_last

# (label, baseline label for the ratio)
CONTENDERS = [
    ("timm eager NCHW", None),
    ("timm eager channels_last", None),
    ("ghostkit eager NCHW", "timm eager NCHW"),
    ("ghostkit eager channels_last", "timm eager channels_last"),
    ("ghostkit deploy channels_last", "timm eager channels_last"),
    ("ghostkit deploy NCHW", "timm eager channels_last"),
    ("timm TorchScript channels_last", "timm eager channels_last"),
    ("ghostkit deploy TorchScript channels_last", "timm eager channels_last"),
]


def build_contenders(name: str, batch: int, imgsz: int) -> dict[str, tuple[nn.Module, torch.Tensor]]:
    """Every contender's (model, input) with the same weights (timm's random init, BN statistics included)."""
    import timm

    torch.manual_seed(0)
    ref = timm.create_model(name, pretrained=False).eval()
    with torch.no_grad():  # non-trivial BN statistics, as in a trained model
        for m in ref.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    gk = ghostkit.create_model(name).eval()
    load_weights(gk, ref.state_dict())
    x = torch.randn(batch, 3, imgsz, imgsz)
    xc = x.contiguous(memory_format=CL)
    deploy = ghostkit.reparameterize(gk)
    timm_cl = copy.deepcopy(ref).to(memory_format=CL)
    deploy_cl = copy.deepcopy(deploy).to(memory_format=CL)
    with torch.no_grad():  # traced and frozen, as `ghostkit export --format torchscript` writes it
        scripted = {m: torch.jit.freeze(torch.jit.trace(m, xc, check_trace=False)) for m in (timm_cl, deploy_cl)}
    return {
        "timm eager NCHW": (ref, x),
        "timm eager channels_last": (timm_cl, xc),
        "ghostkit eager NCHW": (gk, x),
        "ghostkit eager channels_last": (copy.deepcopy(gk).to(memory_format=CL), xc),
        "ghostkit deploy channels_last": (deploy_cl, xc),
        "ghostkit deploy NCHW": (deploy, x),
        "timm TorchScript channels_last": (scripted[timm_cl], xc),
        "ghostkit deploy TorchScript channels_last": (scripted[deploy_cl], xc),
    }


def time_contenders(
    fns: dict[str, Callable[[], object]], repeats: int, sample_s: float, warmup: int = 2
) -> dict[str, list[float]]:
    """Seconds per call of every function: ``repeats`` interleaved rounds, contender order rotating per round."""
    calls = {}
    for label, fn in fns.items():
        t0 = time.perf_counter()
        for _ in range(warmup):
            fn()
        per_call = (time.perf_counter() - t0) / warmup
        calls[label] = max(1, round(sample_s / max(per_call, 1e-6)))
    times: dict[str, list[float]] = {label: [] for label in fns}
    labels = list(fns)
    for r in range(repeats):
        for label in labels[r % len(labels) :] + labels[: r % len(labels)]:
            fn, n = fns[label], calls[label]
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            times[label].append((time.perf_counter() - t0) / n)
    return times


def run(models: list[str], batches: list[int], repeats: int, sample_s: float, imgsz: int) -> list[dict]:
    rows = []
    for name in models:
        for batch in batches:
            contenders = build_contenders(name, batch, imgsz)
            with torch.inference_mode():
                ref_out = contenders["timm eager NCHW"][0](contenders["timm eager NCHW"][1])
                for label, (model, x) in contenders.items():  # same function, not only same speed
                    diff = float((model(x) - ref_out).abs().max())
                    if diff > 1e-3:
                        raise RuntimeError(f"{name} {label}: outputs differ from timm's by {diff:.2e}")
                fns = {label: (lambda m=m, x=x: m(x)) for label, (m, x) in contenders.items()}
                times = time_contenders(fns, repeats, sample_s, warmup=3 if batch < 8 else 1)
            med = {label: statistics.median(t) for label, t in times.items()}
            for label, base in CONTENDERS:
                rows.append(
                    dict(
                        model=name,
                        batch=batch,
                        contender=label,
                        img_s=batch / med[label],
                        ms_per_batch=1e3 * med[label],
                        best_ms=1e3 * min(times[label]),
                        vs=base,
                        ratio=(med[base] / med[label]) if base else None,
                    )
                )
            print(f"done {name} batch {batch}", flush=True)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| model | batch | contender | img/s | ms / batch | vs timm |", "|---|---:|---|---:|---:|---|"]
    for r in rows:
        ratio = f"{r['ratio']:.2f}x {r['vs'].replace('timm eager ', '')}" if r["ratio"] else ""
        lines.append(
            f"| {r['model']} | {r['batch']} | {r['contender']} | {r['img_s']:.1f} | {r['ms_per_batch']:.1f} | {ratio} |"
        )
    return "\n".join(lines)


def environment() -> dict:
    import timm

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return dict(
        torch=torch.__version__,
        timm=timm.__version__,
        ghostkit=ghostkit.__version__,
        threads=torch.get_num_threads(),
        cpu=platform.processor() or platform.machine(),
        cpu_count=os.cpu_count(),
        loadavg=load,
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), help="registered model names")
    p.add_argument("--batch", nargs="+", type=int, default=[1, 32], help="batch sizes")
    p.add_argument("--repeats", type=int, default=7, help="interleaved timing rounds (median reported)")
    p.add_argument("--sample-s", type=float, default=0.25, help="seconds per timed sample (several calls at batch 1)")
    p.add_argument("--imgsz", type=int, default=224, help="square input size")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--quick", action="store_true", help="batch 1 only, 3 rounds: a smoke run")
    p.add_argument("--json", default=None, help="also write the rows and the environment to this JSON file")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.batch, args.repeats, args.sample_s = [1], 3, 0.1
    env = environment()
    print(
        f"CPU fp32, {env['threads']} threads, {env['cpu_count']} cores, torch {env['torch']}, timm {env['timm']}, "
        f"{args.imgsz}x{args.imgsz}, median of {args.repeats} interleaved rounds, load average {env['loadavg']}"
    )
    if env["loadavg"] and env["loadavg"][0] > (env["cpu_count"] or 1):
        print(
            f"warning: load average {env['loadavg'][0]:.1f} > {env['cpu_count']} cores: other processes compete for "
            "the CPU; multi-threaded timings suffer most (OpenMP threads wait for descheduled peers)"
        )
    t0 = time.perf_counter()
    rows = run(args.models, args.batch, args.repeats, args.sample_s, args.imgsz)
    print()
    print(markdown(rows))
    print(f"\n{time.perf_counter() - t0:.0f} s; load average now {environment()['loadavg']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(environment=env, args=vars(args), rows=rows), f, indent=2)


if __name__ == "__main__":
    main()
