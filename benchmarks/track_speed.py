"""Tracker association time and accuracy on the built-in ``tracks`` sequences, against a detector's forward time.

    .venv/bin/python benchmarks/track_speed.py                    # ghostkit trackers (+ cjm-byte-track if installed)
    .venv/bin/python benchmarks/track_speed.py --model ghostnet_050 --runs 5

Detections are the ground truth of six 80-frame sequences of 160 px of the built-in generator (``write_tracks`` with
4 training sequences of 80 frames and its 2 validation sequences: long sequences, where tracks are lost and found)
turned into what a detector gives: boxes jittered by Gaussian noise (``--noise`` px), objects less than 15% visible
missed and 3% of the rest missed at random, scores about 0.9 for objects at least half visible and about 0.3
(ByteTrack's low band) for the others, and on average ``--false-positives`` random boxes per frame scoring 0.1-0.5.
The appearance tracker gets an 8-dimensional embedding per detection: a random code per identity plus noise (random
codes for false positives), i.e. a good embedding head. Every tracker sees the same detections. MOTA, IDF1 and HOTA
at IoU 0.5 from ``ghostkit.track.track_metrics``, class-agnostic (the published tracker keeps no classes); "ms /
frame" is the median over ``--runs`` passes of the total ``update`` time divided by the number of frames (tracker
runs interleaved, their order rotating), as wall-clock time and as process CPU time (which load from other processes
on a shared machine does not inflate).

A published ByteTrack is run beside ours when ``cjm-byte-track`` (a packaged copy of the official tracker, NumPy and
SciPy only; ``pip install cjm-byte-track``) is installed, with the official thresholds (track_thresh 0.6, match_thresh
0.8, buffer 30); it has the official aspect-ratio Kalman state and no score fusion. It is a benchmark-only
dependency.

The detector row times a ghostkit detect model (untrained: weights do not change its cost) on one 320 x 320 image,
network only (box decoding and NMS left out), in eval mode under ``torch.inference_mode``, interleaved with the
tracker passes, on ``--threads`` torch threads (default 1, as the trackers, which run on one thread: more threads
make the detector faster in wall-clock time and the ratio larger); the ratio columns are association time / detector
time, wall-clock and CPU (the bar: at most 5%).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import torch

from ghostkit.data.formats.mot import read_mot
from ghostkit.data.tracks import write_tracks
from ghostkit.engine.detect import detect_head_config
from ghostkit.tasks.detect import DEFAULT_ARCH
from ghostkit.tasks.model import build_task_model
from ghostkit.track import build_tracker, track_metrics

# The simulated scores (true positives about 0.9, occluded objects and false positives 0.1-0.5) are those of a
# detector calibrated like ByteTrack's YOLOX on MOT17, so every tracker runs with the ByteTrack paper's MOT17
# thresholds, as the published tracker beside them; ghostkit's own defaults (ByteTrack's for general video, 0.5 / new
# track 0.6) are for detectors scored otherwise, such as its FCOS.
PAPER_THRESHOLDS = {"bytetrack": {"track_thresh": 0.6, "new_track_thresh": 0.7}, "sort": {"score_thresh": 0.6},
                    "appearance": {"track_thresh": 0.6, "new_track_thresh": 0.7}}


def simulate(seq, rng: np.random.Generator, noise: float, false_positives: float, size: int) -> list[dict]:
    """Per-frame detector-like output (boxes, scores, labels, embeddings) from a sequence's ground truth."""
    codes: dict[int, np.ndarray] = {}
    frames = []
    for frame in range(1, seq.length + 1):
        g = seq.gt.get(frame, {"ids": np.zeros(0, int), "boxes": np.zeros((0, 4)), "labels": np.zeros(0, int),
                               "visibility": np.zeros(0)})
        keep = (g["visibility"] >= 0.15) & (rng.random(len(g["ids"])) >= 0.03)
        boxes = g["boxes"][keep] + rng.normal(0, noise, (int(keep.sum()), 4))
        scores = np.where(g["visibility"][keep] >= 0.5, rng.uniform(0.8, 1.0, int(keep.sum())),
                          rng.uniform(0.2, 0.4, int(keep.sum())))
        emb = [codes.setdefault(int(i), rng.normal(size=8)) + rng.normal(0, 0.2, 8) for i in g["ids"][keep]]
        labels = list(g["labels"][keep])
        for _ in range(rng.poisson(false_positives)):
            xy, wh = rng.uniform(0, size, 2), rng.uniform(10, 40, 2)
            boxes = np.concatenate([boxes, [[*xy, *(xy + wh)]]])
            scores = np.append(scores, rng.uniform(0.1, 0.5))
            emb.append(rng.normal(size=8))
            labels.append(int(rng.integers(3)))
        frames.append({"boxes": torch.as_tensor(boxes, dtype=torch.float32), "scores": torch.as_tensor(scores),
                       "labels": torch.as_tensor(labels, dtype=torch.int64),
                       "embeddings": torch.as_tensor(np.array(emb).reshape(-1, 8))})
    return frames


class PublishedByteTrack:
    """cjm-byte-track's BYTETracker behind ghostkit's ``update(detections) -> tracks`` interface."""

    def __init__(self, size: int) -> None:
        from cjm_byte_track.byte_tracker import BYTETracker

        self.tracker, self.size = BYTETracker(track_thresh=0.6, track_buffer=30, match_thresh=0.8), size

    def update(self, det: dict) -> dict:
        out = np.concatenate([det["boxes"].numpy(), det["scores"].numpy()[:, None]], axis=1)
        tracks = self.tracker.update(out, (self.size, self.size), (self.size, self.size))
        return {"ids": torch.tensor([t.track_id for t in tracks], dtype=torch.int64),
                "boxes": torch.tensor(np.array([t.tlbr for t in tracks]).reshape(-1, 4)),
                "scores": torch.tensor([float(t.score) for t in tracks])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ghostnet_100", help="detector backbone")
    parser.add_argument("--imgsz", type=int, default=320, help="detector input size")
    parser.add_argument("--runs", type=int, default=3, help="timed passes per tracker")
    parser.add_argument("--noise", type=float, default=1.5, help="box jitter (pixels)")
    parser.add_argument("--false-positives", type=float, default=0.3, help="random boxes per frame on average")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the detector")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        # six sequences of the validation's kind: the training split's crowding and shared colours left out
        root = write_tracks(tmp, seed=args.seed, imgsz=160, train_sequences=4, train_frames=80, train_objects=None,
                            train_colours=None)
        seqs = [s for split in ("train", "val") for s in read_mot(root, split).sequences]
    size = seqs[0].width
    rng = np.random.default_rng(args.seed)
    dets = {s.name: simulate(s, rng, args.noise, args.false_positives, size) for s in seqs}
    n_frames = sum(s.length for s in seqs)

    factories = {name: (lambda name=name: build_tracker(name, **PAPER_THRESHOLDS[name]))
                 for name in ("bytetrack", "sort", "appearance")}
    try:
        import cjm_byte_track  # noqa: F401
        factories["cjm-byte-track (published ByteTrack)"] = lambda: PublishedByteTrack(size)
    except ImportError:
        print("cjm-byte-track is not installed: the published ByteTrack is left out")

    config = {"backbone": {"name": args.model, "kwargs": {}}, "class_names": {}, "imgsz": [args.imgsz] * 2,
              "heads": {"detect": {"num_classes": 3, "arch": DEFAULT_ARCH, **detect_head_config(DEFAULT_ARCH,
                                                                                                  args.imgsz)}}}
    detector = build_task_model(config).eval()
    image = torch.randn(1, 3, args.imgsz, args.imgsz)

    def detector_ms(repeats: int = 5) -> tuple[float, float]:
        """Median wall-clock and CPU milliseconds of one forward."""
        wall, cpu = [], []
        with torch.inference_mode():
            for _ in range(repeats):
                t, c = time.perf_counter(), time.process_time()
                detector(image)
                wall.append(time.perf_counter() - t)
                cpu.append(time.process_time() - c)
        return statistics.median(wall) * 1000, statistics.median(cpu) * 1000

    detector_ms(2)  # warm-up
    names = list(factories)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    det_times, results = [], {}
    for run in range(args.runs):
        det_times.append(detector_ms())
        for name in names[run % len(names):] + names[:run % len(names)]:
            hyp, wall, cpu = {}, 0.0, 0.0
            for seq in seqs:
                tracker = factories[name]()
                out = {}
                t, c = time.perf_counter(), time.process_time()
                for frame, d in enumerate(dets[seq.name], 1):
                    out[frame] = tracker.update(d)
                wall, cpu = wall + time.perf_counter() - t, cpu + time.process_time() - c
                hyp[seq.name] = out
            times[name].append((wall * 1000 / n_frames, cpu * 1000 / n_frames))
            results[name] = hyp
    gt = {s.name: s.gt for s in seqs}
    det_wall, det_cpu = (statistics.median(t[i] for t in det_times) for i in (0, 1))
    print(f"{len(seqs)} sequences, {n_frames} frames of {size} x {size}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; detector {args.model} {DEFAULT_ARCH} at {args.imgsz} px: "
          f"{det_wall:.1f} ms / image wall-clock, {det_cpu:.1f} ms CPU")
    print("| tracker | MOTA | IDF1 | HOTA | ID switches | ms / frame (wall) | ms / frame (CPU) | / detector (wall) "
          "| / detector (CPU) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in names:
        m = track_metrics(gt, results[name], match_labels=False)
        wall, cpu = (statistics.median(t[i] for t in times[name]) for i in (0, 1))
        print(f"| {name} | {m['mota']:.3f} | {m['idf1']:.3f} | {m['hota']:.3f} | {m['id_switches']} | {wall:.3f} | "
              f"{cpu:.3f} | {100 * wall / det_wall:.2f}% | {100 * cpu / det_cpu:.2f}% |")


if __name__ == "__main__":
    main()
