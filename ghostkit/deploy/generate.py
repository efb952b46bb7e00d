"""ONNX export of a generative model: the averaged generator, latents (and classes) in, images out.

The exported graph has the input ``latent`` (``B x z_dim`` float32, standard normal), for class-conditional models
also ``labels`` (``B`` int64 class indices, in the order of the config's ``class_names``), and the output
``images`` (``B x 3 x H x W`` float32 in [0, 1]). The ghostkit config is in the metadata, as for the other tasks.
After writing, ONNX Runtime runs it on fixed latents and the result is compared with PyTorch (the same tolerance as
``ghostkit export`` of other tasks). :class:`OnnxGenerator` samples from the exported file as
:meth:`GANModel.generate <ghostkit.tasks.generate.GANModel.generate>` does from the checkpoint: the same latents for
the same seed, so the same images within that tolerance.
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
from ..tasks.generate import GANModel, is_generator_config, load_generator
from .export import DEFAULT_OPSET, ExportResult, default_out, parity

__all__ = ["export_generator", "OnnxGenerator"]


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


class OnnxGenerator:
    """An exported generator (:func:`export_generator`'s file) on ONNX Runtime, with :class:`GANModel`'s sampling
    interface: ``config``, ``class_names``, ``conditional``, ``z_dim``, ``class_indices`` and ``generate``."""

    class_indices = GANModel.class_indices  # the same rules for the classes asked for
    conditional = GANModel.conditional

    def __init__(self, path: str | Path) -> None:
        from .runtime import make_session, read_onnx_config

        self.path = Path(path)
        if not self.path.is_file():
            raise GhostkitError(f"{path}: no such ONNX model")
        self.session = make_session(self.path)
        self.config = read_onnx_config(self.session)
        if not is_generator_config(self.config):
            raise GhostkitError(f"{path}: not an exported generative model")
        self.class_names: list[str] = list(self.config.get("class_names", []))
        self.z_dim: int = self.config["generator"]["z_dim"]
        batch = self.session.get_inputs()[0].shape[0]
        self.batch = batch if isinstance(batch, int) else 0  # 0: any batch size (exported with --dynamic)

    def generate(self, n: int, classes: int | str | list | None = None, seed: int | None = None,
                 batch: int = 256) -> np.ndarray:
        """``n`` images as ``uint8 n x H x W x 3``, from the latents :meth:`GANModel.generate` draws for ``seed``."""
        if n <= 0:
            raise GhostkitError(f"the number of samples must be positive, got {n}")
        y = self.class_indices(n, classes)
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        z = torch.randn(n, self.z_dim, generator=gen).numpy()
        step = self.batch or batch
        chunks = []
        for i in range(0, n, step):
            zi = z[i:i + step]
            pad = step - len(zi) if self.batch else 0  # a fixed-batch graph takes whole batches
            inputs = {"latent": np.concatenate([zi, np.zeros((pad, self.z_dim), np.float32)])}
            if y is not None:
                inputs["labels"] = np.concatenate([y[i:i + step].numpy(), np.zeros(pad, np.int64)])
            chunks.append(self.session.run(["images"], inputs)[0][:len(zi)])
        images = np.clip(np.concatenate(chunks), 0, 1) * 255
        return images.round().astype(np.uint8).transpose(0, 2, 3, 1)
