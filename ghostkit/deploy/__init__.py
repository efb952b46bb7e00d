"""Deployment: export (ONNX, INT8 ONNX, OpenVINO, TorchScript), runtime models, evaluation and the benchmark.

``export(weights, format="onnx")`` writes a re-parameterised, graph-optimised model carrying its pre-processing in
its metadata; ``load_model_file(path)`` opens a checkpoint or an exported ``.onnx`` / ``.xml`` model
(``OnnxTaskModel``, the same interface as ``TaskModel``); ``evaluate(model, data, metrics)`` is the Lightning-free
validation loop; ``benchmark(...)`` times every runtime side by side.

This layer depends on tasks, models and data only: never on the engine (no Lightning), never on the Predictor.
onnx / onnxruntime / openvino are imported only when needed.
"""

from __future__ import annotations

import importlib

__all__ = ["export", "OnnxTaskModel", "load_model_file", "evaluate", "benchmark"]

# lazy: `import ghostkit.deploy` must not import onnx, onnxruntime or timm
_LAZY = {"export": "export", "OnnxTaskModel": "runtime", "load_model_file": "runtime", "evaluate": "evaluate",
         "benchmark": "benchmark"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(name)
