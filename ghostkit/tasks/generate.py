"""Image generation: a GAN whose generator is built from Ghost modules and whose discriminator is a GhostNet.

The recipe of the defaults is BigGAN's (Brock, Donahue and Simonyan, ICLR 2019, https://arxiv.org/abs/1809.11096)
at DCGAN scale, plus a lazy R1 penalty:

* hinge loss (Lim and Ye 2017; Miyato et al., SNGAN, ICLR 2018, https://arxiv.org/abs/1802.05957);
* spectral normalisation of every convolution, linear layer and embedding of the discriminator (SNGAN);
* class-conditional runs: a projection discriminator (Miyato and Koyama, ICLR 2018,
  https://arxiv.org/abs/1802.05637) and class-conditional BatchNorm in the generator (de Vries et al., 2017;
  BigGAN's conditional BN, one gain and bias embedding per layer), a learnt class embedding joined to the latent
  (BigGAN's shared embedding), and an auxiliary classification loss (AC-GAN, Odena, Olah and Shlens, ICML 2017,
  https://arxiv.org/abs/1610.09585: a class head on D learns the classes of real images, G is rewarded when the
  head reads the requested class from its samples; used next to the projection as in TAC-GAN and ContraGAN). With
  the projection and the conditional BN alone, the generator ignored the class in short CPU runs (see
  ``GENERATE_DEFAULTS``);
* an exponential moving average of the generator's weights, sampled from (BigGAN; Karras et al., 2018), with
  "standing statistics" for its BatchNorm layers (BigGAN: running statistics re-measured for the averaged weights);
* Adam with beta1 = 0 and beta2 = 0.999 and a discriminator learning rate twice the generator's (BigGAN's betas;
  two time-scale update rule, Heusel et al., NeurIPS 2017);
* R1 (Mescheder, Geiger and Nowozin, ICML 2018, https://arxiv.org/abs/1801.04406) on real images, applied lazily
  every ``r1_every`` discriminator steps with its weight scaled up accordingly (StyleGAN2, Karras et al., 2020).

Generator (``B x z_dim`` latent, class ``B`` → ``B x 3 x S x S`` in [-1, 1], S = 4 · 2^k)::

    [z, embed(class)] → linear → 4 x 4 x C0 → k x [CBN → ReLU → 2x nearest upsample → ghost conv → CBN → ReLU →
    depthwise 3x3 → ghost conv, + 1x1 conv of the upsampled input] → BN → ReLU → 3x3 conv → tanh

A "ghost conv" is ghostkit's :class:`~ghostkit.models.GhostModule` (1x1 primary conv, depthwise cheap operation)
with its BatchNorms folded away into biases: the conditional norms around it normalise instead.

Discriminator: any registered GhostNet (``--model``), ``features_only`` to stride 32, → ReLU → sum over positions →
``h``; ``D(x, y) = w·h + embed(y)·h`` (the projection term only for conditional models), and for conditional
models class logits ``classifier(h)`` (the auxiliary class head). Its BatchNorm layers are
removed (the convolutions get biases): BN would make one image's score depend on the rest of its batch (real and
fake batches get different statistics, which D can tell apart without looking at the images, and R1's per-image
gradient would mix images), and BN's learnt scale would undo the Lipschitz bound that spectral normalisation sets;
SNGAN, BigGAN and StyleGAN2 discriminators have no BatchNorm for these reasons. The residual shortcuts of the ghost
bottlenecks keep the deep, normalisation-free network trainable.

No Lightning here: :class:`GANModel` samples, :func:`load_generator` rebuilds it from one checkpoint file.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from ..errors import GhostkitError
from ..models import GhostModule, create_model
from ..models.layers import SqueezeExcite
from ..models.weights import read_checkpoint
from .model import load_matching_state
from .restore import drop_batchnorm

__all__ = ["GENERATE_DEFAULTS", "Generator", "Discriminator", "GANModel", "ConditionalBatchNorm2d",
           "d_hinge_loss", "g_hinge_loss", "lazy_r1", "r1_penalty", "load_generator", "is_generator_config",
           "image_grid", "save_samples"]

# The GAN recipe's settings, in one place (engine/gan.py and engine/generate.py read them); the batch size, image
# size, generator learning rate (4e-4) and metric keys are the task registry's, like every task's. Measured on
# digits, 10 epochs: ac_weight 2 learnt the classes more slowly than 1 (class_acc 0.77 against 0.83 at lr 2e-4).
GENERATE_DEFAULTS = dict(
    lr_d_factor=2.0,  # the discriminator's learning rate: this x --lr (TTUR)
    betas=(0.0, 0.999),  # BigGAN
    z_dim=128,
    class_dim=32,  # conditional generators: a learnt class embedding of this size joins the latent (0: none)
    ac_weight=1.0,  # auxiliary classification loss of conditional runs (AC-GAN), for D and G; 0: off
    r1_gamma=0.1,  # R1 weight; 0: off
    r1_every=4,  # lazy R1: every N discriminator steps
    feature_model="ghostnet_050",  # backbone of the feature classifier trained for FID / KID / class_acc
    feature_epochs=10,
)


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm whose gain and bias come from the class (``num_classes`` > 0), else a plain affine BatchNorm.

    ``forward(x B x C x H x W, y B int64 | None)``; the embeddings start at gain 1, bias 0.
    """

    def __init__(self, chs: int, num_classes: int = 0) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(chs, affine=num_classes == 0)
        self.embed = nn.Embedding(num_classes, 2 * chs) if num_classes else None
        if self.embed is not None:
            nn.init.ones_(self.embed.weight[:, :chs])
            nn.init.zeros_(self.embed.weight[:, chs:])

    def forward(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        x = self.bn(x)
        if self.embed is None:
            return x
        gain, bias = self.embed(y).chunk(2, 1)
        return x * gain[:, :, None, None] + bias[:, :, None, None]


def ghost_conv(in_chs: int, out_chs: int) -> nn.Module:
    """A :class:`GhostModule` without activation, its BatchNorms folded into conv biases (normalised outside)."""
    return drop_batchnorm(GhostModule(in_chs, out_chs, act=False))


class GeneratorBlock(nn.Module):
    """``B x in_chs x h x w`` → ``B x out_chs x 2h x 2w`` (BigGAN's residual up-block with ghost convs)."""

    def __init__(self, in_chs: int, out_chs: int, num_classes: int = 0) -> None:
        super().__init__()
        self.norm1 = ConditionalBatchNorm2d(in_chs, num_classes)
        self.conv1 = ghost_conv(in_chs, out_chs)
        self.norm2 = ConditionalBatchNorm2d(out_chs, num_classes)
        self.conv_dw = nn.Conv2d(out_chs, out_chs, 3, 1, 1, groups=out_chs)
        self.conv2 = ghost_conv(out_chs, out_chs)
        self.shortcut = nn.Conv2d(in_chs, out_chs, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        h = F.interpolate(F.relu(self.norm1(x, y)), scale_factor=2.0, mode="nearest")
        h = self.conv1(h)
        h = self.conv2(self.conv_dw(F.relu(self.norm2(h, y))))
        return h + self.shortcut(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Generator(nn.Module):
    """``forward(z B x z_dim, y B int64 | None) -> B x 3 x imgsz x imgsz`` in [-1, 1] (see the module docstring).

    ``imgsz`` must be 4 · 2^k with k ≥ 1 (8, 16, 32, 64, 128, 256); ``width``: channels at full resolution.
    """

    def __init__(self, imgsz: int = 32, num_classes: int = 0, z_dim: int = 128, width: int = 32,
                 class_dim: int = 0) -> None:
        super().__init__()
        ups = round(math.log2(max(imgsz, 1) / 4))
        if imgsz < 8 or 4 * 2**ups != imgsz:
            raise GhostkitError(f"generate: --imgsz must be a power of two from 8 up (32, 64, 128, ...), got {imgsz}")
        if width < 4 or z_dim < 1:
            raise GhostkitError(f"generate: --width must be at least 4 and z_dim positive, got {width}, {z_dim}")
        self.imgsz, self.num_classes, self.z_dim, self.width = imgsz, num_classes, z_dim, width
        chs = [width * min(8, 2 ** (ups - i)) for i in range(ups + 1)]
        # the class also enters at the first layer, as part of the input (BigGAN's shared class embedding joins z)
        self.class_embed = nn.Embedding(num_classes, class_dim) if num_classes and class_dim else None
        self.fc = nn.Linear(z_dim + (class_dim if self.class_embed is not None else 0), chs[0] * 16)
        self.blocks = nn.ModuleList(GeneratorBlock(chs[i], chs[i + 1], num_classes) for i in range(ups))
        self.norm_out = nn.BatchNorm2d(chs[-1])
        self.conv_out = nn.Conv2d(chs[-1], 3, 3, 1, 1)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.class_embed is not None:
            z = torch.cat([z, self.class_embed(y)], 1)
        x = self.fc(z).view(z.shape[0], -1, 4, 4)
        for block in self.blocks:
            x = block(x, y)
        return torch.tanh(self.conv_out(F.relu(self.norm_out(x))))


def _strip_batchnorm(module: nn.Module) -> None:
    """Remove every BatchNorm2d under ``module`` (an ``nn.Identity`` inside ``nn.Sequential``, ``None`` elsewhere:
    ghostkit's blocks take a missing BN as the deploy form) and give the bias-free convolutions a bias."""
    for name, child in list(module.named_children()):
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, nn.Identity() if isinstance(module, nn.Sequential) else None)
        else:
            _strip_batchnorm(child)
    for m in module.modules():
        if isinstance(m, nn.Conv2d) and m.bias is None:
            m.bias = nn.Parameter(torch.zeros(m.out_channels))


class _DepthwiseNorm(nn.Module):
    """Weight parametrisation of a depthwise conv: divided by the largest per-channel filter norm.

    ``spectral_norm`` reshapes a conv weight to ``out x (in / groups · k · k)``; for a depthwise conv that is a
    ``C x k²`` matrix whose top singular value grows with sqrt(C), so every filter would shrink by about sqrt(C) and
    the ghost modules' cheap maps (and the downsampling convs) would fade out of a deep discriminator. A depthwise
    conv's Lipschitz constant is that of its strongest channel, which this bounds (up to the same k x k factor that
    spectral_norm's reshaping ignores for dense convs)."""

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight / weight.flatten(1).norm(dim=1).max().clamp_min(1e-12)


class _TwiceDifferentiableSE(SqueezeExcite):
    """GhostNet's squeeze-and-excite with the hard sigmoid written as ``relu6(x + 3) / 6`` (the same function):
    PyTorch has no second derivative of ``F.hardsigmoid``, which R1's gradient penalty needs."""

    def gate(self, x: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        s = torch.cat([p.mean((2, 3)) for p in x], 1) if isinstance(x, list) else x.mean((2, 3))
        s = F.relu(F.linear(s, self.conv_reduce.weight.flatten(1), self.conv_reduce.bias))
        s = F.linear(s, self.conv_expand.weight.flatten(1), self.conv_expand.bias)
        return (F.relu6(s + 3) / 6)[:, :, None, None]


class _Gain(nn.Module):
    """A fixed factor on a spectrally normalised conv weight (see :func:`_normalise_discriminator`)."""

    def __init__(self, gain: float) -> None:
        super().__init__()
        self.gain = gain

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.gain


# Spectral norm caps a layer's largest singular value at 1, but typical ones are about half of it and ReLU halves
# the energy: through a GhostNet's ~40 convolutions the image's signal fell to 1e-4 of its size at initialisation
# (ghostnet_050, 32 px; scores equal for every image). A fixed gain of 2 on the dense convs keeps it at the input's
# scale down to stride 16 (0.04 at stride 32), and D stays Lipschitz-bounded by a constant, which is what the
# hinge loss needs from spectral normalisation.
SN_CONV_GAIN = 2.0


def _normalise_discriminator(module: nn.Module) -> None:
    """Spectral norm on every dense conv (times ``SN_CONV_GAIN``), linear layer and embedding, :class:`_DepthwiseNorm`
    on depthwise convs; squeeze-and-excite made twice differentiable."""
    for m in list(module.modules()):
        if type(m) is SqueezeExcite:
            m.__class__ = _TwiceDifferentiableSE
        if isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels:
            parametrize.register_parametrization(m, "weight", _DepthwiseNorm())
        elif isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding)):
            spectral_norm(m)
            if isinstance(m, nn.Conv2d):
                parametrize.register_parametrization(m, "weight", _Gain(SN_CONV_GAIN))


class Discriminator(nn.Module):
    """``forward(x B x 3 x H x W in [-1, 1], y B int64 | None) -> B`` real/fake scores (see the module docstring).

    ``model``: any registered GhostNet name; its stride-32 features feed the head. Conditional discriminators also
    have ``classifier``, the auxiliary class head (AC-GAN): :meth:`features` → ``h``, then :meth:`score` and
    :meth:`class_logits` share it.
    """

    def __init__(self, model: str = "ghostnet_050", num_classes: int = 0) -> None:
        super().__init__()
        self.backbone = create_model(model, features_only=True, out_indices=(4,))
        _strip_batchnorm(self.backbone)
        chs = self.backbone.feature_info[-1]["num_chs"]
        self.fc = nn.Linear(chs, 1)
        self.embed = nn.Embedding(num_classes, chs) if num_classes else None
        _normalise_discriminator(self)
        # after the spectral normalisation on purpose: the class logits need no Lipschitz bound (neither the hinge
        # loss nor R1 sees them). The LayerNorm (per image: no batch dependence) matters: at initialisation h varies
        # between images by ~1% of its size (digits, ghostnet_050), so a plain linear head's logits hardly differ
        # and its cross-entropy stayed at chance for the first 50 steps; normalised, they vary 12x more
        self.classifier = nn.Sequential(nn.LayerNorm(chs, elementwise_affine=False),
                                        nn.Linear(chs, num_classes)) if num_classes else None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``B x 3 x H x W`` → ``h``, ``B x C`` (ReLU, summed over positions)."""
        return F.relu(self.backbone(x)[-1]).sum((2, 3))

    def score(self, h: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Real/fake scores ``B`` of features ``h``: ``w·h`` plus the projection ``embed(y)·h`` (conditional)."""
        out = self.fc(h).squeeze(1)
        if self.embed is not None:
            out = out + (self.embed(y) * h).sum(1)
        return out

    def class_logits(self, h: torch.Tensor) -> torch.Tensor:
        """``B x num_classes`` logits of the auxiliary classifier (conditional discriminators only)."""
        return self.classifier(h)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.score(self.features(x), y)


def d_hinge_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Hinge loss of the discriminator: ``mean(relu(1 - D(real))) + mean(relu(1 + D(fake)))``."""
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


def g_hinge_loss(fake: torch.Tensor) -> torch.Tensor:
    """Hinge loss of the generator: ``-mean(D(fake))``."""
    return -fake.mean()


def r1_penalty(discriminator: nn.Module, real: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """R1: ``mean over images of |d D(x) / d x|²`` on real images (multiply by gamma / 2 for the loss)."""
    real = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminator(real, y).sum(), real, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


class GANModel(nn.Module):
    """Generator, its moving average (``generator_ema``, the one sampled from) and the discriminator, with the
    config that rebuilds them (stored in checkpoints under ``"ghostkit"``).

    config: ``{"format": 1, "task": "generate", "generator": {imgsz, num_classes, z_dim, width},
    "discriminator": {"model": NAME}, "class_names": [...] (empty: unconditional), "imgsz": [S, S]}``.
    """

    def __init__(self, config: dict) -> None:
        super().__init__()
        self.config = config
        self.class_names: list[str] = list(config.get("class_names", []))
        self.generator = Generator(**config["generator"])
        self.generator_ema = Generator(**config["generator"])
        self.generator_ema.load_state_dict(self.generator.state_dict())
        self.generator_ema.requires_grad_(False)
        self.discriminator = Discriminator(config["discriminator"]["model"], config["generator"]["num_classes"])

    @property
    def conditional(self) -> bool:
        return bool(self.class_names)

    @property
    def z_dim(self) -> int:
        return self.generator.z_dim

    def class_indices(self, n: int, classes: int | str | list | None = None) -> torch.Tensor | None:
        """The class of each of ``n`` samples: ``None`` (unconditional); all classes in turn (``classes=None``);
        one class (a name or index) for all; or a list of names / indices of length ``n``."""
        if not self.conditional:
            if classes is not None:
                raise GhostkitError("this generator is unconditional (trained without classes); omit the class")
            return None
        if classes is None:
            return torch.arange(n) % len(self.class_names)
        items = classes if isinstance(classes, (list, tuple)) else [classes] * n
        if len(items) != n:
            raise GhostkitError(f"classes: {len(items)} given for {n} samples")
        out = []
        for c in items:
            if isinstance(c, str) and c in self.class_names:
                out.append(self.class_names.index(c))
            elif isinstance(c, (int, np.integer)) and not isinstance(c, bool) and 0 <= c < len(self.class_names):
                out.append(int(c))
            else:
                shown = ", ".join(self.class_names[:20]) + (", ..." if len(self.class_names) > 20 else "")
                raise GhostkitError(f"class {c!r} is not one of the model's classes ({shown})")
        return torch.tensor(out, dtype=torch.long)

    @torch.no_grad()
    def generate(self, n: int, classes: int | str | list | None = None, seed: int | None = None,
                 batch: int = 256) -> np.ndarray:
        """``n`` images from the averaged generator as ``uint8 n x H x W x 3``; the same ``seed`` gives the same
        images (latents drawn on the CPU from ``torch.Generator().manual_seed(seed)``). ``classes``: see
        :meth:`class_indices`."""
        if n <= 0:
            raise GhostkitError(f"the number of samples must be positive, got {n}")
        y = self.class_indices(n, classes)
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        z = torch.randn(n, self.z_dim, generator=gen)
        g = self.generator_ema.eval()
        device = next(g.parameters()).device
        chunks = []
        for i in range(0, n, batch):
            yi = None if y is None else y[i:i + batch].to(device)
            chunks.append(g(z[i:i + batch].to(device), yi).cpu())
        return to_uint8(torch.cat(chunks))


def lazy_r1(discriminator: nn.Module, real: torch.Tensor, y: torch.Tensor | None,
            step: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Lazy R1 (``GENERATE_DEFAULTS`` ``r1_every``, ``r1_gamma``): at every ``r1_every``-th ``step``, ``(term to add to
    the discriminator's loss, the penalty)`` with the weight of ``r1_every`` steps; otherwise ``None``. Lightning's
    ``global_step`` advances by 2 per batch with two optimisers: the penalty then runs every ``r1_every / 2``
    batches at that weight (an effective gamma of 2x ``r1_gamma``); the published numbers were measured so."""
    every, gamma = GENERATE_DEFAULTS["r1_every"], GENERATE_DEFAULTS["r1_gamma"]
    if gamma <= 0 or step % every:
        return None
    r1 = r1_penalty(discriminator, real, y)
    return gamma / 2 * every * r1, r1


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """``B x 3 x H x W`` in [-1, 1] → ``uint8 B x H x W x 3``."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def is_generator_config(config: dict | None) -> bool:
    return bool(config) and config.get("task") == "generate"


def load_generator(path: str | Path) -> GANModel:
    """Rebuild a :class:`GANModel` (eval mode) from a ``ghostkit train --task generate`` checkpoint
    (``best.ckpt`` / ``last.ckpt``: generator, averaged generator and discriminator)."""
    state, config, _ = read_checkpoint(path)
    if not is_generator_config(config):
        raise GhostkitError(f"{path}: not a generative model checkpoint (train one with --task generate)")
    state = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")} or state
    return load_matching_state(GANModel(config), state, path)


def image_grid(images: np.ndarray, rows: int | None = None) -> np.ndarray:
    """``uint8 N x H x W x 3`` → one ``uint8`` picture of the images in ``rows`` rows (default: a square),
    1 px apart."""
    n, h, w, _ = images.shape
    rows = rows or max(1, int(math.sqrt(n)))
    cols = math.ceil(n / rows)
    grid = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1, 3), 40, dtype=np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        grid[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = img
    return grid


def save_samples(model: GANModel, num: int, out: str | Path, class_name: str | None = None,
                 seed: int | None = 0) -> list[Path]:
    """``num`` samples (per class for conditional models; only ``class_name`` when given) written as
    ``out/<class>/<index>.png`` (conditional) or ``out/<index>.png``, plus ``out/grid.png`` (one row per class).
    Every class uses the same ``num`` latents (drawn from ``seed``): a grid column shows one latent in every class,
    and a class's samples do not depend on which other classes are asked for. Returns the sample paths."""
    from PIL import Image

    if num <= 0:
        raise GhostkitError(f"--num must be positive, got {num}")
    out = Path(out)
    if model.conditional:
        names = [class_name] if class_name is not None else model.class_names
        model.class_indices(1, names[0])  # an unknown --class fails before anything is written
        images = np.concatenate([model.generate(num, name, seed=seed) for name in names])
    else:
        if class_name is not None:
            raise GhostkitError("--class: this generator is unconditional (trained without classes)")
        names, images = [None], model.generate(num, seed=seed)
    paths = []
    for i, img in enumerate(images):
        folder = out / names[i // num] if model.conditional else out
        folder.mkdir(parents=True, exist_ok=True)
        paths.append(folder / f"{i % num}.png")
        Image.fromarray(img).save(paths[-1])
    Image.fromarray(image_grid(images, rows=len(names) if model.conditional else None)).save(out / "grid.png")
    return paths
