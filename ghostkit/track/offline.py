"""The offline pass over a finished sequence's tracks: what ``ghostkit track`` writes and ``ghostkit val --task
track`` scores, unless ``--online`` is given.

- **One class per track**: every frame of a track takes the class of its whole-life vote, which is the label the
  tracker reported on the track's last frame (the score-weighted vote over all the detections matched to it). Online,
  a tracker can only report the vote so far, so a track whose first detections had the wrong class carries that
  class on its first frames.
- **Gaps filled**: where a track was lost for at most ``max_gap`` frames (mostly behind another object) and found
  again, its box on the frames between is interpolated linearly from the boxes around the gap, with the lower of
  their two scores. ByteTrack's published MOT17 / MOT20 results are made with such interpolation over gaps of up to
  20 frames, the default here.
- **Starts reported**: a ByteTrack track is reported from its second detection on; the first, which started it, is
  held back until the next frame confirms it. The pass adds ``backfill`` frames (default 1: that first one) before
  the first reported frame of each track reported on 3 frames or more, with boxes extrapolated back at the velocity
  of its first two frames and its first score. On the built-in ``tracks`` 2 and 3 frames scored higher still (an
  object coming into view or out of an occlusion scores under the new-track threshold for a while), but how long
  depends on the video, so the default stays at the frame the tracker holds back.

All three need frames that come later, so the per-frame output of ``ghostkit.track(...)`` and the annotated video of
``--save`` are the online tracker's; a results file (camera runs included) gets the pass when its sequence ends. On
the built-in ``tracks`` (5 detectors of the default training, seeds 0-4) the pass raises MOTA on the 2 validation
sequences from 0.699 to 0.745 on average and IDF1 from 0.738 to 0.768, and on 10 validation sequences from 0.635 to
0.683 and 0.727 to 0.757 (docs/benchmarks.md, Tracking).

Written here: it is a few lines over the tracker's own output, and no maintained library offers it (ByteTrack
ships its interpolation as a script).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import torch

from ghostkit.errors import GhostkitError

__all__ = ["BACKFILL", "MAX_GAP", "refine_tracks"]

MAX_GAP = 20  # frames: the longest gap filled by default (ByteTrack's interpolation)
BACKFILL = 1  # frames added before a track's first by default: the frame whose detection started it


def _check(option: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise GhostkitError(f"{option} must be a whole number of frames >= 0, got {value!r}")


def refine_tracks(frames: Iterable[tuple[int, Mapping]], max_gap: int = MAX_GAP,
                  backfill: int = BACKFILL) -> list[tuple[int, dict]]:
    """The module docstring's pass over one sequence. ``frames``: ``(frame number, tracks)`` pairs in frame order,
    ``tracks`` a tracker's output (``{"ids", "boxes" xyxy, "scores", "labels"}``, tensors or arrays). Returns the
    same pairs with torch tensors (int64 ids and labels, float32 boxes and scores); added rows follow a frame's own.
    ``max_gap``: the longest run of missing frames to fill (0: none); ``backfill``: frames added before a track's
    first (0: none)."""
    _check("--max-gap", max_gap)
    _check("--backfill", backfill)
    rows = [(int(f), {k: np.asarray(t[k]) for k in ("ids", "boxes", "scores", "labels") if k in t})
            for f, t in frames]

    def box(pos: int, r: int) -> np.ndarray:
        return rows[pos][1]["boxes"].reshape(-1, 4)[r].astype(np.float64)

    def score(pos: int, r: int) -> float:
        t = rows[pos][1]
        return float(t["scores"].reshape(-1)[r]) if "scores" in t else 1.0

    last_label, seen = {}, {}  # id → its label on its last frame; id → [(position in rows, row index)]
    for pos, (_, t) in enumerate(rows):
        for r, i in enumerate(t["ids"].reshape(-1).tolist()):
            seen.setdefault(i, []).append((pos, r))
            if "labels" in t:
                last_label[i] = int(t["labels"].reshape(-1)[r])
    added: dict[int, list] = {}
    for i, where in seen.items():
        for (p0, r0), (p1, r1) in zip(where, where[1:]):  # gaps
            f0, f1 = rows[p0][0], rows[p1][0]
            if p1 - p0 < 2 or f1 - f0 - 1 > max_gap:
                continue
            b0, b1, low = box(p0, r0), box(p1, r1), min(score(p0, r0), score(p1, r1))
            for p in range(p0 + 1, p1):
                a = (rows[p][0] - f0) / (f1 - f0)
                added.setdefault(p, []).append((i, (1 - a) * b0 + a * b1, low))
        if not backfill or len(where) < 3:
            continue
        (p0, r0), (p1, r1) = where[:2]
        if rows[p1][0] == rows[p0][0] + 1:  # the start, back at the velocity of the first two frames
            b0, velocity = box(p0, r0), box(p1, r1) - box(p0, r0)
            for p in range(p0 - 1, -1, -1):
                k = rows[p0][0] - rows[p][0]
                b = b0 - k * velocity
                if k > backfill or min(b[2] - b[0], b[3] - b[1]) <= 0:
                    break
                added.setdefault(p, []).append((i, b, score(p0, r0)))
    out = []
    for pos, (frame, t) in enumerate(rows):
        extra = added.get(pos, [])
        ids = np.concatenate([t["ids"].reshape(-1), [i for i, _, _ in extra]]).astype(np.int64)
        boxes = np.concatenate([t["boxes"].reshape(-1, 4), np.reshape([b for _, b, _ in extra], (-1, 4))])
        scores = np.concatenate([t["scores"].reshape(-1) if "scores" in t else np.ones(len(t["ids"])),
                                 [s for _, _, s in extra]])
        labels = [last_label.get(i, 0) for i in ids.tolist()]
        out.append((frame, {"ids": torch.from_numpy(ids), "boxes": torch.from_numpy(boxes.astype(np.float32)),
                            "scores": torch.from_numpy(scores.astype(np.float32)),
                            "labels": torch.tensor(labels, dtype=torch.int64)}))
    return out
