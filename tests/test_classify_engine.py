"""Classification end to end: train → run directory → val → predict, through the CLI and the Python API."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from PIL import Image

import ghostkit
from ghostkit.cli import main
from ghostkit.engine.callbacks import WarmedEMA
from ghostkit.models.weights import read_checkpoint

TINY = ["--model", "ghostnet_050", "--imgsz", "32", "--batch", "64", "--workers", "0"]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "digits"
    assert main(["train", "--data", "digits", "--epochs", "2", "--out", str(out), *TINY]) == 0
    return out


def test_run_directory_has_everything(digits_run: Path) -> None:
    for name in ("best.ckpt", "last.ckpt", "metrics.json", "metrics.csv", "curves.png", "confusion_matrix.png",
                 "config.yaml"):
        assert (digits_run / name).is_file(), name
    metrics = json.loads((digits_run / "metrics.json").read_text())
    assert {"top1", "top5", "f1_macro", "per_class"} <= set(metrics)
    assert all(0.0 <= metrics[k] <= 1.0 for k in ("top1", "top5", "f1_macro"))
    assert metrics["top5"] >= metrics["top1"]
    assert len(metrics["per_class"]) == 10
    # two epochs on digits already beat chance (0.1) by far
    assert metrics["top1"] > 0.3
    lines = (digits_run / "metrics.csv").read_text().splitlines()
    assert "val/top1" in lines[0] and len(lines) > 2
    assert len(list((digits_run / "samples").glob("*.png"))) == 8


def test_checkpoint_is_weights_only_and_self_describing(digits_run: Path) -> None:
    ckpt = torch.load(digits_run / "best.ckpt", map_location="cpu", weights_only=True)
    cfg = ckpt["ghostkit"]
    assert cfg["heads"]["classify"]["num_classes"] == 10
    assert cfg["class_names"]["classify"] == [str(i) for i in range(10)]
    assert cfg["backbone"]["name"] == "ghostnet_050"
    assert cfg["imgsz"] == [32, 32] and len(cfg["mean"]) == 3


def test_val_reproduces_training_metrics(digits_run: Path, tmp_path: Path) -> None:
    assert main(["val", "--weights", str(digits_run / "best.ckpt"), "--data", "digits", "--out", str(tmp_path),
                 "--workers", "0"]) == 0
    trained = json.loads((digits_run / "metrics.json").read_text())
    validated = json.loads((tmp_path / "metrics.json").read_text())
    assert validated["top1"] == pytest.approx(trained["top1"], abs=1e-6)
    assert validated["f1_macro"] == pytest.approx(trained["f1_macro"], abs=1e-6)
    # default output folder: val/ beside the weights
    assert main(["val", "--weights", str(digits_run / "best.ckpt"), "--data", "digits", "--workers", "0"]) == 0
    assert (digits_run / "val" / "metrics.json").is_file()


def test_predict_cli_json_and_save(digits_run: Path, tmp_path: Path, capsys) -> None:
    capsys.readouterr()
    samples = digits_run / "samples"
    assert main(["predict", "--weights", str(digits_run / "best.ckpt"), "--source", str(samples), "--json",
                 "--topk", "3", "--save", str(tmp_path / "pred")]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert len(lines) == 8
    for r in lines:
        scores = [t["score"] for t in r["topk"]]
        assert len(scores) == 3 and scores == sorted(scores, reverse=True) and sum(scores) <= 1.0 + 1e-5
        assert r["topk"][0]["class"] in [str(i) for i in range(10)]
    assert len(list((tmp_path / "pred").glob("*.png"))) == 8


def test_python_api_accepts_paths_pil_arrays_tensors(digits_run: Path) -> None:
    model = ghostkit.load_model(digits_run / "best.ckpt")
    path = sorted((digits_run / "samples").glob("*.png"))[0]
    pil = Image.open(path).convert("RGB")
    arr = np.asarray(pil)
    ten = torch.from_numpy(arr).permute(2, 0, 1).float() / 255
    results = model.predict([str(path), pil, arr, ten], topk=1)
    top = [r["topk"][0] for r in results]
    assert len({t["class"] for t in top}) == 1
    assert max(t["score"] for t in top) - min(t["score"] for t in top) < 1e-4


def test_train_api_returns_metrics(tmp_path: Path) -> None:
    metrics = ghostkit.train(data="digits", epochs=1, out=str(tmp_path / "api"), model="ghostnet_050", imgsz=32,
                             batch=128, workers=0)
    assert 0 <= metrics["top1"] <= 1 and (tmp_path / "api" / "best.ckpt").is_file()
    with pytest.raises(ghostkit.GhostkitError, match="unknown training option"):
        ghostkit.train(data="digits", epoch=1)


@pytest.mark.slow
def test_resume_continues_where_it_stopped(tmp_path: Path) -> None:
    """A run stopped after its first epoch resumes at epoch 2 with its optimizer and schedule state."""
    from lightning.pytorch.callbacks import Callback

    class StopAfterFirstEpoch(Callback):  # stands in for a run killed after its first epoch
        def on_train_epoch_end(self, trainer, pl_module) -> None:
            trainer.should_stop = True

    opts = dict(data="digits", epochs=2, model="ghostnet_050", imgsz=32, batch=64, workers=0)
    ghostkit.train(out=str(tmp_path / "cut"), callbacks=[StopAfterFirstEpoch()], **opts)
    first = torch.load(tmp_path / "cut" / "last.ckpt", weights_only=True)
    assert first["epoch"] == 0 and "rng" in first
    args = ["train", "--data", "digits", "--epochs", "2", *TINY]
    assert main([*args, "--out", str(tmp_path / "cut"), "--resume", str(tmp_path / "cut" / "last.ckpt")]) == 0
    second = torch.load(tmp_path / "cut" / "last.ckpt", weights_only=True)
    assert second["epoch"] == 1 and second["global_step"] == 2 * first["global_step"]
    assert second["lr_schedulers"][0]["last_epoch"] == 2 * first["lr_schedulers"][0]["last_epoch"]


@pytest.mark.slow
def test_multilabel_shapes(tmp_path: Path) -> None:
    out = tmp_path / "ml"
    assert main(["train", "--task", "multilabel", "--data", "shapes", "--epochs", "1", "--out", str(out),
                 "--model", "ghostnet_050", "--batch", "128", "--workers", "0"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"map", "f1_macro"} <= set(metrics) and 0 <= metrics["map"] <= 1
    assert set(metrics["per_class"]) == {"circle", "square", "triangle"}
    result = ghostkit.load_model(out / "best.ckpt").predict(sorted((out / "samples").glob("*.png"))[:1])[0]
    assert set(result["scores"]) == {"circle", "square", "triangle"}


@pytest.mark.slow
def test_pretrained_frozen_backbone_keeps_pretrained_weights(tmp_path: Path) -> None:
    backbone = ghostkit.create_model("ghostnet_050")
    torch.nn.init.normal_(backbone.conv_stem.weight)  # recognisable values
    ghostkit.models.weights.save_weights(backbone, tmp_path / "pre.safetensors")
    out = tmp_path / "ft"
    assert main(["train", "--data", "digits", "--epochs", "1", "--out", str(out), *TINY, "--pretrained",
                 str(tmp_path / "pre.safetensors"), "--freeze-backbone"]) == 0
    state, _, _ = read_checkpoint(out / "last.ckpt")
    assert torch.equal(state["model.backbone.conv_stem.weight"], backbone.conv_stem.weight.detach())
    assert torch.equal(state["model.backbone.bn1.running_mean"], backbone.bn1.running_mean)


def test_load_pretrained_fills_backbone_and_conv_head(tmp_path: Path) -> None:
    from ghostkit.tasks.model import build_task_model, load_pretrained

    backbone = ghostkit.create_model("ghostnet_050")
    ghostkit.models.weights.save_weights(backbone, tmp_path / "pre.pt")
    model = build_task_model({"backbone": {"name": "ghostnet_050", "kwargs": {}},
                              "heads": {"classify": {"num_classes": 4}}})
    assert load_pretrained(model, tmp_path / "pre.pt") == "ghostkit"
    assert torch.equal(model.backbone.blocks[3][0].ghost1.primary_conv[0].weight,
                       backbone.blocks[3][0].ghost1.primary_conv[0].weight)
    assert torch.equal(model.heads["classify"].conv_head.weight, backbone.conv_head.weight)
    assert model.heads["classify"].classifier.out_features == 4


@pytest.mark.slow
def test_ema_changes_saved_weights(tmp_path: Path) -> None:
    common = ["train", "--data", "digits", "--epochs", "1", *TINY]
    assert main([*common, "--out", str(tmp_path / "plain")]) == 0
    assert main([*common, "--out", str(tmp_path / "ema"), "--ema", "--ema-decay", "0.9"]) == 0
    plain, _, _ = read_checkpoint(tmp_path / "plain" / "last.ckpt")
    ema, _, _ = read_checkpoint(tmp_path / "ema" / "last.ckpt")
    key = "model.heads.classify.classifier.weight"
    assert not torch.allclose(plain[key], ema[key])
    assert json.loads((tmp_path / "ema" / "metrics.json").read_text())["top1"] >= 0.0


class _Ramp(L.LightningModule):
    """One weight climbing by 1 per optimiser step (SGD, lr 1, gradient -1): after n steps it is n."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))

    def training_step(self, batch, batch_idx):
        return -self.w

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=1.0)


def _ramp_fit(run_dir: Path, steps: int, resume: Path | None = None) -> None:
    """Train _Ramp for ``steps`` steps with a warmed EMA, saving ``run_dir/step=N.ckpt`` every 30 steps."""
    saver = ModelCheckpoint(dirpath=run_dir, filename="{step}", every_n_train_steps=30, save_top_k=-1)
    trainer = L.Trainer(max_steps=steps, callbacks=[WarmedEMA(0.999), saver], logger=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=run_dir)
    trainer.fit(_Ramp(), torch.utils.data.DataLoader(torch.zeros(100, 1)), ckpt_path=resume)


def test_ema_warms_up_and_resumes_exactly(tmp_path: Path) -> None:
    _ramp_fit(tmp_path / "straight", 60)
    ckpt = torch.load(tmp_path / "straight" / "step=60.ckpt", weights_only=False)
    assert float(ckpt["current_model_state"]["w"]) == 60.0
    # a fixed 0.999 decay would hold the average near 3 (94% of it still the initial 0); warmed up it lags behind
    # the weight by a few steps
    ema = float(ckpt["state_dict"]["w"])
    assert 50.0 < ema < 58.0, ema
    _ramp_fit(tmp_path / "resumed", 60, resume=tmp_path / "straight" / "step=30.ckpt")
    resumed = torch.load(tmp_path / "resumed" / "step=60.ckpt", weights_only=False)
    assert float(resumed["state_dict"]["w"]) == pytest.approx(ema, abs=1e-5)
