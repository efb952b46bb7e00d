"""Classification + style trained jointly (``--task classify,style``): one backbone classifies and is the style
head's loss network. Tiny ImageFolder (two colour classes, 32 px), ghostnet_050, one epoch."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from ghostkit.cli import main
from ghostkit.data.style import mosaic
from ghostkit.deploy.runtime import load_model_file
from ghostkit.tasks.model import build_task_model, load_task_model

TINY = ["--width", "4", "--depth", "1", "--model", "ghostnet_050", "--imgsz", "32", "--epochs", "1", "--batch", "4",
        "--workers", "0"]


def _folder(root, n_train: int = 4, n_val: int = 2) -> None:
    """``root/{train,val}/{red,blue}/`` of noisy 32 px images; the first val image of each class is 48 x 40."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("val", n_val)):
        for name, colour in (("red", (200, 40, 40)), ("blue", (40, 40, 200))):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                h, w = (48, 40) if split == "val" and i == 0 else (32, 32)
                img = np.clip(rng.normal(0, 30, (h, w, 3)) + colour, 0, 255).astype(np.uint8)
                Image.fromarray(img).save(root / split / name / f"{name}{i}.png")


def _joint_model():
    heads = {"classify": {"num_classes": 2},
             "style": {"width": 4, "depth": 1, "loss_model": None, "style_size": [32, 32],
                       "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}}
    return build_task_model({"backbone": {"name": "ghostnet_050"}, "heads": heads, "task_weights": None})


def test_style_losses_use_the_backbone_without_training_it() -> None:
    torch.manual_seed(0)
    model = _joint_model().train()
    style = model.heads["style"]
    assert style.loss_net is None and not any(k.startswith("heads.style.loss_net") for k in model.state_dict())
    style.set_style(torch.from_numpy(np.array(mosaic(32))).permute(2, 0, 1).float() / 255)
    photos = torch.rand(2, 3, 32, 32)
    mean, std = style.in_mean, style.in_std
    running = [b.clone() for n, b in model.backbone.named_buffers() if "running_mean" in n]
    with torch.no_grad():  # one step's worth of transform weights, so that the output differs from the baseline
        style.transform.net[-1].weight.normal_(0, 0.1)
    outputs = model((photos - mean) / std)
    after_forward = [b.clone() for n, b in model.backbone.named_buffers() if "running_mean" in n]
    terms = style.loss(outputs["style"], {"content": photos, "style": style.style})
    terms["loss"].backward()
    assert float(terms["style"].detach()) > 0 and float(terms["content"].detach()) > 0
    # the style losses train the transform network, never the backbone, and its BN statistics do not see them
    assert style.transform.net[-1].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.backbone.parameters())
    assert model.backbone.training
    now = [b for n, b in model.backbone.named_buffers() if "running_mean" in n]
    assert all(torch.equal(a, b) for a, b in zip(after_forward, now))
    assert not all(torch.equal(a, b) for a, b in zip(running, now))  # the classifier's forward pass did move them
    # the classification loss does train it
    model.zero_grad()
    model.loss(model((photos - mean) / std), {"classify": torch.tensor([0, 1])})["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())


def test_train_predict_export_joint(tmp_path, capsys) -> None:
    data, run = tmp_path / "data", tmp_path / "run"
    _folder(data)
    assert main(["train", "--task", "classify,style", "--data", str(data), *TINY, "--out", str(run)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 <= metrics["classify"]["top1"] <= 1
    for key in ("content_loss", "style_loss", "ssim_content", "style_loss_baseline", "style_reduction"):
        assert np.isfinite(metrics["style"][key])
    assert metrics["score"] == pytest.approx((metrics["classify"]["top1"] + metrics["style"]["style_reduction"]) / 2)
    # the trained model keeps the style it was trained for (the built-in mosaic); ghostkit val measures it again
    assert load_task_model(run / "best.ckpt").heads["style"].style_image.float().std() > 10
    assert main(["val", "--weights", str(run / "best.ckpt"), "--data", str(data), "--workers", "0", "--out",
                 str(tmp_path / "val")]) == 0
    again = json.loads((tmp_path / "val" / "metrics.json").read_text())
    assert again["style"]["style_loss"] == pytest.approx(metrics["style"]["style_loss"], rel=1e-4)
    assert again["classify"]["top1"] == pytest.approx(metrics["classify"]["top1"])

    capsys.readouterr()
    out = tmp_path / "pred"
    assert main(["predict", "--weights", str(run / "best.ckpt"), "--source", str(data / "val" / "red"), "--save",
                 str(out), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(lines) == 2 and all(r["classify"]["topk"][0]["class"] in ("red", "blue") for r in lines)
    assert lines[0]["style"]["size"] == [48, 40]  # the stylised image at the photo's own size
    assert Image.open(out / "red0_style.png").size == (40, 48)
    assert (out / "red0_all.png").is_file() and (out / "red1_style_compare.png").is_file()

    assert main(["export", "--weights", str(run / "best.ckpt"), "--format", "onnx"]) == 0
    onnx_model, torch_model = load_model_file(run / "best.onnx"), load_task_model(run / "best.ckpt")
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        got, want = onnx_model(x), torch_model(x)
    assert float((got["style"]["image"] - want["style"]["image"]).abs().max()) < 1e-3
    assert float((got["classify"] - want["classify"]).abs().max()) < 1e-3
    capsys.readouterr()
    assert main(["predict", "--weights", str(run / "best.onnx"), "--source", str(data / "val" / "blue" / "blue1.png"),
                 "--json"]) == 0
    result = json.loads(next(line for line in capsys.readouterr().out.splitlines() if line.startswith("{")))
    assert set(result) == {"source", "classify", "style"}


@pytest.mark.parametrize("task, extra, words", [
    ("style,detect", [], ["style cannot be combined with detect", "classify"]),
    ("restore,style", ["--scale", "2"], ["style cannot be combined with restore"]),
    ("classify,style", ["--head", "adain"], ["--head adain", "one style"]),
])
def test_bad_style_combinations(tmp_path, capsys, task: str, extra: list[str], words: list[str]) -> None:
    code = main(["train", "--task", task, "--data", "shapes", *extra, "--epochs", "1", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in lines[0], lines[0]
