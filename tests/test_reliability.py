"""Reliability without training: option validation, annotation paths, checkpoint messages, output checks, atomic
writes, warnings in one line and ``predict --save`` drawing on what the model saw. (Runs that are killed,
interrupted or starved of disk: ``test_faults.py``.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from ghostkit.cli import main
from ghostkit.data.images import resolve_inside
from ghostkit.errors import GhostkitError
from ghostkit.io import (
    atomic_open,
    atomic_path,
    atomic_write_text,
    check_output_dir,
    check_output_file,
    remove_stale_temporaries,
)
from ghostkit.tasks.model import build_task_model


def _one_line_error(capsys, args: list[str], *needles: str) -> str:
    capsys.readouterr()
    code = main(args)
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("ghostkit: error:") and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def _checkpoint(path: Path, imgsz: int = 32) -> Path:
    """An untrained ghostkit classification checkpoint (the file format ``ghostkit train`` writes)."""
    config = {"format": 1, "backbone": {"name": "ghostnet_050", "kwargs": {"output_stride": 32}},
              "heads": {"classify": {"num_classes": 3}}, "class_names": {"classify": ["a", "b", "c"]},
              "imgsz": [imgsz, imgsz], "mean": [0.5] * 3, "std": [0.25] * 3, "deployed": False}
    torch.manual_seed(0)
    model = build_task_model(config)
    torch.save({"ghostkit": config, "state_dict": model.state_dict()}, path)
    return path


# -- 4: every numeric option checked in one place -------------------------------------------------------------------
@pytest.mark.parametrize(("option", "value"), [
    ("--lr", "inf"), ("--lr", "nan"), ("--momentum", "nan"), ("--warmup-epochs", "nan"), ("--imgsz", "100000"),
    ("--grad-clip", "-1"), ("--ema-decay", "inf"), ("--weight-decay", "-inf"), ("--momentum", "1.5"),
    ("--step-gamma", "0"), ("--conf", "1"), ("--scale", "9"), ("--jpeg", "101"), ("--seed", "-1"),
])
def test_numeric_options_are_validated(capsys, tmp_path, option, value):
    line = _one_line_error(capsys, ["train", option, value, "--out", str(tmp_path / "run")], option)
    assert not (tmp_path / "run").exists()  # refused before any work
    if option == "--imgsz":
        assert "too large" in line and "4096" in line


# -- 5: annotation paths stay inside the data folder ---------------------------------------------------------------
@pytest.mark.parametrize("name", ["../../outside.png", "/etc/hostname", "..\\..\\outside.png", "a/../../outside.png"])
def test_resolve_inside_refuses_paths_leaving_the_folder(tmp_path, name):
    with pytest.raises(GhostkitError, match="leaves the data folder") as err:
        resolve_inside(tmp_path / "images", name, tmp_path / "ann.json")
    assert str(tmp_path / "ann.json") in str(err.value)
    assert resolve_inside(tmp_path, "sub/../a.png", "x") == tmp_path / "a.png"


def _coco(root: Path, file_name: str) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    Image.new("RGB", (40, 40)).save(root / "images" / "ok.png")
    Image.new("RGB", (40, 40)).save(root.parent / "outside.png")  # exists: only the check can stop it
    data = {"images": [{"id": 1, "file_name": "ok.png", "width": 40, "height": 40},
                       {"id": 2, "file_name": file_name, "width": 40, "height": 40}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 10, 10]}],
            "categories": [{"id": 1, "name": "thing"}]}
    for split in ("train", "val"):
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(data))
    return root


@pytest.mark.parametrize("file_name", ["../outside.png", "/etc/hostname"])
def test_coco_file_name_outside_the_data_folder_is_refused(capsys, tmp_path, file_name):
    root = _coco(tmp_path / "coco", file_name)
    _one_line_error(capsys, ["train", "--task", "detect", "--data", str(root), "--out", str(tmp_path / "run"),
                             "--epochs", "1", "--workers", "0"], "instances_train.json", "leaves the data folder")


def test_voc_and_multilabel_paths_outside_the_data_folder_are_refused(tmp_path):
    from ghostkit.data.classify import read_multilabel_csv
    from ghostkit.data.formats.voc import read_voc

    voc = tmp_path / "voc"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "JPEGImages").mkdir()
    Image.new("RGB", (40, 40)).save(tmp_path / "outside.jpg")
    (voc / "Annotations" / "a.xml").write_text(
        "<annotation><filename>../../outside.jpg</filename><size><width>40</width><height>40</height></size>"
        "<object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object>"
        "</annotation>")
    with pytest.raises(GhostkitError, match=r"a\.xml: image path '../../outside.jpg' leaves the data folder"):
        read_voc(voc, None, ["cat"])
    ml = tmp_path / "ml"
    (ml / "images").mkdir(parents=True)
    (ml / "train.csv").write_text("filename,labels\n../outside.jpg,cat\n")
    with pytest.raises(GhostkitError, match=r"train\.csv:2: image path '../outside.jpg' leaves the data folder"):
        read_multilabel_csv(ml, "train")


def test_widerface_voc_lists_and_mot_paths_outside_the_data_folder_are_refused(tmp_path):
    """Every reader that takes a path from an annotation file checks it (YOLO takes none: it lists images/)."""
    from ghostkit.data.formats.mot import read_mot_sequence
    from ghostkit.data.formats.voc import read_voc, voc_segmentation_pairs
    from ghostkit.data.formats.widerface import read_widerface

    Image.new("RGB", (40, 40)).save(tmp_path / "outside.jpg")
    wider = tmp_path / "wider"
    (wider / "wider_face_split").mkdir(parents=True)
    (wider / "WIDER_train" / "images").mkdir(parents=True)
    (wider / "wider_face_split" / "wider_face_train_bbx_gt.txt").write_text(
        "../../../outside.jpg\n1\n1 1 8 8 0 0 0 0 0 0\n")
    with pytest.raises(GhostkitError, match=r"bbx_gt\.txt:1: image path '\.\./\.\./\.\./outside\.jpg' leaves"):
        read_widerface(wider, "train")
    voc = tmp_path / "voc"
    for sub in ("Annotations", "JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True)
    (voc / "ImageSets" / "Segmentation" / "train.txt").write_text("../../outside\n")
    with pytest.raises(GhostkitError, match=r"train\.txt:1: image path '\.\./\.\./outside\.jpg' leaves"):
        voc_segmentation_pairs(voc, "train")
    with pytest.raises(GhostkitError, match=r"Main: image path '\.\./\.\./x\.xml' leaves"):
        read_voc(voc, ["../../x"], ["cat"])
    seq = tmp_path / "mot" / "train" / "SEQ"
    (seq / "img1").mkdir(parents=True)
    (seq / "seqinfo.ini").write_text("[Sequence]\nname=SEQ\nimDir=/etc\n")
    with pytest.raises(GhostkitError, match=r"seqinfo\.ini: image path '/etc' leaves the data folder"):
        read_mot_sequence(seq, None, tmp_path / "mot")


# -- 7: checkpoints that are not checkpoints ------------------------------------------------------------------------
def test_random_bytes_and_truncated_checkpoints_get_one_short_line(capsys, tmp_path):
    noise = tmp_path / "noise.ckpt"
    noise.write_bytes(b"\x11" + np.random.default_rng(0).bytes(4096))
    line = _one_line_error(capsys, ["val", "--weights", str(noise), "--data", "digits"], "not a checkpoint")
    assert "pickle" not in line
    good = _checkpoint(tmp_path / "good.ckpt")
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    line = _one_line_error(capsys, ["val", "--weights", str(cut), "--data", "digits"], "truncated", "cut.ckpt")
    assert len(line) < 160, line


# -- 3: output locations checked before the work; atomic writes -----------------------------------------------------
def test_output_that_is_an_existing_file_is_refused_first(capsys, tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("keep me")
    # --data does not exist either: the output check comes first, before any work
    _one_line_error(capsys, ["train", "--data", str(tmp_path / "nothing"), "--out", str(taken)], "--out", "taken",
                    "existing file")
    _one_line_error(capsys, ["val", "--weights", str(tmp_path / "none.ckpt"), "--data", "digits", "--out",
                             str(taken)], "--out", "existing file")
    _one_line_error(capsys, ["predict", "--weights", str(tmp_path / "none.ckpt"), "--source", str(tmp_path),
                             "--save", str(taken)], "--save", "existing file")
    _one_line_error(capsys, ["export", "--weights", str(tmp_path / "none.ckpt"), "--out", str(taken / "m.onnx")],
                    "--out", "is a file")
    assert taken.read_text() == "keep me"


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = atomic_write_text(tmp_path / "metrics.json", "good")
    with pytest.raises(RuntimeError), atomic_open(target, "w") as f:
        f.write("half")
        raise RuntimeError("the writer fails mid-way")
    assert target.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary file left behind
    assert check_output_dir(tmp_path / "new" / "run") == tmp_path / "new" / "run"
    with atomic_path(tmp_path / "last.ckpt") as tmp:  # what kill -9 leaves behind: a temporary beside the target
        stale = tmp_path / f"{tmp.name}.keep"
        stale.write_bytes(b"partial")
    os.replace(stale, tmp)
    (tmp_path / ".hidden-user-file.txt").write_text("mine")
    assert remove_stale_temporaries(tmp_path) == [tmp]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden-user-file.txt", "last.ckpt", "metrics.json"]
    with pytest.raises(GhostkitError, match="is a folder"):
        check_output_file(tmp_path)


# -- 7: warnings in one line, and a video that breaks mid-way ----------------------------------------------------
def _cli_subprocess(args: list[str]) -> subprocess.CompletedProcess:
    """The command as users run it: its real stderr (in-process, pytest records the warnings instead)."""
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "ghostkit.cli", *args], env=env, capture_output=True, text=True,
                          timeout=600)


def test_warnings_print_one_line_and_a_broken_video_says_how_far_it_got(tmp_path):
    cv2 = pytest.importorskip("cv2")
    writer = cv2.VideoWriter(str(tmp_path / "full.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    rng = np.random.default_rng(0)
    for _ in range(20):
        writer.write(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    writer.release()
    data = (tmp_path / "full.avi").read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: len(data) // 2])  # the header still announces 20 frames
    weights = _checkpoint(tmp_path / "m.ckpt")
    r = _cli_subprocess(["predict", "--weights", str(weights), "--source", str(tmp_path / "cut.avi"), "--json"])
    assert r.returncode == 0, r.stderr
    frames = [x for x in r.stdout.splitlines() if x.startswith("{")]
    assert 0 < len(frames) < 20
    assert r.stderr.splitlines() == [
        f"ghostkit: warning: {tmp_path / 'cut.avi'}: read {len(frames)} frame(s), then stopped: the file announces "
        "20 frames; the rest could not be decoded (truncated or corrupt video)"]

    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (40, 40)).save(images / "ok.png")
    (images / "bad.png").write_bytes(b"not an image")
    r = _cli_subprocess(["predict", "--weights", str(weights), "--source", str(images), "--json"])
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines() == [f"ghostkit: warning: skipped 1 unreadable image(s) in {images}: bad.png"]


# -- 6: predict --save draws on the image the model saw -------------------------------------------------------------
def test_predict_save_draws_on_the_decoded_image(capsys, tmp_path):
    weights = _checkpoint(tmp_path / "m.ckpt")
    photos = tmp_path / "photos"
    photos.mkdir()
    rotated = Image.new("RGB", (60, 30), (0, 120, 0))
    exif = rotated.getexif()
    exif[0x0112] = 6  # EXIF orientation: viewers (and the model) turn it to 30 x 60, portrait
    rotated.save(photos / "rotated.jpg", exif=exif.tobytes())
    deep = np.full((30, 40), 30000, np.uint16)  # 16-bit grey at 46%: 8-bit 116, not white
    Image.fromarray(deep).save(photos / "deep.png")
    assert Image.open(photos / "deep.png").mode.startswith("I;16")
    assert main(["predict", "--weights", str(weights), "--source", str(photos), "--save", str(tmp_path / "out"),
                 "--json"]) == 0
    drawn = Image.open(tmp_path / "out" / "rotated.png")
    assert drawn.size == (30, 60)
    grey = np.asarray(Image.open(tmp_path / "out" / "deep.png"))
    assert abs(int(grey[-1, -1, 0]) - 30000 // 257) <= 1, grey[-1, -1]
    assert sorted(os.listdir(tmp_path / "out")) == ["deep.png", "rotated.png"]


# -- 7: more processes than cores ----------------------------------------------------------------------------------
def test_devices_above_the_core_count_warn(tmp_path):
    from ghostkit.engine.config import TrainConfig
    from ghostkit.engine.trainer import build_trainer

    n = (os.cpu_count() or 1) + 1
    with pytest.warns(UserWarning, match=f"--devices {n} starts {n} training processes on {n - 1} CPU cores"):
        build_trainer(TrainConfig(accelerator="cpu", devices=str(n), strategy="ddp"), tmp_path, monitor="val/top1")


class _ScriptedMetric(L.LightningModule):
    """A one-weight module whose validation logs a scripted `val/fid` per epoch (a real Lightning run)."""

    def __init__(self, values: list[float]) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.values, self.last_metrics, self.last_score = values, {}, None

    def training_step(self, batch, batch_idx):
        return (self.weight - batch[0]).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        fid = self.values[self.current_epoch]
        self.last_metrics = {"generate": {"fid": fid}}
        self.log("val/fid", fid)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize("mode, best", [("min", 5.0), ("max", 9.0)])
def test_run_history_best_epoch_follows_the_monitor_mode(tmp_path, mode, best):
    from torch.utils.data import DataLoader, TensorDataset

    from ghostkit.engine.callbacks import RunHistory
    from ghostkit.engine.config import TrainConfig
    from ghostkit.engine.trainer import build_trainer

    values = [9.0, 5.0, 7.0]
    trainer = build_trainer(TrainConfig(epochs=len(values)), tmp_path, monitor="val/fid", mode=mode)
    loader = DataLoader(TensorDataset(torch.ones(4, 1)), batch_size=2)
    trainer.fit(_ScriptedMetric(values), loader, loader)
    history = next(c for c in trainer.callbacks if isinstance(c, RunHistory))
    assert history.outputs()[0]["generate"]["fid"] == best
    assert [row["val/fid"] for row in history.rows] == values
    epoch = {name: torch.load(tmp_path / f"{name}.ckpt", weights_only=True)["epoch"] for name in ("best", "last")}
    assert epoch == {"best": values.index(best), "last": len(values) - 1}  # last.ckpt follows every epoch
