"""Running exported models: :class:`OnnxTaskModel` is a drop-in for ``TaskModel`` at inference, on ONNX Runtime.

An exported file carries everything the Predictor needs in its metadata (ONNX ``metadata_props["ghostkit"]``, or
the TorchScript file's ``ghostkit.json``): the model config (tasks, head configs, class names, input size, mean and
std) plus ``export.outputs``, the tree that maps the file's flat outputs back to each head's outputs::

    {"classify": {"tensor": "classify"}}
    {"detect": {"dict": {"cls_logits": {"tensor": "detect.cls_logits"}, "image_size": {"const": [320, 320]}}}}

Heads are rebuilt from the config without weights, for their ``postprocess`` / ``format_result`` / ``render``;
the network itself runs in an ``onnxruntime.InferenceSession``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import GhostkitError
from ..tasks.model import TaskModel, load_task_model

__all__ = ["OnnxTaskModel", "load_model_file", "make_session", "read_onnx_config", "flatten_outputs",
           "unflatten_outputs", "run_session"]

INPUT_NAME = "images"


def flatten_outputs(outputs: object, name: str) -> tuple[dict, list[tuple[str, torch.Tensor]]]:
    """A head's outputs → ``(tree, [(output name, tensor), ...])``. Tensors become named outputs; plain JSON values
    (e.g. an image size) are kept in the tree as constants; anything else raises :class:`GhostkitError`."""
    if isinstance(outputs, torch.Tensor):
        return {"tensor": name}, [(name, outputs)]
    if isinstance(outputs, dict):
        tree, flat = {}, []
        for key, value in outputs.items():
            tree[str(key)], sub = flatten_outputs(value, f"{name}.{key}")
            flat += sub
        return {"dict": tree}, flat
    if isinstance(outputs, (list, tuple)):
        items = [flatten_outputs(v, f"{name}.{i}") for i, v in enumerate(outputs)]
        if all("const" in t for t, _ in items):
            return {"const": [t["const"] for t, _ in items], "tuple": isinstance(outputs, tuple)}, []
        return {"list": [t for t, _ in items], "tuple": isinstance(outputs, tuple)}, [x for _, f in items for x in f]
    if outputs is None or isinstance(outputs, (bool, int, float, str)):
        return {"const": outputs}, []
    raise GhostkitError(f"cannot export head output {name!r}: a {type(outputs).__name__} is neither a tensor nor a "
                        "plain value")


def unflatten_outputs(tree: dict, tensors: dict[str, torch.Tensor]) -> object:
    """Inverse of :func:`flatten_outputs`."""
    if "tensor" in tree:
        return tensors[tree["tensor"]]
    if "dict" in tree:
        return {k: unflatten_outputs(v, tensors) for k, v in tree["dict"].items()}
    if "list" in tree:
        items = [unflatten_outputs(v, tensors) for v in tree["list"]]
        return tuple(items) if tree.get("tuple") else items
    value = tree["const"]
    return tuple(value) if tree.get("tuple") and isinstance(value, list) else value


class OpenVinoSession:
    """An OpenVINO model (``.xml`` + ``.bin``, compiled for the CPU) behind the parts of ONNX Runtime's session API
    that ghostkit uses (``get_inputs``, ``get_outputs``, ``run``, ``get_modelmeta``), so :class:`OnnxTaskModel`,
    :func:`run_session` and the benchmark run it unchanged. The ghostkit config lives in the model's ``rt_info``
    under ``ghostkit``."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        try:
            import openvino as ov
        except ImportError:
            raise GhostkitError(f"{path}: OpenVINO models need openvino: pip install 'ghostkit[export]'") from None
        from types import SimpleNamespace

        core = ov.Core()
        try:
            model = core.read_model(str(path))
        except Exception as e:  # OpenVINO raises RuntimeError subclasses with multi-line messages
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise GhostkitError(f"{path}: not a loadable OpenVINO model ({type(e).__name__}: {first})") from None
        # f32 explicitly: on CPUs with AMX / AVX-512 BF16 the plugin would otherwise compute in bfloat16
        config = {"INFERENCE_NUM_THREADS": threads or os.cpu_count() or 1, "PERFORMANCE_HINT": "LATENCY",
                  "INFERENCE_PRECISION_HINT": "f32"}
        self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()
        meta = {"ghostkit": model.get_rt_info(["ghostkit"]).astype(str)} if model.has_rt_info(["ghostkit"]) else {}
        self._meta = SimpleNamespace(custom_metadata_map=meta)
        shape = model.inputs[0].get_partial_shape()
        self._inputs = [SimpleNamespace(name=INPUT_NAME, shape=[d.get_length() if d.is_static else None
                                                                 for d in shape])]
        self._outputs = [SimpleNamespace(name=o.get_any_name()) for o in self.compiled.outputs]

    def get_inputs(self) -> list:
        return self._inputs

    def get_outputs(self) -> list:
        return self._outputs

    def get_modelmeta(self):
        return self._meta

    def run(self, names: list[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The outputs ``names`` (``None``: all, as in ONNX Runtime) for the input ``feeds["images"]``."""
        result = self.request.infer({0: feeds[INPUT_NAME]})
        by_name = {o.get_any_name(): v for o, v in result.items()}
        return [np.array(by_name[n]) for n in (names or [o.name for o in self._outputs])]


def make_session(path: str | Path | bytes, threads: int | None = None, optimization: str = "all",
                 optimized_path: str | Path | None = None, spinning: bool = True):
    """An ``OpenVinoSession`` for an ``.xml`` file; otherwise an ``onnxruntime.InferenceSession`` on the CPU with
    graph optimisation ``optimization`` (``"all"`` = ORT_ENABLE_ALL, incl. the blocked-layout transforms;
    ``"extended"``; ``"basic"``; ``"none"``) and ``threads`` intra-op threads (default: every CPU core).
    ``optimized_path`` saves the graph ORT actually runs.
    ``spinning=False`` stops idle worker threads from busy-waiting for the next op (ORT's default), which would
    steal the cores from anything else running between inferences (e.g. other runtimes in a benchmark)."""
    if not isinstance(path, bytes) and Path(path).suffix.lower() == ".xml":
        return OpenVinoSession(path, threads)
    import onnxruntime as ort

    level = ort.GraphOptimizationLevel
    levels = {"all": level.ORT_ENABLE_ALL, "extended": level.ORT_ENABLE_EXTENDED, "basic": level.ORT_ENABLE_BASIC,
              "none": level.ORT_DISABLE_ALL}
    opts = ort.SessionOptions()
    opts.graph_optimization_level = levels[optimization]
    opts.intra_op_num_threads = threads or os.cpu_count() or 1
    opts.inter_op_num_threads = 1  # one image pipeline: parallelism is inside the ops
    opts.log_severity_level = 3  # ORT warns about pruned initializers and hardware-specific saved graphs
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if optimized_path is not None:
        opts.optimized_model_filepath = str(optimized_path)
    source = path if isinstance(path, bytes) else str(path)
    try:
        return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises its own exception types for unreadable or invalid models
        first = str(e).splitlines()[0] if str(e) else ""
        raise GhostkitError(f"{path}: not a loadable ONNX model ({type(e).__name__}: {first})") from None


def run_session(session, images: np.ndarray, batched: set[str] | None = None) -> dict[str, np.ndarray]:
    """Run ``session`` on ``images`` (``N x 3 x H x W`` float32) → ``{output name: array}``. A model exported with
    a fixed batch size ``b`` runs in chunks of ``b`` (the last one padded); outputs in ``batched`` (default: all
    whose first axis is the batch) are concatenated, the others taken from the first chunk."""
    names = [o.name for o in session.get_outputs()]
    b = session.get_inputs()[0].shape[0]
    if not isinstance(b, int) or b == len(images):
        return dict(zip(names, session.run(names, {INPUT_NAME: images})))
    chunks = []
    for i in range(0, len(images), b):
        x = images[i:i + b]
        if len(x) < b:  # pad with copies of the last image, dropped again below
            x = np.concatenate([x, np.repeat(x[-1:], b - len(x), axis=0)])
        chunks.append(session.run(names, {INPUT_NAME: x}))
    out = {}
    for k, name in enumerate(names):
        parts = [c[k] for c in chunks]
        is_batched = name in batched if batched is not None else parts[0].ndim > 0 and parts[0].shape[0] == b
        out[name] = np.concatenate(parts)[: len(images)] if is_batched else parts[0]
    return out


def read_onnx_config(session_or_path) -> dict:
    """The ghostkit config stored in an exported ONNX model's metadata."""
    session = session_or_path if hasattr(session_or_path, "get_modelmeta") else make_session(session_or_path)
    meta = session.get_modelmeta().custom_metadata_map
    if "ghostkit" not in meta:
        raise GhostkitError(f"{session_or_path}: an exported model without ghostkit metadata; export it with "
                            "`ghostkit export`")
    return json.loads(meta["ghostkit"])


class OnnxTaskModel(nn.Module):
    """An exported ghostkit ONNX model that behaves like :class:`ghostkit.tasks.model.TaskModel` for inference:
    ``.config``, ``.heads``, ``forward(images B x 3 x H x W) -> {task: outputs}``, ``postprocess``, ``loss``,
    ``eval``, ``to``.
    ``Predictor(OnnxTaskModel("best.onnx"))`` predicts like the checkpoint. The session always runs on the CPU;
    ``.to(device)`` moves the heads and the returned outputs."""

    def __init__(self, path: str | Path, threads: int | None = None, optimization: str = "all") -> None:
        super().__init__()
        from ..tasks.generate import is_generator_config
        from ..tasks.model import build_task_model

        self.path = Path(path)
        if not self.path.is_file():
            raise GhostkitError(f"{path}: no such ONNX model")
        self.session = make_session(self.path, threads, optimization)
        config = read_onnx_config(self.session)
        self.config = config
        self.tree = config.get("export", {}).get("outputs")
        self.batched = set(config.get("export", {}).get("batched", []))
        if not self.tree:
            raise GhostkitError(f"{path}: its ghostkit metadata has no output description; re-export it")
        if is_generator_config(config):  # latents in, images out: no heads to predict with
            raise GhostkitError(f"{path}: an exported generator (latents in, images out); sample from it with "
                                "ghostkit predict --weights FILE --num N --save DIR")
        structure = build_task_model({**config, "deployed": False})  # only the heads' code is needed
        self.backbone = None
        self.heads = structure.heads
        self.register_buffer("_device", torch.empty(0), persistent=False)
        shape = self.session.get_inputs()[0].shape
        self.input_hw = tuple(d if isinstance(d, int) else None for d in shape[2:])

    def forward(self, images: torch.Tensor) -> dict[str, object]:
        if images.ndim != 4 or images.shape[1] != 3:
            raise GhostkitError(f"{self.path}: expected images B x 3 x H x W, got {tuple(images.shape)}")
        hw = tuple(images.shape[2:])
        if any(s is not None and s != h for s, h in zip(self.input_hw, hw)):
            raise GhostkitError(f"{self.path}: exported for {self.input_hw[0]} x {self.input_hw[1]} inputs, got "
                                f"{hw[0]} x {hw[1]}; export with --imgsz or --dynamic")
        x = images.detach().to("cpu", torch.float32).contiguous().numpy()
        values = run_session(self.session, x, self.batched)
        device = self._device.device
        tensors = {n: torch.from_numpy(np.ascontiguousarray(v)).to(device) for n, v in values.items()}
        return {task: unflatten_outputs(tree, tensors) for task, tree in self.tree.items()}

    # the heads do the work: TaskModel's own code applies unchanged (``ghostkit val`` needs the loss)
    postprocess = TaskModel.postprocess
    sr_head = TaskModel.sr_head
    select = TaskModel.select
    loss = TaskModel.loss
    task_weights: dict = {}  # validation loss: the plain sum
    log_vars = None


EXPORTED_SUFFIXES = (".onnx", ".xml")


def load_model_file(path: str | Path) -> nn.Module:
    """A model for inference from any file ghostkit writes: a checkpoint (``TaskModel``, eval mode) or an exported
    ``.onnx`` (ONNX Runtime) / OpenVINO ``.xml`` model (:class:`OnnxTaskModel`, the same interface). What
    ``ghostkit.load_model``, ``ghostkit val`` and ``ghostkit predict`` open."""
    if Path(path).suffix.lower() in EXPORTED_SUFFIXES:
        return OnnxTaskModel(path)
    return load_task_model(path)
