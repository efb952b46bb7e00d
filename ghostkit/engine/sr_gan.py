"""Adversarial super-resolution: ``ghostkit train --task restore --scale 4 --adversarial`` (SRGAN / ESRGAN style).

SRGAN: Ledig et al., CVPR 2017, https://arxiv.org/abs/1609.04802; ESRGAN: Wang et al., ECCV Workshops 2018,
https://arxiv.org/abs/1809.00219. The parts are ghostkit's own, each from its one home:

* generator: the restore task's network (:class:`~ghostkit.tasks.restore.RestoreHead`), unchanged, so the run's
  checkpoints are restore checkpoints that ``ghostkit val``, ``predict`` and ``export`` take like any other (they
  also hold the discriminator, for ``--resume``; loading the model ignores it);
* discriminator: the generate task's :class:`~ghostkit.tasks.generate.Discriminator` (the ``--model`` GhostNet
  without BatchNorm, spectrally normalised), unconditional, on HR images mapped to [-1, 1], trained with the
  generate task's hinge loss and lazy R1 penalty (:func:`~ghostkit.tasks.generate.d_hinge_loss`,
  :func:`~ghostkit.tasks.generate.lazy_r1`, ``GENERATE_DEFAULTS``);
* generator loss ``pixel x L1 + perceptual x P + adversarial x hinge-G`` (``SR_GAN_WEIGHTS``; the adversarial weight
  is ESRGAN's 5e-3 against an L1 weight of 1, ESRGAN's L1 weight 1e-2 being for its pre-trained generator). ``P``
  is the style task's content distance (:func:`~ghostkit.tasks.style.content_distance`, scale-free) between a frozen
  GhostNet's features of the restored and the HR image at its stride 2, 4, 8 and 16 stage ends, averaged: the style
  task's loss network (:func:`~ghostkit.tasks.style.loss_network`, ``--model``'s architecture). With
  ``--pretrained imagenet|FILE`` it holds ImageNet weights (as SRGAN's VGG does); without, it keeps fixed random
  weights (seed 0): random convolutional features still respond to edges and texture (the style task's fallback),
  but they are not the perceptual features of the literature; the README's trade-off table says which was used;
* two Adam optimisers under Lightning's manual optimisation (betas 0.9 / 0.999 as in SRGAN and ESRGAN, both at
  ``--lr``, constant): one discriminator step, then one generator step per batch.

``metrics.json`` has the restore task's keys, ``sharpness`` among them (see ``ghostkit.engine.restore``): the
adversarial loss trades PSNR for a sharpness closer to that of the HR images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..tasks.generate import Discriminator, d_hinge_loss, g_hinge_loss, lazy_r1
from ..tasks.model import TaskModel
from ..tasks.style import LOSS_STAGES, _features, content_distance, loss_network
from .config import TrainConfig
from .module import TaskModule

__all__ = ["AdversarialRestoreModule", "SR_GAN_WEIGHTS", "perceptual_network"]

SR_GAN_WEIGHTS = {"pixel": 1.0, "perceptual": 1.0, "adversarial": 5e-3}
BETAS = (0.9, 0.999)


def perceptual_network(model: str, pretrained: str | None) -> torch.nn.Module:
    """The frozen loss network: ``model``'s stage ends ``LOSS_STAGES`` with ``pretrained`` weights (``"imagenet"``
    or a file) or fixed random ones."""
    if not pretrained:
        return loss_network(model)
    from ..models import create_model

    return create_model(model, weights=pretrained, features_only=True, out_indices=LOSS_STAGES).eval().requires_grad_(
        False)


class AdversarialRestoreModule(TaskModule):
    """:class:`TaskModule` for a restore model trained with a discriminator (module docstring)."""

    def __init__(self, model: TaskModel, cfg: TrainConfig, metrics: dict, monitors: dict | None = None) -> None:
        super().__init__(model, cfg, metrics, monitors)
        self.automatic_optimization = False
        self.discriminator = Discriminator(cfg.model, num_classes=0)
        self.perceptual = perceptual_network(cfg.model, cfg.pretrained)

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self.perceptual.eval()  # frozen: its BatchNorm statistics never move

    def configure_optimizers(self):
        opt_g = torch.optim.Adam(self.model.parameters(), lr=self.cfg.lr, betas=BETAS)
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=self.cfg.lr, betas=BETAS)
        return [opt_g, opt_d]

    def perceptual_loss(self, restored: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        """Mean over the loss network's stages of the scale-free content distance (images ``B x 3 x H x W`` in
        [0, 1]); the HR features carry no gradient."""
        with torch.no_grad():
            targets = _features(self.perceptual, hr)
        ours = _features(self.perceptual, restored)
        return torch.stack([content_distance(f, t).mean() for f, t in zip(ours, targets)]).mean()

    def training_step(self, batch: tuple, batch_idx: int) -> None:
        images, targets = batch
        hr = targets["restore"]
        opt_g, opt_d = self.optimizers()
        d, w = self.discriminator, SR_GAN_WEIGHTS
        restored = self.model(images)["restore"]["image"]  # B x 3 x sH x sW, not clamped

        real, fake = hr * 2 - 1, restored.detach() * 2 - 1
        loss_d = d_hinge_loss(d(real), d(fake))
        logs = {"train/d_loss": loss_d.detach()}
        r1 = lazy_r1(d, real, None, self.global_step)
        if r1 is not None:
            loss_d = loss_d + r1[0]
            logs["train/r1"] = r1[1].detach()
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(loss_d)
        opt_d.step()

        pixel = F.l1_loss(restored, hr)
        perceptual = self.perceptual_loss(restored, hr)
        adversarial = g_hinge_loss(d(restored * 2 - 1))
        loss = w["pixel"] * pixel + w["perceptual"] * perceptual + w["adversarial"] * adversarial
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        opt_g.step()
        logs.update({"train/loss": loss.detach(), "train/pixel": pixel.detach(),
                     "train/perceptual": perceptual.detach(), "train/g_adv": adversarial.detach()})
        self.log_dict(logs, on_step=False, on_epoch=True, batch_size=images.shape[0], sync_dist=True)
