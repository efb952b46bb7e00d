"""Fault injection on short real runs: kill -9 at a random point then ``--resume``, Ctrl-C (SIGINT), a full
filesystem, a read-only output folder and NaN in a batch. Tiny ImageFolder of scikit-learn digits (60 training and
30 validation images at 32 px), ghostnet_050, no loader workers: each run takes seconds.

The full-disk and read-only cases mount a small tmpfs, which needs root (or CAP_SYS_ADMIN); elsewhere they are
skipped with that reason. The read-only case falls back to a folder without write permission for other users.
"""

from __future__ import annotations

import json
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import ghostkit
from ghostkit.cli import main
from ghostkit.data.synthetic import load_digits, write_imagefolder
from ghostkit.errors import GhostkitError

pytestmark = pytest.mark.slow

TINY = ["--model", "ghostnet_050", "--imgsz", "32", "--batch", "16", "--workers", "0"]
ROOT = Path(ghostkit.__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny_digits(tmp_path_factory) -> Path:
    images, labels, names = load_digits(32)
    root = tmp_path_factory.mktemp("tiny_digits")
    write_imagefolder(root / "train", images[:60], labels[:60], names)
    write_imagefolder(root / "val", images[60:90], labels[60:90], names)
    return root


def _train_args(data: Path, out: Path, epochs: int) -> list[str]:
    return ["train", "--data", str(data), "--epochs", str(epochs), "--out", str(out), *TINY]


def _ghostkit(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "ghostkit.cli", *args]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1"}


def _start(args: list[str]) -> subprocess.Popen:
    # a child of a background shell inherits SIGINT ignored, and Python then keeps it ignored: restore the default
    return subprocess.Popen(_ghostkit(args), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(_ghostkit(args), env=_env(), capture_output=True, text=True, timeout=600)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 600) -> None:
    end = time.monotonic() + timeout
    while not path.is_file():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, f"{path} did not appear"
        time.sleep(0.05)


def _csv(run: Path) -> list[dict]:
    import csv

    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


def _files(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}


@pytest.fixture(scope="module")
def reference(tiny_digits, tmp_path_factory) -> Path:
    """The uninterrupted run of 3 epochs."""
    out = tmp_path_factory.mktemp("reference") / "run"
    r = _run(_train_args(tiny_digits, out, 3))
    assert r.returncode == 0, r.stderr
    return out


def test_kill9_at_a_random_point_then_resume_gives_the_uninterrupted_run(reference, tiny_digits, tmp_path):
    run = tmp_path / "run"
    proc = _start(_train_args(tiny_digits, run, 3))
    _wait_for(run / "last.ckpt", proc)
    delay = random.uniform(0.0, 3.0)
    time.sleep(delay)
    proc.kill()  # SIGKILL: no handler runs, no file is closed properly
    proc.communicate()
    saved = torch.load(run / "last.ckpt", weights_only=True)  # whole, whenever the kill came
    resumed = _run(_train_args(tiny_digits, run, 3) + ["--resume", str(run / "last.ckpt")])
    assert resumed.returncode == 0, (delay, saved["epoch"], resumed.stderr)
    want, got = json.loads((reference / "metrics.json").read_text()), json.loads((run / "metrics.json").read_text())
    for key in ("top1", "top5", "f1_macro"):
        assert got[key] == pytest.approx(want[key], abs=1e-6), (key, delay, saved["epoch"])
    rows, ref_rows = _csv(run), _csv(reference)
    assert [r["epoch"] for r in rows] == ["0", "1", "2"]  # the whole history, across the resume
    for row, ref in zip(rows, ref_rows):
        for key in ("step", "train/loss", "val/loss", "val/top1"):
            assert float(row[key]) == pytest.approx(float(ref[key]), rel=1e-5), (key, row["epoch"], delay)
    assert (run / "curves.png").is_file()
    assert not [p.name for p in run.iterdir() if ".tmp" in p.name]  # what the kill left behind is cleared

    # resuming a finished run: says so, exit 0, every file untouched
    before = _files(run)
    again = _run(_train_args(tiny_digits, run, 3) + ["--resume", str(run / "last.ckpt")])
    assert again.returncode == 0, again.stderr
    assert "already finished its 3 epochs" in again.stderr
    assert _files(run) == before


def test_sigint_says_where_it_stopped_and_how_to_resume(tiny_digits, tmp_path):
    run = tmp_path / "run"
    proc = _start(_train_args(tiny_digits, run, 4))
    _wait_for(run / "last.ckpt", proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("ghostkit: interrupted during epoch "), err
    command = lines[0].split("continue with: ", 1)[1]
    assert command.endswith(f"--resume {run / 'last.ckpt'}"), command
    epoch = torch.load(run / "last.ckpt", weights_only=True)["epoch"]  # a whole checkpoint of the epochs done
    assert [int(r["epoch"]) for r in _csv(run)] == list(range(epoch + 1))
    for name in ("metrics.json", "curves.png", "confusion_matrix.png", "best.ckpt"):
        assert (run / name).is_file(), name
    assert "top1" in json.loads((run / "metrics.json").read_text())

    # the printed command continues the run to its end, with the whole history
    resumed = _run(shlex.split(command)[1:])
    assert resumed.returncode == 0, resumed.stderr
    assert [r["epoch"] for r in _csv(run)] == ["0", "1", "2", "3"]


def test_nan_in_a_batch_stops_the_run_and_keeps_the_last_good_checkpoint(tiny_digits, tmp_path):
    from lightning.pytorch.callbacks import Callback

    class PoisonBatch(Callback):  # a corrupt batch in the second epoch
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            if trainer.current_epoch == 1 and batch_idx == 1:
                batch[0].fill_(float("nan"))

    run = tmp_path / "run"
    with pytest.raises(GhostkitError) as err:
        ghostkit.train(data=str(tiny_digits), epochs=3, model="ghostnet_050", imgsz=32, batch=16, workers=0,
                       out=str(run), callbacks=[PoisonBatch()])
    message = str(err.value)
    assert "\n" not in message and "loss became nan at epoch 2, step 4" in message, message
    assert f"{run / 'last.ckpt'}, holds epoch 1" in message
    last = torch.load(run / "last.ckpt", weights_only=True)
    assert last["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point())
    assert [r["epoch"] for r in _csv(run)] == ["0"]


def _mount_tmpfs(folder: Path, size: int, read_only: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True,
                            text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip() or 'mount failed'}); it needs root")


@pytest.fixture
def mounts():
    mounted: list[Path] = []
    yield mounted
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_full_disk_gives_one_line_and_keeps_the_good_checkpoint(tiny_digits, tmp_path, mounts, capsys):
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    src = tmp_path / "src"
    ghostkit.train(data=str(tiny_digits), epochs=1, model="ghostnet_050", imgsz=32, batch=16, workers=0,
                   out=str(src))
    disk = tmp_path / "disk"
    used = sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
    _mount_tmpfs(disk, used + 256 * 1024)  # room for the run as it is, not for a second checkpoint beside it
    mounts.append(disk)
    run = disk / "run"
    shutil.copytree(src, run)
    good = (run / "last.ckpt").read_bytes()
    capsys.readouterr()
    code = main(_train_args(tiny_digits, run, 2) + ["--resume", str(run / "last.ckpt")])
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert "no space left on the device" in lines[0] and ".ckpt" in lines[0], err
    assert (run / "last.ckpt").read_bytes() == good  # the good checkpoint, not a truncated one
    assert not [p.name for p in run.iterdir() if ".tmp" in p.name]  # no temporary file left behind


def test_read_only_output_folder_is_refused_before_any_work(tmp_path, mounts, capsys):
    folder = tmp_path / "ro"
    if os.geteuid() == 0:  # root writes through permission bits: only a read-only mount stops it
        _mount_tmpfs(folder, 1024 * 1024, read_only=True)
        mounts.append(folder)
    else:
        folder.mkdir()
        folder.chmod(0o555)
    missing = str(tmp_path / "none.ckpt")  # the output check comes before reading anything
    for args, option in ((["train", "--out", str(folder / "run")], "--out"),
                         (["val", "--weights", missing, "--data", "digits", "--out", str(folder / "val")], "--out"),
                         (["export", "--weights", missing, "--out", str(folder / "m.onnx")], "--out"),
                         (["predict", "--weights", missing, "--source", str(tmp_path), "--save", str(folder)],
                          "--save")):
        capsys.readouterr()
        code = main(args)
        err = capsys.readouterr().err
        lines = [x for x in err.splitlines() if x.strip()]
        assert code == 2 and len(lines) == 1, (args, err)
        assert option in lines[0] and "cannot write there" in lines[0], lines[0]
    assert list(folder.iterdir()) == []


def test_a_finished_run_killed_before_its_outputs_writes_them_on_resume(reference, tiny_digits, tmp_path):
    """kill -9 after the last epoch's last.ckpt but before metrics.json: --resume trains nothing and writes them."""
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    for name in ("metrics.json", "curves.png"):  # metrics.json is written last: without it, outputs may be missing
        (run / name).unlink()
    resumed = _run(_train_args(tiny_digits, run, 3) + ["--resume", str(run / "last.ckpt")])
    assert resumed.returncode == 0, resumed.stderr
    assert (run / "curves.png").is_file()
    want, got = json.loads((reference / "metrics.json").read_text()), json.loads((run / "metrics.json").read_text())
    assert got["top1"] == pytest.approx(want["top1"], abs=1e-6) and _csv(run) == _csv(reference)
    again = _run(_train_args(tiny_digits, run, 3) + ["--resume", str(run / "last.ckpt")])
    assert again.returncode == 0 and "nothing to do" in again.stderr
