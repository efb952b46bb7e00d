"""``ghostkit track``: a detector and a tracker over videos, cameras, frame folders and MOTChallenge sequences."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from ..errors import GhostkitError
from .common import console

__all__ = ["track"]

TRACKER_NAMES = ("bytetrack", "sort", "appearance")  # ghostkit.track.TRACKERS, named here so --help needs no torch


def track(
    weights: str = typer.Option(..., help="detector checkpoint (train --task detect; detect,embed for appearance)"),
    source: str = typer.Option(..., help="video file, camera index (0), folder of frames, MOTChallenge sequence "
                                         "(SEQ/img1 + seqinfo.ini) or a folder of sequences"),
    out: str = typer.Option("runs/track", help="output folder: <SEQ or video stem>.txt in MOTChallenge format"),
    tracker: str = typer.Option("bytetrack", help="bytetrack, sort or appearance (needs an embed head)"),
    conf: float = typer.Option(None, help="high-score threshold of the tracker (default: the tracker's, 0.5); the "
                                          "detector itself runs down to the tracker's lowest score"),
    save: bool = typer.Option(False, "--save", help="also write an annotated video per sequence (boxes, ids, "
                                                    "trails): <out>/<name>.mp4"),
    max_frames: int = typer.Option(0, help="stop each sequence after this many frames (0: until the end)"),
    online: bool = typer.Option(False, "--online", help="write the tracker's per-frame output as it is, without the "
                                                        "offline pass (one class per track, gaps filled, "
                                                        "starts reported)"),
    max_gap: int = typer.Option(20, help="offline pass: fill a track's gaps of up to this many frames by "
                                         "interpolation (0: none)"),
    backfill: int = typer.Option(1, help="offline pass: frames reported before each track's first, extrapolated "
                                         "(1: the frame whose detection started it; 0: none)"),
    device: str = typer.Option("cpu", help="cpu or cuda"),
) -> None:
    """Track objects through a video, camera or image sequence and write MOTChallenge result files (after an offline
    pass over each finished sequence: ghostkit.track.offline)."""
    if tracker not in TRACKER_NAMES:
        raise GhostkitError(f"--tracker must be one of {', '.join(TRACKER_NAMES)}, got {tracker!r}")
    if max_frames < 0:
        raise GhostkitError(f"--max-frames must not be negative, got {max_frames}")
    import itertools

    from ..data.formats.mot import write_mot_results
    from ..track.draw import TrackDrawer
    from ..track.offline import refine_tracks
    from ..track.stream import load_detector
    from ..track.stream import track as run_tracking

    refine_tracks([], max_gap, backfill)  # bad options fail before any frame is read
    model = load_detector(weights, tracker)
    class_names = model.config.get("class_names", {}).get("detect", [])
    out_dir = Path(out)
    written, count, busy, start = [], 0, 0.0, time.perf_counter()
    results = run_tracking(model, source, tracker=tracker, conf=conf, device=device, max_frames=max_frames)
    for name, frames in itertools.groupby(results, key=lambda r: r["sequence"]):  # sequence after sequence
        console.print(f"tracking {name} ...")
        per_frame, writer = [], None
        drawer = TrackDrawer(class_names)
        try:
            for r in frames:
                per_frame.append((r["frame"], r["tracks"]))
                count, busy = count + 1, busy + r["seconds"]
                if save:
                    writer = writer or _VideoWriter(out_dir / f"{name}.mp4", r["frame_rate"])
                    writer.write(drawer(r["image"], r["tracks"]))
        finally:  # what was tracked is kept, also when the source breaks
            rows = per_frame if online else refine_tracks(per_frame, max_gap, backfill)
            write_mot_results(out_dir / f"{name}.txt", rows)
            written.append(out_dir / f"{name}.txt")
            if writer is not None:
                writer.release()
                written.append(writer.path)
    total = time.perf_counter() - start
    console.print(f"results in {out_dir}: {', '.join(p.name for p in written)}")
    console.print(f"{count} frames in {total:.1f} s: {count / max(total, 1e-9):.1f} frames/s "
                  f"({count / max(busy, 1e-9):.1f} frames/s detection + tracking)")


class _VideoWriter:
    """An mp4 (OpenCV's mp4v codec) at the sequence's frame rate, sized by its first picture."""

    def __init__(self, path: Path, fps: float) -> None:
        self.path, self.fps, self.size, self.writer = path, fps, None, None

    def write(self, picture) -> None:
        import cv2
        import numpy as np

        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.size = picture.size
            self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, self.size)
        frame = np.asarray(picture.convert("RGB").resize(self.size))
        self.writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))

    def release(self) -> None:
        if self.writer is not None:
            self.writer.release()
