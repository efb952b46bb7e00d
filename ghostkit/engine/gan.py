"""GAN training under Lightning: two optimisers (manual optimisation), EMA of the generator, FID-picked checkpoints.

One step: a discriminator update on a batch of real images and as many generated ones (hinge loss, plus lazy R1
every ``r1_every`` steps, plus for conditional data the class head's cross-entropy on the real images), then a
generator update on fresh latents for the same classes (hinge loss, plus the class head's cross-entropy on its
samples for the requested classes), then the EMA update. Both class terms are weighted ``ac_weight``.
Validation samples the averaged generator (after re-measuring its BatchNorm statistics, see
:meth:`GANModule.standing_stats`) with latents fixed per run, for at most ``MAX_EVAL_IMAGES`` real / generated
images, and writes a sample grid per epoch into ``samples/``.

A non-finite loss stops the run with a ``GhostkitError`` naming the epoch; the checkpoints written at the end of
earlier epochs (``last.ckpt``, ``best.ckpt``) are left as they were.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
import yaml
from torch.utils.data import DataLoader, Subset

from ..errors import GhostkitError
from ..tasks.generate import (
    GENERATE_DEFAULTS,
    GANModel,
    d_hinge_loss,
    g_hinge_loss,
    image_grid,
    lazy_r1,
    load_generator,
)
from ..tasks.registry import get_task
from .callbacks import ema_decay_at
from .config import TrainConfig
from .generate import GenerateMetrics, build_metrics
from .plots import plot_curves
from .run import write_metrics
from .spec import get_spec
from .trainer import build_trainer

__all__ = ["GANModule", "train_gan", "MAX_EVAL_IMAGES"]

MAX_EVAL_IMAGES = 1000  # real and generated images per evaluation (KID subsets and class_acc use them all)
STANDING_BATCHES = 8  # batches run through the averaged generator to re-measure its BatchNorm statistics


class GANModule(L.LightningModule):
    """Trains a :class:`GANModel`; checkpoints hold the generator, its average and the discriminator plus the model
    config under ``"ghostkit"`` (so ``best.ckpt`` alone rebuilds it, see ``load_generator``)."""

    def __init__(self, model: GANModel, cfg: TrainConfig, metrics: GenerateMetrics, run_dir: Path | None = None):
        super().__init__()
        self.automatic_optimization = False
        self.model, self.cfg, self.run_dir = model, cfg, run_dir
        self.metrics = metrics
        self.last_metrics: dict = {}
        self.last_score: float | None = None  # single-task: no combined score (RunHistory reads it)
        n = 64
        gen = torch.Generator().manual_seed(1234)
        self.register_buffer("grid_z", torch.randn(n, model.z_dim, generator=gen), persistent=False)
        self._eval_seed = 4321

    def configure_optimizers(self):
        betas = GENERATE_DEFAULTS["betas"]
        lr = self.cfg.lr
        opt_g = torch.optim.Adam(self.model.generator.parameters(), lr=lr, betas=betas)
        opt_d = torch.optim.Adam(self.model.discriminator.parameters(), lr=lr * GENERATE_DEFAULTS["lr_d_factor"],
                                 betas=betas)
        return [opt_g, opt_d]

    def _check(self, name: str, value: torch.Tensor) -> None:
        if not torch.isfinite(value):
            where = Path(self.cfg.out)
            kept = (f"the last good checkpoint is {where / 'last.ckpt'}" if (where / "last.ckpt").is_file()
                    else "no checkpoint was written yet")
            raise GhostkitError(f"{name} loss is {float(value.detach())} at epoch {self.current_epoch + 1} (step "
                                f"{self.global_step}); {kept}; try a lower --lr")

    def training_step(self, batch: tuple, batch_idx: int) -> None:
        real, y = batch
        y = y if self.model.conditional else None
        g, d = self.model.generator, self.model.discriminator
        opt_g, opt_d = self.optimizers()
        z = torch.randn(real.shape[0], self.model.z_dim, device=real.device)
        with torch.no_grad():
            fake = g(z, y)
        h_real = d.features(real)
        loss_d = d_hinge_loss(d.score(h_real, y), d(fake, y))
        logs = {"train/d_loss": loss_d.detach()}
        ac = GENERATE_DEFAULTS["ac_weight"] if y is not None else 0.0
        if ac:  # the class head learns on real images only (a head also trained on fakes teaches G nothing early)
            loss_ac = F.cross_entropy(d.class_logits(h_real), y)
            loss_d = loss_d + ac * loss_ac
            logs["train/d_class_loss"] = loss_ac.detach()
        r1 = lazy_r1(d, real, y, self.global_step)
        if r1 is not None:
            loss_d = loss_d + r1[0]
            logs["train/r1"] = r1[1].detach()
        self._check("discriminator", loss_d)
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(loss_d)
        opt_d.step()

        z = torch.randn(real.shape[0], self.model.z_dim, device=real.device)
        h_fake = d.features(g(z, y))
        loss_g = g_hinge_loss(d.score(h_fake, y))
        if ac:  # AC-GAN: G is also rewarded when D's class head reads the requested class from its samples
            loss_g_ac = F.cross_entropy(d.class_logits(h_fake), y)
            loss_g = loss_g + ac * loss_g_ac
            logs["train/g_class_loss"] = loss_g_ac.detach()
        self._check("generator", loss_g)
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(loss_g)
        opt_g.step()
        logs["train/g_loss"] = loss_g.detach()
        self._update_ema()
        self.log_dict(logs, on_step=False, on_epoch=True, batch_size=real.shape[0])

    @torch.no_grad()
    def _update_ema(self) -> None:
        # Lightning counts a step per optimiser step: two per batch here, so the warm-up is over in half the batches
        step = self.global_step
        decay = ema_decay_at(self.cfg.ema_decay, step)
        for e, p in zip(self.model.generator_ema.parameters(), self.model.generator.parameters()):
            e.lerp_(p, 1 - decay)

    @torch.no_grad()
    def standing_stats(self) -> None:
        """BatchNorm statistics of the averaged generator measured on its own outputs (BigGAN's standing
        statistics): the generator's running statistics belong to other weights. Fixed latents: deterministic."""
        g = self.model.generator_ema
        bns = [m for m in g.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative average
        g.train()
        gen = torch.Generator().manual_seed(self._eval_seed + 1)
        n = self.cfg.batch
        for _ in range(STANDING_BATCHES):
            z = torch.randn(n, self.model.z_dim, generator=gen).to(self.device)
            y = self.model.class_indices(n)
            g(z, None if y is None else y[torch.randperm(n, generator=gen)].to(self.device))
        for m in bns:
            m.momentum = 0.1
        g.eval()

    def on_validation_epoch_start(self) -> None:
        self.metrics.to(self.device)
        self.metrics.reset()
        self.standing_stats()
        self._gen = torch.Generator().manual_seed(self._eval_seed)

    def validation_step(self, batch: tuple, batch_idx: int) -> None:
        real, y = batch
        if not self.metrics.has_real:
            self.metrics.update_real(real)
        y = y if self.model.conditional else None
        z = torch.randn(real.shape[0], self.model.z_dim, generator=self._gen).to(self.device)
        self.metrics.update(self.model.generator_ema(z, y), y)

    def on_validation_epoch_end(self) -> None:
        self.metrics.has_real = True
        self.last_metrics = values = self.metrics.compute()
        self.log_dict({f"val/{k}": float(v) for k, v in values.items()}, prog_bar=True)
        if self.run_dir is not None and self.trainer.is_global_zero and self.trainer.state.fn == "fit":
            self.save_grid(self.run_dir / "samples" / f"epoch_{self.current_epoch + 1:03d}.png")

    @torch.no_grad()
    def save_grid(self, path: Path) -> Path:
        """Samples of the averaged generator for the fixed grid latents: one row per class (at most 10 classes,
        8 per row), or an 8 x 8 grid."""
        from PIL import Image

        from ..tasks.generate import to_uint8

        m = self.model
        rows = min(10, len(m.class_names)) if m.conditional else 8
        y = torch.arange(rows).repeat_interleave(8).to(self.device) if m.conditional else None
        z = self.grid_z.repeat(2, 1)[:rows * 8]
        images = to_uint8(m.generator_ema.eval()(z, y).cpu())
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image_grid(images, rows=rows)).save(path)
        return path

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["ghostkit"] = self.model.config

    @classmethod
    def run(cls, cfg: TrainConfig, callbacks: list | None = None) -> dict:
        """The whole ``--task generate`` run: what ``ghostkit.engine.run.train`` calls for a registry entry with a
        ``lightning_module`` of its own (see :func:`train_gan`)."""
        return train_gan(cfg, callbacks)


def train_gan(cfg: TrainConfig, callbacks: list | None = None) -> dict:
    """The ``--task generate`` run (``GANModule.run``; ``cfg`` has its batch and lr resolved): data →
    feature network → GAN training → ``best.ckpt`` (lowest FID), ``last.ckpt``, ``metrics.json``, ``metrics.csv``,
    ``curves.png`` (G / D losses, FID, KID), ``samples/epoch_*.png``, ``config.yaml``."""
    run_dir = Path(cfg.out)
    if cfg.pretrained:
        raise GhostkitError("--pretrained: generate trains its discriminator from scratch (its normalisation differs "
                            "from a classifier's)")
    entry = get_task("generate")
    data = get_spec("generate").build_data(cfg).source
    imgsz = data.imgsz
    config = {
        "format": 1,
        "task": "generate",
        "generator": {"imgsz": imgsz, "num_classes": len(data.class_names), "z_dim": GENERATE_DEFAULTS["z_dim"],
                      "width": cfg.width or 32, "class_dim": GENERATE_DEFAULTS["class_dim"] if data.class_names else 0},
        "discriminator": {"model": cfg.model},
        "class_names": data.class_names,
        "imgsz": [imgsz, imgsz],
    }
    if cfg.resume:
        saved = load_generator(cfg.resume).config
        if saved != config:
            raise GhostkitError(f"{cfg.resume}: was trained with {saved['generator']} and {saved['discriminator']}, "
                                f"not {config['generator']} and {config['discriminator']} on this data")
    run_dir.mkdir(parents=True, exist_ok=True)
    eval_set = data.train if len(data.train) <= MAX_EVAL_IMAGES else Subset(
        data.train, torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0))[:MAX_EVAL_IMAGES]
        .tolist())
    model = GANModel(config)  # checks the options (image size, width) before the feature network is trained
    metrics = build_metrics(cfg, data, run_dir, len(eval_set))
    module = GANModule(model, cfg, metrics, run_dir)
    # EMA and clipping are the GAN's own (Lightning's automatic versions do not apply to two manual optimisers)
    trainer = build_trainer(dataclasses.replace(cfg, ema=False, grad_clip=0.0), run_dir,
                            monitor=f"val/{entry.primary}", callbacks=callbacks, mode=entry.mode)
    common = dict(batch_size=cfg.batch, num_workers=cfg.workers, persistent_workers=cfg.workers > 0)
    train_loader = DataLoader(data.train, shuffle=True, drop_last=True, **common)
    val_loader = DataLoader(eval_set, shuffle=False, **common)
    if trainer.is_global_zero:
        (run_dir / "config.yaml").write_text(yaml.safe_dump({"train": cfg.to_dict(), "model": config},
                                                            sort_keys=False))
    trainer.fit(module, train_loader, val_loader, ckpt_path=cfg.resume)
    best = trainer.checkpoint_callback.best_model_path or str(run_dir / "last.ckpt")
    module.model.load_state_dict(load_generator(best).state_dict())
    trainer.validate(module, val_loader, verbose=False)
    values = module.last_metrics
    if trainer.is_global_zero:
        write_metrics({"generate": values}, run_dir)
        plot_curves(run_dir / "metrics.csv", run_dir / "curves.png")
        module.save_grid(run_dir / "samples.png")
    return values
