"""``export``: a ghostkit checkpoint → ONNX (optionally INT8) or TorchScript, checked against PyTorch.

What an exported file holds:

* the re-parameterised network (BN folded, GhostNetV3 branches merged), for ONNX also channel-aligned for ONNX
  Runtime's blocked CPU kernels (:mod:`ghostkit.deploy.align`) and rewritten without the ghost modules' concats and
  channel-broadcast gates (:mod:`ghostkit.deploy.graph`); every rewrite is exact;
* one named output per tensor of each head's outputs (``classify``; ``detect.cls_logits``, ...);
* the ghostkit config as metadata: tasks, head configs, class names, input size, mean / std, plus ``export``
  (format, opset, dynamic, int8, output tree) — :class:`ghostkit.deploy.runtime.OnnxTaskModel` rebuilds the heads'
  post-processing from it.

After writing, the file is run on sample images (``--data``'s validation images, else built-in shapes) and compared
with the PyTorch checkpoint; a max abs difference above ``1e-3 x max(1, max |output|)`` (per output) is an error
(INT8 models report the difference and the validation metric instead).

Shapes are static by default, batch size included (``batch=1``; ``OnnxTaskModel`` feeds bigger batches in chunks):
ONNX Runtime's blocked-layout optimiser must prove operand shapes equal, which a symbolic batch axis after a
``Resize`` defeats (it then reshapes around every residual sum). ``dynamic=True`` frees batch, height and width.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import GhostkitError
from ..io import atomic_path, atomic_write_bytes, check_output_file
from ..models import reparameterize
from ..tasks.model import TaskModel, load_task_model
from .evaluate import MetricsFactory
from .runtime import INPUT_NAME, flatten_outputs, make_session, run_session
from .samples import sample_images

__all__ = ["export", "ExportResult", "FORMATS", "sample_images", "default_out", "parity", "load_torchscript"]

FORMATS = {"onnx": ".onnx", "openvino": ".xml", "torchscript": ".torchscript.pt"}
RTOL = 1e-3
DEFAULT_OPSET = 17
# INT8 runs in ORT's own integer kernels (no blocked fp32 layout), where channel padding and split concats only add
# work and Q/DQ boundaries (measured in benchmarks/runtime_speed.py): its FP32 source gets the layout-neutral passes.
# So does OpenVINO's INT8 source: ghostnet_100 at 224 px ran 5% faster with them than with no rewrites (1 thread),
# 10% slower with split concats too; narrow ghost modules lose their concat ("ghost": 5-10% faster in OpenVINO).
LAYOUT_NEUTRAL_PASSES = ("fold", "lift", "pool")
INT8_PASSES = (*LAYOUT_NEUTRAL_PASSES, "ghost")
# align="auto" pads channels only when that adds at most this factor of MACs: ghostnet_100 at 224 px (1.39x) gains,
# ghostnet_050 (1.7x) loses (benchmarks/runtime_speed.py)
MAX_PADDED_MACS = 1.5


@dataclasses.dataclass
class ExportResult:
    """What ``export`` wrote and measured; ``int8``: the FP32 vs INT8 report of an INT8 export."""

    path: Path
    format: str
    max_abs_diff: float
    tolerance: float
    seconds: float
    size_mb: float
    macs: int = 0  # of the exported network (channel padding included), batch 1
    params: int = 0  # weights stored in the file (channel padding included)
    ops: dict[str, int] = dataclasses.field(default_factory=dict)
    rewrites: dict[str, int] = dataclasses.field(default_factory=dict)
    int8: dict | None = None


def default_out(weights: str | Path, fmt: str, int8: bool = False) -> Path:
    """``runs/x/best.ckpt`` → ``runs/x/best.onnx`` / ``best.int8.onnx`` / ``best.torchscript.pt``."""
    w = Path(weights)
    return w.with_name(w.stem + (".int8" if int8 else "") + FORMATS[fmt])


class FlatOutputs(nn.Module):
    """``TaskModel`` → a flat tuple of tensors, in the order of ``names`` (what exporters want)."""

    def __init__(self, model: TaskModel, names: list[str]) -> None:
        super().__init__()
        self.model, self.names = model, names

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        flat = {}
        for task, out in self.model(images).items():
            flat.update(dict(flatten_outputs(out, task)[1]))
        return tuple(flat[n] for n in self.names)


def parity(reference: dict[str, torch.Tensor], got: dict[str, torch.Tensor]) -> tuple[float, float]:
    """``(max abs difference, its tolerance)`` of the output furthest off relative to its own tolerance
    ``RTOL x max(1, max |reference output|)`` (so pixel-sized anchors do not loosen the check of logits)."""
    rows = []
    for k, ref in reference.items():
        diff = float((ref.float() - got[k].float()).abs().max()) if ref.numel() else 0.0
        tol = RTOL * max(1.0, float(ref.float().abs().max()) if ref.numel() else 0.0)
        rows.append((diff / tol if diff == diff else float("inf"), diff, tol))  # NaN is the worst
    _, diff, tol = max(rows, default=(0.0, 0.0, RTOL))
    return diff, tol


def _resolve_align(align: int | str) -> int:
    if align == "auto":
        from .align import cpu_block_size

        return cpu_block_size()
    try:
        value = int(align)
    except ValueError:
        raise GhostkitError(f"--align must be auto, 0, 8 or 16, got {align!r}") from None
    if value < 0:
        raise GhostkitError(f"--align must not be negative, got {value}")
    return value


def _aligned(model: TaskModel, block: int, imgsz: tuple[int, int], auto: bool,
             log: Callable[[str], None]) -> tuple[TaskModel, int]:
    """A copy of the deployed ``model`` whose GhostNet backbone is channel-aligned to ``block`` (0: unchanged).
    ``auto``: only where padding adds at most ``MAX_PADDED_MACS`` of the work (narrow models pay more than the
    blocked kernels give back)."""
    if block <= 1 or model.backbone is None:
        return model, 0
    from ..models.summary import count_macs
    from .align import align_channels

    try:
        backbone = align_channels(model.backbone, block)
    except ValueError as e:  # a backbone the alignment does not know: export it as it is
        log(f"channel alignment skipped ({e})")
        return model, 0
    if auto:
        ratio = count_macs(backbone, imgsz) / max(1, count_macs(model.backbone, imgsz))
        if ratio > MAX_PADDED_MACS:
            log(f"channel alignment skipped (it would add {ratio - 1:.0%} MACs)")
            return model, 0
    return TaskModel(backbone, dict(model.heads), model.config), block


def torch_to_onnx(model: TaskModel, names: list[str], example: torch.Tensor, batched: set[str], dynamic: bool,
                  opset: int) -> bytes:
    """Trace ``model`` into ONNX bytes (TorchScript-based exporter: no extra dependency, folds constants)."""
    import io

    axes = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}} if dynamic else {}
    axes.update({n: {0: "batch"} for n in names if n in batched and dynamic})
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python ints are expected: shapes are fixed per export
        torch.onnx.export(FlatOutputs(model, names).eval(), (example,), buffer, dynamo=False, opset_version=opset,
                          input_names=[INPUT_NAME], output_names=names, dynamic_axes=axes, do_constant_folding=True)
    return buffer.getvalue()


def _has_const(tree: dict) -> bool:
    if "const" in tree:
        return True
    children = tree.get("dict", {}).values() if "dict" in tree else tree.get("list", [])
    return any(_has_const(t) for t in children)


def _run_onnx(path: Path, images: torch.Tensor, batched: set[str]) -> dict[str, torch.Tensor]:
    values = run_session(make_session(path), images.numpy(), batched)
    return {n: torch.from_numpy(v) for n, v in values.items()}


def export(
    weights: str | Path | TaskModel,
    format: str = "onnx",
    imgsz: tuple[int, int] | int | None = None,
    batch: int = 1,
    dynamic: bool = False,
    int8: bool = False,
    data: str | None = None,
    out: str | Path | None = None,
    opset: int = DEFAULT_OPSET,
    align: int | str = "auto",
    optimize: bool | tuple[str, ...] = True,
    log: Callable[[str], None] | None = print,
    metrics: MetricsFactory | None = None,
    int8_fallback: bool = True,
) -> ExportResult:
    """Export the checkpoint ``weights`` (a path, or a ``TaskModel`` with ``out``; see the module docstring).

    ``imgsz``: input ``(H, W)`` (default: the training size); ``batch``: the fixed batch size (runtimes feed larger
    batches in chunks; ``dynamic`` frees batch, height and width); ``align``: channel block for ONNX Runtime's CPU
    kernels (``"auto"``: this CPU's, where the padding costs at most ``MAX_PADDED_MACS``; 0: off);
    ``optimize``: the graph rewrites of :mod:`ghostkit.deploy.graph` (True: all, or the names of some); ``int8``:
    static INT8 quantisation calibrated on ``data``'s training images (ONNX Runtime or OpenVINO; settings from this
    CPU's features, badly quantising layers kept FP32; see :mod:`ghostkit.deploy.int8`), reporting the validation
    metric and speed of FP32 vs INT8; ``int8_fallback``: write the FP32 model when INT8 is not faster.
    ``log``: where progress lines go (None: nowhere). ``metrics``: ``model → {task:
    metric module}`` for that INT8 accuracy check (needed with ``int8``); the task metrics live in the engine, which
    deploy does not import, so the caller passes them: ``ghostkit.export`` and ``ghostkit export`` give
    :func:`ghostkit.engine.spec.model_metrics`."""
    log = log or (lambda _: None)
    start = time.perf_counter()
    _check_options(format, int8, data, batch, opset)
    block = _resolve_align(align) if format == "onnx" and not int8 else 0
    if isinstance(weights, TaskModel) and out is None:
        raise GhostkitError("export of an in-memory model needs out=PATH")
    out = check_output_file(out if out else default_out(weights, format, int8))  # before the work, not after
    if not isinstance(weights, TaskModel) and Path(weights).suffix.lower() not in (".onnx", ".xml"):
        from ..models.weights import read_checkpoint
        from ..tasks.generate import is_generator_config

        if is_generator_config(read_checkpoint(weights)[1]):  # latents in, images out: its own exporter
            from .generate import export_generator

            if int8:
                raise GhostkitError(f"{weights}: --int8 is not available for generative models")
            return export_generator(weights, format, batch, dynamic, opset, out, log)
    if int8 and metrics is None:
        raise GhostkitError("an INT8 export needs metrics= for its accuracy check (ghostkit.export and the ghostkit "
                            "export command pass the task's)")
    if format == "openvino" and not int8:  # OpenVINO does its own layout work; ORT's rewrites would get in its way
        optimize = False
    if isinstance(weights, TaskModel):
        model = weights.eval()
    else:
        model = load_task_model(weights)
    size = imgsz if imgsz is not None else model.config.get("imgsz", [224, 224])
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if min(h, w) < 32:
        raise GhostkitError(f"--imgsz must be at least 32 x 32, got {h} x {w}")
    images, source = sample_images(model, (h, w), data)
    trees, ref, batched = _reference_outputs(model, images, dynamic)
    names = list(ref)
    meta = {**model.config, "imgsz": [h, w], "deployed": True,
            "export": {"format": format, "opset": opset if format == "onnx" else None, "dynamic": dynamic,
                       "int8": int8, "align": block, "outputs": trees, "batched": sorted(batched),
                       "source": str(weights) if not isinstance(weights, TaskModel) else None}}
    deploy = reparameterize(model)
    result = ExportResult(out, format, 0.0, 0.0, 0.0, 0.0)
    if format == "torchscript":
        got = _export_torchscript(deploy, names, images, meta, out)
    else:
        passes = (INT8_PASSES if int8 else None) if optimize is True else tuple(optimize or ())
        net, block = _aligned(deploy, block, (h, w), align == "auto", log)
        meta["export"]["align"] = block
        if not block and passes is None:  # split concats only pay off on block-aligned tensors
            passes = LAYOUT_NEUTRAL_PASSES
        onnx_model, result.rewrites = _onnx_model(net, names, images[:1].repeat(batch, 1, 1, 1), batched, dynamic,
                                                  opset, block, passes, meta)
        from ..models.summary import count_macs
        from .graph import count_ops

        result.ops = count_ops(onnx_model)
        result.macs = count_macs(FlatOutputs(net, names), (h, w))
        result.params = sum(int(np.prod(t.dims)) for t in onnx_model.graph.initializer)
        if int8:
            from .int8 import write_int8

            result.int8 = write_int8(onnx_model, out, model, data, (h, w), format, meta, metrics, _write_openvino,
                                     fallback=int8_fallback, log=log)
        elif format == "openvino":
            _write_openvino(onnx_model, out, meta)
        else:
            atomic_write_bytes(out, onnx_model.SerializeToString())
        got = _run_onnx(out, images, batched)
    result.max_abs_diff, result.tolerance = parity(ref, got)
    result.size_mb = sum(f.stat().st_size for f in (out, out.with_suffix(".bin")) if f.is_file()
                         and (f == out or format == "openvino")) / 2**20
    quantized = bool(result.int8) and result.int8["precision"] == "int8"  # an INT8 export may have kept FP32
    log(f"{format}{' int8' if quantized else ''} vs PyTorch on {len(images)} {source} images: max abs diff "
        f"{result.max_abs_diff:.2e} (tolerance {result.tolerance:.1e}{', not applied to INT8' if quantized else ''})")
    if not quantized and not result.max_abs_diff <= result.tolerance:  # also catches NaN
        raise GhostkitError(f"{out}: exported model differs from the checkpoint (max abs diff "
                            f"{result.max_abs_diff:.3g} > {result.tolerance:.3g}); please report this model")
    result.seconds = time.perf_counter() - start
    log(f"saved {out} ({result.size_mb:.2f} MB, {result.seconds:.1f} s)")
    return result


def _check_options(format: str, int8: bool, data: str | None, batch: int, opset: int) -> None:
    if format not in FORMATS:
        raise GhostkitError(f"unknown export format {format!r}; available: {', '.join(FORMATS)}")
    if int8 and format not in ("onnx", "openvino"):
        raise GhostkitError("--int8 needs --format onnx or openvino (INT8 runs in ONNX Runtime or OpenVINO)")
    if int8 and not data:
        raise GhostkitError("--int8 needs --data DIR: calibration images (the training split) and the validation set "
                            "for the accuracy check")
    if batch <= 0:
        raise GhostkitError(f"--batch must be positive, got {batch}")
    if opset < 13:
        raise GhostkitError(f"--opset must be at least 13, got {opset}")


def _reference_outputs(model: TaskModel, images: torch.Tensor, dynamic: bool):
    """The PyTorch model's outputs on ``images``: ``(output trees per task, {name: tensor}, batched names)``; an
    output is batched when its first axis follows the batch size (checked with a batch of one)."""
    with torch.inference_mode():
        reference, one = model(images), model(images[:1])
    trees, ref = {}, {}
    for task, outputs in reference.items():
        trees[task], items = flatten_outputs(outputs, task)
        ref.update(items)
    single = {n: t for task, o in one.items() for n, t in flatten_outputs(o, task)[1]}
    batched = {n for n in ref if ref[n].ndim and single[n].ndim and ref[n].shape[0] == len(images)
               and single[n].shape[0] == 1}
    consts = [task for task, tree in trees.items() if _has_const(tree)]
    if dynamic and consts:
        raise GhostkitError(f"cannot export {', '.join(consts)} with --dynamic: its outputs hold Python values fixed "
                            "by the input size; export at a fixed --imgsz instead")
    return trees, ref, batched


def _write_openvino(onnx_model, out: Path, meta: dict) -> None:
    """Convert the ONNX graph (or take the ``openvino.Model``) ``onnx_model`` to OpenVINO IR ``out`` (``.xml`` +
    ``.bin``, FP32 weights kept in FP32) with the ghostkit config in its ``rt_info``; written under temporary names,
    then moved into place."""
    try:
        import openvino as ov
    except ImportError:
        raise GhostkitError("--format openvino needs openvino: pip install 'ghostkit[export]'") from None
    if out.suffix.lower() != ".xml":
        raise GhostkitError(f"{out}: an OpenVINO export is an .xml file (its weights go beside it as .bin)")
    if isinstance(onnx_model, ov.Model):
        ov_model = onnx_model
    else:
        with tempfile.TemporaryDirectory() as folder:
            src = Path(folder) / "model.onnx"
            src.write_bytes(onnx_model.SerializeToString())
            ov_model = ov.convert_model(str(src))
    ov_model.set_rt_info(json.dumps(meta), ["ghostkit"])
    with atomic_path(out) as xml:  # the .bin is renamed into place first, then the .xml that names it
        try:
            ov.save_model(ov_model, str(xml), compress_to_fp16=False)
            with atomic_path(out.with_suffix(".bin")) as bin_path:
                os.replace(xml.with_suffix(".bin"), bin_path)
        finally:
            xml.with_suffix(".bin").unlink(missing_ok=True)


def _onnx_model(net: TaskModel, names, example, batched, dynamic, opset, block, passes, meta):
    import onnx

    from .graph import optimize_graph

    onnx_model = onnx.load_from_string(torch_to_onnx(net, names, example, batched, dynamic, opset))
    rewrites = optimize_graph(onnx_model, align=block, passes=passes)
    onnx_model.producer_name = "ghostkit"
    del onnx_model.metadata_props[:]
    onnx.helper.set_model_props(onnx_model, {"ghostkit": json.dumps(meta)})
    onnx.checker.check_model(onnx_model)
    return onnx_model, rewrites


def _export_torchscript(deploy: TaskModel, names, images, meta, out: Path) -> dict[str, torch.Tensor]:
    import io

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer and TorchScript deprecation warnings
        traced = torch.jit.trace(FlatOutputs(deploy, names).eval(), (images[:1],), check_trace=False)
        traced = torch.jit.freeze(traced.eval())
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer, _extra_files={"ghostkit.json": json.dumps(meta)})
        atomic_write_bytes(out, buffer.getvalue())
        loaded = torch.jit.load(str(out), map_location="cpu")
        values = loaded(images)
    return dict(zip(names, values))


def load_torchscript(path: str | Path) -> tuple[torch.jit.ScriptModule, dict]:
    """A TorchScript export and its ghostkit config; outputs map back with ``unflatten_outputs``."""
    extra = {"ghostkit.json": ""}
    module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return module, json.loads(extra["ghostkit.json"])

