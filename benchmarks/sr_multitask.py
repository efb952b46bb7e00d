"""Super-resolution inside multi-task training: the bars of ``--task restore,segment`` / ``restore,detect`` at x2.

Every model trains for the same epochs on the same built-in shapes stream (``--n-train`` new images per epoch) and
is scored on the same validation images: each HR image (``--hr`` px, 64 by default: shapes of 10-29 px, 5-14 px in
the input, where a stride-8 head sees a 4 x 4 grid), its bicubic x2 downscale as the input.

1. Quality: the joint models (one per ``--sr-join`` way of reaching the HR frame, ``ghostkit.tasks.restore``; the
   model defaults of the restore branch) against
   - a segmentation model trained on the LR images (masks downsampled with them) whose logits are upsampled to HR:
     HR mIoU, bar: joint >= baseline + 2 points;
   - a detection model trained on the LR images (boxes / 2), its boxes x 2: mAP50 in HR pixels (the same as in LR
     pixels: IoU does not change under a common scaling), bar: joint >= baseline + 2 points;
   - a restore-only model (width 32, depth 6): PSNR (Y), bar: joint >= restore-only - 0.3 dB.
2. Latency (CPU, batch 1, eval): the joint restore + segment model against the cascade that gives the same outputs
   without it, the restore model then a segmentation model on the restored HR image, timed interleaved in one run
   at the training size and at a camera-like size; bar: joint <= 0.7 x the cascade.

    .venv/bin/python benchmarks/sr_multitask.py                  # latency only (untrained models)
    .venv/bin/python benchmarks/sr_multitask.py --train          # + 7 trainings (about 35 minutes, one thread)
    .venv/bin/python benchmarks/sr_multitask.py --train --joins fused --det-joins restored  # default joins: 20 min
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from multitask import median_ms  # benchmarks/multitask.py, beside this script
from torch.utils.data import Dataset

from ghostkit.data.common import TaskData
from ghostkit.data.multitask import build_multitask_data, collate_multitask
from ghostkit.data.restore import Degradation
from ghostkit.deploy.evaluate import evaluate
from ghostkit.engine.config import TrainConfig
from ghostkit.engine.multitask import MultiTaskSpec
from ghostkit.engine.run import train
from ghostkit.engine.spec import get_spec
from ghostkit.tasks.model import build_task_model, load_task_model

SCALE = 2
JOINS = ("fused", "lr")  # restore + segment
DET_JOINS = ("restored", "lr")  # restore + detect


class LRFrame(Dataset):
    """Items of a x``scale`` multi-task dataset (LR input, HR targets) with their targets brought to the LR frame:
    masks sampled at the LR pixel centres, boxes divided by ``scale``, no restore target."""

    def __init__(self, dataset: Dataset, scale: int) -> None:
        self.dataset, self.scale = dataset, scale

    def __len__(self) -> int:
        return len(self.dataset)

    def load(self, index: int):
        return self.dataset.load(index)  # the source image, drawn by detection's plots

    def __getitem__(self, index: int):
        image, targets = self.dataset[index]
        s, out = self.scale, {k: v for k, v in targets.items() if k != "restore"}
        if "segment" in out:
            out["segment"] = out["segment"][s // 2::s, s // 2::s]
        if "detect" in out:
            out["detect"] = {**out["detect"], "boxes": out["detect"]["boxes"] / s}
        return image, out


class ShapesSpec(MultiTaskSpec):
    """A multi-task spec whose shapes data is cut to ``n_train`` images per epoch and ``n_val`` validation images;
    ``lr_frame``: a single-task model trained on the LR images (no restore head), see :class:`LRFrame`."""

    def __init__(self, task: str, n_train: int, n_val: int, lr_frame: bool = False) -> None:
        super().__init__(task, min_tasks=1)
        self.n_train, self.n_val, self.lr_frame = n_train, n_val, lr_frame

    def build_data(self, cfg: TrainConfig) -> TaskData:
        if self.lr_frame:
            d = build_multitask_data(cfg.data, self.tasks, cfg.imgsz * SCALE, degradation=Degradation(SCALE))
            data = TaskData(LRFrame(d.train, SCALE), LRFrame(d.val, SCALE), d.class_names, d.imgsz, list(d.mean),
                            list(d.std), collate_multitask(self.tasks), d)
            self.attach_data(data)
            d.train.items.n, d.val.items = self.n_train, d.val.items[:self.n_val]
            return data
        data = super().build_data(cfg)
        data.train.items.n, data.val.items = self.n_train, data.val.items[:self.n_val]
        return data


def eval_sets(hr: int, n_val: int) -> tuple[Dataset, Dataset]:
    """The common validation images: (LR input, HR targets) and the same with LR-frame targets."""
    d = build_multitask_data("shapes", ["restore", "segment", "detect"], hr, degradation=Degradation(SCALE))
    d.val.items = d.val.items[:n_val]
    return d.val, LRFrame(d.val, SCALE)


def score(model: torch.nn.Module, hr_val: Dataset, lr_val: Dataset) -> dict[str, float]:
    """HR PSNR, HR mIoU, mAP50 (scale-free) of whichever heads ``model`` has."""
    tasks = list(model.heads)
    cfg = TrainConfig(task=",".join(tasks), data="shapes")
    metrics = {t: get_spec(t).metrics(model.config["class_names"].get(t, []), cfg, model.heads[t]) for t in tasks}
    # a joint model predicts in the HR frame; a single-task detector in its LR input's
    lr_boxes = "detect" in tasks and "restore" not in tasks
    det = evaluate(model, lr_val if lr_boxes else hr_val, {t: m for t, m in metrics.items() if t == "detect"},
                   batch=32, collate=collate_multitask(tasks)) if "detect" in tasks else {}
    rest = evaluate(model, hr_val, {t: m for t, m in metrics.items() if t != "detect"}, batch=32,
                    collate=collate_multitask(tasks))
    values = {**rest, **det}
    out = {}
    if "restore" in values:
        out["psnr"], out["psnr_bicubic"] = values["restore"]["psnr"], values["restore"]["psnr_baseline"]
    if "segment" in values:
        out["miou"] = values["segment"]["miou"]
    if "detect" in values:
        out["map50"] = values["detect"]["map50"]
    return out


def quality(args: argparse.Namespace) -> list[str]:
    lr = args.hr // SCALE
    runs = {"restore only": ("restore", lr, False, None),
            "segment on LR": ("segment", lr, True, None),
            "detect on LR": ("detect", lr, True, None)}
    light = "" if args.joint_width is None and args.joint_depth is None else \
        f" w{args.joint_width} d{args.joint_depth}"
    for join in args.joins:
        runs[f"joint restore+segment ({join}{light})"] = ("restore,segment", lr, False, join)
    # the fusion refines masks only: a detection model is the same for "fused" and "lr"
    for join in args.det_joins:
        runs[f"joint restore+detect ({join}{light})"] = ("restore,detect", lr, False, join)
    hr_val, lr_val = eval_sets(args.hr, args.n_val)
    results, seconds = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (task, _, lr_frame, join) in runs.items():
            out = Path(tmp) / name.replace(" ", "_").replace("(", "").replace(")", "")
            if args.only and not any(o in name for o in args.only):
                continue
            size = {"width": args.joint_width, "depth": args.joint_depth} if "joint" in name else {}
            if task == "restore" and args.restore_width:
                size = {"width": args.restore_width, "depth": args.restore_depth}
            cfg = TrainConfig(task=task, data="shapes", model=args.model, epochs=args.epochs, batch=args.batch,
                              imgsz=lr if lr_frame else args.hr, scale=SCALE, sr_join=join, workers=args.workers,
                              out=str(out), seed=args.seed, **size)
            t0 = time.perf_counter()
            train(cfg, spec=ShapesSpec(task, args.n_train, args.n_val, lr_frame))
            seconds[name] = time.perf_counter() - t0
            results[name] = score(load_task_model(out / "best.ckpt"), hr_val, lr_val)
            print(f"{name}: {results[name]} ({seconds[name]:.0f} s)", flush=True)
    rows = ["| model | HR mIoU | mAP50 | PSNR (Y, dB) | training s |", "|---|---:|---:|---:|---:|"]
    for name, r in results.items():
        cells = [f"{100 * r['miou']:.1f}" if "miou" in r else "", f"{100 * r['map50']:.1f}" if "map50" in r else "",
                 f"{r['psnr']:.2f}" if "psnr" in r else ""]
        rows.append(f"| {name} | {' | '.join(cells)} | {seconds[name]:.0f} |")
    if not {"restore only", "segment on LR", "detect on LR"} <= set(results):
        return rows
    bicubic = results["restore only"]["psnr_bicubic"]
    rows += ["", f"bicubic x2 upscaling: {bicubic:.2f} dB"]
    for join in args.joins:
        seg = results.get(f"joint restore+segment ({join}{light})")
        if seg is not None:
            rows.append(f"segment {join}: mIoU {100 * (seg['miou'] - results['segment on LR']['miou']):+.1f} points "
                        f"(bar >= +2), PSNR {seg['psnr'] - results['restore only']['psnr']:+.2f} dB (bar >= -0.3)")
    for join in args.det_joins:
        det = results.get(f"joint restore+detect ({join}{light})")
        if det is not None:
            rows.append(f"detect {join}: mAP50 {100 * (det['map50'] - results['detect on LR']['map50']):+.1f} points "
                        f"(bar >= +2), PSNR {det['psnr'] - results['restore only']['psnr']:+.2f} dB (bar >= -0.3)")
    return rows


def build(model: str, task: str, hr: int, join: str | None, **size: int | None) -> torch.nn.Module:
    """An untrained model of ``task`` for the latency comparison (weights do not change the cost); ``size``: the
    restore head's ``width`` / ``depth``."""
    spec = MultiTaskSpec(task, min_tasks=1)
    cfg = TrainConfig(task=task, data="shapes", model=model, imgsz=hr, scale=SCALE, sr_join=join, **size)
    data = spec.build_data(cfg)
    config = {"backbone": {"name": model, "kwargs": {}}, "heads": spec.head_configs(cfg, data),
              "class_names": data.class_names, "imgsz": [data.imgsz, data.imgsz]}
    return build_task_model(config).eval()


@torch.inference_mode()
def latency(model: str, hr: int, sizes: list[tuple[int, int]], rounds: int, calls: int, width: int | None,
            depth: int | None) -> list[str]:
    restore = build(model, "restore", hr, None)
    segment = build(model, "segment", hr, None)  # the cascade's: reads the restored HR image
    joints = {join: build(model, "restore,segment", hr, join, width=width, depth=depth) for join in
              ("fused", "lr", "restored")}
    norm = restore.heads["restore"].normalise
    rows = ["| input (LR) | restore then segment (ms) | " + " | ".join(f"joint {j} (ms, ratio)" for j in joints) + " |",
            "|---|---:|" + "---:|" * len(joints)]
    for h, w in sizes:
        x = torch.randn(1, 3, h, w)
        fns = {"cascade": lambda x=x: segment(norm(restore(x)["restore"]["image"])),
               **{j: (lambda m=m, x=x: m(x)) for j, m in joints.items()}}
        med = median_ms(fns, rounds, calls, warmup=3)
        rows.append(f"| {w} x {h} | {med['cascade']:.1f} | " + " | ".join(
            f"{med[j]:.1f} ({med[j] / med['cascade']:.2f})" for j in joints) + " |")
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="ghostnet_050")
    parser.add_argument("--hr", type=int, default=64, help="HR frame of the trainings (input: hr / 2)")
    parser.add_argument("--sizes", default="48x48,120x160", help="LR input sizes HxW of the latency table")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--train", action="store_true", help="also train the models and compare their metrics")
    parser.add_argument("--joins", default=",".join(JOINS), help="the --sr-join ways to train restore + segment")
    parser.add_argument("--det-joins", default=",".join(DET_JOINS), help="the --sr-join ways to train restore + detect")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--n-train", type=int, default=640, help="new shapes images per epoch")
    parser.add_argument("--n-val", type=int, default=100)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--joint-width", type=int, default=None, help="the joint models' restore width (--width)")
    parser.add_argument("--joint-depth", type=int, default=None, help="the joint models' restore depth (--depth)")
    parser.add_argument("--restore-width", type=int, default=None, help="the restore-only model's width")
    parser.add_argument("--restore-depth", type=int, default=None, help="the restore-only model's depth")
    parser.add_argument("--only", default="", help="train only the runs whose names contain one of these (comma list)")
    parser.add_argument("--seed", type=int, default=0, help="the trainings' seed (the validation images stay)")
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args(argv)
    args.joins = [j.strip() for j in args.joins.split(",") if j.strip()]
    args.det_joins = [j.strip() for j in args.det_joins.split(",") if j.strip()]
    args.only = [o.strip() for o in args.only.split(",") if o.strip()]
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    print(f"CPU, {torch.get_num_threads()} thread(s), torch {torch.__version__}, {args.model}, x{SCALE}")
    print("\n".join(latency(args.model, args.hr, sizes, args.rounds, args.calls, args.joint_width, args.joint_depth)))
    if args.train:
        print(f"\ntraining: HR {args.hr} px, input {args.hr // SCALE} px, {args.epochs} epochs x {args.n_train} "
              f"images, batch {args.batch}, {args.n_val} validation images")
        print("\n".join(quality(args)))


if __name__ == "__main__":
    main()
