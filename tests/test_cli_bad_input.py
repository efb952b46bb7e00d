"""User mistakes on the command line: one line on stderr naming the problem, exit code 2, never a traceback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ghostkit
from ghostkit.cli import main


def _run(args: list[str], capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = main(args)
    err = capsys.readouterr().err
    return code, err


def _assert_user_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    lines = [x for x in err.splitlines() if x.strip()]
    assert lines, "no error message"
    for needle in needles:
        assert needle in err, (needle, err)


class Evil:
    """Stands for any arbitrary Python object pickled into a checkpoint."""


def _imagefolder(root: Path, classes: dict[str, int]) -> Path:
    rng = np.random.default_rng(0)
    for name, count in classes.items():
        (root / "train" / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(root / "train" / name / f"{i}.png")
    return root


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["train", "--imgsz", "0"], ["--imgsz"]),
        (["train", "--epochs", "-1"], ["--epochs"]),
        (["train", "--batch", "0"], ["--batch"]),
        (["train", "--model", "ghostnet_10"], ["ghostnet_10", "ghostnet_100"]),
        (["train", "--task", "teleport"], ["--task", "teleport"]),
        (["train", "--optimizer", "adam9"], ["--optimizer"]),
        (["train", "--precision", "8"], ["--precision"]),
        (["train", "--output-stride", "12"], ["--output-stride"]),
        (["train", "--epochs", "many"], ["epochs"]),
        (["train", "--devices", "two"], ["--devices"]),
        (["train", "--resume", "nowhere/last.ckpt"], ["nowhere/last.ckpt"]),
        (["train", "--data", "no/such/folder"], ["no/such/folder"]),
        (["info", "ghostnetv9_100"], ["ghostnetv9_100"]),
        (["info", "ghostnet_100", "--imgsz", "8", "8"], ["--imgsz"]),
        (["val", "--weights", "missing.ckpt", "--data", "digits"], ["missing.ckpt"]),
        (["predict", "--weights", "missing.ckpt", "--source", "x.png"], ["missing.ckpt"]),
        (["frobnicate"], ["frobnicate"]),
    ],
)
def test_nonsense_values(args: list[str], needles: list[str], capsys, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    _assert_user_error(*_run(args, capsys), *needles)


def test_empty_and_missing_class_folders(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    _assert_user_error(*_run(["train", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "r")], capsys),
                       "empty")
    root = _imagefolder(tmp_path / "data", {"cat": 3, "dog": 3})
    (root / "train" / "bird").mkdir()
    _assert_user_error(*_run(["train", "--data", str(root), "--out", str(tmp_path / "r")], capsys), "bird")


def test_corrupt_images_are_skipped_and_counted(tmp_path: Path, capsys) -> None:
    root = _imagefolder(tmp_path / "data", {"cat": 6, "dog": 6})
    (root / "train" / "cat" / "broken.png").write_bytes(b"not an image at all")
    good = root / "train" / "dog" / "0.png"
    (root / "train" / "dog" / "cut.png").write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    out = tmp_path / "run"
    with pytest.warns(UserWarning, match=r"skipped 2 unreadable"):
        code = main(["train", "--data", str(root), "--out", str(out), "--epochs", "1", "--imgsz", "32", "--model",
                     "ghostnet_050", "--batch", "4", "--workers", "0"])
    assert code == 0 and (out / "best.ckpt").is_file()


def test_existing_run_is_not_overwritten(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.ckpt").write_bytes(b"precious")
    _assert_user_error(*_run(["train", "--out", str(out)], capsys), "--exist-ok", str(out))
    assert (out / "last.ckpt").read_bytes() == b"precious"


def test_checkpoint_mistakes(tmp_path: Path, capsys) -> None:
    # a backbone state dict is not a task checkpoint
    torch.save(ghostkit.create_model("ghostnet_050").state_dict(), tmp_path / "backbone.pth")
    _assert_user_error(*_run(["val", "--weights", str(tmp_path / "backbone.pth"), "--data", "digits"], capsys),
                       "backbone.pth", "not a ghostkit task checkpoint")
    # garbage bytes
    (tmp_path / "junk.ckpt").write_bytes(b"\x00garbage")
    _assert_user_error(*_run(["predict", "--weights", str(tmp_path / "junk.ckpt"), "--source", str(tmp_path)],
                             capsys), "junk.ckpt")
    # a pickled object inside
    torch.save({"ghostkit": {}, "state_dict": {}, "x": Evil()}, tmp_path / "evil.ckpt")
    _assert_user_error(*_run(["val", "--weights", str(tmp_path / "evil.ckpt"), "--data", "digits"], capsys),
                       "evil.ckpt", "pickled")


@pytest.mark.slow
def test_checkpoint_of_other_classes_and_bad_sources(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["train", "--data", "digits", "--epochs", "1", "--out", str(out), "--imgsz", "32", "--model",
                 "ghostnet_050", "--batch", "128", "--workers", "0"]) == 0
    weights = str(out / "best.ckpt")
    _assert_user_error(*_run(["val", "--weights", weights, "--data", "shapes"], capsys), "10 classes", "3")
    _assert_user_error(*_run(["predict", "--weights", weights, "--source", str(tmp_path / "nothing.png")], capsys),
                       "nothing.png")
    (tmp_path / "notes.txt").write_text("hello")
    _assert_user_error(*_run(["predict", "--weights", weights, "--source", str(tmp_path / "notes.txt")], capsys),
                       "notes.txt")
    (tmp_path / "none").mkdir()
    _assert_user_error(*_run(["predict", "--weights", weights, "--source", str(tmp_path / "none")], capsys), "none")
    _assert_user_error(*_run(["predict", "--weights", weights, "--source", str(tmp_path / "*.jpg")], capsys), "*.jpg")
    _assert_user_error(*_run(["predict", "--weights", weights, "--source", str(tmp_path), "--topk", "0"], capsys),
                       "--topk")
    # resuming with another model or data is refused, and the checkpoint stays intact
    before = (out / "last.ckpt").read_bytes()
    _assert_user_error(*_run(["train", "--data", "shapes", "--out", str(out), "--resume", str(out / "last.ckpt"),
                              "--model", "ghostnet_050", "--imgsz", "32"], capsys), "last.ckpt")
    assert (out / "last.ckpt").read_bytes() == before
