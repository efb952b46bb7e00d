"""The Python API, mirroring the CLI: ``train``, ``val``, ``load_model``, ``export``. Heavy modules load inside
each call (``import ghostkit`` stays light)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["train", "val", "load_model", "export"]


def train(callbacks: list | None = None, **options) -> dict:
    """``ghostkit.train(task="classify", data="digits", model="ghostnet_100", epochs=30, ...)`` → the best
    checkpoint's validation metrics. Options are :class:`ghostkit.engine.TrainConfig`'s fields (as the CLI's;
    ``recipe`` fills those not given);
    ``callbacks`` are extra Lightning callbacks."""
    from .engine.config import TrainConfig
    from .engine.distill import apply_recipe
    from .engine.run import train as _train

    return _train(apply_recipe(TrainConfig.from_kwargs(**options), set(options)), callbacks)


def val(weights: str | Path, data: str, out: str | Path | None = None, task: str | None = None, **kwargs) -> dict:
    """Evaluate ``weights`` on ``data``'s validation split; writes metrics.json (default ``val/`` beside weights).
    ``task="track"``: track the validation sequences of a MOTChallenge folder with the detector (``kwargs``:
    ``tracker``, ``conf``, tracker options; :func:`ghostkit.track.evaluate.validate_tracking`)."""
    if task == "track":
        from .track.evaluate import validate_tracking

        return validate_tracking(weights, data, out, **kwargs)
    from .engine.run import validate

    return validate(weights, data, out, **kwargs)


def load_model(path: str | Path, device: str = "cpu", tta: bool = False):
    """A ready :class:`~ghostkit.predict.Predictor` for a ghostkit checkpoint or exported ``.onnx`` / ``.xml``
    model: ``load_model("runs/x/best.ckpt").predict([...])``, ``.stream("video.mp4")``. ``tta``: detection
    test-time augmentation. A generative model's checkpoint gives its :class:`~ghostkit.tasks.generate.GANModel`:
    ``load_model("runs/gan/best.ckpt").generate(16, classes="3", seed=0)``, its ONNX export an
    :class:`~ghostkit.deploy.generate.OnnxGenerator` that samples the same way."""
    from .predict import Predictor

    if Path(path).suffix.lower() == ".onnx" and Path(path).is_file():
        from .deploy.generate import OnnxGenerator
        from .deploy.runtime import make_session, read_onnx_config
        from .tasks.generate import is_generator_config

        # the metadata alone: a session without graph optimisation opens at once
        if is_generator_config(read_onnx_config(make_session(path, threads=1, optimization="none"))):
            return OnnxGenerator(path)
    elif Path(path).suffix.lower() != ".xml":
        from .models.weights import read_checkpoint
        from .tasks.generate import is_generator_config, load_generator

        if is_generator_config(read_checkpoint(path)[1]):
            return load_generator(path).to(device)
    return Predictor.load(path, device, tta)


def export(weights, threshold: float | None = None, **options):
    """``ghostkit.export("runs/x/best.ckpt", format="onnx", int8=False, data=None, ...)`` →
    :class:`~ghostkit.deploy.export.ExportResult`; options as :func:`ghostkit.deploy.export.export`'s. An INT8
    export's accuracy check gets the task's metrics (as ``ghostkit val``'s; ``threshold``: multi-label)."""
    from .deploy.export import export as _export
    from .engine.spec import model_metrics

    options.setdefault("metrics", lambda model: model_metrics(model, threshold))
    return _export(weights, **options)
