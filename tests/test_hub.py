"""ImageNet weights from the Hugging Face Hub, without network: a local hub cache in a tmp folder holds weights in
timm's published format (timm's own ``save_for_hf``: ``model.safetensors`` + ``config.json``) under the layout
huggingface_hub reads (``models--timm--NAME/snapshots/REV/`` and ``refs/main``), with ``HF_HUB_CACHE`` and
``HF_HUB_OFFLINE=1`` set. Real huggingface_hub, timm and Lightning throughout."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import realistic_bn
from PIL import Image

import ghostkit
from ghostkit.cli import main
from ghostkit.models.hub import HUB_WEIGHTS
from ghostkit.models.weights import read_checkpoint
from ghostkit.tasks.model import build_task_model, load_pretrained

timm = pytest.importorskip("timm")
huggingface_hub = pytest.importorskip("huggingface_hub")

MAIN = "a" * 40  # commit hashes of the fake snapshots
OTHER = "b" * 40
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    torch.set_num_threads(1)


def publish(cache: Path, name: str, commit: str = MAIN, seed: int = 0, main: bool = True,
            config: bool = True) -> torch.nn.Module:
    """Write timm's ``name`` with random weights (and non-trivial BN statistics) as the hub snapshot ``commit`` of
    ``timm/<name>.in1k`` in ``cache``; ``main`` points ``refs/main`` at it. Returns timm's model."""
    torch.manual_seed(seed)
    model = realistic_bn(timm.create_model(name, pretrained=False), seed=seed)
    repo = cache / f"models--timm--{name}.in1k"
    snapshot = repo / "snapshots" / commit
    timm.models.save_for_hf(model, snapshot, safe_serialization=True)
    if not config:
        (snapshot / "config.json").unlink()
    if main:
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(commit)
    return model


def point_hub_at(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline mode on ``cache``. huggingface_hub reads its environment once, when imported, so its constants are
    read again after the variables are set (and once more after they are restored, see the fixtures)."""
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    importlib.reload(huggingface_hub.constants)


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> tuple[Path, dict[str, torch.nn.Module]]:
    """A hub cache holding every variant with hub weights (``main``), plus an older ghostnet_100 snapshot."""
    cache = tmp_path_factory.mktemp("hub")
    refs = {name: publish(cache, name) for name in HUB_WEIGHTS}
    refs["ghostnet_100@other"] = publish(cache, "ghostnet_100", OTHER, seed=1, main=False)
    return cache, refs


@pytest.fixture
def hub(published, monkeypatch: pytest.MonkeyPatch):
    """Offline mode on the published cache → ``{name: timm model holding the published tensors}``."""
    point_hub_at(published[0], monkeypatch)
    yield published[1]
    monkeypatch.undo()
    importlib.reload(huggingface_hub.constants)


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Offline mode on an empty cache → its folder."""
    cache = tmp_path / "hub"
    cache.mkdir()
    point_hub_at(cache, monkeypatch)
    yield cache
    monkeypatch.undo()
    importlib.reload(huggingface_hub.constants)


def image_folder(root: Path, n: int = 6, size: int = 40) -> Path:
    """A two-class ImageFolder (train/ and val/): dark and bright noisy squares."""
    g = torch.Generator().manual_seed(0)
    for split in ("train", "val"):
        for c, level in (("dark", 60), ("bright", 190)):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                pixels = (level + 40 * torch.randn(size, size, 3, generator=g)).clamp(0, 255).to(torch.uint8)
                Image.fromarray(pixels.numpy()).save(root / split / c / f"{i}.png")
    return root


@pytest.mark.parametrize("name", list(HUB_WEIGHTS))
def test_imagenet_weights_give_timm_outputs(hub: dict, name: str) -> None:
    ref = hub[name]
    model = ghostkit.create_model(name, weights="imagenet").eval()
    x = torch.randn(2, 3, 96, 80, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, out = ref(x), model(x)
    assert expected.abs().max() > 0.05  # meaningful logits, not near-zero ones
    assert (out - expected).abs().max() <= 1e-4
    cfg = model.pretrained_cfg
    assert cfg["repo"] == HUB_WEIGHTS[name] and cfg["revision"] == MAIN
    assert cfg["mean"] == [0.485, 0.456, 0.406] and cfg["std"] == [0.229, 0.224, 0.225]
    assert cfg["input_size"] == [3, 224, 224] and cfg["interpolation"] == "bicubic"


def test_features_only_and_new_classifier_take_the_weights(hub: dict) -> None:
    ref = hub["ghostnet_100"]
    feats = ghostkit.create_model("ghostnet_100", weights="imagenet", features_only=True).eval()
    published = ref.state_dict()
    assert all(torch.equal(v, published[k]) for k, v in feats.state_dict().items())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():  # the deepest tap is the end of timm's feature extractor
        assert (feats(x)[-1] - ref.forward_features(x)).abs().max() <= 1e-4
    tuned = ghostkit.create_model("ghostnet_100", weights="imagenet", num_classes=7)
    assert tuned.classifier.out_features == 7
    assert not torch.equal(tuned.classifier.weight[:7], ref.classifier.weight[:7])  # fresh, not a slice
    assert torch.equal(tuned.conv_head.weight, ref.conv_head.weight)
    assert torch.equal(tuned.blocks[5][0].ghost1.primary_conv[0].weight, ref.blocks[5][0].ghost1.primary_conv[0].weight)


def test_revision_pinning(hub: dict) -> None:
    latest, older = hub["ghostnet_100"], hub["ghostnet_100@other"]
    default = ghostkit.create_model("ghostnet_100", weights="imagenet")
    pinned = ghostkit.create_model("ghostnet_100", weights=f"imagenet@{OTHER}")
    assert torch.equal(default.conv_stem.weight, latest.conv_stem.weight)
    assert torch.equal(pinned.conv_stem.weight, older.conv_stem.weight)
    assert pinned.pretrained_cfg["revision"] == OTHER
    with pytest.raises(ghostkit.GhostkitError, match=r"timm/ghostnet_100\.in1k@v9: .* --revision v9"):
        ghostkit.create_model("ghostnet_100", weights="imagenet@v9")
    with pytest.raises(ghostkit.GhostkitError, match="give a revision after '@'"):
        ghostkit.create_model("ghostnet_100", weights="imagenet@")


def test_offline_empty_cache_is_a_one_line_error(hub_cache: Path) -> None:
    with pytest.raises(ghostkit.GhostkitError) as e:
        ghostkit.create_model("ghostnetv2_100", weights="imagenet")
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith("timm/ghostnetv2_100.in1k: model.safetensors is not in the Hugging Face cache")
    assert str(hub_cache / "models--timm--ghostnetv2_100.in1k") in message
    assert "HF_HUB_OFFLINE=1" in message and "--pretrained FILE" in message


def test_variant_without_weights_lists_those_with_them(hub: dict, tmp_path: Path, capsys) -> None:
    for name in ("ghostnet_050", "ghostnetv3_130"):
        with pytest.raises(ghostkit.GhostkitError, match=f"^{name}: no published ImageNet weights; variants with "
                                                         f"them: {', '.join(HUB_WEIGHTS)} "):
            ghostkit.create_model(name, weights="imagenet")
    # the CLI refuses before reading any data
    code = main(["train", "--model", "ghostnet_050", "--pretrained", "imagenet", "--data", str(tmp_path / "nothing"),
                 "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "ghostnetv3_100" in err


def test_weights_without_config_json_use_timms_normalisation(hub_cache: Path) -> None:
    ref = publish(hub_cache, "ghostnetv3_100", config=False)
    model = ghostkit.create_model("ghostnetv3_100", weights="imagenet")
    assert torch.equal(model.conv_stem.weight, ref.conv_stem.weight)
    assert model.pretrained_cfg["mean"] == [0.485, 0.456, 0.406]
    assert model.pretrained_cfg["crop_pct"] == 0.875


def test_info_list_marks_variants_with_hub_weights(capsys) -> None:
    assert main(["info", "--list"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert set(lines) == set(ghostkit.list_models())
    for name, line in lines.items():
        assert (f"imagenet: timm/{name}.in1k" in line) == (name in HUB_WEIGHTS)


@pytest.mark.parametrize("heads, output_stride", [
    ({"segment": {"num_classes": 3, "output_stride": 16}}, 16), ({"detect": {"num_classes": 2}}, 32),
    ({"classify": {"num_classes": 4}, "segment": {"num_classes": 3}}, 32)])
def test_every_task_backbone_takes_hub_weights(hub: dict, heads: dict, output_stride: int) -> None:
    ref = hub["ghostnetv2_100"]
    model = build_task_model({"backbone": {"name": "ghostnetv2_100", "kwargs": {"output_stride": output_stride}},
                              "heads": heads})
    assert load_pretrained(model, "imagenet") == "timm"
    own = model.backbone.state_dict()
    assert own and all(torch.equal(v, ref.state_dict()[k]) for k, v in own.items())
    assert model.config["pretrained"]["repo"] == "timm/ghostnetv2_100.in1k"
    assert model.config["mean"] == [0.485, 0.456, 0.406]


def test_data_normalised_otherwise_is_refused(hub: dict) -> None:
    model = build_task_model({"backbone": {"name": "ghostnet_100", "kwargs": {}},
                              "heads": {"classify": {"num_classes": 2}}, "mean": [0.5] * 3, "std": [0.5] * 3})
    with pytest.raises(ghostkit.GhostkitError, match=r"timm/ghostnet_100\.in1k: its weights expect inputs normalised"):
        load_pretrained(model, "imagenet")


def test_training_from_hub_weights_stores_their_normalisation(hub: dict, tmp_path: Path) -> None:
    ref = hub["ghostnet_100"]
    data = image_folder(tmp_path / "data")
    out = tmp_path / "run"
    ghostkit.train(task="classify", data=str(data), model="ghostnet_100", pretrained="imagenet", epochs=1,
                   imgsz=32, batch=4, workers=0, freeze_backbone=True, out=str(out))
    state, config, _ = read_checkpoint(out / "best.ckpt")
    pre = config["pretrained"]
    assert pre["repo"] == "timm/ghostnet_100.in1k" and pre["revision"] == MAIN and pre["input_size"] == [3, 224, 224]
    assert config["mean"] == pre["mean"] and config["std"] == pre["std"]
    assert torch.equal(state["model.backbone.conv_stem.weight"], ref.conv_stem.weight)  # frozen: as published
    assert state["model.heads.classify.classifier.weight"].shape == (2, ref.classifier.in_features)
    assert "revision: " + MAIN in (out / "config.yaml").read_text()


def load_finetune_benchmark():
    """benchmarks/finetune.py as a module (the benchmarks folder is not a package)."""
    spec = importlib.util.spec_from_file_location("finetune", Path(__file__).parents[1] / "benchmarks" / "finetune.py")
    finetune = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(finetune)
    return finetune


@pytest.mark.slow
def test_finetune_benchmark_runs_end_to_end(hub: dict, tmp_path: Path, capsys) -> None:
    """benchmarks/finetune.py on the local cache and a tiny folder (its numbers mean nothing here)."""
    finetune = load_finetune_benchmark()
    data = image_folder(tmp_path / "data", n=4)
    out = tmp_path / "bench"
    text = finetune.main([str(data), "--epochs", "1", "--imgsz", "32", "--batch", "4", "--workers", "0", "--out",
                          str(out)])
    assert "| imagenet | 0 |" in text and "| scratch | 0 |" in text and "fine-tuning gain:" in text
    runs = json.loads((out / "finetune.json").read_text())["runs"]
    assert [r["run"] for r in runs] == ["imagenet", "scratch"]
    _, pre, _ = read_checkpoint(out / "imagenet_seed0" / "best.ckpt")
    _, scratch, _ = read_checkpoint(out / "scratch_seed0" / "best.ckpt")
    assert pre["pretrained"]["repo"] == "timm/ghostnet_100.in1k" and "pretrained" not in scratch


def test_finetune_benchmark_without_weights_says_so_in_one_line(hub_cache: Path, tmp_path: Path, capsys) -> None:
    """Weights neither cached nor reachable: one line naming the repository and the cache, exit 2, no run started;
    a missing data set is one line too."""
    finetune = load_finetune_benchmark()
    data = image_folder(tmp_path / "data", n=2)
    out = tmp_path / "bench"
    with pytest.raises(SystemExit) as exit_info:
        finetune.main([str(data), "--model", "ghostnetv2_100", "--epochs", "1", "--imgsz", "32", "--workers", "0",
                       "--out", str(out)])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("finetune.py: error: timm/ghostnetv2_100.in1k: model.safetensors")
    assert str(hub_cache / "models--timm--ghostnetv2_100.in1k") in lines[0] and "HF_HUB_OFFLINE=1" in lines[0]
    assert not out.exists()


def test_finetune_benchmark_with_a_missing_data_set(hub: dict, tmp_path: Path, capsys) -> None:
    finetune = load_finetune_benchmark()
    with pytest.raises(SystemExit) as exit_info:
        finetune.main([str(tmp_path / "nowhere"), "--epochs", "1", "--workers", "0", "--out", str(tmp_path / "b")])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("finetune.py: error:") and "nowhere" in lines[0], lines


def test_cli_offline_without_cache_exits_2(tmp_path: Path) -> None:
    """The real environment, read by huggingface_hub at import: a fresh process with HF_HUB_OFFLINE=1."""
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "empty"), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(Path(__file__).parents[1])}
    data = image_folder(tmp_path / "data", n=2)
    proc = subprocess.run([sys.executable, "-m", "ghostkit.cli", "train", "--model", "ghostnetv3_100", "--pretrained",
                           "imagenet", "--data", str(data), "--imgsz", "32", "--workers", "0", "--out",
                           str(tmp_path / "run")], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ghostkit: error: timm/ghostnetv3_100.in1k: model.safetensors")
    assert str(tmp_path / "empty" / "models--timm--ghostnetv3_100.in1k") in lines[0]
