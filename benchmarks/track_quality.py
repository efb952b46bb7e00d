"""Tracking quality on the built-in ``tracks`` sequences: a default detector training, then ``val --task track``.

    .venv/bin/python benchmarks/track_quality.py                       # the default runs (CPU)
    .venv/bin/python benchmarks/track_quality.py --epochs 10 --threads 2 --out runs/track_quality

1. ``ghostkit train --task detect --data tracks`` with every default but ``--epochs`` (default: the training
   default, 30) and ``--out``; wall time reported. Bar: at most 10 minutes on 2 cores.
2. ``ghostkit val --task track`` of its ``best.ckpt`` with ByteTrack (default options, and at each ``--conf``
   given): MOTA, IDF1, HOTA, ID switches, fps on the validation sequences. Bar: MOTA >= 0.75 and IDF1 >= 0.75.
3. ``ghostkit train --task detect,embed --data tracks`` (same options), then its detector tracked twice: by
   ByteTrack on motion alone and by the appearance tracker with the embed head's embeddings. Same detections,
   same sequences: the difference in ID switches is the embedding's.

4. (``--runs oracle``, no training) ByteTrack fed the ground-truth boxes of the validation sequences instead of a
   detector's, exact and degraded (boxes dropped at random, jittered, scored low): how far the tracker alone is
   from a perfect score, so the end-to-end numbers can be read as the detector's.

Results are printed as a table and written to ``<out>/track_quality_<runs>.json``, with the wall time and the CPU
time (process and data loader workers) of each training. ``--threads`` sets torch's intra-op threads for training
and tracking (default 2); ``--runs detect``, ``--runs embed`` or ``--runs oracle`` runs one part.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
import torch

import ghostkit
from ghostkit.data.formats.mot import read_mot
from ghostkit.data.tracks import data_root
from ghostkit.track import build_tracker, track_metrics
from ghostkit.track.evaluate import validate_tracking

KEYS = ("mota", "idf1", "hota", "id_switches", "fps")


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the data loader workers)."""
    return sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))


def train(task: str, args: argparse.Namespace) -> tuple[Path, float, float]:
    """Train ``task`` on built-in tracks; returns its best.ckpt, wall seconds and CPU seconds."""
    out = Path(args.out) / task.replace(",", "_")
    options = {"epochs": args.epochs} if args.epochs else {}
    start, cpu = time.perf_counter(), cpu_seconds()
    if not (args.reuse and (out / "best.ckpt").is_file()):
        ghostkit.train(task=task, data="tracks", model=args.model, out=str(out), exist_ok=True, **options)
    return out / "best.ckpt", time.perf_counter() - start, cpu_seconds() - cpu


# (name, fraction of boxes dropped, box jitter in pixels (Gaussian sigma), score) of the oracle runs
ORACLES = (("exact", 0.0, 0.0, 0.9), ("20% dropped", 0.2, 0.0, 0.9), ("1 px jitter", 0.0, 1.0, 0.9),
           ("20% dropped, 1 px jitter", 0.2, 1.0, 0.9), ("exact, scored 0.65", 0.0, 0.0, 0.65))


def oracle(drop: float, jitter: float, score: float, seed: int = 0) -> dict:
    """ByteTrack (defaults) on the validation sequences' ground-truth boxes, degraded as asked; the metrics."""
    rng = np.random.default_rng(seed)
    gt, hyp = {}, {}
    for seq in read_mot(data_root("tracks"), "val").sequences:
        tracker, gt[seq.name], hyp[seq.name] = build_tracker("bytetrack", frame_rate=seq.frame_rate), seq.gt, {}
        for frame in range(1, seq.length + 1):
            g = seq.gt.get(frame, {"boxes": np.zeros((0, 4)), "labels": np.zeros(0, np.int64)})
            keep = rng.random(len(g["boxes"])) >= drop
            boxes = g["boxes"][keep] + rng.normal(0, jitter, (int(keep.sum()), 4))
            hyp[seq.name][frame] = tracker.update({"boxes": boxes, "scores": np.full(len(boxes), score),
                                                   "labels": g["labels"][keep]})
    return {**track_metrics(gt, hyp), "fps": None}  # no detector runs


def row(name: str, values: dict) -> dict:
    r = {"run": name, **{k: values[k] for k in KEYS}}
    print(f"{name:48s} " + " ".join(f"{k} {r[k]:.3f}" if isinstance(r[k], float) else f"{k} {r[k]}" for k in KEYS),
          flush=True)
    return r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ghostnet_100")
    parser.add_argument("--epochs", type=int, default=0, help="training epochs (0: the default)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--conf", type=float, nargs="*", default=[], help="extra tracker thresholds to evaluate")
    parser.add_argument("--out", default="runs/track_quality")
    parser.add_argument("--reuse", action="store_true", help="reuse trained checkpoints found in --out")
    parser.add_argument("--runs", default="detect,embed", help="which of the runs: detect (1-2), embed (3), oracle (4)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    runs = args.runs.split(",")
    rows, report = [], {"threads": args.threads, "torch": torch.__version__, "model": args.model}

    if "detect" in runs:
        weights, seconds, cpu = train("detect", args)
        report["detect_train"] = {"wall_s": seconds, "cpu_s": cpu}
        print(f"detect training: {seconds:.0f} s wall, {cpu:.0f} s CPU", flush=True)
        for conf in [None, *args.conf]:
            values = validate_tracking(weights, "tracks", Path(args.out) / f"val_detect_{conf}", conf=conf)
            rows.append(row(f"detect, bytetrack, conf {conf or 'default'}", values))

    if "embed" in runs:
        weights, seconds, cpu = train("detect,embed", args)
        report["detect_embed_train"] = {"wall_s": seconds, "cpu_s": cpu}
        print(f"detect,embed training: {seconds:.0f} s wall, {cpu:.0f} s CPU", flush=True)
        for tracker in ("bytetrack", "appearance"):
            for conf in [None, *args.conf]:
                values = validate_tracking(weights, "tracks", Path(args.out) / f"val_embed_{tracker}_{conf}",
                                           tracker=tracker, conf=conf)
                rows.append(row(f"detect,embed, {tracker}, conf {conf or 'default'}", values))
    if "oracle" in runs:
        for name, drop, jitter, score in ORACLES:
            rows.append(row(f"ground truth, {name}, bytetrack", oracle(drop, jitter, score)))
    report["rows"] = rows
    Path(args.out).mkdir(parents=True, exist_ok=True)
    Path(args.out, f"track_quality_{'_'.join(runs)}.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
