"""``TaskModel``: one GhostNet backbone, one or more task heads, rebuilt from a plain config.

The config (stored in every checkpoint under ``"ghostkit"``) is plain JSON-able data::

    {"format": 1, "backbone": {"name": "ghostnet_100", "kwargs": {"output_stride": 32}},
     "heads": {"classify": {"num_classes": 10, ...}}, "class_names": {"classify": [...]},
     "imgsz": [224, 224], "mean": [...], "std": [...], "deployed": false}
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GhostkitError
from ..models import create_model, reparameterize
from ..models.hub import check_normalisation, resolve_weights
from ..models.weights import read_checkpoint
from . import build_head, get_head_class

__all__ = ["TaskModel", "MultiTaskModel", "build_task_model", "load_task_model", "load_matching_state",
           "load_pretrained", "enable_tta", "BACKBONE_OUT_INDICES"]

# the stride 4, 8, 16 and 32 stage ends; a backbone whose heads all read fewer is cut after the deepest they read
BACKBONE_OUT_INDICES = (1, 2, 3, 4)


class TaskModel(nn.Module):
    """``forward(images B x 3 x H x W) -> {task: head outputs}``; the backbone runs once for all heads.

    ``task_weights`` (multi-task): ``{task: weight}`` for a weighted sum of the heads' losses, or ``"auto"`` for
    learned uncertainty weighting (Kendall, Gal and Cipolla, CVPR 2018) in the form ``sum_t exp(-s_t) L_t + s_t``
    with one learned ``s_t = log sigma_t^2`` per task (``log_vars``, initialised to 0, i.e. weight 1).
    """

    def __init__(self, backbone: nn.Module | None, heads: dict[str, nn.Module], config: dict | None = None,
                 task_weights: dict[str, float] | str | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.heads = nn.ModuleDict(heads)
        self.config = config or {}
        self.task_weights = task_weights if isinstance(task_weights, dict) else {}
        self.log_vars = nn.ParameterDict({t: nn.Parameter(torch.zeros(())) for t in heads}) if (
            task_weights == "auto") else None
        for head in heads.values():  # a style head measures its losses with the backbone (ghostkit.tasks.style)
            if hasattr(head, "share_backbone"):
                head.share_backbone(backbone)

    tta = False  # detection test-time augmentation in eval mode (``ghostkit val/predict --tta``)

    def forward(self, images: torch.Tensor) -> dict[str, object]:
        outputs = self._forward(images)
        if self.tta and not self.training and "detect" in self.heads:
            from .detect_results import tta_outputs

            outputs["detect"] = tta_outputs(self, images)
        return outputs

    @property
    def sr_head(self) -> nn.Module | None:
        """The restore head of a multi-task super-resolution model (scale > 1 beside other heads), else None."""
        head = self.heads["restore"] if "restore" in self.heads and len(self.heads) > 1 else None
        return head if head is not None and head.scale > 1 else None

    def _forward(self, images: torch.Tensor) -> dict[str, object]:
        sr = self.sr_head
        if sr is None:
            features = self.backbone(images) if self.backbone is not None else None
            return {task: head(features, images) for task, head in self.heads.items()}
        # super-resolution: the other heads predict in the HR frame of the restored image (masks at its size, boxes
        # in its pixels); the restore head's ``join`` says which features they read (ghostkit.tasks.restore)
        if sr.join == "restored":  # the backbone reads the restored image; its heads' losses stop there (detach)
            restored, _ = sr.restore(None, images)
            hr = restored["image"]
            features = self.backbone(sr.normalise(hr.detach()))
            return {task: restored if task == "restore" else head(features, hr) for task, head in self.heads.items()}
        features = self.backbone(images)
        restored, feats = sr.restore(features, images)
        hr = restored["image"]
        outputs = {}
        for task, head in self.heads.items():
            if task == "restore":
                outputs[task] = restored
            elif task == "detect":  # on LR features the anchors live in the input frame: scaled to HR (box coding is
                det = head(features, images)  # scale-free)
                size = tuple(v * sr.scale for v in det["image_size"])
                outputs[task] = {**det, "anchors": det["anchors"] * sr.scale, "image_size": size}
            else:
                outputs[task] = head(features, hr)
        if sr.fusion is not None and "segment" in outputs:  # HR logits refined by the restore branch's features
            seg = outputs["segment"]
            outputs["segment"] = {**seg, "out": sr.fuse(seg["out"], feats)} if isinstance(seg, dict) else sr.fuse(
                seg, feats)
        return outputs

    def select(self, outputs: dict, targets: dict, task: str) -> tuple[object, object] | None:
        """``task``'s outputs and targets for the images that have its target: ``None`` when no image has one.
        Batches of mixed annotations carry ``targets["present"][task]`` (bool B); outputs of the other images are
        dropped here (tensors and per-image lists; the head's ``shared_outputs`` keys are left alone)."""
        target = targets.get(task)
        if target is None:
            return None
        present = targets.get("present", {}).get(task)
        out = outputs[task]
        if present is None or bool(present.all()):
            return out, target
        keep = present.nonzero().flatten().tolist()
        return _take(out, keep, len(present), getattr(self.heads[task], "shared_outputs", ())), target

    def loss(self, outputs: dict, targets: dict) -> dict[str, torch.Tensor]:
        """Weighted sum of every head's ``"loss"`` (weights above); each head's terms are returned as
        ``"<task>/<name>"`` too. Heads without targets in the batch add nothing."""
        total, terms = 0.0, {}
        for task, head in self.heads.items():
            pair = self.select(outputs, targets, task)
            if pair is None:
                continue
            for name, value in head.loss(*pair).items():
                terms[f"{task}/{name}"] = value
            task_loss = terms[f"{task}/loss"]
            if self.log_vars is not None:
                s = self.log_vars[task]
                total = total + torch.exp(-s) * task_loss + s
                terms[f"{task}/weight"] = torch.exp(-s).detach()
            else:
                total = total + self.task_weights.get(task, 1.0) * task_loss
        terms["loss"] = total
        return terms

    def postprocess(self, outputs: dict, image_sizes: list[tuple[int, int]]) -> list[dict]:
        """Per image ``{task: result dict}``. A multi-task super-resolution model returns every result in the HR
        frame of each image, ``scale x image_sizes[i]``: the restored image (resized there from the network's
        output), masks at that size, boxes in its pixels."""
        sr = self.sr_head
        if sr is not None:
            image_sizes = [(h * sr.scale, w * sr.scale) for h, w in image_sizes]
        per_task = {task: head.postprocess(outputs[task], image_sizes) for task, head in self.heads.items()}
        if sr is not None:
            per_task["restore"] = [{"image": _resize(r["image"], size)} for r, size in
                                   zip(per_task["restore"], image_sizes)]
        return [{task: res[i] for task, res in per_task.items()} for i in range(len(image_sizes))]


# the name the multi-task API is known by: one class serves one head or several
MultiTaskModel = TaskModel


def _resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``3 x h x w`` in [0, 1] → ``3 x H x W`` (bicubic, antialiased when shrinking); unchanged at its own size."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    image = F.interpolate(image[None], size=tuple(size), mode="bicubic", antialias=True, align_corners=False)[0]
    return image.clamp(0, 1)


def _take(value, keep: list[int], batch: int, shared: tuple[str, ...]):
    """``value`` restricted to the batch positions ``keep``: tensors and lists of length ``batch`` are indexed,
    dicts recursed into (except ``shared`` keys), anything else returned as it is."""
    if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == batch:
        return value[keep]
    if isinstance(value, list) and len(value) == batch:
        return [value[i] for i in keep]
    if isinstance(value, dict):
        return {k: v if k in shared else _take(v, keep, batch, ()) for k, v in value.items()}
    return value


def build_task_model(config: dict) -> TaskModel:
    """Build an untrained :class:`TaskModel` (deploy structure when ``config["deployed"]``) from ``config``."""
    bb = config.get("backbone")
    backbone = None
    if bb and any(getattr(get_head_class(t), "needs_backbone", True) for t in config["heads"]):
        kwargs = {k: v for k, v in bb.get("kwargs", {}).items() if k not in ("features_only", "out_indices")}
        backbone = create_model(bb["name"], features_only=True, out_indices=BACKBONE_OUT_INDICES, **kwargs)
    info = backbone.feature_info if backbone is not None else None
    heads = {task: build_head(task, info, **cfg) for task, cfg in config["heads"].items()}
    read = [getattr(head, "level_idx", None) for head in heads.values()]
    if backbone is not None and all(r is not None for r in read):  # cut after building: the same initial weights
        backbone.select_features(BACKBONE_OUT_INDICES[: max(max(r) for r in read) + 1])
    model = TaskModel(backbone, heads, config, config.get("task_weights"))
    return reparameterize(model) if config.get("deployed") else model


def load_task_model(path: str | Path) -> TaskModel:
    """Rebuild a :class:`TaskModel` from a ghostkit checkpoint (a training run's ``best.ckpt`` / ``last.ckpt`` or a
    saved model file) without the training code. Raises :class:`GhostkitError` for files that are not ghostkit task
    checkpoints or whose weights do not fit their config. Exported models (``.onnx``, ``.xml``) load through
    :func:`ghostkit.deploy.runtime.load_model_file`."""
    state, config, _ = read_checkpoint(path)
    if config and config.get("task") == "generate":
        raise GhostkitError(f"{path}: a generative model; sample from it with ghostkit predict --weights {path} "
                            "--num N --save DIR, or ghostkit.load_model(path).generate(n)")
    if not config or "heads" not in config:
        raise GhostkitError(f"{path}: not a ghostkit task checkpoint (no task config); for backbone weights use "
                            "create_model(name, weights=...)")
    # Lightning checkpoints hold the LightningModule's state: the TaskModel lives under "model."
    state = {k[len("model."):] if k.startswith("model.") else k: v for k, v in state.items()}
    return load_matching_state(build_task_model(config), state, path)


def load_matching_state(model: nn.Module, state: dict, path: str | Path) -> nn.Module:
    """``model`` (built from a checkpoint's config) with ``state``'s tensors, in eval mode; a one-line error naming
    ``path`` when keys are missing or shapes differ (the weights do not belong to that config)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    bad = [k for k in own if k in state and state[k].shape != own[k].shape]
    if missing or bad:
        raise GhostkitError(f"{path}: weights do not match the model in its config (missing: {missing[:3]}, "
                            f"shape mismatch: {bad[:3]})")
    model.load_state_dict({k: state[k] for k in own})
    return model.eval()


def enable_tta(model: nn.Module, where: str | Path = "model") -> None:
    """Switch detection test-time augmentation on (models with a detect head, PyTorch checkpoints only)."""
    if "detect" not in model.heads or not isinstance(model, TaskModel):
        raise GhostkitError(f"{where}: --tta applies to detection models in PyTorch checkpoints")
    if model.sr_head is not None:
        raise GhostkitError(f"{where}: --tta does not apply to super-resolution multi-task models")
    model.tta = True


def load_pretrained(model: TaskModel, path: str | Path) -> str:
    """Initialise ``model``'s backbone from ImageNet-style weights (official, timm or ghostkit backbone file, or
    ``"imagenet[@REV]"`` from the Hugging Face Hub, see :mod:`ghostkit.models.hub`) or from another ghostkit task
    checkpoint; a classification head also takes the 1x1 ``conv_head`` when its shape fits. The classifier itself
    stays fresh (transfer learning). Hub weights record their normalisation in ``model.config["pretrained"]`` (and
    set ``mean`` / ``std`` where the config has none; differing ones raise). Returns the format found."""
    # a model without backbone may still measure with one: a style head's frozen loss network
    target = model.backbone if model.backbone is not None else next(
        (h.loss_net for h in model.heads.values() if hasattr(h, "loss_net")), None)
    if target is None:
        raise GhostkitError(f"--pretrained {path}: loads backbone weights, but this model has no backbone")
    path, pretrained_cfg = resolve_weights(target.model_name, path)
    if pretrained_cfg is not None:
        if "mean" in model.config:
            check_normalisation(pretrained_cfg, model.config["mean"], model.config["std"])
        model.config.setdefault("mean", pretrained_cfg["mean"])
        model.config.setdefault("std", pretrained_cfg["std"])
        model.config["pretrained"] = pretrained_cfg
    state, config, fmt = read_checkpoint(path)
    if config and "heads" in config:  # another task checkpoint: take its backbone
        prefix = next((p for p in ("model.backbone.", "backbone.") if any(k.startswith(p) for k in state)), "")
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    from ..models.weights import load_weights

    head_state = {k: v for k, v in state.items() if k.startswith("conv_head.")}
    load_weights(target, {k: v for k, v in state.items() if not k.startswith(("conv_head.", "classifier."))})
    for head in model.heads.values():
        conv = getattr(head, "conv_head", None)
        if conv is not None and head_state.get("conv_head.weight", torch.empty(0)).shape == conv.weight.shape:
            conv.load_state_dict({k.split(".", 1)[1]: v for k, v in head_state.items()})
    return fmt
