"""Deployment: ONNX / TorchScript export with parity checks, metadata, OnnxTaskModel, INT8, benchmark, bad input.

The graph tests build small untrained models in memory (fast); the end-to-end tests share one tiny digits run
(module fixture, marked slow).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

import ghostkit
from ghostkit.cli import main
from ghostkit.deploy.export import export, load_torchscript, parity
from ghostkit.deploy.graph import count_ops, optimize_graph
from ghostkit.deploy.runtime import OnnxTaskModel, make_session, read_onnx_config, unflatten_outputs
from ghostkit.errors import GhostkitError
from ghostkit.predict import Predictor
from ghostkit.tasks.model import build_task_model, load_task_model


def _classifier(name: str, imgsz: int = 64, classes: int = 5) -> torch.nn.Module:
    """An untrained classify TaskModel with non-trivial BN statistics (so folding is really tested)."""
    config = {"format": 1, "backbone": {"name": name, "kwargs": {"output_stride": 32}},
              "heads": {"classify": {"num_classes": classes}}, "class_names": {"classify": list("abcde")[:classes]},
              "imgsz": [imgsz, imgsz], "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "deployed": False}
    torch.manual_seed(0)
    model = build_task_model(config).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(m.weight, 0.2, 0.6)
            torch.nn.init.normal_(m.bias, 0, 0.1)
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    return model


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(code: int, err: str, *words: str) -> None:
    assert code == 2
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("ghostkit: error:"), err
    for word in words:
        assert word in lines[0], lines[0]


# ---------------------------------------------------------------------------------------------- graph (fast)


@pytest.mark.parametrize("name", ["ghostnet_050", pytest.param("ghostnetv2_100", marks=pytest.mark.slow),
                                  pytest.param("ghostnetv3_050", marks=pytest.mark.slow)])
def test_aligned_optimized_export_is_exact(name, tmp_path):
    """Channel alignment + graph rewrites keep outputs equal (export raises above 1e-3) across v1 / v2 (DFC) / v3;
    for v1 no concat survives."""
    model = _classifier(name)
    result = export(model, out=tmp_path / "m.onnx", align=16, log=None)
    assert result.max_abs_diff <= 1e-4
    assert result.rewrites["split"] > 0 and result.rewrites["lift"] > 0
    if name == "ghostnet_050":
        assert "Concat" not in result.ops and "ReduceMean" not in result.ops
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        ref = model(x)["classify"]
    got = OnnxTaskModel(result.path)(x)["classify"]  # batch 2 through a batch-1 model: run in chunks
    assert torch.allclose(got, ref, atol=1e-4)


def test_graph_passes_remove_concats_and_keep_values(tmp_path):
    """The passes one by one on a plain export: each keeps the outputs; split removes the ghost concats."""
    model = _classifier("ghostnet_050")
    plain = export(model, out=tmp_path / "plain.onnx", align=0, optimize=False, log=None)
    assert plain.ops["Concat"] == 32
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64), dtype=np.float32)
    ref = make_session(plain.path).run(None, {"images": x})[0]
    graph = onnx.load(str(plain.path))
    done = optimize_graph(graph, align=0, passes=("fold", "lift", "pool", "split"))
    assert done["lift"] == 7 and done["split"] > 0
    assert count_ops(graph).get("Concat", 0) < 32
    got = make_session(graph.SerializeToString()).run(None, {"images": x})[0]
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_dynamic_export_takes_other_sizes(tmp_path):
    model = _classifier("ghostnet_050")
    result = export(model, out=tmp_path / "d.onnx", dynamic=True, log=None)
    onnx_model = OnnxTaskModel(result.path)
    x = torch.randn(3, 3, 96, 80)
    with torch.inference_mode():
        ref = model(x)["classify"]
    assert torch.allclose(onnx_model(x)["classify"], ref, atol=1e-4)


def test_static_export_rejects_other_sizes(tmp_path):
    result = export(_classifier("ghostnet_050"), out=tmp_path / "s.onnx", log=None)
    with pytest.raises(GhostkitError, match="exported for 64 x 64"):
        OnnxTaskModel(result.path)(torch.randn(1, 3, 96, 96))


def _task_config(task: str) -> dict:
    base = {"format": 1, "backbone": {"name": "ghostnet_050", "kwargs": {"output_stride": 32}}, "imgsz": [96, 96],
            "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "deployed": False}
    if task == "detect":
        from ghostkit.tasks.detect import detect_head_config

        head = {"num_classes": 3, "arch": "fcos", **detect_head_config("fcos", 96)}
        return {**base, "heads": {"detect": head}, "class_names": {"detect": ["a", "b", "c"]}}
    return {**base, "heads": {"restore": {"scale": 2, "width": 16, "depth": 2, "noise": "0"}}, "class_names": {}}


@pytest.mark.parametrize("task", ["restore", pytest.param("detect", marks=pytest.mark.slow)])
def test_other_tasks_export_and_postprocess(task, tmp_path):
    """Dict outputs become named outputs (plain values such as an image size: constants in the metadata); the ONNX
    model post-processes like the PyTorch one."""
    torch.manual_seed(0)
    model = build_task_model(_task_config(task)).eval()
    result = export(model, out=tmp_path / "t.onnx", log=None)
    assert result.max_abs_diff <= result.tolerance
    onnx_model = OnnxTaskModel(result.path)
    x = torch.randn(2, 3, 96, 96)
    with torch.inference_mode():
        ref = model.postprocess(model(x), [(96, 96)] * 2)
    got = onnx_model.postprocess(onnx_model(x), [(96, 96)] * 2)
    for a, b in zip(got, ref):
        for key, value in b[task].items():
            assert torch.allclose(a[task][key].float(), value.float(), atol=1e-3), key
    if task == "detect":
        assert onnx_model.tree["detect"]["dict"]["image_size"]["const"] == [96, 96]
        with pytest.raises(GhostkitError, match="--dynamic"):
            export(model, out=tmp_path / "d.onnx", dynamic=True, log=None)


def test_output_tree_round_trip():
    tree = {"dict": {"a": {"tensor": "t.a"}, "size": {"const": [3, 4], "tuple": True},
                     "l": {"list": [{"tensor": "t.l.0"}], "tuple": False}}}
    t = torch.ones(1)
    out = unflatten_outputs(tree, {"t.a": t, "t.l.0": t})
    assert out["size"] == (3, 4) and out["a"] is t and out["l"] == [t]


# ------------------------------------------------------------------------------------------ bad input (fast)


def test_export_missing_checkpoint(capsys, tmp_path):
    code, _, err = _cli(capsys, "export", "--weights", str(tmp_path / "nope.ckpt"))
    _one_line_error(code, err, "nope.ckpt", "no such")


def test_export_not_a_ghostkit_checkpoint(capsys, tmp_path):
    path = tmp_path / "plain.pt"
    torch.save({"conv.weight": torch.zeros(1)}, path)
    code, _, err = _cli(capsys, "export", "--weights", str(path))
    _one_line_error(code, err, "plain.pt", "not a ghostkit task checkpoint")
    text = tmp_path / "notes.ckpt"
    text.write_text("hello")
    code, _, err = _cli(capsys, "export", "--weights", str(text))
    _one_line_error(code, err, "notes.ckpt")


def test_export_unknown_format_and_int8_without_data(capsys, tmp_path):
    code, _, err = _cli(capsys, "export", "--weights", str(tmp_path / "x.ckpt"), "--format", "tflite")
    _one_line_error(code, err, "tflite", "onnx")
    code, _, err = _cli(capsys, "export", "--weights", str(tmp_path / "x.ckpt"), "--int8")
    _one_line_error(code, err, "--int8", "--data")
    code, _, err = _cli(capsys, "export", "--weights", str(tmp_path / "x.ckpt"), "--int8", "--data", "digits",
                        "--format", "torchscript")
    _one_line_error(code, err, "--int8", "openvino")
    code, _, err = _cli(capsys, "export", "--weights", str(tmp_path / "x.ckpt"), "--align", "wide")
    _one_line_error(code, err, "--align")


@pytest.mark.parametrize("reduce_range", [None, True, False])
def test_int8_weights_are_7_bit_without_vnni(reduce_range, tmp_path):
    """Default INT8 weights: 7 bits where this x86 CPU lacks VNNI (its 16-bit pair sums would overflow), 8 otherwise."""
    from onnx import numpy_helper

    from ghostkit.deploy.cpu import int8_plan
    from ghostkit.deploy.quantize import Int8Options, quantize_onnx

    src, calib = _tiny_conv_net(tmp_path)
    q = onnx.load(str(quantize_onnx(src, tmp_path / "q.onnx", calib, Int8Options(reduce_range=reduce_range))))
    weights = [numpy_helper.to_array(t) for t in q.graph.initializer if t.data_type == onnx.TensorProto.INT8
               and len(t.dims) == 4]  # conv weights (zero points are int8 too)
    assert len(weights) == 2
    peak = max(int(np.abs(w.astype(np.int32)).max()) for w in weights)
    seven_bit = (int8_plan().weight_bits == 7) if reduce_range is None else reduce_range
    assert peak <= 64 if seven_bit else peak > 64, peak


def _tiny_conv_net(tmp_path: Path) -> tuple[Path, list[np.ndarray]]:
    """A conv → ReLU → conv ONNX model and four calibration images."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 1))
    src = tmp_path / "net.onnx"
    torch.onnx.export(net, (torch.randn(1, 3, 16, 16),), str(src), dynamo=False, input_names=["images"])
    return src, [np.random.default_rng(i).standard_normal((1, 3, 16, 16), dtype=np.float32) for i in range(4)]


def test_int8_settings_follow_the_cpu_features():
    """8-bit weights where the CPU sums 8-bit products in 32 bits (VNNI, AMX, non-x86), 7-bit where it adds pairs in
    16 bits (AVX2 or AVX-512 without VNNI) or its flags are unknown; this CPU's features are read once."""
    from ghostkit.deploy.cpu import CpuFeatures, cpu_features, int8_plan

    cases = {CpuFeatures(x86=True, avx2=True): (7, "16-bit pairs"),
             CpuFeatures(x86=True, avx2=True, avx512=True): (7, "16-bit pairs"),
             CpuFeatures(x86=True, avx2=True, avx512=True, vnni=True): (8, "vnni"),
             CpuFeatures(x86=True, avx2=True, avx512=True, vnni=True, amx=True, bf16=True): (8, "amx"),
             CpuFeatures(x86=True, known=False): (7, "16-bit pairs"),
             CpuFeatures(x86=False): (8, "native")}
    for features, (bits, dot) in cases.items():
        plan = int8_plan(features)
        assert (plan.weight_bits, plan.int8_dot) == (bits, dot), features
        assert plan.cpu == features.describe() and plan.as_dict()["weight_bits"] == bits
    assert cpu_features() is cpu_features()
    assert "VNNI" in CpuFeatures(x86=True, avx512=True, vnni=True).describe()
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    if " avx512_vnni " in flags.replace("\n", " ") and cpu_features().x86:
        assert cpu_features().vnni and int8_plan().weight_bits == 8


def test_layer_errors_send_badly_calibrated_layers_to_fp32(tmp_path):
    """A calibration range blown up by one outlier image leaves the ordinary images a few levels: their int8 error
    is large, those convs fall below MIN_SQNR_DB and, excluded, stay FP32 (their weights are not quantised)."""
    from ghostkit.deploy.quantize import MIN_SQNR_DB, Int8Options, layer_errors, quantize_onnx

    src, calib = _tiny_conv_net(tmp_path)
    good = layer_errors(quantize_onnx(src, tmp_path / "good.onnx", calib), calib, src)
    assert len(good) == 2 and min(good.values()) > MIN_SQNR_DB, good
    bad_q = quantize_onnx(src, tmp_path / "bad.onnx", calib + [calib[0] * 1000])
    bad = layer_errors(bad_q, calib, src)
    kept = sorted(n for n, db in bad.items() if db < MIN_SQNR_DB)
    assert kept and min(bad.values()) < min(good.values()) - 20, (good, bad)
    q = onnx.load(str(quantize_onnx(src, tmp_path / "kept.onnx", calib, Int8Options(exclude=tuple(kept)))))
    inits = {t.name for t in q.graph.initializer}
    for node in (n for n in q.graph.node if n.name in kept):
        assert node.input[1] in inits, node  # the float weights, no DequantizeLinear in front
    assert sum(n.op_type == "Conv" and n.input[1] not in inits for n in q.graph.node) == 2 - len(kept)


def test_profile_shows_integer_convolutions_in_both_runtimes(tmp_path):
    """The profilers' view of a QDQ model: ONNX Runtime runs its convs as integer ops on 8-bit inputs, OpenVINO
    (which reads the Q/DQ pairs as FakeQuantize) in an integer runtime precision; shares add up to one."""
    from ghostkit.deploy.export import _write_openvino
    from ghostkit.deploy.profile import profile_markdown, profile_model
    from ghostkit.deploy.quantize import quantize_onnx

    src, calib = _tiny_conv_net(tmp_path)
    q = quantize_onnx(src, tmp_path / "q.onnx", calib)
    ort_rows = profile_model(q, runs=3)["rows"]
    convs = [r for r in ort_rows if "Conv" in r["layer"]]
    assert convs and all(r["precision"] in ("uint8", "int8") for r in convs), ort_rows
    assert sum(r["share"] for r in ort_rows) == pytest.approx(1.0)
    _write_openvino(onnx.load(str(q)), tmp_path / "q.xml", {})
    ov = profile_model(tmp_path / "q.xml", runs=3)
    convs = [r for r in ov["rows"] if r["layer"] == "Convolution"]
    assert convs and {r["precision"] for r in convs} <= {"u8", "i8"}, ov["rows"]
    assert "| Convolution |" in profile_markdown(ov) and ov["total_ms"] > 0


def test_int8_keeps_fp32_only_when_slower():
    from ghostkit.deploy.int8 import choose_precision

    assert choose_precision(10.0, 7.0) == "int8"
    assert choose_precision(10.0, 10.0) == "fp32" and choose_precision(10.0, 12.5) == "fp32"


def test_benchmark_needs_one_model(capsys, tmp_path):
    code, _, err = _cli(capsys, "benchmark")
    _one_line_error(code, err, "--weights", "--model")
    code, _, err = _cli(capsys, "benchmark", "--model", "ghostnet_999")
    assert code == 2 and "Traceback" not in err and "ghostnet_999" in err


def test_onnx_without_ghostkit_metadata(tmp_path):
    path = tmp_path / "bare.onnx"
    torch.onnx.export(torch.nn.Conv2d(3, 4, 1), (torch.randn(1, 3, 8, 8),), str(path), dynamo=False,
                      input_names=["images"])
    with pytest.raises(GhostkitError, match="without ghostkit metadata"):
        OnnxTaskModel(path)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    with pytest.raises(GhostkitError, match="not a loadable ONNX model"):
        OnnxTaskModel(garbage)


# -------------------------------------------------------------------------------- end to end on digits (slow)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> Path:
    import ghostkit

    out = tmp_path_factory.mktemp("deploy") / "digits"
    ghostkit.train(data="digits", epochs=1, model="ghostnet_050", imgsz=32, batch=64, workers=0, out=str(out))
    return out


@pytest.fixture(scope="module")
def digits_onnx(digits_run) -> Path:
    assert main(["export", "--weights", str(digits_run / "best.ckpt")]) == 0
    return digits_run / "best.onnx"


@pytest.mark.slow
def test_cli_export_onnx_parity_and_metadata(digits_run, digits_onnx, capsys):
    code, out, err = _cli(capsys, "export", "--weights", str(digits_run / "best.ckpt"), "--out",
                          str(digits_run / "again.onnx"), "--data", "digits")
    assert code == 0, err
    assert "max abs diff" in out and "digits val images" in out
    diff = float(out.split("max abs diff ")[1].split()[0])
    assert diff <= 1e-3
    ckpt_config = load_task_model(digits_run / "best.ckpt").config
    meta = read_onnx_config(make_session(digits_onnx))
    for key in ("heads", "class_names", "mean", "std", "backbone"):
        assert meta[key] == ckpt_config[key]
    assert meta["imgsz"] == [32, 32] and meta["deployed"] is True
    assert meta["export"]["outputs"] == {"classify": {"tensor": "classify"}}
    assert [o.name for o in make_session(digits_onnx).get_outputs()] == ["classify"]


@pytest.mark.slow
def test_onnx_predictor_matches_checkpoint(digits_run, digits_onnx):
    samples = sorted((digits_run / "samples").glob("*.png"))
    assert samples
    ref = Predictor.load(digits_run / "best.ckpt").predict(samples, topk=3)
    got = Predictor(OnnxTaskModel(digits_onnx)).predict(samples, topk=3)
    assert [r["topk"][0]["class"] for r in got] == [r["topk"][0]["class"] for r in ref]
    for a, b in zip(got, ref):
        assert abs(a["topk"][0]["score"] - b["topk"][0]["score"]) < 1e-4


@pytest.mark.slow
def test_cli_export_torchscript(digits_run, capsys):
    path = digits_run / "best.torchscript.pt"
    code, out, err = _cli(capsys, "export", "--weights", str(digits_run / "best.ckpt"), "--format", "torchscript")
    assert code == 0, err
    assert path.is_file() and "torchscript vs PyTorch" in out
    module, config = load_torchscript(path)
    assert config["class_names"] == load_task_model(digits_run / "best.ckpt").config["class_names"]
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ref = load_task_model(digits_run / "best.ckpt")(x)["classify"]
        got = unflatten_outputs(config["export"]["outputs"]["classify"], dict(zip(["classify"], module(x))))
    # the frozen graph folds BatchNorm into the convolutions, so float32 rounding differs (about 1e-5 of logits of
    # 20): the export's own rule (`parity`), 10x stricter than the export's check
    diff, tol = parity({"classify": ref}, {"classify": got})
    assert diff <= 0.1 * tol


@pytest.mark.slow
def test_int8_export_is_smaller_and_close(digits_run, digits_onnx):
    from ghostkit.deploy.cpu import int8_plan

    result = ghostkit.export(digits_run / "best.ckpt", int8=True, data="digits", log=None,  # metrics: the task's
                             int8_fallback=False)
    assert result.path.name == "best.int8.onnx"
    assert result.path.stat().st_size < 0.6 * digits_onnx.stat().st_size
    fp32, int8 = result.int8["fp32"]["top1"], result.int8["int8"]["top1"]
    assert abs(fp32 - int8) <= 0.05, (fp32, int8)
    meta = read_onnx_config(make_session(result.path))["export"]
    assert meta["int8"] is True and meta["int8_report"]["plan"] == int8_plan().as_dict()
    assert meta["int8_report"]["fp32_layers"] == result.int8["fp32_layers"]
    assert meta["int8_report"]["quantizer"] == "onnxruntime qdq" and meta["int8_report"]["speedup"] > 0
    assert read_onnx_config(make_session(result.path))["class_names"] == read_onnx_config(
        make_session(digits_onnx))["class_names"]
    top1 = Predictor(OnnxTaskModel(result.path)).predict(sorted((digits_run / "samples").glob("*.png")))
    assert all(r["topk"][0]["class"] in [str(d) for d in range(10)] for r in top1)


@pytest.mark.slow
def test_openvino_int8_export_runs_integer_convolutions(digits_run, tmp_path):
    """``--format openvino --int8``: the QDQ model as OpenVINO IR, its convolutions executed in 8 bits, compared with
    the FP32 IR in OpenVINO on the validation set."""
    from ghostkit.deploy.runtime import OpenVinoSession

    result = ghostkit.export(digits_run / "best.ckpt", format="openvino", int8=True, data="digits", log=None,
                             int8_fallback=False)
    assert result.path.name == "best.int8.xml" and result.path.with_suffix(".bin").is_file()
    assert sorted(p.name for p in digits_run.iterdir() if p.name.startswith(".")) == []  # temporary files gone
    fp32, int8 = result.int8["fp32"]["top1"], result.int8["int8"]["top1"]
    assert abs(fp32 - int8) <= 0.05, (fp32, int8)
    assert result.int8["int8"]["size_mb"] < 0.6 * result.int8["fp32"]["size_mb"]
    session = OpenVinoSession(result.path)
    import openvino as ov

    grouped = {op.get_friendly_name() for op in ov.Core().read_model(str(result.path)).get_ops()
               if op.get_type_name() == "GroupConvolution"}
    dense, rest = set(), set()
    for op in session.compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        if info["layerType"].astype(str) == "Convolution":
            sources = set(info["originalLayersNames"].astype(str).split(","))
            (rest if sources & grouped else dense).add(info["runtimePrecision"].astype(str))
    # dense convolutions run in an integer precision, as promised (u8 or i8 is OpenVINO's choice per CPU); the
    # plugin may keep a depthwise one in f32 where its integer kernel would not pay (ghostnet_050 at 32 px)
    assert dense and dense <= {"u8", "i8"}, dense
    assert rest <= {"u8", "i8", "f32"}, rest
    assert read_onnx_config(make_session(result.path))["class_names"] == load_task_model(
        digits_run / "best.ckpt").config["class_names"]
    got = ghostkit_val(result.path, tmp_path / "val_ov_int8")
    assert got["top1"] == pytest.approx(int8, abs=2e-3)


@pytest.mark.slow
def test_int8_export_writes_what_it_reports(digits_run, capsys):
    """With the speed fallback on, the file holds what the report says: INT8 (Q/DQ nodes, ``export.int8`` true) when
    INT8 ran faster than FP32, else the FP32 graph with the reason in the one-line report."""
    out = digits_run / "checked.int8.onnx"
    code, stdout, err = _cli(capsys, "export", "--weights", str(digits_run / "best.ckpt"), "--int8", "--data",
                             "digits", "--out", str(out))
    assert code == 0, err
    meta = read_onnx_config(make_session(out))["export"]
    report = meta["int8_report"]
    quantized = any(n.op_type == "QuantizeLinear" for n in onnx.load(str(out)).graph.node)
    assert report["precision"] == ("int8" if report["speedup"] > 1 else "fp32")
    assert quantized == meta["int8"] == (report["precision"] == "int8")
    line = next(line for line in stdout.splitlines() if line.startswith("int8 vs fp32"))
    assert "bit weights" in line and f"{report['speedup']:.2f}x" in line
    assert ("FP32 model was written" in line) == (report["precision"] == "fp32")


@pytest.mark.slow
def test_benchmark_sweep_times_fp32_and_int8_per_runtime(capsys):
    code, out, err = _cli(capsys, "benchmark", "--sweep", "--model", "ghostnet_050", "--imgsz", "32", "--sweep-batch",
                          "2", "--threads", "2", "--runs", "4", "--warmup", "1", "--json")
    assert code == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    cells = {(r["runtime"], r["precision"], r["batch"], r["threads"]) for r in result["rows"]}
    assert cells == {(rt, p, b, t) for rt in ("onnxruntime", "openvino") for p in ("fp32", "int8") for b in (1, 2)
                     for t in (1, 2)}
    assert all(r["p50_ms"] > 0 and r["throughput"] > 0 and r["cpu_ms"] > 0 for r in result["rows"])
    assert [(s["batch"], s["threads"]) for s in result["summary"]] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert all(s["int8_vs_fp32"] > 0 and "openvino int8 vs fp32" in s for s in result["summary"])
    assert result["int8_plan"]["weight_bits"] in (7, 8)


@pytest.mark.slow
def test_val_rejects_exported_model_of_other_data(digits_onnx, capsys):
    # an exported digits classifier given to val on shapes: one-line error, whether val reads .onnx files or not
    code, _, err = _cli(capsys, "val", "--weights", str(digits_onnx), "--data", "shapes", "--workers", "0")
    _one_line_error(code, err, "best.onnx")


@pytest.mark.slow
def test_benchmark_json(capsys):
    code, out, err = _cli(capsys, "benchmark", "--model", "ghostnet_050", "--imgsz", "64", "--json", "--runs", "3",
                          "--warmup", "1", "--no-openvino")
    assert code == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert {"model", "imgsz", "batch", "threads", "runtimes", "nodes", "speedups", "memory_metric"} <= set(result)
    names = [r["runtime"] for r in result["runtimes"]]
    assert names[:4] == ["pytorch eager", "pytorch deploy", "onnxruntime fp32", "onnxruntime int8"]
    assert "timm ghostnet_050 onnxruntime" in names
    for row in result["runtimes"]:
        assert {"params", "macs", "p50_ms", "p90_ms", "throughput", "peak_mb", "cpu_ms"} <= set(row)
        assert row["p50_ms"] > 0 and row["p90_ms"] >= row["p50_ms"] and row["macs"] > 0
    assert result["speedups"]["fastest_ghostkit_fp32"] in names


@pytest.mark.slow
def test_openvino_export_val_and_predict_match_the_checkpoint(digits_run, tmp_path, capsys):
    out = tmp_path / "digits.xml"
    code, stdout, err = _cli(capsys, "export", "--weights", str(digits_run / "best.ckpt"), "--format", "openvino",
                             "--out", str(out))
    assert code == 0, err
    assert out.is_file() and out.with_suffix(".bin").is_file()
    assert float(stdout.split("max abs diff ")[1].split()[0]) <= 1e-3
    assert read_onnx_config(make_session(out))["class_names"] == load_task_model(digits_run / "best.ckpt").config[
        "class_names"]
    ref = ghostkit_val(digits_run / "best.ckpt", tmp_path / "val_ckpt")
    got = ghostkit_val(out, tmp_path / "val_ov")
    assert got["top1"] == pytest.approx(ref["top1"], abs=2e-3)
    samples = sorted((digits_run / "samples").glob("*.png"))
    a = Predictor.load(digits_run / "best.ckpt").predict(samples, topk=1)
    b = Predictor.load(out).predict(samples, topk=1)
    assert [r["topk"][0]["class"] for r in a] == [r["topk"][0]["class"] for r in b]


def ghostkit_val(weights: Path, out: Path) -> dict:
    import ghostkit

    return ghostkit.val(weights, data="digits", out=out, workers=0)


def test_broken_openvino_file_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / "model.xml"
    bad.write_text("<net><broken")
    code, _, err = _cli(capsys, "predict", "--weights", str(bad), "--source", str(bad))
    _one_line_error(code, err, "model.xml", "OpenVINO")
