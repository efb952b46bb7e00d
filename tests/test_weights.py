"""Weights: timm and official Huawei checkpoints load strictly and give timm's outputs; ghostkit files round-trip;
bad files are refused with a GhostkitError naming the file."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from conftest import realistic_bn
from safetensors.torch import save_file
from torch import nn

from ghostkit.errors import GhostkitError
from ghostkit.models import create_model, list_models, reparameterize
from ghostkit.models.weights import load_weights, read_checkpoint, remap_state_dict, save_weights

timm = pytest.importorskip("timm")

ALL = list_models()
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    torch.set_num_threads(1)  # one intra-op thread per xdist worker: no oversubscribed OpenMP spinning


def timm_reference(name: str, sizes: list[tuple[int, int]]) -> nn.Module:
    torch.manual_seed(0)
    return realistic_bn(timm.create_model(name, pretrained=False), sizes)


def official_format(state: dict[str, torch.Tensor]) -> dict:
    """The Huawei release's layout: training-script wrapper, DataParallel prefix, V3 branch BNs named ``bn``
    (timm / ghostkit: ``bn1``) and thop's ``total_ops`` / ``total_params`` counters."""
    out = {}
    for k, v in state.items():
        k = re.sub(r"(rpr_conv\.\d+|rpr_scale)\.bn1\.", r"\1.bn.", k)
        out["module." + k] = v
    out["module.total_ops"] = torch.zeros(1, dtype=torch.float64)
    out["module.total_params"] = torch.zeros(1, dtype=torch.float64)
    out["module.blocks.0.0.ghost1.total_ops"] = torch.zeros(1, dtype=torch.float64)
    return {"epoch": 400, "state_dict": out}


# --------------------------------------------------------------------------------------------------- timm parity

SIZES = [(224, 224), (256, 192)]


@pytest.mark.parametrize("name", ALL)
def test_timm_and_official_weights_give_timm_outputs(name, tmp_path):
    ref = timm_reference(name, SIZES)
    state = ref.state_dict()
    path = tmp_path / f"{name}_timm.pth"
    torch.save(state, path)
    model = create_model(name, weights=path).eval()
    assert read_checkpoint(path)[2] == "timm"
    xs = [torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(i)) for i, size in enumerate(SIZES)]
    with torch.no_grad():
        for x in xs:
            expected, out = ref(x), model(x)
            assert expected.abs().max() > 0.05  # a meaningful comparison, not of near-zero logits
            assert (out - expected).abs().max() <= 1e-4, x.shape

        # the official release's file layout: same weights, same outputs
        official = official_format(state)
        if name.startswith("ghostnetv3"):
            assert any(k.endswith("primary_rpr_conv.0.bn.weight") for k in official["state_dict"])
        path = tmp_path / f"{name}_official.pth.tar"
        torch.save(official, path)
        model2 = create_model(name).eval()
        assert load_weights(model2, path) == "official"
        torch.testing.assert_close(model2(xs[0]), model(xs[0]), rtol=0, atol=0)
        # a plain state dict is reported as timm's
        assert load_weights(create_model(name), state) == "timm"


def test_official_key_mapping_is_exact():
    state = create_model("ghostnetv3_050").state_dict()
    official = official_format(state)
    assert "module.blocks.1.0.dw_rpr_scale.bn.running_var" in official["state_dict"]
    remapped, config, fmt = remap_state_dict(official)
    assert fmt == "official" and config is None
    assert list(remapped) == list(state)


# --------------------------------------------------------------------------------------------------- ghostkit files


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_save_load_roundtrip(suffix, tmp_path):
    torch.manual_seed(0)
    src = realistic_bn(create_model("ghostnetv3_050", num_classes=10), [(64, 64)])
    path = save_weights(src, tmp_path / f"w{suffix}")
    state, config, fmt = read_checkpoint(path)
    assert fmt == "ghostkit"
    assert config["model"] == "ghostnetv3_050" and config["kwargs"] == {"num_classes": 10}
    assert config["deployed"] is False
    if suffix == ".pt":  # plain tensors and containers only
        torch.load(path, weights_only=True)
    dst = create_model("ghostnetv3_050", weights=path, num_classes=10).eval()
    for k, v in src.state_dict().items():
        torch.testing.assert_close(dst.state_dict()[k], v, rtol=0, atol=0, msg=k)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(dst(x), src(x), rtol=0, atol=0)
    assert not list(tmp_path.glob("*.tmp"))  # atomic writes leave nothing behind


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_deployed_weights_roundtrip(suffix, tmp_path):
    torch.manual_seed(0)
    src = reparameterize(realistic_bn(create_model("ghostnetv3_050"), [(64, 64)]))
    path = save_weights(src, tmp_path / f"deploy{suffix}")
    assert read_checkpoint(path)[1]["deployed"] is True
    dst = reparameterize(create_model("ghostnetv3_050"))
    assert load_weights(dst, path) == "ghostkit"
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(dst(x), src(x), rtol=0, atol=0)
    with pytest.raises(GhostkitError, match="deploy"):
        load_weights(create_model("ghostnetv3_050"), path)


@dataclass
class NotATensor:
    payload: str = "arbitrary code could run here"


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": create_model("ghostnet_050").state_dict(), "extra": NotATensor()}, path)
    with pytest.raises(GhostkitError, match="pickled") as err:
        create_model("ghostnet_050", weights=path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("src, dst, problem", [
    ("ghostnet_050", "ghostnet_100", "shape mismatch"),
    ("ghostnet_100", "ghostnetv2_100", "missing keys"),
    ("ghostnetv2_100", "ghostnet_100", "unexpected keys"),
    ("ghostnetv3_050", "ghostnet_050", "unexpected keys"),
])
def test_weights_of_another_variant_are_refused(src, dst, problem, tmp_path):
    path = tmp_path / f"{src}.pth"
    torch.save(create_model(src).state_dict(), path)
    with pytest.raises(GhostkitError) as err:
        create_model(dst, weights=path)
    msg = str(err.value)
    assert problem in msg and str(path) in msg and dst in msg
    assert re.search(r"blocks\.|conv_stem|classifier|conv_head", msg)  # names the keys


@pytest.mark.parametrize("filename, content", [
    ("missing.pth", None),
    ("garbage.pth", b"this is not a checkpoint\x00\x01\x02" * 10),
    ("garbage.safetensors", b"\xff" * 64),
    ("list.pt", "list"),
    ("strings.pt", "strings"),
])
def test_unreadable_files_name_the_file(filename, content, tmp_path):
    path = tmp_path / filename
    if content == "list":
        torch.save([torch.zeros(1)], path)
    elif content == "strings":
        torch.save({"conv_stem.weight": "not a tensor"}, path)
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(GhostkitError) as err:
        create_model("ghostnet_050", weights=path)
    assert str(path) in str(err.value)


def test_safetensors_without_ghostkit_metadata_is_a_plain_state_dict(tmp_path):
    src = create_model("ghostnet_050")
    path = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    dst = create_model("ghostnet_050")
    assert load_weights(dst, path) == "timm"
    torch.testing.assert_close(dst.conv_stem.weight, src.conv_stem.weight)


def test_new_classifier_for_another_class_count(tmp_path):
    torch.manual_seed(0)
    src = create_model("ghostnet_100")
    path = tmp_path / "imagenet.pth"
    torch.save(src.state_dict(), path)
    torch.manual_seed(1)
    m = create_model("ghostnet_100", weights=path, num_classes=7)
    assert m.classifier.weight.shape == (7, 1280) and m.classifier.bias.shape == (7,)
    src_state = src.state_dict()
    for k, v in m.state_dict().items():
        if k == "classifier.weight":
            assert not torch.equal(v, src_state[k][:7])  # fresh, not the first 7 ImageNet rows
        elif k.startswith("classifier."):
            continue
        else:
            torch.testing.assert_close(v, src_state[k], rtol=0, atol=0, msg=k)
    with torch.no_grad():
        assert m.eval()(torch.randn(2, 3, 64, 64)).shape == (2, 7)
    # without num_classes the same mismatch is an error
    small = tmp_path / "seven.pth"
    torch.save(m.state_dict(), small)
    with pytest.raises(GhostkitError, match="shape mismatch"):
        create_model("ghostnet_100", weights=small)


def test_save_weights_creates_parent_directories(tmp_path):
    path = save_weights(create_model("ghostnet_050"), tmp_path / "a" / "b" / "w.safetensors")
    assert isinstance(path, Path) and path.is_file()
