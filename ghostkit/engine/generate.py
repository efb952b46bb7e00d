"""Image generation: the task's spec, and its metrics (FID, KID, class accuracy) on features that need no download.

Features. FID and KID (torchmetrics, with a custom feature extractor) need an image network. By default the run
trains one on its own training images first: a GhostNet classifier (``GENERATE_DEFAULTS["feature_model"]``) of the
classes, or, for unconditional data, of the image's rotation by 0/90/180/270 degrees (a label-free task,
Gidaris et al., ICLR 2018, whose features describe the image content); FID and KID use its globally pooled
stride-32 features, as the standard FID uses Inception's pooled features. It is saved as ``features.ckpt`` in the
run directory (a classify checkpoint: ``ghostkit val``/``predict`` take it), and ``--fid-features CKPT`` reuses one
(any ghostkit classify checkpoint), so that runs can be compared on the same features. ``--fid-weights FILE`` takes
torchvision's Inception-v3 state dict (``inception_v3_google-*.pth``, which ghostkit never downloads) for FID and KID
on its 2048 pooled features at 299 px; that network is torchvision's port, not the TF graph of the original FID
code, so values are close to but not the same as published FIDs.

``class_acc`` (class-conditional models): the share of generated images that the feature classifier (the run's, or
``--fid-features``' when it has the same classes) assigns to the class they were generated for.
``features_acc``: that classifier's accuracy on the 10% of the training images it was not trained on (how far
``class_acc`` can be trusted). Lower FID / KID is better; the best checkpoint is the one with the lowest FID.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from ..data.classify import split_items
from ..data.tasks import build_task_data
from ..errors import GhostkitError
from ..models.weights import atomic_torch_save
from ..tasks.generate import GENERATE_DEFAULTS
from ..tasks.model import TaskModel, build_task_model, load_task_model
from .spec import TaskData, TaskSpec, register_spec

__all__ = ["GenerateSpec", "GenerateMetrics", "FeatureNet", "InceptionFeatures", "train_feature_classifier",
           "ROTATIONS"]

ROTATIONS = ["0", "90", "180", "270"]


class FeatureNet(nn.Module):
    """A ghostkit classify model as a feature extractor for images in [-1, 1] (``B x 3 x H x W``, any size):
    ``forward`` → pooled stride-32 features ``B x num_features``; :meth:`logits` → ``B x num_classes``. Always in
    eval mode (torchmetrics switches its children's mode)."""

    def __init__(self, model: TaskModel) -> None:
        super().__init__()
        if list(model.heads) != ["classify"]:
            raise GhostkitError(f"--fid-features: needs a classify checkpoint, got one for {', '.join(model.heads)}")
        self.model = model.eval().requires_grad_(False)
        self.class_names = model.config["class_names"]["classify"]
        self.imgsz = tuple(model.config["imgsz"])
        self.register_buffer("mean", torch.tensor(model.config["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(model.config["std"]).view(1, 3, 1, 1), persistent=False)
        self.num_features = model.backbone.feature_info[-1]["num_chs"]

    def train(self, mode: bool = True) -> FeatureNet:
        return super().train(False)

    def _stage(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x.float() + 1) / 2
        if tuple(x.shape[-2:]) != self.imgsz:
            x = F.interpolate(x, size=self.imgsz, mode="bilinear", align_corners=False, antialias=True)
        return self.model.backbone((x - self.mean) / self.std)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._stage(x)[-1].mean((2, 3)).double()

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.heads["classify"](self._stage(x))


class InceptionFeatures(nn.Module):
    """torchvision's Inception-v3 from a local state dict file: images in [-1, 1] → ``B x 2048`` pooled features
    at 299 px (the input normalisation the Google weights were trained with)."""

    num_features = 2048

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        from torchvision.models import inception_v3

        from ..models.weights import read_checkpoint

        state, _, _ = read_checkpoint(path)
        net = inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=False)
        try:
            net.load_state_dict(state)
        except RuntimeError as e:
            raise GhostkitError(f"{path}: not torchvision Inception-v3 weights ({str(e).splitlines()[0]})") from None
        net.fc = nn.Identity()
        self.net = net.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> InceptionFeatures:
        return super().train(False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x.float(), size=(299, 299), mode="bilinear", align_corners=False)
        return self.net(x).double()


class _Once(nn.Module):
    """``module(x)`` computed once for FID and KID: the same input tensor object returns the cached output."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module, self.num_features = module, module.num_features
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._last is None or self._last[0] is not x:
            self._last = (x, self.module(x))
        return self._last[1]


class GenerateMetrics:
    """``fid``, ``kid`` (and ``kid_std`` over subsets), ``class_acc`` (conditional), ``features_acc``.

    ``update_real(images)`` once per evaluation set (real statistics are kept across resets), then
    ``update(fake, labels)``; images ``B x 3 x H x W`` in [-1, 1]. Not an ``nn.Module`` on purpose: the feature
    network must not enter the GAN's checkpoints.
    """

    def __init__(self, features: nn.Module, classifier: FeatureNet | None, num_images: int,
                 features_acc: float | None = None) -> None:
        from torchmetrics.image.fid import FrechetInceptionDistance
        from torchmetrics.image.kid import KernelInceptionDistance

        once = _Once(features)
        self.fid = FrechetInceptionDistance(feature=once, reset_real_features=False)
        with warnings.catch_warnings():  # about keeping every feature vector: at most MAX_EVAL_IMAGES of them here
            warnings.simplefilter("ignore")
            # subsets of half the images, so that kid_std measures something (subsets of all would be identical)
            self.kid = KernelInceptionDistance(feature=once, reset_real_features=False, subsets=50,
                                               subset_size=min(1000, max(2, num_images // 2)))
        self.classifier, self.features_acc = classifier, features_acc
        self.has_real = False
        self.correct = self.total = 0

    def to(self, device: torch.device) -> GenerateMetrics:
        for m in (self.fid, self.kid, self.classifier):
            if m is not None:
                m.to(device)
        return self

    def update_real(self, images: torch.Tensor) -> None:
        self.fid.update(images, real=True)
        self.kid.update(images, real=True)

    def update(self, fake: torch.Tensor, labels: torch.Tensor | None) -> None:
        self.fid.update(fake, real=False)
        self.kid.update(fake, real=False)
        if self.classifier is not None and labels is not None:
            self.correct += int((self.classifier.logits(fake).argmax(1) == labels).sum())
            self.total += len(labels)

    def compute(self) -> dict:
        kid_mean, kid_std = self.kid.compute()
        values = {"fid": float(self.fid.compute()), "kid": float(kid_mean), "kid_std": float(kid_std)}
        if self.total:
            values["class_acc"] = self.correct / self.total
        if self.features_acc is not None:
            values["features_acc"] = self.features_acc
        return values

    def reset(self) -> None:
        self.fid.reset()
        self.kid.reset()
        self.correct = self.total = 0


def _shift(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Random translation by up to ``pad`` px (reflect padding, random crop), one offset per batch."""
    if pad <= 0:
        return x
    h, w = x.shape[-2:]
    dy, dx = (int(v) for v in torch.randint(0, 2 * pad + 1, (2,), generator=gen))
    return F.pad(x, (pad,) * 4, mode="reflect")[..., dy:dy + h, dx:dx + w]


def train_feature_classifier(dataset: Dataset, class_names: list[str], imgsz: int, out: Path,
                             model: str | None = None, epochs: int | None = None, batch: int = 64, seed: int = 0,
                             log=print) -> tuple[TaskModel, float]:
    """Train the feature classifier on ``dataset`` (items → ``(3 x S x S in [-1, 1], class)``): the classes, or
    rotations (``ROTATIONS``) when ``class_names`` is empty; 90% of the images train it, 10% measure its accuracy.
    Saved to ``out`` (a classify checkpoint). Returns ``(model in eval mode, held-out accuracy)``.

    A short AdamW + cosine loop rather than a Lightning run: it is part of this run's metrics, not a run of its own.
    """
    model = model or GENERATE_DEFAULTS["feature_model"]
    epochs = GENERATE_DEFAULTS["feature_epochs"] if epochs is None else epochs
    rotation = not class_names
    names = ROTATIONS if rotation else list(class_names)
    items = getattr(dataset, "items", None)
    targets = [t for _, t in items] if items is not None else [0] * len(dataset)
    indexed = [(i, t) for i, t in enumerate(targets)]
    train_idx, val_idx = split_items(indexed, 0.1, seed=seed, stratify=not rotation)
    config = {"format": 1, "backbone": {"name": model, "kwargs": {}},
              "heads": {"classify": {"num_classes": len(names), "dropout": 0.2, "label_smoothing": 0.1}},
              "class_names": {"classify": names}, "imgsz": [imgsz, imgsz], "mean": [0.5] * 3, "std": [0.5] * 3,
              "deployed": False}
    torch.manual_seed(seed)
    net = build_task_model(config).train()
    gen = torch.Generator().manual_seed(seed)
    loader = DataLoader(Subset(dataset, [i for i, _ in train_idx]), batch_size=batch, shuffle=True, generator=gen,
                        drop_last=len(train_idx) > batch)
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=0.05)
    total = max(1, epochs * len(loader))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(1.0, s / total))))

    def batch_of(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if rotation:
            y = torch.randint(0, 4, (len(x),), generator=gen)
            x = torch.stack([torch.rot90(xi, int(k), (1, 2)) for xi, k in zip(x, y)])
        return x, y

    for _ in range(epochs):
        for x, y in loader:
            x, y = batch_of(_shift(x, max(1, imgsz // 16), gen), y)
            loss = net.loss(net(x), {"classify": y})["loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    correct = 0
    with torch.no_grad():
        for x, y in DataLoader(Subset(dataset, [i for i, _ in val_idx]), batch_size=256):
            x, y = batch_of(x, y)
            correct += int((net(x)["classify"].argmax(1) == y).sum())
    acc = correct / max(1, len(val_idx))
    atomic_torch_save({"ghostkit": config, "state_dict": net.state_dict()}, out)
    log(f"feature classifier ({model}, {'rotations' if rotation else f'{len(names)} classes'}): held-out accuracy "
        f"{acc:.3f}; saved {out}")
    return net, acc


def build_metrics(cfg, data, run_dir: Path, num_images: int, log=print) -> GenerateMetrics:
    """The run's metrics: features from ``--fid-weights`` (Inception), ``--fid-features`` or a classifier trained
    here; the classifier also judges ``class_acc`` for conditional data."""
    acc = None
    if cfg.fid_features:
        classifier = FeatureNet(load_task_model(cfg.fid_features))
        if data.conditional and classifier.class_names != data.class_names:
            log(f"--fid-features {cfg.fid_features}: its classes differ from the data's; class_acc is left out")
            classifier_for_acc = None
        else:
            classifier_for_acc = classifier if data.conditional else None
    else:
        net, acc = train_feature_classifier(data.train, data.class_names, data.imgsz, run_dir / "features.ckpt",
                                            batch=min(64, len(data.train)), seed=cfg.seed, log=log)
        classifier = FeatureNet(net)
        classifier_for_acc = classifier if data.conditional else None
    features = InceptionFeatures(cfg.fid_weights) if cfg.fid_weights else classifier
    return GenerateMetrics(features, classifier_for_acc, num_images, acc)


class GenerateSpec(TaskSpec):
    """``--task generate``: a GAN (``ghostkit.tasks.generate``), trained by ``ghostkit.engine.gan.GANModule`` (the
    registry entry's ``lightning_module``); its defaults and primary metric (FID, lower is better) are the
    registry's."""

    name = "generate"

    def build_data(self, cfg) -> TaskData:
        """``TaskData`` whose ``source`` is the :class:`~ghostkit.data.generate.GenerateData`; train and val are the
        same images (FID is measured against the training images, as in the GAN literature)."""
        return build_task_data(self.name, cfg.data, cfg.imgsz, seed=cfg.seed, batch=cfg.batch)


register_spec(GenerateSpec())
