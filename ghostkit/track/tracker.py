"""Multi-object trackers on top of any detector: ByteTrack (default), SORT and an appearance (JDE / FairMOT) tracker.

- ByteTrack: Zhang et al., "ByteTrack: Multi-Object Tracking by Associating Every Detection Box", ECCV 2022,
  https://arxiv.org/abs/2110.06864
- SORT: Bewley et al., "Simple Online and Realtime Tracking", ICIP 2016, https://arxiv.org/abs/1602.00763
- JDE: Wang et al., "Towards Real-Time Multi-Object Tracking", ECCV 2020, https://arxiv.org/abs/1909.12605;
  FairMOT: Zhang et al., IJCV 2021, https://arxiv.org/abs/2004.01888

A tracker is stateful and fed one frame at a time::

    tracker = build_tracker("bytetrack")
    for detections in per_frame_detections:      # a detect head's postprocess output for one image
        tracks = tracker.update(detections)      # {"ids", "boxes", "scores", "labels"}

``detections``: ``{"boxes": N x 4 xyxy, "scores": N, "labels": N int64}`` (torch tensors or NumPy arrays; missing
``scores`` count as 1, missing ``labels`` as 0), plus ``"embeddings": N x D`` for the appearance tracker.
``tracks``: ``{"ids": K int64 (from 1, unique per tracker), "boxes": K x 4 float32 xyxy (Kalman-filtered),
"scores": K float32 (of the detection matched this frame), "labels": K int64}``.

Score thresholds: the defaults are ByteTrack's own for running on any video (``tools/demo_track.py``: high 0.5,
new track high + 0.1 = 0.6, low 0.1), not its MOT17 evaluation settings (high 0.6, new track 0.7, chosen for a
YOLOX detector trained on MOT17, whose true positives score high) nor Ultralytics' (``bytetrack.yaml``: high and new
track 0.25, for YOLOv8's scores). An FCOS-style ghostkit detector (score ``sqrt(class x centre-ness)``) scores many
true positives between 0.5 and 0.6, which the MOT17 settings leave unused, and many false positives between 0.25
and 0.5, which Ultralytics' would turn into tracks; docs/benchmarks.md has the three side by side. A detector
scored otherwise needs its own ``track_thresh`` (``--conf``). ByteTrack's second stage only sees detections down to
``low_thresh``, so the detector must be run with a confidence threshold at or below it (``min_score``;
``ghostkit.track`` does so).

Association prefers a track's own class but does not require it (ByteTrack and the appearance tracker:
``class_first``, on by default): each matching stage first pairs tracks with detections of the track's class, then
pairs what is left whatever the class. Where two objects of different classes cross, their boxes stay with their
tracks; a detector that wavers between two classes for one object still keeps a single track, as with the published
trackers' class-agnostic association. With one class this is ByteTrack's matching unchanged. The track's label is
the class with the highest summed score over its matched detections (a score-weighted majority vote, as BoT-SORT's
multi-class tracks keep), so a label that flickers for a frame or two does not change it. On the built-in
``tracks`` (7 detectors, ``val --task track``) the class-first matching raised MOTA on 10 validation sequences for 6
of 7 detectors (by 0.028 on average) and IDF1 for 5 of 7 (by 0.013; docs/benchmarks.md, Tracking).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ghostkit.errors import GhostkitError
from ghostkit.track.kalman import CHI2_95_4DOF, KalmanBoxFilter, xywh_to_xyxy, xyxy_to_xywh
from ghostkit.track.matching import cosine_distance, iou_distance, linear_assignment

__all__ = ["TRACKERS", "AppearanceTracker", "ByteTracker", "SortTracker", "Tracker", "build_tracker"]


@dataclass
class _Track:
    id: int
    mean: np.ndarray  # 8: (cx, cy, a, h) and velocities
    cov: np.ndarray  # 8 x 8
    score: float
    votes: dict[int, float]  # class → summed score of the detections matched to this track
    start_frame: int
    last_frame: int  # the last frame a detection was matched
    state: str = "tracked"  # "tracked" (matched this frame or the last) or "lost" (kept for re-identification)
    activated: bool = False  # confirmed: matched on two frames, or born on the first frame
    hit_streak: int = 0  # consecutive matches after the first detection (SORT's confirmation)
    embedding: np.ndarray | None = field(default=None, repr=False)
    box: np.ndarray = field(default=None, repr=False)  # 4: xyxy of `mean`, kept in step with it by `_set_states`

    @property
    def label(self) -> int:
        """The class with the most votes (the first voted for, on a tie)."""
        return max(self.votes, key=self.votes.get)


def _set_states(tracks: list[_Track], mean: np.ndarray, cov: np.ndarray) -> None:
    """Store ``N x 8`` means and ``N x 8 x 8`` covariances into ``N`` tracks, with their xyxy boxes."""
    boxes = xywh_to_xyxy(mean)
    for i, t in enumerate(tracks):
        t.mean, t.cov, t.box = mean[i], cov[i], boxes[i]


class Tracker:
    """Base class: detection parsing, batched Kalman steps, track bookkeeping and output. Subclasses define
    :meth:`_associate`, which receives the parsed detections of one frame and returns the tracks to report, and
    :attr:`min_score`, the lowest detection score they use (run the detector with a confidence threshold at or
    below it)."""

    needs_embeddings = False
    min_score = 0.0

    def __init__(self, frame_rate: float = 30.0, min_box_area: float = 10.0) -> None:
        if frame_rate <= 0:
            raise GhostkitError(f"tracker: frame_rate must be > 0, got {frame_rate}")
        self.frame_rate, self.min_box_area = frame_rate, min_box_area
        self.kalman = KalmanBoxFilter()
        self.reset()

    def reset(self) -> None:
        """Forget every track and restart ids at 1 and the frame count at 0 (call between sequences)."""
        self.frame_id = 0
        self.tracks: list[_Track] = []
        self._next_id = 1

    def update(self, detections: dict) -> dict[str, torch.Tensor]:
        """Advance one frame with that frame's detections; returns the confirmed tracks present in it."""
        self.frame_id += 1
        boxes, scores, labels, embeddings = _parse(detections, needs_embeddings=self.needs_embeddings)
        shown = self._associate(boxes, scores, labels, embeddings)
        shown = [t for t in shown if _area(t.box) >= self.min_box_area]
        return {
            "ids": torch.tensor([t.id for t in shown], dtype=torch.int64),
            "boxes": torch.from_numpy(np.stack([t.box for t in shown]).astype(np.float32)) if shown
            else torch.zeros(0, 4),
            "scores": torch.tensor([t.score for t in shown], dtype=torch.float32),
            "labels": torch.tensor([t.label for t in shown], dtype=torch.int64),
        }

    def _associate(self, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                   embeddings: np.ndarray | None) -> list[_Track]:
        raise NotImplementedError

    # ----- helpers shared by the trackers -----
    def _predict(self, tracks: list[_Track]) -> None:
        if not tracks:
            return
        mean, cov = np.stack([t.mean for t in tracks]), np.stack([t.cov for t in tracks])
        for i, t in enumerate(tracks):
            if t.state != "tracked":
                mean[i, 6:] = 0.0  # a lost track keeps moving but stops growing or shrinking (as in ByteTrack)
        _set_states(tracks, *self.kalman.predict(mean, cov))

    def _correct(self, pairs: list[tuple[_Track, int]], boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                 embeddings: np.ndarray | None) -> None:
        """Kalman-update each track with its detection and mark it tracked and confirmed."""
        if not pairs:
            return
        tracks, idx = [t for t, _ in pairs], [d for _, d in pairs]
        _set_states(tracks, *self.kalman.update(np.stack([t.mean for t in tracks]), np.stack([t.cov for t in tracks]),
                                                xyxy_to_xywh(boxes[idx])))
        for t, d in pairs:
            t.score = float(scores[d])
            t.votes[int(labels[d])] = t.votes.get(int(labels[d]), 0.0) + t.score
            t.hit_streak = t.hit_streak + 1 if t.last_frame == self.frame_id - 1 else 1
            t.last_frame, t.state, t.activated = self.frame_id, "tracked", True
            if self.needs_embeddings and embeddings is not None:
                self._update_embedding(t, embeddings[d])

    def _update_embedding(self, track: _Track, embedding: np.ndarray) -> None:
        raise NotImplementedError

    def _start(self, idx: list[int], boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
               embeddings: np.ndarray | None, activated: bool) -> list[_Track]:
        if not idx:
            return []
        mean, cov = self.kalman.initiate(xyxy_to_xywh(boxes[idx]))
        new = []
        for i, d in enumerate(idx):
            emb = _unit(embeddings[d]) if self.needs_embeddings and embeddings is not None else None
            new.append(_Track(self._next_id, mean[i], cov[i], float(scores[d]), {int(labels[d]): float(scores[d])},
                              self.frame_id, self.frame_id, activated=activated, embedding=emb))
            self._next_id += 1
        _set_states(new, mean, cov)
        return new


class ByteTracker(Tracker):
    """ByteTrack: match high-score detections to all tracks, then low-score detections to the tracks left over.

    The algorithm and defaults of the official implementation (``ifzhang/ByteTrack``: ``yolox/tracker/
    byte_tracker.py`` for the fixed values, ``tools/demo_track.py`` for the score thresholds; module docstring).

    With ``fuse_score`` the match thresholds bound the fused cost ``1 - IoU x score``, as in both implementations,
    so the score also acts inside matching: a one-frame-old track is confirmed only by a detection with
    ``IoU x score >= 0.3`` (``unconfirmed_match_thresh`` 0.7): with ``new_track_thresh`` under 0.3 an object
    entering after the first frame whose detections all score under 0.3 would never be reported.
    ``fuse_score=False`` bounds ``1 - IoU`` alone.

    Args:
        track_thresh: detections scoring above it enter the first association (demo 0.5; MOT17 evaluation 0.6).
        low_thresh: detections scoring above it and up to ``track_thresh`` enter the second one (fixed: 0.1).
        new_track_thresh: an unmatched high-score detection starts a track from this score (``track_thresh + 0.1``).
        match_thresh: maximal cost (``1 - IoU``, score-fused) of a first-stage match (0.8).
        second_match_thresh: maximal ``1 - IoU`` of a low-score match (0.5; never score-fused).
        unconfirmed_match_thresh: maximal cost (as ``match_thresh``) matching a one-frame-old track (0.7).
        track_buffer: frames a lost track is kept at 30 fps, scaled by ``frame_rate / 30`` (30).
        fuse_score: multiply IoU by the detection score in the first and unconfirmed stages (ByteTrack: on unless
            ``--mot20``; Ultralytics: on).
        duplicate_iou: a tracked and a lost track overlapping more than this are one object: the one followed for
            less time is dropped (fixed: ``1 - 0.15``).
        class_first: in every matching stage, pair tracks with detections of their own class first, then the rest
            whatever the class (module docstring); False: ByteTrack's class-agnostic matching.
        frame_rate: the video's frames per second.
        min_box_area: tracks smaller than this (pixels²) are not reported (demo ``--min_box_area``: 10).
    """

    def __init__(self, track_thresh: float = 0.5, low_thresh: float = 0.1, new_track_thresh: float = 0.6,
                 match_thresh: float = 0.8, second_match_thresh: float = 0.5, unconfirmed_match_thresh: float = 0.7,
                 track_buffer: int = 30, fuse_score: bool = True, duplicate_iou: float = 0.85,
                 class_first: bool = True, frame_rate: float = 30.0, min_box_area: float = 10.0) -> None:
        if not 0 <= low_thresh <= track_thresh:
            raise GhostkitError(f"bytetrack: need 0 <= low_thresh <= track_thresh, got {low_thresh}, {track_thresh}")
        if track_buffer < 0:
            raise GhostkitError(f"bytetrack: track_buffer must be >= 0, got {track_buffer}")
        self.track_thresh, self.low_thresh, self.new_track_thresh = track_thresh, low_thresh, new_track_thresh
        self.match_thresh, self.second_match_thresh = match_thresh, second_match_thresh
        self.unconfirmed_match_thresh, self.fuse_score, self.duplicate_iou = unconfirmed_match_thresh, fuse_score, \
            duplicate_iou
        self.class_first = class_first
        self.max_time_lost = int(frame_rate / 30.0 * track_buffer)
        self.min_score = low_thresh
        super().__init__(frame_rate, min_box_area)

    def _match_boxes(self, tracks: list[_Track], det: np.ndarray, boxes: np.ndarray, scores: np.ndarray,
                     labels: np.ndarray, thresh: float, fuse: bool = True) -> tuple[list[tuple[int, int]], list[int],
                                                                                    list[int]]:
        """Match ``tracks`` to detections ``det`` (indices) at cost ``1 - IoU`` (score-fused with ``fuse`` and
        ``fuse_score``) up to ``thresh``, pairs of the track's class first with ``class_first``; returns positions
        in ``tracks`` / ``det``."""
        cost = iou_distance(np.array([t.box for t in tracks]).reshape(-1, 4), boxes[det])
        if fuse and self.fuse_score:
            cost = 1.0 - (1.0 - cost) * scores[det][None, :]
        if not self.class_first:
            return linear_assignment(cost, thresh)
        same = np.array([t.label for t in tracks], dtype=np.int64)[:, None] == labels[det][None, :]
        first, rows, cols = linear_assignment(np.where(same, cost, np.inf), thresh)
        more, rows_left, cols_left = linear_assignment(cost[np.ix_(rows, cols)], thresh)
        return first + [(rows[i], cols[j]) for i, j in more], [rows[i] for i in rows_left], [cols[j] for j in cols_left]

    def _first_stage(self, pool: list[_Track], high: np.ndarray, boxes: np.ndarray, scores: np.ndarray,
                     labels: np.ndarray, embeddings: np.ndarray | None) -> tuple[list[tuple[int, int]], list[int],
                                                                                list[int]]:
        """Match ``pool`` tracks to high-score detections ``high`` (indices); returns pool / ``high`` positions."""
        return self._match_boxes(pool, high, boxes, scores, labels, self.match_thresh)

    def _associate(self, boxes, scores, labels, embeddings):
        high = np.flatnonzero(scores > self.track_thresh)
        low = np.flatnonzero((scores > self.low_thresh) & (scores <= self.track_thresh))
        unconfirmed = [t for t in self.tracks if t.state == "tracked" and not t.activated]
        pool = [t for t in self.tracks if t.activated]  # confirmed tracked tracks and lost ones
        self._predict(self.tracks)

        matches, left_pool, left_high = self._first_stage(pool, high, boxes, scores, labels, embeddings)
        self._correct([(pool[i], int(high[j])) for i, j in matches], boxes, scores, labels, embeddings)

        # Second stage: low-score boxes (often occluded objects) keep tracked tracks alive; lost tracks are not
        # revived by them, since background boxes score low too.
        rest = [pool[i] for i in left_pool if pool[i].state == "tracked"]
        matches, left_rest, _ = self._match_boxes(rest, low, boxes, scores, labels, self.second_match_thresh,
                                                  fuse=False)
        self._correct([(rest[i], int(low[j])) for i, j in matches], boxes, scores, labels, None)
        for i in left_rest:
            rest[i].state = "lost"

        # A track seen on one frame only must be confirmed by the next one, or it is dropped.
        high = high[left_high]
        matches, left_unconfirmed, left_high = self._match_boxes(unconfirmed, high, boxes, scores, labels,
                                                                 self.unconfirmed_match_thresh)
        self._correct([(unconfirmed[i], int(high[j])) for i, j in matches], boxes, scores, labels, embeddings)
        removed = {id(unconfirmed[i]) for i in left_unconfirmed}

        births = [int(high[j]) for j in left_high if scores[high[j]] >= self.new_track_thresh]
        born = self._start(births, boxes, scores, labels, embeddings, activated=self.frame_id == 1)
        kept = [t for t in self.tracks if id(t) not in removed
                and not (t.state == "lost" and self.frame_id - t.last_frame > self.max_time_lost)]
        self.tracks = self._drop_duplicates(kept + born)
        return [t for t in self.tracks if t.state == "tracked" and t.activated]

    def _drop_duplicates(self, tracks: list[_Track]) -> list[_Track]:
        """Where a tracked and a lost track cover the same object, keep the one followed for longer."""
        tracked = [t for t in tracks if t.state == "tracked"]
        lost = [t for t in tracks if t.state == "lost"]
        if not tracked or not lost:
            return tracks
        overlap = 1.0 - iou_distance(np.array([t.box for t in tracked]), np.array([t.box for t in lost]))
        drop = set()
        for i, j in zip(*np.nonzero(overlap > self.duplicate_iou)):
            a, b = tracked[i], lost[j]
            age_a, age_b = a.last_frame - a.start_frame, b.last_frame - b.start_frame
            drop.add(id(b) if age_a > age_b else id(a))
        return [t for t in tracks if id(t) not in drop]


class SortTracker(Tracker):
    """SORT: one IoU matching of the detections above ``score_thresh`` to Kalman-predicted tracks.

    Defaults of the reference implementation (``abewley/sort``, ``sort.py``): ``max_age`` 1, ``min_hits`` 3,
    ``iou_threshold`` 0.3. SORT used public detections and has no score threshold of its own; ``score_thresh``
    defaults to ByteTrack's high threshold (0.5), so the two differ only in their association. The motion model is
    ByteTrack's (centre, aspect ratio, height) rather than SORT's (centre, area, ratio), for the same reason.

    Args:
        score_thresh: detections scoring below it are ignored.
        iou_threshold: minimal IoU of a match.
        max_age: frames a track survives without a match.
        min_hits: consecutive matches before a track is reported (every track is reported during the first
            ``min_hits`` frames of a sequence).
        frame_rate, min_box_area: as for :class:`ByteTracker`.
    """

    def __init__(self, score_thresh: float = 0.5, iou_threshold: float = 0.3, max_age: int = 1, min_hits: int = 3,
                 frame_rate: float = 30.0, min_box_area: float = 10.0) -> None:
        if max_age < 0 or min_hits < 0:
            raise GhostkitError(f"sort: max_age and min_hits must be >= 0, got {max_age}, {min_hits}")
        self.score_thresh, self.iou_threshold, self.max_age, self.min_hits = score_thresh, iou_threshold, max_age, \
            min_hits
        self.min_score = score_thresh
        super().__init__(frame_rate, min_box_area)

    def _associate(self, boxes, scores, labels, embeddings):
        keep = np.flatnonzero(scores >= self.score_thresh)
        self._predict(self.tracks)
        cost = iou_distance(np.array([t.box for t in self.tracks]).reshape(-1, 4), boxes[keep])
        matches, _, left = linear_assignment(cost, 1.0 - self.iou_threshold)
        self._correct([(self.tracks[i], int(keep[j])) for i, j in matches], boxes, scores, labels, None)
        self.tracks += self._start([int(keep[j]) for j in left], boxes, scores, labels, None, activated=True)
        self.tracks = [t for t in self.tracks if self.frame_id - t.last_frame <= self.max_age]
        return [t for t in self.tracks if t.last_frame == self.frame_id
                and (t.hit_streak >= self.min_hits or self.frame_id <= self.min_hits)]


class AppearanceTracker(ByteTracker):
    """ByteTrack with an appearance matching first (JDE / FairMOT): embeddings settle what they can, IoU the rest.

    Before ByteTrack's IoU stages, high-score detections are matched to all tracks by cost = ``appearance_weight``
    x the cosine distance between the track's embedding (an exponential moving average of its detections'
    L2-normalised embeddings) and the detection's, + (1 - ``appearance_weight``) x the squared Mahalanobis distance
    of the detection under the track's Kalman prediction; pairs beyond the 95% chi-square gate are forbidden, pairs
    up to ``embedding_thresh`` match. What is left goes through :class:`ByteTracker`'s stages unchanged, so motion
    alone still links a detection whose appearance changed (FairMOT's own IoU fallback, 0.5, is stricter than
    ByteTrack's first stage and loses small objects whose boxes jitter by a pixel or two). Defaults from the JDE /
    FairMOT trackers (``multitracker.py``): fuse weight 0.98, embedding threshold 0.4, EMA momentum 0.9. Other
    arguments as for :class:`ByteTracker`. Detections must carry ``"embeddings": N x D``.
    """

    needs_embeddings = True

    def __init__(self, embedding_thresh: float = 0.4, appearance_weight: float = 0.98, ema_momentum: float = 0.9,
                 **bytetrack_options) -> None:
        if not 0 <= appearance_weight <= 1 or not 0 <= ema_momentum < 1:
            raise GhostkitError(f"appearance: need appearance_weight in [0, 1] and ema_momentum in [0, 1), got "
                                f"{appearance_weight}, {ema_momentum}")
        self.embedding_thresh, self.appearance_weight, self.ema_momentum = embedding_thresh, appearance_weight, \
            ema_momentum
        super().__init__(**bytetrack_options)

    def _update_embedding(self, track: _Track, embedding: np.ndarray) -> None:
        new = _unit(embedding)
        track.embedding = new if track.embedding is None else _unit(
            self.ema_momentum * track.embedding + (1 - self.ema_momentum) * new)

    def _first_stage(self, pool, high, boxes, scores, labels, embeddings):
        if not pool or len(high) == 0:
            return [], list(range(len(pool))), list(range(len(high)))
        cost = cosine_distance(np.stack([t.embedding for t in pool]), embeddings[high])
        gate = self.kalman.gating_distance(np.stack([t.mean for t in pool]), np.stack([t.cov for t in pool]),
                                           xyxy_to_xywh(boxes[high]))
        cost = self.appearance_weight * cost + (1 - self.appearance_weight) * gate
        cost[gate > CHI2_95_4DOF] = np.inf
        matches, left_pool, left_high = linear_assignment(cost, self.embedding_thresh)
        more, still_pool, still_high = super()._first_stage([pool[i] for i in left_pool], high[left_high], boxes,
                                                            scores, labels, embeddings)
        matches += [(left_pool[i], left_high[j]) for i, j in more]
        return matches, [left_pool[i] for i in still_pool], [left_high[j] for j in still_high]


TRACKERS: dict[str, type[Tracker]] = {"bytetrack": ByteTracker, "sort": SortTracker, "appearance": AppearanceTracker}


def build_tracker(name: str = "bytetrack", **options) -> Tracker:
    """A new tracker by name (``bytetrack``, ``sort``, ``appearance``) with keyword options of its class."""
    if name not in TRACKERS:
        raise GhostkitError(f"unknown tracker '{name}': choose one of {', '.join(TRACKERS)}")
    try:
        return TRACKERS[name](**options)
    except TypeError as err:  # an option the tracker does not have
        raise GhostkitError(f"tracker '{name}': {err}") from None


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


def _area(box: np.ndarray) -> float:
    return float(max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0))


def _parse(detections: dict, needs_embeddings: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """NumPy float64 boxes ``N x 4``, scores ``N``, int64 labels ``N`` and optional ``N x D`` embeddings."""
    if not isinstance(detections, dict) or "boxes" not in detections:
        raise GhostkitError("tracker: detections must be a dict with at least 'boxes' (N x 4 xyxy)")

    def arr(v) -> np.ndarray:
        return v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)

    boxes = arr(detections["boxes"]).astype(np.float64).reshape(-1, 4) if len(detections["boxes"]) else np.zeros((0, 4))
    n = len(boxes)
    scores = arr(detections["scores"]).astype(np.float64).reshape(-1) if "scores" in detections else np.ones(n)
    labels = arr(detections["labels"]).astype(np.int64).reshape(-1) if "labels" in detections else np.zeros(n, np.int64)
    embeddings = arr(detections["embeddings"]).astype(np.float64) if "embeddings" in detections else None
    if len(scores) != n or len(labels) != n or (embeddings is not None and (embeddings.ndim != 2 or len(embeddings)
                                                                             != n)):
        raise GhostkitError(f"tracker: detections disagree in length: {n} boxes, {len(scores)} scores, "
                            f"{len(labels)} labels" + ("" if embeddings is None else f", {len(embeddings)} embeddings"))
    if needs_embeddings and embeddings is None:
        raise GhostkitError("tracker 'appearance' needs detections['embeddings'] (N x D): use a detector with an "
                            "embedding head, or the 'bytetrack' tracker")
    return boxes, scores, labels, embeddings
