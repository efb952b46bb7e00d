"""ONNX export of a generative model: the averaged generator, latents (and classes) in, images out.

The exported graph has the input ``latent`` (``B x z_dim`` float32, standard normal), for class-conditional models
also ``labels`` (``B`` int64 class indices, in the order of the config's ``class_names``), and the output
``images`` (``B x 3 x H x W`` float32 in [0, 1]). The ghostkit config is in the metadata, as for the other tasks.
After writing, ONNX Runtime runs it on fixed latents and the result is compared with PyTorch (the same tolerance as
``ghostkit export`` of other tasks).
"""

from __future__ import annotations

import io
import json
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import GhostkitError
from ..io import atomic_write_bytes
from ..tasks.generate import GANModel, load_generator
from .export import DEFAULT_OPSET, ExportResult, default_out, parity

__all__ = ["export_generator"]


class _Sampler(nn.Module):
    """``(latent, labels) -> images in [0, 1]`` of the averaged generator."""

    def __init__(self, model: GANModel) -> None:
        super().__init__()
        self.generator = model.generator_ema.eval()

    def forward(self, latent: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return (self.generator(latent, labels) + 1) / 2


def export_generator(weights: str | Path, format: str = "onnx", batch: int = 1, dynamic: bool = False,
                     opset: int = DEFAULT_OPSET, out: str | Path | None = None,
                     log: Callable[[str], None] | None = print) -> ExportResult:
    """Export ``weights`` (a ``--task generate`` checkpoint) to ONNX (see the module docstring); ``dynamic`` frees
    the batch size."""
    import onnx

    from .runtime import make_session

    log = log or (lambda _: None)
    start = time.perf_counter()
    if format != "onnx":
        raise GhostkitError(f"{weights}: generative models export to ONNX only, not {format}")
    model = load_generator(weights)
    out = Path(out) if out else default_out(weights, "onnx")
    sampler = _Sampler(model).eval()
    gen = torch.Generator().manual_seed(0)
    n = max(batch, 4) if dynamic else batch
    latent = torch.randn(n, model.z_dim, generator=gen)
    inputs = {"latent": latent}
    if model.conditional:
        inputs["labels"] = torch.arange(n) % len(model.class_names)
    names = list(inputs)
    axes = {k: {0: "batch"} for k in [*names, "images"]} if dynamic else {}
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(sampler, tuple(inputs.values()), buffer, dynamo=False, opset_version=opset,
                          input_names=names, output_names=["images"], dynamic_axes=axes, do_constant_folding=True)
        reference = sampler(*inputs.values())
    onnx_model = onnx.load_from_string(buffer.getvalue())
    onnx_model.producer_name = "ghostkit"
    meta = {**model.config, "export": {"format": "onnx", "opset": opset, "dynamic": dynamic, "inputs": names,
                                       "outputs": ["images"], "source": str(weights)}}
    onnx.helper.set_model_props(onnx_model, {"ghostkit": json.dumps(meta)})
    onnx.checker.check_model(onnx_model)
    atomic_write_bytes(out, onnx_model.SerializeToString())
    session = make_session(out)
    got = session.run(["images"], {k: v.numpy() for k, v in inputs.items()})[0]
    diff, tol = parity({"images": reference}, {"images": torch.from_numpy(np.asarray(got))})
    log(f"onnx vs PyTorch on {n} latents: max abs diff {diff:.2e} (tolerance {tol:.1e})")
    if not diff <= tol:
        raise GhostkitError(f"{out}: exported generator differs from the checkpoint (max abs diff {diff:.3g} > "
                            f"{tol:.3g}); please report this model")
    result = ExportResult(out, "onnx", diff, tol, time.perf_counter() - start, out.stat().st_size / 2**20)
    result.params = sum(int(np.prod(t.dims)) for t in onnx_model.graph.initializer)
    log(f"saved {out} ({result.size_mb:.2f} MB, {result.seconds:.1f} s)")
    return result
