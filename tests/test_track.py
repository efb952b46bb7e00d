"""Trackers (ByteTrack, SORT, appearance), the box Kalman filter, MOT metrics, the MOTChallenge reader / writer and
the built-in tracks sequences."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from ghostkit.data.formats.mot import read_mot, read_mot_boxes, read_mot_sequence, write_mot_results
from ghostkit.data.images import SkippedFilesWarning
from ghostkit.data.tracks import TRACK_CLASSES, builtin_tracks, write_tracks
from ghostkit.errors import GhostkitError
from ghostkit.track import KalmanBoxFilter, build_tracker, track_metrics
from ghostkit.track.kalman import CHI2_95_4DOF, xywh_to_xyxy, xyxy_to_xywh
from ghostkit.track.matching import iou_distance, linear_assignment
from ghostkit.track.metrics import hota
from ghostkit.track.offline import refine_tracks


@pytest.fixture(scope="module")
def tracks_root(tmp_path_factory):
    return write_tracks(tmp_path_factory.mktemp("tracks"), seed=0, imgsz=128, train_sequences=1, val_sequences=2,
                        frames=60)


def _detections(seq, noise: float = 0.0, seed: int = 0, occlusion: bool = False, embed: bool = False):
    """Per-frame detections made from a sequence's ground truth. noise: box jitter (pixels, Gaussian). occlusion:
    act like a detector on occluded objects: boxes under 15% visible are missed, those under 50% score low (0.3,
    under ByteTrack's high threshold)."""
    rng = np.random.default_rng(seed)
    codes = {}  # one random unit embedding per identity (appearance tracker)
    for frame in range(1, seq.length + 1):
        g = seq.gt.get(frame)
        if g is None:
            yield {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64),
                   **({"embeddings": torch.zeros(0, 8)} if embed else {})}
            continue
        keep = g["visibility"] >= 0.15 if occlusion else np.ones(len(g["ids"]), bool)
        boxes = g["boxes"][keep] + rng.normal(0, noise, (int(keep.sum()), 4)) if noise else g["boxes"][keep]
        scores = np.where(g["visibility"][keep] >= 0.5, 0.9, 0.3) if occlusion else np.full(int(keep.sum()), 0.9)
        det = {"boxes": torch.as_tensor(boxes, dtype=torch.float32), "scores": torch.as_tensor(scores),
               "labels": torch.as_tensor(g["labels"][keep])}
        if embed:
            for i in g["ids"][keep]:
                codes.setdefault(int(i), rng.normal(size=8))
            det["embeddings"] = torch.tensor(np.stack([codes[int(i)] + rng.normal(0, 0.2, 8) for i in g["ids"][keep]])
                                             if keep.any() else np.zeros((0, 8)))
        yield det


def _run(name: str, data, **det_options) -> tuple[dict, dict]:
    gt, hyp = {}, {}
    for seq in data.sequences:
        tracker = build_tracker(name)
        gt[seq.name] = seq.gt
        hyp[seq.name] = {f: tracker.update(d) for f, d in enumerate(_detections(seq, **det_options), 1)}
    return gt, hyp


# ----- Kalman filter -----

def test_kalman_constant_velocity():
    kf = KalmanBoxFilter()
    velocity = np.array([2.0, -1.0, 0.25, 0.5])  # cx, cy, width, height per frame

    def truth(t: int) -> np.ndarray:
        return np.array([[50.0, 80.0, 20.0, 40.0]]) + t * velocity

    mean, cov = kf.initiate(truth(0))
    for t in range(1, 25):
        mean, cov = kf.predict(mean, cov)
        mean, cov = kf.update(mean, cov, truth(t))
    np.testing.assert_allclose(mean[0, 4:], velocity, atol=0.05)
    ahead, ahead_cov = mean, cov
    for _ in range(5):  # no measurements: the filter extrapolates the motion and grows less certain
        ahead, ahead_cov = kf.predict(ahead, ahead_cov)
    np.testing.assert_allclose(ahead[0, :4], truth(29)[0], atol=0.3)
    assert np.all(np.diagonal(ahead_cov[0]) > np.diagonal(cov[0]))
    pred, pred_cov = kf.predict(mean, cov)
    gate = kf.gating_distance(pred, pred_cov, np.concatenate([truth(25), truth(25) + [30, 0, 0, 0]]))
    assert gate[0, 0] < CHI2_95_4DOF < gate[0, 1]
    boxes = np.array([[10.0, 20.0, 30.0, 60.0]])
    np.testing.assert_allclose(xywh_to_xyxy(xyxy_to_xywh(boxes)), boxes)


# ----- trackers on the built-in sequences -----

@pytest.mark.parametrize("name", ["bytetrack", "sort", "appearance"])
def test_tracker_on_perfect_and_noisy_ground_truth(tracks_root, name):
    data = read_mot(tracks_root, "val")
    embed = name == "appearance"
    perfect = track_metrics(*_run(name, data, embed=embed))
    assert perfect["mota"] >= 0.93 and perfect["idf1"] >= 0.95 and perfect["id_switches"] == 0, perfect
    noisy = track_metrics(*_run(name, data, noise=1.5, embed=embed))
    assert noisy["mota"] >= 0.9 and noisy["idf1"] >= 0.9 and noisy["id_switches"] <= 1, noisy
    assert noisy["hota"] < perfect["hota"]  # the jitter costs localisation accuracy


def test_bytetrack_keeps_ids_through_occlusion(tracks_root):
    data = read_mot(tracks_root, "val")
    gt, hyp = _run("bytetrack", data, noise=1.0, occlusion=True)
    occluded = 0
    for seq in data.sequences:
        for gid in {int(i) for g in seq.gt.values() for i in g["ids"]}:
            frames = sorted(f for f, g in seq.gt.items() if gid in g["ids"])
            vis = np.array([seq.gt[f]["visibility"][list(seq.gt[f]["ids"]).index(gid)] for f in frames])
            seen = vis >= 0.5
            if not any(not seen[k] and seen[:k].any() and seen[k + 1:].any() for k in range(len(seen))):
                continue  # only objects well seen before and after being (mostly) hidden
            occluded += 1
            owners = set()  # the track ids matched to this object (one-to-one per frame, IoU >= 0.5)
            for f in frames:
                g, h = seq.gt[f], hyp[seq.name][f]
                pairs, _, _ = linear_assignment(iou_distance(g["boxes"], h["boxes"].numpy()), 0.5)
                owners |= {int(h["ids"][j]) for i, j in pairs if g["ids"][i] == gid}
            assert len(owners) == 1, (seq.name, gid, owners)
    assert occluded >= 2  # the sequences do contain occlusions to get through
    m = track_metrics(gt, hyp)
    assert m["mota"] >= 0.85 and m["idf1"] >= 0.85, m


def _object(frame: int, score: float) -> dict:
    x = 10.0 + 3 * frame
    return {"boxes": torch.tensor([[x, 20.0, x + 20, 60.0]]), "scores": torch.tensor([score]),
            "labels": torch.tensor([0])}


def test_second_stage_recovers_low_score_boxes():
    """An object whose score drops to 0.3 for ten frames (occluded): ByteTrack's low-score stage keeps following
    it under one id; without the second stage it is not reported meanwhile, and SORT starts a new id."""
    scores = [0.9] * 10 + [0.3] * 10 + [0.9] * 10
    runs = {}
    for key, tracker in {"byte": build_tracker("bytetrack"),
                         "one_stage": build_tracker("bytetrack", low_thresh=0.5),
                         "sort": build_tracker("sort", min_hits=1)}.items():
        runs[key] = [tracker.update(_object(f, s)) for f, s in enumerate(scores, 1)]
    byte = runs["byte"]
    assert all(len(t["ids"]) == 1 for t in byte) and {int(t["ids"][0]) for t in byte} == {1}
    assert all(len(t["ids"]) == 0 for t in runs["one_stage"][10:20])
    assert {int(t["ids"][0]) for t in runs["one_stage"][20:]} == {1}  # re-found from the lost buffer
    assert {int(t["ids"][0]) for t in runs["sort"][21:]} == {2}  # a new id once confirmed
    # a low-score box far from every track starts nothing
    tracker = build_tracker("bytetrack")
    out = [tracker.update({"boxes": torch.tensor([[0.0, 0, 20, 20]]), "scores": torch.tensor([0.3])})
           for _ in range(3)]
    assert all(len(t["ids"]) == 0 for t in out)


def test_default_thresholds_use_scores_below_the_mot17_settings():
    """An FCOS-style detector's true positives often score 0.5-0.65: the default thresholds (ByteTrack's demo: high
    0.5, new track 0.6) start a track from the first detection at 0.6 and follow it under one id; the ByteTrack
    paper's MOT17 settings (high 0.6, new track 0.7) never start one."""
    scores = [0.55, 0.6, 0.65, 0.55] * 8
    default = build_tracker("bytetrack")
    assert (default.track_thresh, default.low_thresh, default.new_track_thresh) == (0.5, 0.1, 0.6)
    out = [default.update(_object(f, s)) for f, s in enumerate(scores, 1)]
    assert [len(t["ids"]) for t in out[:2]] == [0, 0]  # born on frame 2, confirmed on frame 3
    assert all(t["ids"].tolist() == [1] for t in out[2:])
    mot17 = build_tracker("bytetrack", track_thresh=0.6, new_track_thresh=0.7)
    assert all(len(mot17.update(_object(f, s))["ids"]) == 0 for f, s in enumerate(scores, 1))


@pytest.mark.parametrize("name", ["bytetrack", "sort"])
def test_class_flicker_keeps_the_track_and_its_label(name):
    """A detector that calls one object class 0 on most frames and class 1 on every third: association ignores the
    class (one id throughout) and the track reports the class with the most score, 0, on every frame; a second
    object seen as class 1 from the start keeps 1."""
    tracker = build_tracker(name, min_hits=1) if name == "sort" else build_tracker(name)
    out = []
    for frame in range(1, 16):
        a, b = _object(frame, 0.8), _object(frame, 0.6)
        b["boxes"][:, 1::2] += 60.0  # below the first object
        b["labels"][:] = 1
        a["labels"][:] = int(frame % 3 == 0)
        out.append(tracker.update({k: torch.cat([a[k], b[k]]) for k in a}))
    assert all(t["ids"].tolist() == [1, 2] for t in out), [t["ids"].tolist() for t in out]
    assert all(t["labels"].tolist() == [0, 1] for t in out)


@pytest.mark.parametrize("class_first", [True, False])
def test_crossing_objects_of_two_classes_keep_their_tracks(class_first):
    """Two side-by-side objects, class 0 (left) and class 1 (right), seen on the next frame each nearer the other's
    box: IoU alone hands each track the other object's box (ByteTrack's class-agnostic matching); matching a track's
    own class first keeps them (the scores, 0.9 for class 0 and 0.85 for class 1, tell which box a track took)."""
    tracker = build_tracker("bytetrack", class_first=class_first)
    labels, scores = torch.tensor([0, 1]), torch.tensor([0.9, 0.85])
    tracker.update({"boxes": torch.tensor([[0.0, 0, 10, 10], [6, 0, 16, 10]]), "scores": scores, "labels": labels})
    out = tracker.update({"boxes": torch.tensor([[5.0, 0, 15, 10], [1, 0, 11, 10]]), "scores": scores,
                          "labels": labels})
    took = dict(zip(out["ids"].tolist(), out["scores"].tolist()))
    assert took == pytest.approx({1: 0.9, 2: 0.85} if class_first else {1: 0.85, 2: 0.9})
    # the votes: 0.9 + 0.9 for class 0 and 0.85 + 0.85 for class 1, or, after the swap, both tracks 0.9 for class 0
    assert out["labels"].tolist() == ([0, 1] if class_first else [0, 0])


def test_appearance_settles_what_motion_cannot():
    """Two overlapping objects trade places by 2 px: IoU prefers the swap, embeddings keep each id on its object."""
    code = {"a": np.eye(8)[0], "b": np.eye(8)[1]}
    ids = {}
    for name in ("bytetrack", "appearance"):
        tracker = build_tracker(name)
        for frame in range(1, 9):
            xa, xb = (50.0, 52.0) if frame <= 5 else (52.0, 50.0)
            out = tracker.update({"boxes": torch.tensor([[xa, 10, xa + 20, 50], [xb, 10, xb + 20, 50]]),
                                  "scores": torch.tensor([0.9, 0.9]),
                                  "embeddings": torch.tensor(np.stack([code["a"], code["b"]]))})
        ids[name] = dict(zip(out["boxes"][:, 0].round().tolist(), out["ids"].tolist()))
    # object a (id 1) ends at x = 52 and b (id 2) at x = 50
    assert ids["appearance"] == {52.0: 1, 50.0: 2}
    assert ids["bytetrack"] == {52.0: 2, 50.0: 1}


def test_tracker_options_and_bad_input():
    with pytest.raises(GhostkitError, match="unknown tracker 'deepsort'"):
        build_tracker("deepsort")
    with pytest.raises(GhostkitError, match="tracker 'sort'.*track_buffer"):
        build_tracker("sort", track_buffer=5)
    with pytest.raises(GhostkitError, match="needs detections\\['embeddings'\\]"):
        build_tracker("appearance").update(_object(1, 0.9))
    with pytest.raises(GhostkitError, match="disagree in length"):
        build_tracker().update({"boxes": torch.zeros(2, 4), "scores": torch.ones(3)})
    tracker = build_tracker("bytetrack", frame_rate=60, track_buffer=30)
    assert tracker.max_time_lost == 60 and tracker.min_score == 0.1 and build_tracker("sort").min_score == 0.5
    out = tracker.update({"boxes": np.zeros((0, 4))})
    assert out["boxes"].shape == (0, 4) and out["ids"].dtype == torch.int64


# ----- the offline pass -----

def _frame(ids, xs, labels, scores=None) -> dict:
    return {"ids": torch.tensor(ids), "boxes": torch.tensor([[x, 0.0, x + 10, 10] for x in xs]).reshape(-1, 4),
            "scores": torch.tensor(scores or [0.9] * len(ids)), "labels": torch.tensor(labels)}


def test_offline_pass_keeps_one_class_per_track_and_fills_gaps():
    """Track 1 is seen on frames 1-2 (called class 1, then 0), lost on 3-5 and seen again on 6 (class 0): its votes
    end on class 0, so every frame reports 0, and frames 3-5 get boxes interpolated between x = 2 and x = 12 with
    the lower end score. Track 2 (class 2) is seen on frame 1 and 6 only: a gap of 4 frames, over max_gap 3."""
    frames = [(1, _frame([1, 2], [0, 50], [1, 2])), (2, _frame([1], [2], [0], [0.8])), (3, _frame([], [], [])),
              (4, _frame([], [], [])), (5, _frame([], [], [])), (6, _frame([1, 2], [12, 60], [0, 2], [0.6, 0.9]))]
    out = refine_tracks(frames, max_gap=3)
    assert [f for f, _ in out] == [1, 2, 3, 4, 5, 6]
    assert [t["ids"].tolist() for _, t in out] == [[1, 2], [1], [1], [1], [1], [1, 2]]
    assert [t["labels"].tolist() for _, t in out] == [[0, 2], [0], [0], [0], [0], [0, 2]]
    assert [float(t["boxes"][0, 0]) for _, t in out[2:5]] == pytest.approx([4.5, 7.0, 9.5])
    assert [float(t["scores"][0]) for _, t in out[2:5]] == pytest.approx([0.6] * 3)
    assert out[2][1]["boxes"].dtype == torch.float32 and out[2][1]["ids"].dtype == torch.int64
    # max_gap counts frames, not list positions: with frames 3-5 absent from the list, the gap is still 3 frames
    sparse = refine_tracks([frames[1], frames[5]], max_gap=3)
    assert [t["ids"].tolist() for _, t in sparse] == [[1], [1, 2]]
    assert len(refine_tracks([frames[1], frames[2], frames[5]], max_gap=2)[1][1]["ids"]) == 0  # 3 > 2: not filled
    assert [len(t["ids"]) for _, t in refine_tracks(frames, max_gap=0)] == [2, 1, 0, 0, 0, 2]
    for bad in (-1, 1.5, float("nan"), True, "3"):
        with pytest.raises(GhostkitError, match="--max-gap"):
            refine_tracks(frames, max_gap=bad)


def test_offline_pass_reports_track_starts():
    """Track 7 is reported on frames 3-5 moving 3 px a frame: the frame before (whose detection started it) is added
    at x = 7 with its first score, and with backfill 2 also frame 1 at x = 4. Track 8, reported on 2 frames, and
    track 9, whose first two reports are not on consecutive frames, get nothing."""
    frames = [(1, _frame([], [], [])), (2, _frame([9], [40], [1])), (3, _frame([7], [10], [0], [0.7])),
              (4, _frame([7, 8, 9], [13, 30, 44], [0, 1, 1])), (5, _frame([7, 8, 9], [16, 31, 46], [0, 1, 1]))]
    one, two = refine_tracks(frames, max_gap=0), refine_tracks(frames, max_gap=0, backfill=2)
    assert [t["ids"].tolist() for _, t in one] == [[], [9, 7], [7], [7, 8, 9], [7, 8, 9]]
    assert float(one[1][1]["boxes"][1, 0]) == pytest.approx(7.0) and float(one[1][1]["scores"][1]) == pytest.approx(0.7)
    assert [t["ids"].tolist() for _, t in two][:2] == [[7], [9, 7]]
    assert float(two[0][1]["boxes"][0, 0]) == pytest.approx(4.0)
    assert [len(t["ids"]) for _, t in refine_tracks(frames, max_gap=0, backfill=0)] == [0, 1, 1, 3, 3]
    with pytest.raises(GhostkitError, match="--backfill"):
        refine_tracks(frames, backfill=-1)


def test_offline_pass_recovers_hidden_objects(tracks_root):
    """A detector that misses objects under 15% visible: ByteTrack keeps their tracks (lost) but reports nothing
    while they are hidden; the offline pass fills those frames and scores higher than the per-frame output."""
    gt, hyp = _run("bytetrack", read_mot(tracks_root, "val"), noise=1.0, occlusion=True)
    refined = {name: dict(refine_tracks(sorted(frames.items()))) for name, frames in hyp.items()}
    online, offline = track_metrics(gt, hyp), track_metrics(gt, refined)
    assert offline["mota"] > online["mota"] and offline["idf1"] > online["idf1"], (online, offline)
    assert sum(len(t["ids"]) for f in refined.values() for t in f.values()) > \
        sum(len(t["ids"]) for f in hyp.values() for t in f.values())


# ----- metrics -----

def _frames(rows: list[tuple[int, int, list[float]]], labels: bool = False) -> dict:
    out: dict = {}
    for frame, tid, box in rows:
        d = out.setdefault(frame, {"ids": [], "boxes": [], "labels": []})
        d["ids"].append(tid)
        d["boxes"].append(box)
        d["labels"].append(0)
    return {f: {"ids": np.array(d["ids"]), "boxes": np.array(d["boxes"], float),
                **({"labels": np.array(d["labels"])} if labels else {})} for f, d in out.items()}


A, B, FAR = [0.0, 0, 10, 10], [50.0, 50, 60, 60], [200.0, 200, 210, 210]


def test_metrics_hand_computed():
    gt = _frames([(f, 1, A) for f in range(1, 5)] + [(f, 2, B) for f in range(1, 5)])
    assert track_metrics({"s": gt}, {"s": gt}) | {"per_sequence": None} == {
        "mota": 1.0, "idf1": 1.0, "hota": pytest.approx(1.0), "deta": pytest.approx(1.0),
        "assa": pytest.approx(1.0), "id_switches": 0, "per_sequence": None}
    # B changes id after frame 2 (one switch), one false positive in frame 4.
    hyp = _frames([(f, 11, A) for f in range(1, 5)] + [(1, 12, B), (2, 12, B), (3, 13, B), (4, 13, B), (4, 14, FAR)])
    m = track_metrics({"s": gt}, {"s": hyp})
    assert m["id_switches"] == 1
    assert m["mota"] == pytest.approx(1 - (1 + 1) / 8)  # (FP + IDSW) / gt boxes
    assert m["idf1"] == pytest.approx(2 * 6 / (8 + 9))  # IDTP = 4 (A) + 2 (B's longer half)
    deta, assa = 8 / 9, (4 * 1 + 2 * 0.5 + 2 * 0.5) / 8  # B's pairs: association IoU 2 / (4 + 2 - 2)
    assert m["deta"] == pytest.approx(deta) and m["assa"] == pytest.approx(assa)
    assert m["hota"] == pytest.approx(math.sqrt(deta * assa))
    # Localisation: IoU 0.62 is a true positive for alpha 0.05 .. 0.60 (12 of the 19 thresholds) and for MOTA.
    one = _frames([(1, 1, [0.0, 0, 10, 10])])
    half = _frames([(1, 5, [0.0, 0, 10, 6.2])])
    assert hota(one, half)["hota"] == pytest.approx(12 / 19)
    assert track_metrics({"s": one}, {"s": half})["mota"] == 1.0
    # Per sequence and overall: counts pool over sequences; classes must agree where both sides have labels.
    other = _frames([(1, 1, A)], labels=True)
    clash = {1: {"ids": np.array([1]), "boxes": np.array([A]), "labels": np.array([2])}}
    m = track_metrics({"s": gt, "t": other}, {"s": hyp, "t": clash})
    assert m["per_sequence"]["t"]["mota"] == pytest.approx(-1.0)  # a miss and a false positive on one object
    assert m["mota"] == pytest.approx(1 - (2 + 2) / 9) and m["id_switches"] == 1
    assert track_metrics({"t": other}, {"t": clash}, match_labels=False)["mota"] == 1.0
    with pytest.raises(GhostkitError, match="without ground truth: u"):
        track_metrics({"s": gt}, {"u": gt})


# ----- MOTChallenge reader and writer -----

def _sequence(root, name="SEQ-1", frames=(1, 2, 3), length=4, gt="1,1,2,3,4,5,1,1,1\n", split="train",
              imdir="img1"):
    from PIL import Image

    seq = root / split / name
    (seq / "img1").mkdir(parents=True)
    (seq / "gt").mkdir()
    for f in frames:
        Image.new("RGB", (16, 16)).save(seq / "img1" / f"{f:06d}.jpg")
    (seq / "seqinfo.ini").write_text(f"[Sequence]\nname={name}\nimDir={imdir}\nframeRate=25\nseqLength={length}\n"
                                     "imWidth=16\nimHeight=16\nimExt=.jpg\n")
    (seq / "gt" / "gt.txt").write_text(gt)
    return seq


def test_mot_reader(tmp_path):
    (tmp_path / "classes.txt").write_text("person\ncar\n")
    gt = "2,7,1,2,3,4,1,2,0.5\n1,7,0,0,4,4,1,1,1\n1,8,5,5,2,2,0,1,1\n3,9,1,1,0,4,1,1,1\n"
    _sequence(tmp_path, gt=gt)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = read_mot(tmp_path, "train")
    messages = [str(w.message) for w in caught if issubclass(w.category, SkippedFilesWarning)]
    assert any("SEQ-1: 1 of 4 frames missing from img1/ (frames 4)" in m for m in messages), messages
    assert any("dropped 1 boxes" in m for m in messages), messages  # the zero-width box of frame 3
    seq = data.sequences[0]
    assert data.class_names == ["person", "car"] and seq.length == 4 and seq.frame_rate == 25
    assert sorted(seq.frames) == [1, 2, 3] and seq.width == 16
    assert sorted(seq.gt) == [1, 2]  # the conf-0 row of frame 1 is ignored
    np.testing.assert_array_equal(seq.gt[1]["ids"], [7])
    np.testing.assert_allclose(seq.gt[2]["boxes"], [[1, 2, 4, 6]])
    assert seq.gt[2]["labels"].tolist() == [1] and seq.gt[2]["visibility"].tolist() == [0.5]
    _sequence(tmp_path, name="SEQ-2", frames=(1, 2), length=2, gt="2,4,1,1,3,3,1,1,1\n2,3,5,5,3,3,1,2,1\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        items, names = read_mot_boxes(tmp_path, "train")
    assert names == ["person", "car"] and [p.name for p, _ in items] == ["000001.jpg", "000002.jpg", "000003.jpg",
                                                                         "000001.jpg", "000002.jpg"]
    assert items[3][1]["boxes"].shape == (0, 4)  # a frame without boxes is a negative image
    assert items[4][1]["ids"].tolist() == [1, 2] and items[4][1]["labels"].tolist() == [1, 0]  # ids 3, 4 of SEQ-2


@pytest.mark.parametrize("gt, words", [
    ("1,1,2,3,4,5,1,1\n", ["gt.txt:1", "expected 9", "got 8"]),
    ("1,1,2,3,4,5,1,1,1\n2,1,2,abc,4,5,1,1,1\n", ["gt.txt:2", "'abc' is not a number"]),
    ("1,1,2,3,4,5,1,3,1\n", ["gt.txt:1", "class 3 is not in classes.txt"]),
    ("1,1,2,3,4,5,1,1,1\n1,1,2,3,4,5,1,1,1\n", ["gt.txt:2", "id 1 appears twice in frame 1"]),
    ("9,1,2,3,4,5,1,1,1\n", ["gt.txt:1", "beyond the sequence length 4"]),
])
def test_mot_reader_bad_rows(tmp_path, gt, words):
    (tmp_path / "classes.txt").write_text("person\ncar\n")
    _sequence(tmp_path, frames=(1, 2, 3, 4), gt=gt)
    with pytest.raises(GhostkitError) as err:
        read_mot(tmp_path, "train")
    assert "\n" not in str(err.value) and all(w in str(err.value) for w in words), str(err.value)


def test_mot_reader_paths_stay_inside_root(tmp_path):
    (tmp_path / "outside").mkdir()
    root = tmp_path / "data"
    _sequence(root, imdir="../../../outside", frames=(1, 2, 3, 4))
    # imDir is an annotation path: refused as written, by the check every reader shares, naming seqinfo.ini
    with pytest.raises(GhostkitError, match=r"seqinfo\.ini: image path '\.\./\.\./\.\./outside' leaves the data"):
        read_mot(root, "train")
    with pytest.raises(GhostkitError, match="no such folder"):
        read_mot(root, "val")
    escape = _sequence(tmp_path / "other", name="ESC", frames=(1, 2, 3, 4))
    (root / "val").mkdir()
    (root / "val" / "ESC").symlink_to(escape)
    with pytest.raises(GhostkitError, match="outside the data root"):
        read_mot(root, "val")


def test_mot_sequence_without_seqinfo(tmp_path):
    seq = _sequence(tmp_path, frames=(1, 2, 4), gt="5,1,2,3,4,5,1,1,1\n")
    (seq / "seqinfo.ini").unlink()
    (seq / "img1" / "cover.jpg").write_bytes(b"")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = read_mot_sequence(seq)
    messages = " | ".join(str(w.message) for w in caught)
    assert s.length == 5 and s.name == "SEQ-1" and s.width is None and sorted(s.frames) == [1, 2, 4]
    assert "2 of 5 frames missing from img1/ (frames 3, 5)" in messages  # frame 5 is known from gt.txt
    assert "skipped 1 images whose names are not frame numbers: cover.jpg" in messages
    (seq / "img1" / "cover.jpg").unlink()
    (seq / "seqinfo.ini").write_text("[Sequence]\nseqLength=many\n")
    with pytest.raises(GhostkitError, match="seqinfo.ini: seqlength must be a number, got 'many'"):
        read_mot_sequence(seq)
    (seq / "seqinfo.ini").write_text("[Other]\n")
    with pytest.raises(GhostkitError, match="no \\[Sequence\\] section"):
        read_mot_sequence(seq)


def test_mot_writer_format(tmp_path):
    path = tmp_path / "out" / "SEQ.txt"
    tracks = {"ids": torch.tensor([3, 5]), "boxes": torch.tensor([[1.0, 2.0, 11.0, 22.5], [0.0, 0.0, 4.0, 4.0]]),
              "scores": torch.tensor([0.9, 0.25])}
    write_mot_results(path, [(1, tracks), (2, {"ids": [], "boxes": np.zeros((0, 4)), "scores": []}), (3, tracks)])
    lines = path.read_text().splitlines()
    assert lines[0] == "1,3,1.00,2.00,10.00,20.50,0.9000,-1,-1,-1"
    assert lines[1] == "1,5,0.00,0.00,4.00,4.00,0.2500,-1,-1,-1" and lines[2].startswith("3,3,")
    assert len(lines) == 4 and sorted(p.name for p in path.parent.iterdir()) == ["SEQ.txt"]  # no temporary left
    with pytest.raises(GhostkitError, match="1-based"):
        write_mot_results(path, [(0, tracks)])
    assert path.read_text().splitlines() == lines  # a failed write leaves the old file whole


# ----- built-in tracks -----

def test_builtin_tracks(tracks_root, tmp_path):
    train, val = read_mot(tracks_root, "train"), read_mot(tracks_root, "val")
    assert train.class_names == list(TRACK_CLASSES)
    assert {s.name for s in train.sequences}.isdisjoint({s.name for s in val.sequences})
    for seq in val.sequences:
        assert sorted(seq.frames) == list(range(1, 61)) and seq.width == 128
        ids = {int(i) for g in seq.gt.values() for i in g["ids"]}
        labels = [int(g["labels"][list(g["ids"]).index(i)]) for i in ids for g in seq.gt.values() if i in g["ids"]]
        assert len(ids) >= 5 and max(np.bincount(labels)) > 1
        firsts = [min(f for f, g in seq.gt.items() if i in g["ids"]) for i in ids]
        lasts = [max(f for f, g in seq.gt.items() if i in g["ids"]) for i in ids]
        assert max(firsts) > 1 and min(lasts) < seq.length  # objects enter and leave
        assert min(float(g["visibility"].min()) for g in seq.gt.values()) < 0.5  # and hide one another
    again = write_tracks(tmp_path / "again", seed=0, imgsz=128, train_sequences=1, val_sequences=2, frames=60)
    for split in ("train", "val"):
        for name in ("shapes-01", "shapes-02", "shapes-03"):
            a, b = tracks_root / split / name / "gt" / "gt.txt", again / split / name / "gt" / "gt.txt"
            assert a.exists() == b.exists() and (not a.exists() or a.read_text() == b.read_text())
    other = write_tracks(tmp_path / "other", seed=1, imgsz=128, train_sequences=1, val_sequences=1, frames=10)
    assert (other / "train/shapes-01/gt/gt.txt").read_text() != (again / "train/shapes-01/gt/gt.txt").read_text()
    cached = builtin_tracks(tmp_path / "cache", imgsz=64, frames=5, train_sequences=1, val_sequences=1)
    assert builtin_tracks(tmp_path / "cache", imgsz=64, frames=5, train_sequences=1, val_sequences=1) == cached
    assert read_mot_sequence(cached / "val" / "shapes-02").length == 5
    with pytest.raises(GhostkitError, match="imgsz >= 32"):
        write_tracks(tmp_path / "bad", imgsz=8)
