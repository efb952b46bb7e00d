"""Backbones over every registered variant: registry, forward shapes, backward, features, paper sizes, summary."""

from __future__ import annotations

import math
import os

import pytest
import torch
from conftest import fast_and_plain
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import ghostkit
from ghostkit.errors import GhostkitError
from ghostkit.models import create_model, list_models, model_summary, register_model

ALL = list_models()
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    torch.set_num_threads(1)  # one intra-op thread per xdist worker: no oversubscribed OpenMP spinning
VERSIONS = {"v1": "ghostnet_", "v2": "ghostnetv2_", "v3": "ghostnetv3_"}
# stride and channels (1.0x) of the five feature stages, see ghostkit/models/ghostnet.py
STAGES_100 = [(2, 16), (4, 24), (8, 40), (16, 112), (32, 960)]


def version_of(name: str) -> str:
    return next(v for v, prefix in reversed(VERSIONS.items()) if name.startswith(prefix))


def seeded(name: str, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return create_model(name, **kwargs)


@torch.no_grad()
def calibrate_bn(model: nn.Module, size: tuple[int, int] = (64, 64)) -> nn.Module:
    """Give BN layers statistics of real activations, as in a trained model, then eval mode."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the passes below
    model.train()
    for _ in range(2):
        model(torch.randn(8, 3, *size))
    return model.eval()


# --------------------------------------------------------------------------------------------------- registry


def test_registry_lists_the_ten_variants():
    assert ALL == sorted(ALL) == list_models("*")
    assert len(ALL) == 10
    assert list_models("ghostnetv2*") == ["ghostnetv2_100", "ghostnetv2_130", "ghostnetv2_160"]
    assert list_models("ghostnetv3*") == ["ghostnetv3_050", "ghostnetv3_100", "ghostnetv3_130", "ghostnetv3_160"]
    assert list_models("ghostnet_*") == ["ghostnet_050", "ghostnet_100", "ghostnet_130"]
    assert ghostkit.list_models() == ALL


def test_unknown_model_suggests_the_close_name():
    with pytest.raises(GhostkitError, match="ghostnet_10") as err:
        create_model("ghostnet_10")
    assert "ghostnet_100" in str(err.value) and "did you mean" in str(err.value)
    with pytest.raises(GhostkitError, match="resnet50"):
        create_model("resnet50")


def test_duplicate_registration_raises():
    def ghostnet_100(**kwargs):  # same name as a registered variant
        raise AssertionError("never called")

    with pytest.raises(RuntimeError, match="already registered"):
        register_model(ghostnet_100)
    assert create_model("ghostnet_100").__class__.__name__ == "GhostNet"  # the original entry is kept


def test_create_model_records_name_and_kwargs():
    m = create_model("ghostnet_050", num_classes=10, drop_rate=0.0)
    assert m.model_name == "ghostnet_050"
    assert m.model_kwargs == dict(num_classes=10, drop_rate=0.0)
    assert m.classifier.out_features == 10 and m.num_classes == 10
    m.reset_classifier(3)
    assert m.classifier.out_features == 3
    assert isinstance(create_model("ghostnet_050", num_classes=0).classifier, nn.Identity)


@pytest.mark.parametrize("kwargs", [dict(output_stride=4), dict(features_only=True, out_indices=(5,))])
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        create_model("ghostnet_050", **kwargs)


# --------------------------------------------------------------------------------------------------- forward


def _sizes(name: str) -> list[tuple[int, int]]:
    small = [(32, 32), (33, 47)]
    # the 224 / 256x192 checks are the costly ones: the 1.0x model of every version carries them
    return small + [(224, 224), (256, 192)] if name.endswith("_100") else small


@pytest.mark.parametrize("name", ALL)
def test_forward_shapes(name):
    m = calibrate_bn(seeded(name))
    assert m.version == version_of(name)
    for h, w in _sizes(name):
        x = torch.randn(2, 3, h, w)
        with torch.no_grad():
            feats = m.forward_features(x)
            out = m.forward_head(feats)
            pre = m.forward_head(feats, pre_logits=True)
            single = m(x[1:])
        assert feats.shape == (2, m.num_features, math.ceil(h / 32), math.ceil(w / 32)), (h, w)
        assert out.shape == (2, 1000) and pre.shape == (2, 1280)
        assert torch.isfinite(out).all()
        if h < 64:
            # eval mode: every image is processed on its own (no batch statistics leak). Only where the BN statistics
            # fit the input size: elsewhere float error is amplified by near-zero running variances.
            torch.testing.assert_close(single, out[1:], atol=1e-4 * float(out.abs().max()), rtol=1e-4)
        assert not torch.allclose(out[0], out[1])


@pytest.mark.parametrize("name", ALL)
def test_backward_reaches_every_parameter(name):
    m = seeded(name).train()
    x = torch.randn(2, 3, 64, 64)
    out = m(x)
    (out * torch.randn_like(out)).sum().backward()
    for pname, p in m.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
    grads = [p.grad.abs().sum() for p in m.parameters()]
    assert sum(float(g > 0) for g in grads) > 0.95 * len(grads)  # not a graph of dead paths


# --------------------------------------------------------------------------------------------------- features


@pytest.mark.parametrize("name", ALL)
def test_features_only(name):
    h, w = 65, 47
    x = torch.randn(1, 3, h, w)
    width = int(name.split("_")[-1]) / 100
    ref_feats = None
    for output_stride in (32, 16, 8):
        m = seeded(name, features_only=True, out_indices=(0, 1, 2, 3, 4), output_stride=output_stride).eval()
        assert not hasattr(m, "classifier") and not hasattr(m, "conv_head")
        with torch.no_grad():
            feats = m(x)
        assert len(feats) == len(m.feature_info) == 5
        for i, (f, info) in enumerate(zip(feats, m.feature_info, strict=True)):
            stride, chs = STAGES_100[i]
            assert info["reduction"] == min(stride, output_stride)
            assert info["num_chs"] == f.shape[1]
            assert info["num_chs"] == chs if width == 1.0 else info["num_chs"] != chs
            r = info["reduction"]
            assert f.shape == (1, info["num_chs"], math.ceil(h / r), math.ceil(w / r)), (output_stride, i, info)
            if ref_feats is not None and stride <= output_stride:
                # stages before the first dilated one are untouched (same weights: same seed)
                torch.testing.assert_close(f, ref_feats[i])
        if ref_feats is None:
            ref, ref_feats = m, feats
            continue
        assert [i["module"] for i in m.feature_info] == [i["module"] for i in ref.feature_info]
        # dilation, not new weights: the same parameters as the stride-32 model
        assert [(k, v.shape) for k, v in m.state_dict().items()] == [(k, v.shape) for k, v in ref.state_dict().items()]
        assert sum(p.numel() for p in m.parameters()) == sum(p.numel() for p in ref.parameters())


def test_out_indices_select_and_truncate():
    m = create_model("ghostnet_100", features_only=True, out_indices=(1, 3)).eval()
    assert [i["reduction"] for i in m.feature_info] == [4, 16]
    full = create_model("ghostnet_100", features_only=True, out_indices=(0, 1, 2, 3, 4))
    assert sum(p.numel() for p in m.parameters()) < sum(p.numel() for p in full.parameters())  # blocks 7-9 dropped
    with torch.no_grad():
        feats = m(torch.randn(1, 3, 64, 64))
    assert [tuple(f.shape) for f in feats] == [(1, 24, 16, 16), (1, 112, 4, 4)]
    with pytest.raises(RuntimeError):
        m.reset_classifier(10)


@pytest.mark.parametrize("name", ["ghostnet_050", "ghostnetv2_100", "ghostnetv3_050"])
@pytest.mark.parametrize("output_stride", [16, 8])
def test_full_weights_load_into_dilated_features_model(name, output_stride, tmp_path):
    src = seeded(name)
    path = tmp_path / "full.pth"
    torch.save(src.state_dict(), path)
    m = create_model(name, weights=path, features_only=True, out_indices=(0, 1, 2, 3, 4), output_stride=output_stride)
    src_state = src.state_dict()
    own = m.state_dict()
    assert own, "empty features model"
    for k, v in own.items():
        torch.testing.assert_close(v, src_state[k], rtol=0, atol=0, msg=k)
    assert not any(k.startswith(("conv_head.", "classifier.")) for k in own)
    # the dilated model still computes: the deepest map keeps the output stride
    with torch.no_grad():
        feats = m.eval()(torch.randn(1, 3, 64, 64))
    assert feats[-1].shape[-2:] == (64 // output_stride, 64 // output_stride)


def test_memory_layout_follows_the_input():
    """Inside, CPU inference runs channels-last; feature maps come back in the caller's layout, same values."""
    m = calibrate_bn(seeded("ghostnetv2_100"))
    nchw = seeded("ghostnetv2_100", channels_last=False)
    nchw.load_state_dict(m.state_dict())
    nchw.eval()
    x = torch.randn(2, 3, 64, 48)
    xc = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        f, fc, f_plain = m.forward_features(x), m.forward_features(xc), nchw.forward_features(x)
        assert f.is_contiguous() and fc.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(f, fc)
        torch.testing.assert_close(f, f_plain, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(m(x), nchw(x), atol=1e-5, rtol=1e-5)
    feats = create_model("ghostnet_050", features_only=True).eval()
    with torch.no_grad():
        assert all(t.is_contiguous() for t in feats(x))
    assert f.view(2, f.shape[1], -1).shape[-1] == 2 * 2  # views work on what we hand back


def test_inference_fast_path_matches_and_tracks_weight_updates():
    """With the fast path on, CPU inference folds BN into pre-packed oneDNN convolutions on the fly
    (ghostkit/models/fastconv.py): the same numbers as the modules themselves, and never stale after an optimizer
    step or a state-dict load."""

    def both(model, x):
        fast, plain = fast_and_plain(model, x)
        torch.testing.assert_close(fast, plain, atol=1e-5 * float(plain.abs().max()), rtol=1e-4)
        return fast

    m = calibrate_bn(seeded("ghostnetv3_050", num_classes=10))
    # a fixed input: the global RNG's state depends on which tests ran before in the process (pytest -n)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    before = both(m, x)
    m.train()
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    m(x).logsumexp(1).mean().backward()
    opt.step()  # weights and BN statistics change in place
    after = both(m.eval(), x)
    assert (after - before).abs().max() > 1e-3
    torch.manual_seed(1)  # other weights, BN statistics of inputs of x's size (others amplify float error)
    m.load_state_dict(calibrate_bn(create_model("ghostnetv3_050", num_classes=10)).state_dict())
    assert (both(m, x) - after).abs().max() > 1e-3


def test_eval_model_is_a_plain_pytorch_module():
    """``create_model(...).eval()`` runs its modules as written: forward hooks on convs, BN and ReLU fire and no
    fast-path plan is made. ``fastpath.enable`` switches the fast path on (same numbers, same state-dict
    keys; the fused modules are not called), ``fastpath.disable`` back off (every hook fires again)."""
    from ghostkit.models import fastconv, fastpath

    m = calibrate_bn(seeded("ghostnetv2_100", num_classes=10))
    block = m.blocks[3][0]  # downsampling, SE, DFC attention
    watched = {"stem bn": m.bn1, "stem relu": m.act1, "ghost bn": block.ghost1.primary_conv[1],
               "ghost relu": block.ghost1.primary_conv[2], "dfc bn": block.ghost1.short_conv[1], "dw bn": block.bn_dw,
               "dw conv": block.conv_dw, "se relu": block.se.act1, "last relu": m.blocks[9][0].act1,
               "head relu": m.act2}
    fired: set[str] = set()
    for name, module in watched.items():
        module.register_forward_hook(lambda *_, name=name: fired.add(name))
    x = torch.randn(2, 3, 64, 64)
    keys = list(m.state_dict())
    with torch.no_grad():
        plain = m(x)
    assert fired == set(watched)
    assert not fastpath.is_enabled(m) and not any(c in fastconv._PACKED for c in m.modules())

    fired.clear()
    with torch.no_grad():
        fast = fastpath.enable(m)(x)
    assert fastpath.is_enabled(m) and list(m.state_dict()) == keys
    torch.testing.assert_close(fast, plain, atol=1e-5 * float(plain.abs().max()), rtol=1e-4)
    if fastpath.available():
        assert not fired & {"stem bn", "stem relu", "ghost bn", "ghost relu", "dw conv", "dw bn"}
    fired.clear()
    with torch.no_grad():
        torch.testing.assert_close(fastpath.disable(m)(x), plain, rtol=0, atol=0)
    assert fired == set(watched) and not fastpath.is_enabled(m)


@torch.no_grad()
def _routes(model: nn.Module, x: torch.Tensor) -> set[tuple[str, bool]]:
    """(route, split) of every fast-path plan made for ``model``'s convs on ``x`` (see ghostkit/models/fastconv.py)."""
    from ghostkit.models import fastconv, fastpath

    fastconv._PACKED.clear()
    was_on = fastpath.is_enabled(model)
    fastpath.enable(model)(x)
    if not was_on:
        fastpath.disable(model)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m in fastconv._PACKED]
    return {(plan.route, part is not None) for m in convs for part, (_, plan) in fastconv._PACKED[m].items() if plan}


@pytest.mark.parametrize("name", ["ghostnet_050", "ghostnetv2_100", "ghostnetv3_050"])
def test_split_ghost_path_matches(name, monkeypatch):
    """Large maps skip the expanded concat of each bottleneck (ghost1's halves go on as two tensors through the
    depthwise conv, SE and DFC gates into ghost2's split 1x1 conv): the same numbers as the plain modules. v3 runs
    its training structure as is; its deploy form (v2's layout) takes the split path."""
    from ghostkit.models import fastpath, ghostnet

    monkeypatch.setattr(fastpath, "PARTS_MIN_NUMEL", 0)  # every block, even on this small input
    calls = []
    split = fastpath._bottleneck_parts
    monkeypatch.setattr(fastpath, "_bottleneck_parts", lambda block, x: calls.append(1) or split(block, x))
    m = calibrate_bn(seeded(name, num_classes=10))
    x = torch.randn(16, 3, 32, 48)  # batch 16: oneDNN also runs 1x1 convs with one thread (PyTorch's rule)
    for model in (m, ghostkit.reparameterize(m)):
        calls.clear()
        fast, plain = fast_and_plain(model, x)
        torch.testing.assert_close(fast, plain, atol=1e-5 * float(plain.abs().max()), rtol=1e-4)
        deployed = getattr(model, "deployed", False)
        assert len(calls) == (16 if deployed or name != "ghostnetv3_050" else 0)  # 16 blocks, fast run only
        if calls:
            assert ("onednn", True) in _routes(model, x)  # the split convs did run as split convs
    # a ghost module whose halves are trimmed (9 of 10 channels) hands on one part
    torch.manual_seed(0)
    block = calibrate_bn(nn.Sequential(nn.Conv2d(3, 8, 3), ghostnet.GhostBottleneck(8, 9, 8, se_ratio=0.25)))
    fast, plain = fast_and_plain(block, x)
    torch.testing.assert_close(fast, plain, atol=1e-5 * float(plain.abs().max()), rtol=1e-4)


def test_small_1x1_convs_run_as_matrix_products():
    """1x1 convs on small maps take the matrix-product route, larger ones oneDNN; both equal the plain modules."""
    from ghostkit.models import fastconv

    m = calibrate_bn(seeded("ghostnet_100", num_classes=10))
    x = torch.randn(16, 3, 64, 64)  # 1x1 convs from 32 x 32 maps (16384 rows: oneDNN) to 2 x 2 (64 rows: matmul)
    fast, plain = fast_and_plain(m, x)
    torch.testing.assert_close(fast, plain, atol=1e-5 * float(plain.abs().max()), rtol=1e-4)
    assert {("matmul", False), ("onednn", False)} <= _routes(m, x)
    assert fastconv.MATMUL_MAX_ROWS < 16 * 32 * 32


# --------------------------------------------------------------------------------------------------- sizes


def _macs(model: nn.Module, h: int = 224, w: int = 224) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(torch.randn(1, 3, h, w))
    return counter.get_total_flops() // 2


# GhostNet paper, Table 7: params and FLOPs (multiply-adds) at 224 x 224
@pytest.mark.parametrize(
    "name, params_m, macs_m", [("ghostnet_050", 2.59, 42), ("ghostnet_100", 5.18, 141), ("ghostnet_130", 7.36, 226)]
)
def test_paper_sizes(name, params_m, macs_m):
    m = create_model(name)
    params = sum(p.numel() for p in m.parameters())
    assert params == pytest.approx(params_m * 1e6, rel=0.01)
    assert _macs(m) == pytest.approx(macs_m * 1e6, rel=0.02)


def test_model_summary():
    s = model_summary("ghostnet_100")
    assert s["name"] == "ghostnet_100" and s["version"] == "v1" and s["width"] == 1.0
    assert isinstance(s["params"], int) and isinstance(s["macs"], int)
    assert s["params"] == pytest.approx(5.18e6, rel=0.01)
    assert s["macs"] == pytest.approx(141e6, rel=0.02)
    # folding BN removes its affine parameters; the conv MACs stay
    assert s["deploy_params"] < s["params"] and s["deploy_macs"] == s["macs"]
    assert [(f["index"], f["stride"], f["channels"]) for f in s["features"]] == [
        (i, stride, chs) for i, (stride, chs) in enumerate(STAGES_100)
    ]
    assert [f["shape"] for f in s["features"]] == [
        [16, 112, 112],
        [24, 56, 56],
        [40, 28, 28],
        [112, 14, 14],
        [960, 7, 7],
    ]
    assert all(f["module"].startswith("blocks.") for f in s["features"])


def test_model_summary_v3_size_and_deploy():
    s = model_summary("ghostnetv3_050", imgsz=(65, 33))
    assert s["version"] == "v3" and s["width"] == 0.5
    # the training branches cost parameters and MACs that deploy mode merges away
    assert s["deploy_params"] < 0.9 * s["params"] and s["deploy_macs"] < 0.7 * s["macs"]
    assert s["macs"] == _macs(create_model("ghostnetv3_050"), 65, 33)
    assert [f["shape"][1:] for f in s["features"]] == [[33, 17], [17, 9], [9, 5], [5, 3], [3, 2]]
    with pytest.raises(GhostkitError):
        model_summary("ghostnet_10")
