"""Tracking metrics at an IoU threshold: MOTA, IDF1 and ID switches (py-motmetrics) and HOTA (below).

- CLEAR MOT (MOTA): Bernardin & Stiefelhagen, 2008, https://doi.org/10.1155/2008/246309
- IDF1: Ristani et al., ECCV workshops 2016, https://arxiv.org/abs/1609.01775
- HOTA: Luiten et al., IJCV 2021, https://arxiv.org/abs/2009.07736

py-motmetrics computes MOTA, IDF1 and ID switches; its IoU helper breaks under NumPy 2, so the distance matrices
(``1 - IoU``, no match below the threshold) are computed here and handed to its accumulator. HOTA is implemented
here because the PyPI TrackEval package pulls in the full ``opencv-python`` next to the headless build that the video
extra installs; it follows the paper and TrackEval's definition: per IoU threshold alpha in 0.05, 0.10, ..., 0.95,
detections are matched per frame by the Hungarian algorithm on ``IoU x global alignment score`` (how often the
pair's identities overlap over the whole sequence), pairs with IoU >= alpha count as true positives,
``DetA = TP / (TP + FN + FP)``, ``AssA`` = the mean over true positives of the pair's association IoU
``TPA / (TPA + FNA + FPA)``, ``HOTA_alpha = sqrt(DetA x AssA)``, and HOTA is the mean over alpha. Several sequences
are combined as TrackEval does: TP / FN / FP summed, AssA weighted by each sequence's TP. On 30 random sequences
its HOTA, DetA and AssA equal those of TrackEval 1.3.0's ``HOTA`` metric exactly (checked 2026-12-02).

Inputs, per sequence name: ``{frame: {"ids": N int, "boxes": N x 4 xyxy, "labels": N int (optional)}}``, as
:func:`ghostkit.data.formats.mot.read_mot` gives for ground truth and a tracker's per-frame output gives for
hypotheses (torch tensors or NumPy arrays). Where both sides carry labels, boxes of different classes never match.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from ghostkit.errors import GhostkitError
from ghostkit.track.matching import iou_distance

__all__ = ["HOTA_ALPHAS", "hota", "track_metrics"]

HOTA_ALPHAS = np.arange(0.05, 0.96, 0.05)  # the 19 localisation thresholds of the HOTA paper
Frames = Mapping[int, Mapping[str, object]]


def track_metrics(gt: Mapping[str, Frames], hyp: Mapping[str, Frames], iou_threshold: float = 0.5,
                  match_labels: bool = True) -> dict:
    """``{"mota", "idf1", "hota", "deta", "assa", "id_switches", "per_sequence": {name: {same keys}}}``.

    Sequences of ``gt`` missing from ``hyp`` count as tracked with nothing; sequences only in ``hyp`` are an error.
    MOTA can be negative (more errors than objects). HOTA does not use ``iou_threshold`` (it averages over alpha).
    """
    try:
        import motmetrics
    except ImportError:
        raise GhostkitError("tracking metrics need py-motmetrics: pip install 'ghostkit[track]'") from None
    extra = sorted(set(hyp) - set(gt))
    if extra:
        raise GhostkitError(f"tracking results for sequences without ground truth: {', '.join(extra)}")
    names = sorted(gt)
    accs, hotas = [], []
    for name in names:
        seq_gt, seq_hyp = _frames(gt[name]), _frames(hyp.get(name, {}))
        acc = motmetrics.MOTAccumulator(auto_id=False)
        for frame in sorted(set(seq_gt) | set(seq_hyp)):
            g, h = seq_gt.get(frame, _EMPTY), seq_hyp.get(frame, _EMPTY)
            dist = iou_distance(g["boxes"], h["boxes"])
            dist[dist > 1.0 - iou_threshold] = np.nan  # motmetrics: NaN = may not match
            if match_labels:
                dist[_label_clash(g, h)] = np.nan
            acc.update(g["ids"].tolist(), h["ids"].tolist(), dist, frameid=frame)
        accs.append(acc)
        hotas.append(_hota_counts(seq_gt, seq_hyp, match_labels))
    if not names:
        raise GhostkitError("tracking metrics: no ground-truth sequences")
    summary = motmetrics.metrics.create().compute_many(
        accs, names=names, metrics=["mota", "idf1", "num_switches"], generate_overall=True)

    def row(key: str, counts: list[dict]) -> dict:
        r = summary.loc[key]
        return {"mota": float(r["mota"]), "idf1": float(r["idf1"]), **_hota_scores(counts),
                "id_switches": int(r["num_switches"])}

    out = row("OVERALL", hotas)
    out["per_sequence"] = {name: row(name, [h]) for name, h in zip(names, hotas)}
    return out


def hota(gt: Frames, hyp: Frames, match_labels: bool = True) -> dict[str, float]:
    """HOTA, DetA and AssA (each averaged over :data:`HOTA_ALPHAS`) of one sequence."""
    return _hota_scores([_hota_counts(_frames(gt), _frames(hyp), match_labels)])


_EMPTY = {"ids": np.zeros(0, np.int64), "boxes": np.zeros((0, 4)), "labels": None}


def _frames(frames: Frames) -> dict[int, dict]:
    """Per frame: NumPy ``ids`` (int64), ``boxes`` (float64 N x 4) and ``labels`` (int64, or None)."""
    def arr(v) -> np.ndarray:
        return v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)

    out = {}
    for frame, d in frames.items():
        ids, boxes = arr(d["ids"]).astype(np.int64).reshape(-1), arr(d["boxes"]).astype(np.float64).reshape(-1, 4)
        labels = arr(d["labels"]).astype(np.int64).reshape(-1) if d.get("labels") is not None else None
        if len(ids) != len(boxes) or (labels is not None and len(labels) != len(ids)):
            raise GhostkitError(f"tracking metrics: frame {frame} has {len(ids)} ids but {len(boxes)} boxes")
        if len(set(ids.tolist())) != len(ids):
            raise GhostkitError(f"tracking metrics: frame {frame} repeats an id")
        out[int(frame)] = {"ids": ids, "boxes": boxes, "labels": labels}
    return out


def _label_clash(g: dict, h: dict) -> np.ndarray:
    if g["labels"] is None or h["labels"] is None:
        return np.zeros((len(g["ids"]), len(h["ids"])), dtype=bool)
    return g["labels"][:, None] != h["labels"][None, :]


def _hota_counts(gt: dict[int, dict], hyp: dict[int, dict], match_labels: bool) -> dict:
    """TP / FN / FP per alpha and the association sum ``sum over TP pairs of their association IoU``."""
    gt_ids = sorted({i for f in gt.values() for i in f["ids"].tolist()})
    hyp_ids = sorted({i for f in hyp.values() for i in f["ids"].tolist()})
    gi, hi = {v: k for k, v in enumerate(gt_ids)}, {v: k for k, v in enumerate(hyp_ids)}
    frames = sorted(set(gt) | set(hyp))
    sims = {}
    # Pass 1: how much each gt / hyp identity pair overlaps over the sequence (the global alignment score).
    potential = np.zeros((len(gt_ids), len(hyp_ids)))
    gt_count, hyp_count = np.zeros(len(gt_ids)), np.zeros(len(hyp_ids))
    for frame in frames:
        g, h = gt.get(frame, _EMPTY), hyp.get(frame, _EMPTY)
        sim = 1.0 - iou_distance(g["boxes"], h["boxes"])
        if match_labels:
            sim[_label_clash(g, h)] = 0.0
        sims[frame] = sim
        rows, cols = [gi[i] for i in g["ids"].tolist()], [hi[i] for i in h["ids"].tolist()]
        gt_count[rows] += 1
        hyp_count[cols] += 1
        if sim.size:
            # soft share of each pair, so one box overlapping several is not counted several times over
            denom = sim.sum(axis=1, keepdims=True) + sim.sum(axis=0, keepdims=True) - sim
            potential[np.ix_(rows, cols)] += np.divide(sim, denom, out=np.zeros_like(sim), where=denom > 0)
    alignment = potential / np.maximum(gt_count[:, None] + hyp_count[None, :] - potential, 1e-12)

    # Pass 2: per-frame matching on IoU x alignment; counts per alpha.
    n_alpha = len(HOTA_ALPHAS)
    tp, fn, fp = np.zeros(n_alpha), np.zeros(n_alpha), np.zeros(n_alpha)
    matches = np.zeros((n_alpha, len(gt_ids), len(hyp_ids)))
    for frame in frames:
        g, h, sim = gt.get(frame, _EMPTY), hyp.get(frame, _EMPTY), sims[frame]
        rows, cols = np.array([gi[i] for i in g["ids"].tolist()], int), np.array([hi[i] for i in h["ids"].tolist()],
                                                                                  int)
        if sim.size:
            r, c = linear_sum_assignment(-(alignment[np.ix_(rows, cols)] * sim))
        else:
            r = c = np.zeros(0, int)
        for a, alpha in enumerate(HOTA_ALPHAS):
            ok = sim[r, c] >= alpha - np.finfo(float).eps
            n_tp = int(ok.sum())
            tp[a] += n_tp
            fn[a] += len(rows) - n_tp
            fp[a] += len(cols) - n_tp
            matches[a, rows[r[ok]], cols[c[ok]]] += 1
    ass_iou = matches / np.maximum(gt_count[None, :, None] + hyp_count[None, None, :] - matches, 1e-12)
    return {"tp": tp, "fn": fn, "fp": fp, "ass": (matches * ass_iou).sum(axis=(1, 2))}


def _hota_scores(counts: list[dict]) -> dict[str, float]:
    tp = sum(c["tp"] for c in counts)
    fn, fp, ass = sum(c["fn"] for c in counts), sum(c["fp"] for c in counts), sum(c["ass"] for c in counts)
    deta = tp / np.maximum(tp + fn + fp, 1)
    assa = ass / np.maximum(tp, 1)
    return {"hota": float(np.sqrt(deta * assa).mean()), "deta": float(deta.mean()), "assa": float(assa.mean())}
