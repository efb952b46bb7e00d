"""``train`` and ``validate``: a run from options to a run directory, the loop being Lightning's.

``validate`` (``ghostkit val``) needs no Lightning: it runs :func:`ghostkit.deploy.evaluate.evaluate` on the
checkpoint's validation data (:func:`ghostkit.data.tasks.data_for_model`). Lightning is imported by ``train`` only.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import warnings
from pathlib import Path

import torch
import yaml
from PIL import Image
from torch.utils.data import DataLoader

from ..data.cache import default_workers
from ..data.recipe import scaled_lr
from ..data.tasks import data_for_model
from ..deploy.evaluate import evaluate
from ..deploy.runtime import load_model_file
from ..errors import GhostkitError
from ..io import atomic_path, atomic_write_text, check_output_dir, remove_stale_temporaries
from ..models.weights import atomic_torch_save, read_checkpoint
from ..tasks.model import build_task_model, enable_tta, load_pretrained, load_task_model
from ..tasks.registry import get_task
from .config import TrainConfig
from .distill import build_distiller
from .multitask import parse_task_weights
from .spec import TaskData, TaskSpec, combined_score, get_spec

__all__ = ["train", "validate", "write_metrics"]

CONFIG_FORMAT = 1


def _quiet_lightning() -> None:
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*GPU available but not used.*")
    warnings.filterwarnings("ignore", message=".*sync_dist=True.*")
    warnings.filterwarnings("ignore", message=".*exists and is not empty.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*Checkpoint directory.*")


def _loaders(data: TaskData, cfg: TrainConfig) -> tuple[DataLoader | None, DataLoader]:
    workers = default_workers(data.in_memory) if cfg.workers is None else cfg.workers
    common = dict(batch_size=cfg.batch, num_workers=workers, collate_fn=data.collate, persistent_workers=workers > 0)
    train = None
    if data.train is not None:
        if len(data.train) == 0:
            raise GhostkitError(f"{cfg.data}: the training set is empty")
        train = DataLoader(data.train, shuffle=True, drop_last=len(data.train) > cfg.batch, **common)
    if len(data.val) == 0:
        raise GhostkitError(f"{cfg.data}: the validation set is empty")
    return train, DataLoader(data.val, shuffle=False, **common)


def _result(values: dict, score: float | None) -> dict:
    """The returned / written metrics: a single task's keys, or per task plus ``score`` for multi-task runs."""
    clean = {t: {k: v for k, v in m.items() if k != "confusion_matrix"} for t, m in values.items()}
    return next(iter(clean.values())) if len(clean) == 1 else {**clean, "score": score}


def _monitor_key(cfg: TrainConfig, spec) -> str:
    """The logged key that picks the best checkpoint: ``val/<--monitor>`` (checked against the tasks)."""
    key = cfg.monitor or spec.monitor
    if len(spec.tasks) > 1 and key != "score":
        task, _, metric = key.partition("/")
        if task not in spec.tasks or not metric:
            raise GhostkitError(f"--monitor {key!r}: a multi-task run monitors score or TASK/METRIC with TASK one of "
                                f"{', '.join(spec.tasks)}")
    elif len(spec.tasks) == 1 and "/" in key:
        raise GhostkitError(f"--monitor {key!r}: a single-task run monitors a metric name such as {spec.monitor}")
    return f"val/{key}"


def write_metrics(values: dict, out_dir: Path, score: float | None = None) -> Path:
    """metrics.json: the DESIGN keys per task (nested per task, plus the combined ``score``, for multi-task runs)."""
    return atomic_write_text(out_dir / "metrics.json", json.dumps(_result(values, score), indent=2))


def _check_resume(cfg: TrainConfig, config: dict) -> bool:
    """Check that ``cfg.resume`` continues this run; True when it already finished its ``cfg.epochs`` epochs."""
    path = Path(cfg.resume)
    _, saved, _ = read_checkpoint(path)
    if not saved or "heads" not in saved:
        raise GhostkitError(f"{path}: not a ghostkit training checkpoint, cannot resume from it")
    if saved["heads"].keys() != config["heads"].keys() or saved["backbone"]["name"] != config["backbone"]["name"]:
        raise GhostkitError(f"{path}: was trained for {list(saved['heads'])} with {saved['backbone']['name']}, "
                            f"not {list(config['heads'])} with {config['backbone']['name']}")
    if saved.get("class_names") != config.get("class_names"):
        raise GhostkitError(f"{path}: its class names differ from the data's ({cfg.data})")
    epoch = torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("epoch", -1)
    return epoch + 1 >= cfg.epochs  # checkpoints hold whole epochs (saved at each epoch's end)


def _save_samples(dataset, out_dir: Path, n: int = 8) -> None:
    """A few raw validation images in ``samples/`` to try ``ghostkit predict`` on."""
    items = getattr(dataset, "items", None)
    if not items:
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    step = max(1, len(items) // n)
    for i, (src, _) in enumerate(items[::step][:n]):
        img = Image.open(src) if isinstance(src, (str, Path)) else src
        img = Image.fromarray(img) if not isinstance(img, Image.Image) else img
        with atomic_path(out_dir / f"sample_{i:02d}.png") as tmp:
            img.convert("RGB").save(tmp, format="PNG")


def train(cfg: TrainConfig, callbacks: list | None = None, spec: TaskSpec | None = None) -> dict:
    """Train per ``cfg`` into ``cfg.out`` (best.ckpt, last.ckpt, metrics.json/csv, plots, config.yaml) and return
    the best checkpoint's validation metrics. ``callbacks``: extra Lightning callbacks; ``spec``: the task spec
    (default: ``cfg.task``'s)."""
    import lightning as L
    from lightning.pytorch.utilities import rank_zero_only

    from .callbacks import RunGuard, RunHistory, RunInterrupted, resume_command
    from .timing import LoaderTimer
    from .trainer import build_trainer

    cfg.validate()
    _quiet_lightning()
    run_dir = check_output_dir(cfg.out)
    if cfg.resume and not Path(cfg.resume).is_file():
        raise GhostkitError(f"{cfg.resume}: no such checkpoint to resume from")
    if not cfg.resume and not cfg.exist_ok and any((run_dir / f).exists() for f in ("best.ckpt", "last.ckpt")):
        raise GhostkitError(f"{run_dir}: already holds a run; pass --exist-ok to overwrite or --resume "
                            f"{run_dir / 'last.ckpt'} to continue it")
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    spec = spec or get_spec(cfg.task)
    asked = cfg
    batch = cfg.batch or spec.default_batch
    cfg = dataclasses.replace(cfg, batch=batch, lr=cfg.lr or scaled_lr(spec.default_lr, batch, spec.default_batch))
    if get_task(cfg.task).lightning_module:  # a LightningModule of its own makes the whole run (generate: a GAN)
        return _lightning_module(cfg).run(cfg, callbacks)
    monitor = _monitor_key(cfg, spec)
    if cfg.task_weights and len(spec.tasks) == 1:
        raise GhostkitError("--task-weights needs a multi-task run (--task classify,detect,...)")
    task_weights = parse_task_weights(cfg.task_weights, spec.tasks)
    data = spec.build_data(cfg)
    cfg = dataclasses.replace(cfg, **data.resolved)
    if data.recipe:
        rank_zero_only(print)(data.recipe)
    config = {
        "format": CONFIG_FORMAT,
        "backbone": {"name": cfg.model, "kwargs": {"output_stride": cfg.output_stride}},
        "heads": spec.head_configs(cfg, data),
        "task_weights": task_weights,
        "class_names": data.class_names,
        "imgsz": [data.imgsz, data.imgsz],
        "mean": data.mean,
        "std": data.std,
        "deployed": False,
    }
    saved = run_dir / "metrics.json"
    # a finished run killed before its last output (metrics.json) goes on below: fit has no epoch left, the outputs
    # follow
    if cfg.resume and _check_resume(cfg, config) and saved.is_file():
        print(f"ghostkit: {cfg.resume} already finished its {cfg.epochs} epochs; nothing to do (pass a larger "
              f"--epochs to train further)", file=sys.stderr)
        return json.loads(saved.read_text())
    model = build_task_model(config)
    if cfg.pretrained and not cfg.resume and not cfg.adversarial:  # adversarial: the perceptual network's weights
        load_pretrained(model, cfg.pretrained)
    distiller = build_distiller(cfg, config)  # --teacher: checked against the data before training starts
    module = _lightning_module(cfg)(model, cfg, spec.task_metrics(data.class_names, cfg, model.heads), spec.monitors)
    module.distiller = distiller
    train_loader, val_loader = _loaders(data, cfg)
    timer = LoaderTimer()
    trainer = build_trainer(cfg, run_dir, monitor=monitor, callbacks=[*(callbacks or []), timer])
    if trainer.is_global_zero:
        remove_stale_temporaries(run_dir)  # left by a run killed while writing
        atomic_write_text(run_dir / "config.yaml", yaml.safe_dump({"train": cfg.to_dict(), "model": config},
                                                                  sort_keys=False))
    history = next(c for c in trainer.callbacks if isinstance(c, RunHistory))
    guard = next(c for c in trainer.callbacks if isinstance(c, RunGuard))
    try:
        trainer.fit(module, train_loader, val_loader, ckpt_path=cfg.resume)
    except SystemExit:  # Lightning answers Ctrl-C with a muted log line and sys.exit(1)
        if guard.interrupted is None:
            raise
        done = history.outputs()
        if trainer.is_global_zero and done is not None:
            _write_outputs(*done, spec, data, run_dir)
        epoch, step = guard.interrupted
        raise RunInterrupted(f"interrupted during epoch {epoch + 1}/{cfg.epochs} (step {step}); "
                             + (f"{guard.last_good()}; continue with: {resume_command(asked)}"
                                if (run_dir / "last.ckpt").is_file() else guard.last_good())) from None
    best = trainer.checkpoint_callback.best_model_path or str(run_dir / "last.ckpt")
    # final metrics: the best checkpoint on the full validation set
    module.model.load_state_dict(load_task_model(best).state_dict())
    chosen = spec.calibrate(module.model, data, cfg)
    if chosen:
        for task, values in chosen.items():
            config["heads"][task].update(values)
        module.metrics = torch.nn.ModuleDict(spec.task_metrics(data.class_names, cfg, module.model.heads))
        if trainer.is_global_zero:
            _store_config(config, cfg, run_dir)
    trainer.validate(module, val_loader, verbose=False)
    values = module.last_metrics
    if trainer.is_global_zero:
        _save_samples(data.val, run_dir / "samples")
        _write_outputs(values, module.last_score, spec, data, run_dir)
        print(timer.summary())
    return _result(values, module.last_score)


def _store_config(config: dict, cfg: TrainConfig, run_dir: Path) -> None:
    """Write a model config changed after training (``TaskSpec.calibrate``) into the run's checkpoints and
    config.yaml, each atomically."""
    for name in ("best.ckpt", "last.ckpt"):
        path = run_dir / name
        if path.is_file():
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
            checkpoint["ghostkit"] = config
            atomic_torch_save(checkpoint, path)
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump({"train": cfg.to_dict(), "model": config},
                                                              sort_keys=False))


def _lightning_module(cfg: TrainConfig):
    """The LightningModule class of ``cfg.task``: its registry entry's ``lightning_module``, else ``TaskModule``."""
    import importlib

    target = get_task(cfg.task).lightning_module
    if cfg.adversarial:  # restore with a discriminator
        from .sr_gan import AdversarialRestoreModule

        return AdversarialRestoreModule
    if target is None:
        from .module import TaskModule

        return TaskModule
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def _write_outputs(values: dict, score: float | None, spec: TaskSpec, data: TaskData, run_dir: Path) -> None:
    """The plots (curves from metrics.csv, the task's own) and metrics.json of a finished or stopped run.
    metrics.json comes last: a finished run that has it has all its outputs (``--resume`` then has nothing to do)."""
    from .plots import plot_curves

    plot_curves(run_dir / "metrics.csv", run_dir / "curves.png")
    spec.task_plots(values, data.class_names, run_dir)
    write_metrics(values, run_dir, score)


def validate(weights: str | Path, data: str, out: str | Path | None = None, batch: int = 64, workers: int = 2,
             threshold: float | None = None, tta: bool = False) -> dict:
    """Evaluate a checkpoint (or exported model) on ``data``'s validation set; writes ``metrics.json`` into ``out``
    (default: ``val/`` beside the weights) and returns the metrics. ``threshold``: multi-label decision threshold
    (default: the checkpoint's). ``tta``: detection test-time augmentation
    (flips and scales). No Lightning: the loop is :func:`ghostkit.deploy.evaluate.evaluate`."""
    out_dir = check_output_dir(out if out else Path(weights).parent / "val")  # before the work
    model = load_model_file(weights)
    if tta:
        enable_tta(model, weights)
    config = model.config
    task = ",".join(config["heads"])
    spec = get_spec(task)
    td = data_for_model(config, data, where=str(weights))
    spec.attach_data(td)
    cfg = TrainConfig(task=task, data=data, model=config["backbone"]["name"], batch=batch, workers=workers,
                      imgsz=config["imgsz"][0], threshold=threshold).validate()
    metrics = spec.task_metrics(td.class_names, cfg, model.heads)
    _, val_loader = _loaders(TaskData(None, td.val, td.class_names, td.imgsz, td.mean, td.std, td.collate), cfg)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    values = evaluate(model, val_loader, metrics, device=device)
    score = combined_score(values, spec.monitors)
    write_metrics(values, out_dir, score)
    spec.task_plots(values, td.class_names, out_dir)
    return _result(values, score)
