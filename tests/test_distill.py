"""Knowledge distillation: the soft-target losses, the frozen teacher, the teacher's input, the CLI with checkpoint
and registered-name teachers, the GhostNetV3 recipe and every bad input (one-line errors, exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

from ghostkit.cli import main
from ghostkit.engine.config import TrainConfig
from ghostkit.engine.distill import RECIPES, Distiller, Teacher, apply_recipe, kd_loss, load_teacher, teacher_input
from ghostkit.models import create_model
from ghostkit.models.weights import atomic_torch_save, save_weights
from ghostkit.tasks.model import build_task_model

CLASSES = ["cat", "dog", "owl"]
TINY = ["--model", "ghostnet_050", "--imgsz", "32", "--batch", "8", "--workers", "0", "--epochs", "1"]


# -- the losses on hand-made logits --------------------------------------------------------------------------------
S = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
T = torch.tensor([[1.0, 1.5, -0.5], [-1.0, 0.0, 2.0]])


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


@pytest.mark.parametrize("temp", [1.0, 2.0, 4.0])
def test_kl_at_temperature_scaled_by_t_squared(temp: float) -> None:
    p_t, p_s = _softmax(T.numpy() / temp), _softmax(S.numpy() / temp)
    kl = (p_t * np.log(p_t / p_s)).sum(1).mean()
    assert kd_loss(S, T, temp, "kl").item() == pytest.approx(temp**2 * kl, rel=1e-5)
    soft_ce = -(p_t * np.log(p_s)).sum(1).mean()
    assert kd_loss(S, T, temp, "soft_ce").item() == pytest.approx(temp**2 * soft_ce, rel=1e-5)


def test_zero_when_student_equals_teacher() -> None:
    assert kd_loss(T, T, 3.0, "kl").item() == pytest.approx(0.0, abs=1e-6)
    assert kd_loss(T, T, 3.0, "kl", multilabel=True).item() == pytest.approx(0.0, abs=1e-6)
    # the soft cross-entropy is then the teacher's entropy: same gradients as KL, another constant
    p = _softmax(T.numpy())
    assert kd_loss(T, T, 1.0, "soft_ce").item() == pytest.approx(-(p * np.log(p)).sum(1).mean(), rel=1e-5)
    assert kd_loss(S, T, 2.0, "kl").item() > 0


class _Fixed(torch.nn.Module):
    """A "model" answering the hand-made teacher logits ``T`` whatever the images."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return T[: images.shape[0]]


@pytest.mark.parametrize("weight, temp", [(0.5, 2.0), (2.0, 1.0), (0.0, 4.0)])
def test_distiller_adds_the_weighted_loss_to_the_task_loss(weight: float, temp: float) -> None:
    """Hand computation: loss = task loss + weight * T^2 * KL(teacher || student) at temperature T."""
    teacher = Teacher(_Fixed(), None, 3, ([0.5] * 3, [0.25] * 3), None, None, "fixed")
    distiller = Distiller(teacher, "classify", ([0.5] * 3, [0.25] * 3), weight=weight, temperature=temp, kind="kl")
    losses = {"loss": torch.tensor(1.25)}
    distiller.add_loss(losses, torch.zeros(2, 3, 32, 32), {"classify": S})
    p_t, p_s = _softmax(T.numpy() / temp), _softmax(S.numpy() / temp)
    kd = weight * temp**2 * (p_t * np.log(p_t / p_s)).sum(1).mean()
    assert losses["kd"].item() == pytest.approx(kd, rel=1e-5, abs=1e-7)
    assert losses["loss"].item() == pytest.approx(1.25 + kd, rel=1e-5)


def test_multilabel_soft_targets_are_per_class_sigmoids() -> None:
    temp = 2.0
    q, p = torch.sigmoid(T / temp), torch.sigmoid(S / temp)
    binary_kl = q * torch.log(q / p) + (1 - q) * torch.log((1 - q) / (1 - p))
    assert kd_loss(S, T, temp, "kl", multilabel=True).item() == pytest.approx(temp**2 * binary_kl.mean().item(),
                                                                                rel=1e-5)
    bce = F.binary_cross_entropy(p, q)
    assert kd_loss(S, T, temp, "soft_ce", multilabel=True).item() == pytest.approx(temp**2 * bce.item(), rel=1e-5)


# -- the teacher -----------------------------------------------------------------------------------------------
def _config(task: str = "classify", classes: list[str] = CLASSES, model: str = "ghostnet_050") -> dict:
    return {"format": 1, "backbone": {"name": model, "kwargs": {"output_stride": 32}},
            "heads": {task: {"num_classes": len(classes), "multilabel": task == "multilabel"}},
            "class_names": {task: list(classes)}, "imgsz": [32, 32], "mean": [0.5, 0.5, 0.5], "std": [0.25] * 3,
            "deployed": False}


def _checkpoint(path: Path, **kw) -> Path:
    torch.manual_seed(1)
    model = build_task_model(_config(**kw))
    atomic_torch_save({"ghostkit": model.config, "state_dict": model.state_dict()}, path)
    return path


def test_teacher_is_frozen_and_unchanged_by_a_training_step(tmp_path: Path) -> None:
    teacher = load_teacher(str(_checkpoint(tmp_path / "t.ckpt")), "classify")
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    assert not teacher.training and not any(m.training for m in teacher.modules())  # evaluating from the start
    teacher.train()  # Lightning calls train() on modules; the teacher keeps evaluating
    assert not teacher.training and not any(m.training for m in teacher.modules())
    assert not any(p.requires_grad for p in teacher.parameters())
    student = build_task_model(_config())
    distiller = Distiller(teacher, "classify", ([0.5] * 3, [0.25] * 3), weight=1.0, temperature=4.0, kind="kl")
    opt = torch.optim.SGD(student.parameters(), lr=0.1)
    images, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    outputs = student(images)
    losses = student.loss(outputs, {"classify": labels})
    task_loss = losses["loss"].item()
    distiller.add_loss(losses, images, outputs)
    assert losses["kd"].item() > 0 and losses["loss"].item() == pytest.approx(task_loss + losses["kd"].item())
    losses["loss"].backward()
    opt.step()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    import copy

    assert copy.deepcopy(distiller) is distiller  # an EMA copy of the LightningModule shares the teacher


def test_teacher_input_resizes_and_renormalises() -> None:
    images = torch.randn(2, 3, 32, 32)
    norm = ([0.5, 0.5, 0.5], [0.25, 0.25, 0.25])
    assert teacher_input(images, norm, norm, (32, 32)) is images
    assert teacher_input(images, norm, norm, None) is images
    other = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    pixels = images * 0.25 + 0.5
    mean, std = torch.tensor(other[0]).view(1, 3, 1, 1), torch.tensor(other[1]).view(1, 3, 1, 1)
    assert torch.allclose(teacher_input(images, norm, other, (32, 32)), (pixels - mean) / std, atol=1e-5)
    big = teacher_input(images, norm, other, (64, 48))
    assert big.shape == (2, 3, 64, 48)
    expected = (F.interpolate(pixels, size=(64, 48), mode="bilinear", align_corners=False) - mean) / std
    assert torch.allclose(big, expected, atol=1e-5)
    # a constant image stays the same colour whatever the size
    flat = torch.full((1, 3, 32, 32), 0.8)
    out = teacher_input((flat - 0.5) / 0.25, norm, other, (224, 224))
    assert torch.allclose(out * std + mean, torch.full((1, 3, 224, 224), 0.8), atol=1e-5)


def test_registered_name_teacher_takes_imagenet_normalisation(tmp_path: Path) -> None:
    weights = save_weights(create_model("ghostnet_050", num_classes=3), tmp_path / "g050.pth")
    teacher = load_teacher("ghostnet_050", "classify", str(weights))
    assert teacher.num_classes == 3 and teacher.size == (224, 224) and teacher.class_names is None
    assert teacher.norm[0] == pytest.approx([0.485, 0.456, 0.406])
    assert teacher(torch.randn(2, 3, 224, 224)).shape == (2, 3)


def test_timm_teacher_from_a_state_dict(tmp_path: Path) -> None:
    timm = pytest.importorskip("timm")
    path = tmp_path / "timm_g050.pth"
    torch.save(timm.create_model("ghostnet_050", num_classes=3).state_dict(), path)
    teacher = load_teacher("timm:ghostnet_050", "classify", str(path))
    assert teacher.num_classes == 3 and teacher.size == (224, 224)
    assert teacher(torch.randn(1, 3, 64, 64)).shape == (1, 3)


# -- the CLI ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A tiny ImageFolder: three classes of coloured squares, 6 train and 2 val images each."""
    root = tmp_path_factory.mktemp("kd_data")
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("val", 2)):
        for c, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                img = rng.integers(0, 60, (32, 32, 3), dtype=np.uint8)
                img[8:24, 8:24, c] = 230
                Image.fromarray(img).save(root / split / name / f"{i}.png")
    return root


def _train(folder: Path, out: Path, *extra: str) -> int:
    return main(["train", "--data", str(folder), "--out", str(out), *TINY, *extra])


def test_cli_with_a_checkpoint_teacher(folder: Path, tmp_path: Path) -> None:
    teacher = _checkpoint(tmp_path / "teacher.ckpt")
    out = tmp_path / "run"
    assert _train(folder, out, "--teacher", str(teacher), "--kd-temp", "2", "--kd-weight", "0.5") == 0
    header = (out / "metrics.csv").read_text().splitlines()[0]
    assert "train/kd" in header
    saved = torch.load(out / "best.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    student_keys = {f"model.{k}" for k in build_task_model(_config()).state_dict()}
    assert set(saved) == student_keys  # the teacher's weights stay out of the student's checkpoint
    assert json.loads((out / "metrics.json").read_text())["top1"] >= 0


def test_cli_with_a_registered_name_teacher(folder: Path, tmp_path: Path) -> None:
    weights = save_weights(create_model("ghostnet_050", num_classes=3), tmp_path / "g050.safetensors")
    out = tmp_path / "run"
    assert _train(folder, out, "--teacher", "ghostnet_050", "--teacher-weights", str(weights), "--kd-loss",
                  "soft_ce") == 0
    assert "train/kd" in (out / "metrics.csv").read_text().splitlines()[0]


def test_recipe_fills_what_the_user_did_not_set(folder: Path, tmp_path: Path) -> None:
    cfg = apply_recipe(TrainConfig(recipe="ghostnetv3", teacher="t", lr=0.01), {"recipe", "teacher", "lr"})
    assert cfg.lr == 0.01 and cfg.optimizer == "sgd" and cfg.ema and cfg.kd_loss == "soft_ce"
    assert all(getattr(cfg, k) == v for k, v in RECIPES["ghostnetv3"].items() if k != "lr")
    out = tmp_path / "run"
    teacher = _checkpoint(tmp_path / "teacher.ckpt")
    # --optimizer adamw is the default value, but given: the recipe leaves it alone
    assert _train(folder, out, "--recipe", "ghostnetv3", "--teacher", str(teacher), "--optimizer", "adamw") == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())["train"]
    assert saved["epochs"] == 1 and saved["optimizer"] == "adamw" and saved["lr"] == 0.05
    assert saved["ema"] is True and saved["ema_decay"] == 0.9998 and saved["kd_loss"] == "soft_ce"
    assert saved["label_smoothing"] == 0.1 and saved["kd_temp"] == 1.0 and saved["warmup_epochs"] == 3.0


# -- bad input: one line, exit 2 -------------------------------------------------------------------------------
def _error(capsys, folder: Path, tmp_path: Path, *extra: str, task: str = "classify") -> str:
    code = main(["train", "--task", task, "--data", str(folder), "--out", str(tmp_path / "bad"), *TINY, *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("ghostkit: error:"), err
    return err


def test_teacher_with_other_classes(capsys, folder: Path, tmp_path: Path) -> None:
    four = _checkpoint(tmp_path / "four.ckpt", classes=[*CLASSES, "fox"])
    assert "4 classes" in _error(capsys, folder, tmp_path, "--teacher", str(four))
    renamed = _checkpoint(tmp_path / "renamed.ckpt", classes=["cat", "dog", "emu"])
    assert "class names differ" in _error(capsys, folder, tmp_path, "--teacher", str(renamed))
    weights = save_weights(create_model("ghostnet_050", num_classes=7), tmp_path / "g7.pth")
    assert "7 classes" in _error(capsys, folder, tmp_path, "--teacher", "ghostnet_050", "--teacher-weights",
                                 str(weights))


def test_teacher_of_another_task(capsys, folder: Path, tmp_path: Path) -> None:
    multilabel = _checkpoint(tmp_path / "ml.ckpt", task="multilabel")
    assert "another task" in _error(capsys, folder, tmp_path, "--teacher", str(multilabel))


def test_corrupt_or_missing_teacher(capsys, folder: Path, tmp_path: Path) -> None:
    bad = tmp_path / "corrupt.ckpt"
    bad.write_bytes(b"\x00not a checkpoint" * 10)
    assert str(bad) in _error(capsys, folder, tmp_path, "--teacher", str(bad))
    assert "neither a checkpoint" in _error(capsys, folder, tmp_path, "--teacher", str(tmp_path / "nope.ckpt"))
    assert "needs its weights" in _error(capsys, folder, tmp_path, "--teacher", "ghostnet_050")


@pytest.mark.parametrize("option, value, words", [
    ("--kd-temp", "0", "--kd-temp"), ("--kd-temp", "-2", "--kd-temp"), ("--kd-weight", "-1", "--kd-weight"),
    ("--kd-weight", "nan", "--kd-weight"), ("--kd-loss", "mse", "--kd-loss"), ("--recipe", "v9", "--recipe")])
def test_bad_distillation_options(capsys, folder: Path, tmp_path: Path, option: str, value: str, words: str) -> None:
    teacher = _checkpoint(tmp_path / "t.ckpt")
    assert words in _error(capsys, folder, tmp_path, "--teacher", str(teacher), option, value)


def test_teacher_options_out_of_place(capsys, folder: Path, tmp_path: Path) -> None:
    assert "not detect" in _error(capsys, folder, tmp_path, "--teacher", "x.ckpt", task="detect")
    assert "needs --teacher" in _error(capsys, folder, tmp_path, "--teacher-weights", "x.pth")
    assert "distils from a teacher" in _error(capsys, folder, tmp_path, "--recipe", "ghostnetv3")


def test_teacher_module_is_not_a_submodule(tmp_path: Path) -> None:
    teacher = load_teacher(str(_checkpoint(tmp_path / "t.ckpt")), "classify")
    assert isinstance(teacher, Teacher)
    from ghostkit.engine.module import TaskModule

    module = TaskModule(build_task_model(_config()), TrainConfig(), {})
    module.distiller = Distiller(teacher, "classify", ([0.5] * 3, [0.25] * 3), 1.0, 1.0, "kl")
    assert not any("teacher" in k for k in module.state_dict())


@pytest.mark.slow
def test_distill_benchmark_runs_end_to_end(folder: Path, tmp_path: Path) -> None:
    """benchmarks/distill.py on the tiny folder (its numbers mean nothing here): the teacher, then a distilled and a
    plain student per seed, with ghostkit train's distillation defaults."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("distill_bench", Path(__file__).parents[1] / "benchmarks" /
                                                  "distill.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "bench"
    text = bench.main(["--data", str(folder), "--teacher-model", "ghostnet_050", "--teacher-epochs", "1", "--epochs",
                       "1", "--batch", "8", "--seeds", "0", "--out", str(out)])
    saved = json.loads((out / "distill.json").read_text())
    assert [r["run"] for r in saved["runs"]] == ["distilled", "plain"]
    default = TrainConfig()
    assert (saved["args"]["kd_loss"], saved["args"]["kd_temp"], saved["args"]["kd_weight"]) == (
        default.kd_loss, default.kd_temp, default.kd_weight)
    assert "| teacher ghostnet_050 | 0 |" in text and "| distilled | 0 |" in text and "distilled - plain:" in text
    assert "train/kd" in (out / "distilled_seed0" / "metrics.csv").read_text().splitlines()[0]
    assert "train/kd" not in (out / "plain_seed0" / "metrics.csv").read_text().splitlines()[0]
