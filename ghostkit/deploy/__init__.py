"""Deployment: export (ONNX, INT8 ONNX, TorchScript), ONNX Runtime inference and the benchmark.

``export(weights, format="onnx")`` writes a re-parameterised, graph-optimised model carrying its pre-processing in
its metadata; ``OnnxTaskModel(path)`` runs it like a ``TaskModel`` (``Predictor(OnnxTaskModel("best.onnx"))``);
``benchmark(...)`` times every runtime side by side. onnx / onnxruntime are imported only when needed.
"""

from __future__ import annotations

__all__ = ["export", "OnnxTaskModel", "benchmark"]


def __getattr__(name: str):
    # lazy: `import ghostkit.deploy` (e.g. by the CLI) must not import onnx, onnxruntime or timm
    if name == "export":
        from .export import export

        return export
    if name == "OnnxTaskModel":
        from .runtime import OnnxTaskModel

        return OnnxTaskModel
    if name == "benchmark":
        from .benchmark import benchmark

        return benchmark
    raise AttributeError(name)
