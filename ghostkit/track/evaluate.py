"""``ghostkit val --task track``: a detector tracks every validation sequence of a MOTChallenge folder, scored
against its ground truth.

metrics.json holds :data:`TRACK_METRICS` (``mota``, ``idf1``, ``hota``, ``id_switches``, ``fps``; DESIGN.md's track
keys) plus HOTA's ``deta`` and ``assa``, overall and under ``per_sequence``, at IoU 0.5 (:func:`track_metrics`,
class-aware: a track of the wrong class counts as a miss and a false positive). ``class_agnostic`` holds the same
overall metrics with classes ignored: the gap between the two is what the detector's classification costs, the rest
is detection and association. ``fps``: frames per second of detection and association together (frame decoding and
the writing of results left out), over all sequences and per sequence. The scored tracks are those after the
offline pass (:mod:`ghostkit.track.offline`: one class per track, gaps of up to ``max_gap`` frames filled,
``backfill`` frames added before each track's first), what ``ghostkit track`` writes; ``online`` holds the overall
metrics of the tracker's per-frame output before it, and ``offline_pass`` the pass's options. With ``online=True``
that output is what is scored and written, ``online`` is left out and ``offline_pass`` is null. Each sequence's
scored tracks are also written as ``<out>/<SEQ>.txt`` (MOTChallenge result format), so other evaluation tools can
be run on them.

Tracking is not an entry of the task registry: nothing trains for it (the models are ``detect`` or
``detect,embed`` runs) and the registry's readers (training, data, export) have nothing to do with it; its keys
live here.
"""

from __future__ import annotations

import json
from pathlib import Path

from ghostkit.data.formats.mot import read_mot, write_mot_results
from ghostkit.data.tracks import data_root
from ghostkit.errors import GhostkitError
from ghostkit.io import atomic_write_text
from ghostkit.track.metrics import track_metrics
from ghostkit.track.offline import BACKFILL, MAX_GAP, refine_tracks
from ghostkit.track.stream import SourceSequence, load_detector, track_sequence, tracker_options
from ghostkit.track.tracker import build_tracker

__all__ = ["TRACK_METRICS", "validate_tracking"]

TRACK_METRICS = ("mota", "idf1", "hota", "id_switches", "fps")


def validate_tracking(weights, data: str | Path, out: str | Path | None = None, tracker: str = "bytetrack",
                      conf: float | None = None, split: str = "val", device: str = "cpu", online: bool = False,
                      max_gap: int = MAX_GAP, backfill: int = BACKFILL, **options) -> dict:
    """Track ``data``'s ``split`` sequences (a MOTChallenge folder or built-in ``tracks``) with ``weights``'
    detector and write ``metrics.json`` and the ``<SEQ>.txt`` results into ``out`` (default: ``val/`` beside
    the weights). ``online``: score the tracker's per-frame output, without the offline pass; ``max_gap`` and
    ``backfill``: that pass's options. Returns the metrics."""
    refine_tracks([], max_gap, backfill)  # bad options fail before any frame is read
    model = load_detector(weights, tracker).to(device)
    root = data_root(data)
    if not root.is_dir():
        raise GhostkitError(f"{root}: no such data folder (tracking data: a MOTChallenge folder or tracks)")
    mot = read_mot(root, split)
    names = model.config.get("class_names", {}).get("detect")
    if names is not None and names != mot.class_names:
        raise GhostkitError(f"{data}: its classes {mot.class_names[:5]} are not the detector's {names[:5]}")
    options = {**tracker_options(tracker, conf), **options}
    out_dir = Path(out) if out else Path(weights).parent / "val" if isinstance(weights, (str, Path)) else \
        Path("val")
    gt, hyp, live, seconds, frames = {}, {}, {}, {}, {}
    for seq in mot.sequences:
        source = SourceSequence(seq.name, seq.frame_rate, str(seq.folder), "mot", seq.frames)
        results = [(r["frame"], r["tracks"], r["seconds"]) for r in track_sequence(
            model, source, build_tracker(tracker, frame_rate=seq.frame_rate, **options), device)]
        gt[seq.name] = seq.gt
        live[seq.name] = [(f, t) for f, t, _ in results]
        scored = live[seq.name] if online else refine_tracks(live[seq.name], max_gap, backfill)
        hyp[seq.name] = dict(scored)
        seconds[seq.name], frames[seq.name] = sum(s for *_, s in results), len(results)
        write_mot_results(out_dir / f"{seq.name}.txt", scored)
    values = track_metrics(gt, hyp, iou_threshold=0.5)
    agnostic = track_metrics(gt, hyp, iou_threshold=0.5, match_labels=False)
    values["class_agnostic"] = {k: v for k, v in agnostic.items() if k != "per_sequence"}
    values["fps"] = sum(frames.values()) / max(sum(seconds.values()), 1e-9)
    for name, row in values["per_sequence"].items():
        row["fps"] = frames[name] / max(seconds[name], 1e-9)
    if not online:
        per_frame = track_metrics(gt, {name: dict(pairs) for name, pairs in live.items()}, iou_threshold=0.5)
        values["online"] = {k: v for k, v in per_frame.items() if k != "per_sequence"}
    values["tracker"] = tracker
    values["offline_pass"] = None if online else {"max_gap": max_gap, "backfill": backfill}
    atomic_write_text(out_dir / "metrics.json", json.dumps(values, indent=2))
    return values
