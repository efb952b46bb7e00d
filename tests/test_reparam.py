"""Deploy mode: reparameterize() folds BN and merges GhostNetV3 branches with unchanged outputs."""

from __future__ import annotations

import copy
import os

import pytest
import torch
from conftest import fast_and_plain, realistic_bn
from torch import nn

from ghostkit.models import create_model, is_deployed, list_models, reparameterize

ALL = list_models()
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    torch.set_num_threads(1)  # one intra-op thread per xdist worker: no oversubscribed OpenMP spinning

SIZE = (96, 80)  # realistic_bn's default size: 3 x 3 (odd) maps at stride 32, DFC pooling with a remainder


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def assert_deployed(model: nn.Module) -> None:
    assert is_deployed(model)
    assert getattr(model, "deployed", False)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    names = [n for n, _ in model.named_parameters()] + [n for n, _ in model.named_buffers()]
    assert not [n for n in names if "_rpr_" in n]
    assert not [n for n in names if "running_" in n or "num_batches_tracked" in n]


def max_diff(a, b) -> float:
    if isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        return max(max_diff(x, y) for x, y in zip(a, b, strict=True))
    assert a.shape == b.shape
    return float((a - b).abs().max())


@pytest.mark.parametrize("name", ALL)
def test_deploy_matches_and_leaves_the_original_alone(name):
    torch.manual_seed(0)
    model = realistic_bn(create_model(name))
    before = copy.deepcopy(model.state_dict())
    deployed = reparameterize(model)

    assert_deployed(deployed)
    assert not is_deployed(model)
    assert n_params(deployed) < n_params(model)
    x = torch.randn(2, 3, *SIZE)
    with torch.no_grad():
        ref, out = model(x), deployed(x)
    assert ref.abs().max() > 0.05
    assert max_diff(out, ref) <= 1e-4

    # the input model is untouched: same structure, same tensors, still in eval mode, same outputs
    assert not model.training and not getattr(model, "deployed", False)
    after = model.state_dict()
    assert list(after) == list(before)
    for k, v in before.items():
        assert torch.equal(after[k], v), k
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref, rtol=0, atol=0)
    # deploying twice is harmless
    with torch.no_grad():
        assert max_diff(reparameterize(deployed)(x), out) <= 1e-6


@pytest.mark.parametrize("name", ALL)
def test_deploy_features_only_dilated(name):
    torch.manual_seed(0)
    model = realistic_bn(create_model(name, features_only=True, out_indices=(0, 1, 2, 3, 4), output_stride=8))
    deployed = reparameterize(model)
    assert_deployed(deployed)
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        ref, out = model(x), deployed(x)
    assert [f.shape for f in out] == [f.shape for f in ref]
    assert [f.shape[-2:] for f in out][-1] == (8, 6)  # output stride 8
    assert max_diff(out, ref) <= 1e-4
    assert deployed.feature_info == model.feature_info


@pytest.mark.parametrize("name", ["ghostnet_050", "ghostnetv2_100", "ghostnetv3_050"])
def test_deploy_classifier_output_stride_8(name):
    torch.manual_seed(0)
    model = realistic_bn(create_model(name, output_stride=8), [(64, 48)])
    deployed = reparameterize(model)
    assert_deployed(deployed)
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        assert max_diff(deployed(x), model(x)) <= 1e-4
        assert deployed.forward_features(x).shape[-2:] == (8, 6)


def test_v3_deploys_to_the_v2_structure():
    """GhostNetV3's training branches merge into exactly GhostNetV2's layers: same deploy speed and size."""
    v2 = reparameterize(create_model("ghostnetv2_100"))
    v3 = reparameterize(create_model("ghostnetv3_100"))
    assert [(k, v.shape) for k, v in v3.state_dict().items()] == [(k, v.shape) for k, v in v2.state_dict().items()]
    assert [type(m) for m in v3.modules()] == [type(m) for m in v2.modules()]


def test_deploy_keeps_the_training_structure_trainable():
    model = create_model("ghostnetv3_050").train()
    reparameterize(model)
    assert model.training  # the copy is put in eval mode, not the input
    out = model(torch.randn(2, 3, 64, 64))
    out.sum().backward()
    assert model.conv_stem.weight.grad is not None


@pytest.mark.parametrize("module", [
    nn.Sequential(nn.BatchNorm2d(3)),
    nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.BatchNorm2d(8)),
    nn.Sequential(nn.Conv2d(3, 8, 3), nn.Sequential(nn.BatchNorm2d(8))),
])
def test_unfoldable_batchnorm_raises(module):
    with pytest.raises(RuntimeError, match="BatchNorm"):
        reparameterize(module)
    assert any(isinstance(m, nn.BatchNorm2d) for m in module.modules())  # input untouched


def test_plain_sequential_folds():
    torch.manual_seed(0)
    seq = realistic_bn(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1),
                                     nn.BatchNorm2d(4)), [(16, 16)])
    deployed = reparameterize(seq)
    assert_deployed(deployed)
    assert len(deployed) == 3
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert max_diff(deployed(x), seq(x)) <= 1e-5


def test_fast_path_equals_plain_convolutions():
    """Deploy-mode convs run as fused, pre-packed oneDNN ops on CPU inference; results equal plain F.conv2d."""
    from ghostkit.models import fastconv

    torch.manual_seed(0)
    deployed = reparameterize(realistic_bn(create_model("ghostnetv3_050")))
    x = torch.randn(2, 3, *SIZE)
    fastconv._PACKED.clear()  # entries from other tests must not stand in for this model's
    fast, plain = fast_and_plain(deployed, x)
    assert max_diff(fast, plain) <= 1e-5
    # autograd on: the plain path (the packed op has no backward); the same numbers
    assert max_diff(deployed(x).detach(), fast) <= 1e-5
    # new weights (loaded in place) are picked up, not a stale packed copy
    with torch.no_grad():
        deployed.conv_stem.weight.mul_(0.5)
        changed = deployed(x)
    deployed.conv_stem.weight.data.mul_(2.0)
    assert max_diff(changed, fast) > 1e-3


def test_deploy_switches_the_fast_path_on():
    """``reparameterize`` returns a model with the CPU fast path on (its ReLU modules fused, their hooks silent);
    ``fast=False`` a plain deploy model whose hooks fire; the input model stays plain."""
    from ghostkit.models import fastpath

    torch.manual_seed(0)
    model = realistic_bn(create_model("ghostnet_050"))
    fast, plain = reparameterize(model), reparameterize(model, fast=False)
    assert fastpath.is_enabled(fast) and not fastpath.is_enabled(plain) and not fastpath.is_enabled(model)
    assert not fastpath.is_enabled(reparameterize(fast, fast=False))
    fired = []
    for m in (fast, plain):
        m.act1.register_forward_hook(lambda mod, *_: fired.append(mod))
    x = torch.randn(2, 3, *SIZE)
    with torch.no_grad():
        assert max_diff(fast(x), plain(x)) <= 1e-5
    assert fired[-1] is plain.act1
    assert fired == [plain.act1] or not fastpath.available()


def test_deployed_model_traces_to_plain_ops(monkeypatch):
    from ghostkit.models import fastconv

    torch.manual_seed(0)
    deployed = reparameterize(realistic_bn(create_model("ghostnetv2_100", features_only=True)))
    x = torch.randn(1, 3, 64, 64)
    monkeypatch.setitem(fastconv._FAST, "ok", None)  # the op's self-check not made yet: the tracer must not see it
    with torch.no_grad():
        traced = torch.jit.trace(deployed, x, check_trace=False)
        plain, fast = traced(x), deployed(x)
        # float32 rounding of other kernels (oneDNN, matrix products) scales with the features' magnitude
        assert max_diff(plain, fast) <= 1e-5 * max(1.0, max(float(f.abs().max()) for f in plain))
    assert "mkldnn" not in str(traced.graph)  # exporters see standard convolutions
