"""The ``ghost`` rewrite of INT8 graphs (ghostkit/deploy/graph_ghost.py): narrow ghost modules lose their concat,
outputs unchanged; the CPU's INT8 plan says how narrow."""

from __future__ import annotations

import numpy as np
import onnx
import torch

from ghostkit.deploy.cpu import CpuFeatures, int8_plan
from ghostkit.deploy.export import INT8_PASSES, export
from ghostkit.deploy.graph import count_ops, fuse_ghost_concats, optimize_graph
from ghostkit.deploy.runtime import make_session
from ghostkit.tasks.model import build_task_model


def _plain_classifier_onnx(tmp_path):
    config = {"format": 1, "backbone": {"name": "ghostnet_050", "kwargs": {"output_stride": 32}},
              "heads": {"classify": {"num_classes": 5}}, "class_names": {"classify": list("abcde")},
              "imgsz": [64, 64], "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "deployed": False}
    torch.manual_seed(0)
    model = build_task_model(config).eval()
    for m in model.modules():  # non-trivial BN statistics: the folded biases are not zero
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(m.weight, 0.2, 0.6)
            torch.nn.init.normal_(m.bias, 0, 0.1)
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    return export(model, out=tmp_path / "plain.onnx", align=0, optimize=("fold", "lift", "pool"), log=None).path


def test_fused_ghost_modules_keep_the_outputs(tmp_path):
    path = _plain_classifier_onnx(tmp_path)
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64), dtype=np.float32)
    ref = make_session(path).run(None, {"images": x})[0]
    before = count_ops(onnx.load(str(path)))
    counts = {}
    for width in (0, 8, 10_000):
        graph = onnx.load(str(path))
        counts[width] = fuse_ghost_concats(graph, width)
        onnx.checker.check_model(graph)
        after = count_ops(graph)
        assert after.get("Concat", 0) == before["Concat"] - counts[width]
        assert after["Conv"] == before["Conv"]  # two convs replace two convs in each fused module
        got = make_session(graph.SerializeToString()).run(None, {"images": x})[0]
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    # ghostnet_050: every ghost module is fused without a width limit; 4- and 8-channel halves within 8
    assert counts[0] == 0 < counts[8] < counts[10_000] == before["Concat"]


def test_int8_graph_fuses_what_the_cpu_plan_allows(tmp_path):
    path = _plain_classifier_onnx(tmp_path)
    assert int8_plan(CpuFeatures(x86=True, avx2=True, avx512=True, vnni=True)).ghost_channels == 8
    assert int8_plan(CpuFeatures(x86=True, avx2=True)).ghost_channels == 4
    assert int8_plan(CpuFeatures(x86=True, known=False)).ghost_channels == 0
    assert int8_plan(CpuFeatures(x86=False)).ghost_channels == 0
    assert "ghost" in INT8_PASSES
    graph = onnx.load(str(path))
    done = optimize_graph(graph, passes=("ghost",))
    assert done["ghost"] == fuse_ghost_concats(onnx.load(str(path)), int8_plan().ghost_channels)
    assert int8_plan().as_dict()["ghost_channels"] == int8_plan().ghost_channels
