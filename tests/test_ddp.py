"""Scale-out through Lightning: a 2-process DDP training on CPU (gloo), launched like a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch


@pytest.mark.slow
def test_two_process_ddp_on_cpu(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "ghostkit"
    out = tmp_path / "ddp"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [str(exe), "train", "--data", "digits", "--epochs", "1", "--model", "ghostnet_050", "--imgsz", "32",
         "--batch", "32", "--workers", "0", "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp",
         "--out", str(out)],
        capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # rank 0 alone prints: one metrics table (rich may wrap its long title, so count the per-class table) and one
    # closing line
    assert proc.stdout.count("per class") == 1 and proc.stdout.count("run saved to") == 1
    ckpt = torch.load(out / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["ghostkit"]["heads"]["classify"]["num_classes"] == 10
    # each process saw half of the 1438 training images: 1438 / (2 x 32) = 22 optimizer steps
    assert ckpt["global_step"] == 22
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["top1"] <= 1.0 and "f1_macro" in metrics
