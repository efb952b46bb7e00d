"""Tracking with trained models: detection training on MOTChallenge folders, the embed head, ``ghostkit track``,
``ghostkit val --task track``, ``ghostkit.track(...)`` and their bad-input paths."""

from __future__ import annotations

import inspect
import json
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from torch.utils._pytree import tree_leaves
from torchvision.ops import box_iou

import ghostkit
from ghostkit.cli import main
from ghostkit.cli.track import track as track_command
from ghostkit.cli.train import val as val_command
from ghostkit.data.detect import build_detect_data, detect_format
from ghostkit.data.formats.mot import read_mot
from ghostkit.data.tasks import inference_transform
from ghostkit.data.tracks import TRACK_CLASSES, builtin_tracks, data_root, write_tracks
from ghostkit.errors import GhostkitError
from ghostkit.models.weights import save_weights
from ghostkit.tasks.embed import EmbedHead
from ghostkit.tasks.model import BACKBONE_OUT_INDICES, build_task_model
from ghostkit.track.offline import BACKFILL, MAX_GAP
from ghostkit.track.stream import BrokenVideoWarning, detect_frame, load_detector, open_source

cv2 = pytest.importorskip("cv2")

FRAMES = 8
TRAIN = ["--model", "ghostnet_050", "--imgsz", "64", "--epochs", "1", "--batch", "4", "--workers", "0"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one intra-op thread per xdist worker: no oversubscribed OpenMP spinning
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def mot_root(tmp_path_factory):
    return write_tracks(tmp_path_factory.mktemp("mot"), seed=0, imgsz=64, train_sequences=1, val_sequences=1,
                        frames=FRAMES, train_frames=FRAMES, objects=(3, 4), train_objects=None, train_colours=None)


@pytest.fixture(scope="module")
def detector(mot_root, tmp_path_factory):
    """``ghostkit train --task detect`` on the MOT folder (one epoch): its best.ckpt."""
    out = tmp_path_factory.mktemp("detect")
    assert main(["train", "--task", "detect", "--data", str(mot_root), "--out", str(out), *TRAIN]) == 0
    return out / "best.ckpt"


@pytest.fixture(scope="module")
def joint(mot_root, tmp_path_factory):
    """``--task detect,embed`` on the MOT folder (one epoch): its best.ckpt."""
    out = tmp_path_factory.mktemp("joint")
    ghostkit.train(task="detect,embed", data=str(mot_root), model="ghostnet_050", imgsz=64, epochs=1, batch=4,
                   workers=0, out=str(out))
    return out / "best.ckpt"


def _mot_lines(path: Path) -> list[list[str]]:
    rows = [line.split(",") for line in path.read_text().splitlines()]
    for r in rows:
        assert len(r) == 10 and r[7:] == ["-1", "-1", "-1"]
        assert 1 <= int(r[0]) <= FRAMES and int(r[1]) >= 1 and float(r[4]) > 0 and float(r[5]) > 0
    return rows


# ----- data -----

def test_detection_data_from_a_mot_folder(mot_root):
    d = build_detect_data(mot_root, imgsz=64)
    assert d.class_names == list(TRACK_CLASSES) and len(d.train) == FRAMES and len(d.val) == FRAMES
    path, ann = d.val.items[0]
    assert path.parent.name == "img1" and len(ann["ids"]) == len(ann["boxes"]) == len(ann["labels"])
    assert all((a["boxes"] >= 0).all() and (a["boxes"][:, 2:] <= 64).all() for _, a in d.train.items)  # clipped
    image, target = d.val[0]
    assert image.shape == (3, 64, 64) and target["boxes"].shape[1] == 4


def test_builtin_tracks_is_a_mot_folder():
    root = data_root("tracks")
    assert root == builtin_tracks() and detect_format(root) == "mot"
    assert data_root("some/folder") == Path("some/folder")
    # many short, crowded training scenes (a detector from scratch needs scenes and instances more than frames),
    # long sequences to track
    train, val = read_mot(root, "train"), read_mot(root, "val")
    assert len(train.sequences) == 400 and {len(s.frames) for s in train.sequences} == {2}
    assert len(val.sequences) == 2 and {len(s.frames) for s in val.sequences} == {80}
    assert {s.width for s in train.sequences} == {96}


def test_tracks_split_lengths(tmp_path):
    root = write_tracks(tmp_path, imgsz=32, train_sequences=2, val_sequences=1, frames=6, train_frames=3)
    assert [len(s.frames) for s in read_mot(root, "train").sequences] == [3, 3]
    assert [len(s.frames) for s in read_mot(root, "val").sequences] == [6]
    with pytest.raises(GhostkitError, match="train_frames=1"):
        write_tracks(tmp_path / "bad", train_frames=1)


def test_detect_training_reads_a_mot_folder(detector):
    metrics = json.loads((detector.parent / "metrics.json").read_text())
    assert {"map", "map50"} <= set(metrics)
    config = torch.load(detector, map_location="cpu", weights_only=True)["ghostkit"]
    assert config["class_names"]["detect"] == list(TRACK_CLASSES) and config["imgsz"] == [64, 64]


# ----- the embed head -----

def test_embed_head_shapes_normalisation_and_loss():
    backbone = ghostkit.create_model("ghostnet_050", features_only=True, out_indices=BACKBONE_OUT_INDICES)
    head = EmbedHead(backbone.feature_info, num_ids=5, dim=16)
    images = torch.randn(2, 3, 64, 96)
    out = head(backbone(images), images)
    assert out["embeddings"].shape == (2, 16, 8, 12) and out["image_size"] == (64, 96)
    # a box centred on cell (row 2, column 5) of the stride-8 map gets that cell's normalised vector
    box = torch.tensor([[5 * 8 + 4 - 3.0, 2 * 8 + 4 - 6.0, 5 * 8 + 4 + 3.0, 2 * 8 + 4 + 6.0]])
    emb = head.embed(out, [box, torch.zeros(0, 4)])
    assert emb[0].shape == (1, 16) and emb[1].shape == (0, 16)
    expected = torch.nn.functional.normalize(out["embeddings"][0, :, 2, 5], dim=0)
    torch.testing.assert_close(emb[0][0], expected, atol=1e-5, rtol=1e-5)
    targets = [{"boxes": torch.tensor([[0.0, 0.0, 20.0, 30.0], [40.0, 10.0, 90.0, 60.0]]), "ids": torch.tensor([0, 4])},
               {"boxes": torch.zeros(0, 4), "ids": torch.zeros(0, dtype=torch.int64)}]
    loss = head.loss(out, targets)
    assert loss["loss"].ndim == 0 and 0 < float(loss["loss"].detach()) < 20
    loss["loss"].backward()
    assert head.classifier.weight.grad.abs().sum() > 0 and head.lateral[0].weight.grad.abs().sum() > 0
    empty = head.loss(head(backbone(images), images), [targets[1], targets[1]])
    assert float(empty["loss"]) == 0.0 and empty["loss"].requires_grad
    maps = head.postprocess(out)
    assert maps[0]["embedding_map"].shape == (16, 8, 12)
    torch.testing.assert_close(maps[0]["embedding_map"].norm(dim=0), torch.ones(8, 12))
    with pytest.raises(GhostkitError, match="at least 2 identities"):
        EmbedHead(backbone.feature_info, num_ids=1)


def test_embed_retrieval_metric():
    from ghostkit.engine.embed import EmbedMetrics

    class Fixed:  # embeddings given per image, as the head's ``embed`` returns them
        def __init__(self, per_image):
            self.per_image = per_image

        def embed(self, outputs, boxes):
            return [self.per_image[int(i)] for i in outputs]

    e = torch.eye(3)
    per_image = {0: e[[0, 1]], 1: e[[0, 1]] * 0.9 + e[[1, 0]] * 0.1, 2: e[[2]]}
    metric = EmbedMetrics(Fixed(per_image))
    for i, ids in ((0, [0, 1]), (1, [0, 1]), (2, [2])):
        metric.update([i], [{"boxes": torch.zeros(len(ids), 4), "ids": torch.tensor(ids), "index": torch.tensor(i)}])
    assert metric.compute() == {"id_top1": 1.0}  # identity 2 has no other image: left out
    metric.reset()
    swapped = {0: e[[0, 1]], 1: e[[1, 0]], 2: e[[2]]}
    metric = EmbedMetrics(Fixed(swapped))
    for i, ids in ((0, [0, 1]), (1, [0, 1]), (2, [2])):
        metric.update([i], [{"boxes": torch.zeros(len(ids), 4), "ids": torch.tensor(ids), "index": torch.tensor(i)}])
    assert metric.compute() == {"id_top1": 0.0}


def test_joint_detect_embed_training(joint, mot_root):
    metrics = json.loads((joint.parent / "metrics.json").read_text())
    assert set(metrics) >= {"detect", "embed", "score"} and 0 <= metrics["embed"]["id_top1"] <= 1
    model = ghostkit.load_model(joint).model
    assert set(model.heads) == {"detect", "embed"} and model.heads["embed"].num_ids >= 3
    values = ghostkit.val(joint, str(mot_root), out=joint.parent / "val")  # the model's own tasks
    assert set(values) == {"detect", "embed", "score"} and 0 <= values["embed"]["id_top1"] <= 1


# ----- ghostkit track -----

def test_track_cli_writes_mot_results_and_video(detector, mot_root, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["track", "--weights", str(detector), "--source", str(mot_root / "val"), "--out", str(out), "--save",
                 "--conf", "0.01"])
    assert code == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert "frames/s" in printed[-1] and printed[-1].startswith(f"{FRAMES} frames")
    rows = _mot_lines(out / "shapes-02.txt")
    assert rows and {int(r[0]) for r in rows} <= set(range(1, FRAMES + 1))
    video = cv2.VideoCapture(str(out / "shapes-02.mp4"))
    assert video.isOpened() and int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == FRAMES
    assert video.get(cv2.CAP_PROP_FRAME_WIDTH) >= 320  # small frames are enlarged for legible labels
    video.release()
    # a folder of plain frames: numbered from 1 in name order, named after the folder
    frames = tmp_path / "frames"
    shutil.copytree(mot_root / "val" / "shapes-02" / "img1", frames)
    assert main(["track", "--weights", str(detector), "--source", str(frames), "--out", str(out), "--conf",
                 "0.01"]) == 0
    assert _mot_lines(out / "frames.txt") == rows  # the same frames tracked the same way
    # --online writes the tracker's per-frame output: the offline pass only adds rows (filled gaps) to it
    assert main(["track", "--weights", str(detector), "--source", str(frames), "--out", str(tmp_path / "online"),
                 "--conf", "0.01", "--online"]) == 0
    online = _mot_lines(tmp_path / "online" / "frames.txt")
    assert online and {tuple(r) for r in online} <= {tuple(r) for r in rows}


def test_tracking_detections_are_one_box_per_object(detector, mot_root):
    """The detection head suppresses overlaps within a class only (a weak detector gives one object a box per class);
    what the tracker gets has no two boxes overlapping beyond the head's NMS IoU, whatever their classes."""
    model = load_detector(detector)
    head = model.heads["detect"]
    config = model.config
    transform = inference_transform({"resize"}, tuple(config["imgsz"]), config["mean"], config["std"])
    cross_class = 0
    for _, image in open_source(mot_root / "val")[0].frames():
        det = detect_frame(model, image, min_score=0.01)
        assert len(det["boxes"]) and (det["scores"] > 0.01).all()
        assert not (torch.triu(box_iou(det["boxes"], det["boxes"]), diagonal=1) > head.iou).any()
        with torch.inference_mode():
            raw = head.postprocess(model(transform(image)[None])["detect"], [(image.height, image.width)], conf=0.01)[0]
        overlap = torch.triu(box_iou(raw["boxes"], raw["boxes"]), diagonal=1) > head.iou
        cross_class += int((overlap & (raw["labels"][:, None] != raw["labels"][None, :])).sum())
    assert cross_class > 0  # the head alone does give overlapping boxes of different classes


def test_track_api_and_videos(detector, mot_root, tmp_path):
    images = sorted((mot_root / "val" / "shapes-02" / "img1").glob("*.jpg"))
    writer = cv2.VideoWriter(str(tmp_path / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 64))
    for _ in range(3):
        for p in images:
            writer.write(cv2.imread(str(p)))
    writer.release()
    results = list(ghostkit.track(detector, tmp_path / "clip.avi", conf=0.01))
    assert [r["frame"] for r in results] == list(range(1, 3 * FRAMES + 1))
    assert {r["sequence"] for r in results} == {"clip"} and all(set(r["tracks"]) >= {"ids", "boxes"} for r in results)
    # a video that breaks off: the frames read are tracked, and a warning says how many
    data = (tmp_path / "clip.avi").read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: len(data) // 2])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cut = list(ghostkit.track(detector, tmp_path / "cut.avi"))
    messages = [str(w.message) for w in caught if issubclass(w.category, BrokenVideoWarning)]
    assert len(messages) == 1 and f"after {len(cut)} of its {3 * FRAMES} frames" in messages[0]
    assert 0 < len(cut) < 3 * FRAMES
    assert len(list(ghostkit.track(detector, tmp_path / "clip.avi", max_frames=5))) == 5


def test_appearance_tracker_uses_the_embed_head(joint, detector, mot_root, tmp_path, capsys):
    results = list(ghostkit.track(joint, mot_root / "val", tracker="appearance", conf=0.01))
    assert len(results) == FRAMES and any(len(r["tracks"]["ids"]) for r in results)
    code = main(["track", "--weights", str(detector), "--source", str(mot_root / "val"), "--out", str(tmp_path),
                 "--tracker", "appearance"])
    err = capsys.readouterr().err
    assert code == 2 and "embed head" in err and len(err.strip().splitlines()) == 1


def test_exported_joint_model_tracks_like_its_checkpoint(joint, mot_root, tmp_path):
    """ONNX export of detect,embed keeps the embedding output: on every frame the tracker gets the same detector and
    embedding outputs from the .onnx as from the checkpoint (track ids are compared only through these inputs: a
    score within float error of --conf may start a track in one and not the other), and it tracks."""
    onnx = tmp_path / "joint.onnx"
    assert main(["export", "--weights", str(joint), "--format", "onnx", "--out", str(onnx)]) == 0
    models = [load_detector(path, "appearance") for path in (joint, onnx)]
    config = models[0].config
    transform = inference_transform({"resize"}, tuple(config["imgsz"]), config["mean"], config["std"])
    frames = [image for sequence in open_source(mot_root / "val") for _, image in sequence.frames(0)]
    assert len(frames) == FRAMES
    with torch.inference_mode():
        for image in frames:
            x = transform(image)[None]
            a, b = (tree_leaves(m(x)) for m in models)
            assert len(a) == len(b) and all(torch.allclose(torch.as_tensor(u), torch.as_tensor(v), atol=1e-3)
                                            for u, v in zip(a, b))
    from_onnx = list(ghostkit.track(onnx, mot_root / "val", tracker="appearance", conf=0.01))
    assert len(from_onnx) == FRAMES and sum(len(r["tracks"]["ids"]) for r in from_onnx) > 0


def test_val_track_writes_the_metrics(detector, joint, mot_root, tmp_path, capsys):
    out = tmp_path / "val"
    assert main(["val", "--weights", str(detector), "--data", str(mot_root), "--task", "track", "--out", str(out),
                 "--conf", "0.01"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    keys = {"mota", "idf1", "hota", "id_switches", "fps"}
    assert keys <= set(metrics) and keys <= set(metrics["per_sequence"]["shapes-02"])
    assert metrics["mota"] <= 1 and 0 <= metrics["idf1"] <= 1 and metrics["fps"] > 0
    assert metrics["class_agnostic"]["idf1"] >= metrics["idf1"]  # classes ignored: every class-aware match remains
    assert metrics["offline_pass"] == {"max_gap": MAX_GAP, "backfill": BACKFILL}
    assert set(metrics["online"]) >= keys - {"fps"}
    for command in (track_command, val_command):  # the CLI's default, written out so that --help needs no torch
        parameters = inspect.signature(command).parameters
        assert parameters["max_gap"].default.default == MAX_GAP and parameters["backfill"].default.default == BACKFILL
    assert "classes ignored" in capsys.readouterr().out
    assert main(["val", "--weights", str(detector), "--data", str(mot_root), "--task", "track", "--out",
                 str(tmp_path / "online"), "--conf", "0.01", "--online", "--max-gap", "5"]) == 0
    online = json.loads((tmp_path / "online" / "metrics.json").read_text())
    assert "online" not in online and online["offline_pass"] is None
    assert online["mota"] == pytest.approx(metrics["online"]["mota"])  # the same per-frame output, scored as it is
    _mot_lines(out / "shapes-02.txt")
    values = ghostkit.val(joint, str(mot_root), out=tmp_path / "joint", task="track", tracker="appearance")
    assert keys <= set(values)


# ----- bad input -----

def _user_error(code: int, capsys, *words: str) -> None:
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and all(w in err for w in words), err


def test_track_bad_input(detector, mot_root, tmp_path, capsys):
    seq = tmp_path / "SEQ"
    shutil.copytree(mot_root / "val" / "shapes-02", seq)
    (seq / "gt" / "gt.txt").write_text("1,1,2,3,4,5,1,1,1\n2,1,2,x,4,5,1,1,1\n")
    _user_error(main(["track", "--weights", str(detector), "--source", str(seq), "--out", str(tmp_path)]), capsys,
                "gt.txt:2", "'x' is not a number")
    config = {"format": 1, "backbone": {"name": "ghostnet_050", "kwargs": {}},
              "heads": {"classify": {"num_classes": 3}}, "class_names": {"classify": ["a", "b", "c"]},
              "imgsz": [32, 32], "mean": [0.5] * 3, "std": [0.5] * 3, "deployed": False}
    save_weights(build_task_model(config), tmp_path / "classify.ckpt", config)
    for command in (["track", "--source", str(mot_root / "val"), "--out", str(tmp_path)],
                    ["val", "--data", str(mot_root), "--task", "track"]):
        _user_error(main([*command, "--weights", str(tmp_path / "classify.ckpt")]), capsys, "classify.ckpt",
                    "tracking needs a detector")
    _user_error(main(["track", "--weights", str(detector), "--source", str(mot_root), "--out", str(tmp_path)]),
                capsys, "MOTChallenge root")
    _user_error(main(["track", "--weights", str(detector), "--source", str(tmp_path / "none.mp4"), "--out",
                      str(tmp_path)]), capsys, "none.mp4")
    _user_error(main(["track", "--weights", str(detector), "--source", str(seq), "--tracker", "deepsort"]), capsys,
                "--tracker")
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 64)
    _user_error(main(["track", "--weights", str(detector), "--source", str(tmp_path / "broken.mp4"), "--out",
                      str(tmp_path)]), capsys, "broken.mp4")
    _user_error(main(["val", "--weights", str(detector), "--data", str(mot_root), "--task", "segment"]), capsys,
                "--task")
    for command in (["track", "--source", str(seq), "--out", str(tmp_path)], ["val", "--data", str(mot_root),
                                                                             "--task", "track"]):
        _user_error(main([*command, "--weights", str(detector), "--max-gap", "-1"]), capsys, "--max-gap", "-1")
        _user_error(main([*command, "--weights", str(detector), "--backfill", "-2"]), capsys, "--backfill", "-2")
