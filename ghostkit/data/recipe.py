"""The classification training recipe: augmentation and regularisation chosen from what the data and the run are.

One rule for every data source (a user's folder and the built-in data alike), decided from the training images and
the run, never from the data's name:

- **light** for short runs from scratch (under 30 epochs without pretrained weights): random crops of 70-100% of the
  image, no auto-augment, no dropout, label smoothing 0.1. Strong augmentation removes more signal than a short run
  can learn back.
- **medium** for longer or pretrained runs on small images (median shorter side under 64 px) or few images (median
  under 100 per class): the light recipe with dropout 0.2. A long run overfits a few small images under the light
  recipe, and wider crops cut off what fills the image (benchmarks/recipe.py, 30 epochs, one seed: textures top1
  0.319 light, 0.331 medium, 0.338 with crops of 35-100% as well; built-in digits 0.978, 0.986 and 0.972).
- **standard** for longer or pretrained runs on enough images of 64 px and more: random crops of 35-100%, RandAugment
  (two operations at magnitude 9: rotations up to 9 degrees) on colour images and none on grayscale ones (its colour,
  posterise and solarise operations change scans and drawings more than photographs), dropout 0.2, label smoothing
  0.1.
- Horizontal flips are never chosen by the rule: a flipped 6, b or arrow is another class, and the data cannot say
  whether its classes survive a mirror. `--flip` turns them on.
- Image size: the median shorter side rounded up to a multiple of 32, between 32 and the task's default (224), the
  rule of every task with a default size (:func:`ghostkit.tasks.registry.default_imgsz`).

Every choice is overridable (`--imgsz`, `--crop-scale`, `--auto-augment`, `--flip`, `--dropout`,
`--label-smoothing`); weight decay stays 0.05 (decoupled, AdamW) in every recipe. The chosen recipe is printed at
the start of a run, e.g. ``recipe: light augmentation (small images, 10 epochs, from scratch)``.

Validation and prediction see the whole image resized to imgsz x imgsz (see `classify_transforms`).

Augmentations run per image (in the data set), not on batches: a torchvision v2 transform called on a batch draws one
set of random parameters for the whole call, so every image of the batch would get the same crop and the same
auto-augment operation (checked: two equal images in one batched call come out equal). The batched call is about 10x
cheaper (64 images of 28 px, one thread: 16 ms against 157 ms per batch, on 2 loaded cores), but loading and
augmenting take 11-14% of a 32 px ghostnet_050 epoch here (the end-of-run ``training time`` line), which caps the
gain, and a batch of identical crops is a weaker augmentation.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

from ghostkit.data.common import IMAGENET_MEAN, IMAGENET_STD
from ghostkit.errors import GhostkitError
from ghostkit.tasks.registry import default_imgsz

__all__ = ["AUTO_AUGMENTS", "LIGHT", "MEDIUM", "STANDARD", "DataStats", "Recipe", "choose_recipe",
           "classify_transforms", "data_stats", "scaled_lr"]

SMALL_IMAGE = 64  # px: shorter sides below this are "small images"
FEW_PER_CLASS = 100  # images per class below this are "few images"
LONG_RUN = 30  # epochs from scratch at or above this are a "long run"
# the crops and regularisation of each recipe (multi-task runs, which build no recipe, use the standard one)
LIGHT = dict(crop_scale=0.7, dropout=0.0, label_smoothing=0.1)
MEDIUM = dict(crop_scale=0.7, dropout=0.2, label_smoothing=0.1)
STANDARD = dict(crop_scale=0.35, dropout=0.2, label_smoothing=0.1)
AUTO_AUGMENTS: tuple[str, ...] = ("trivial", "randaugment", "none")
_STATS_SAMPLE = 64  # images looked at for size and colour when nothing is decoded yet


@dataclass(frozen=True)
class DataStats:
    """What the rule reads from the training set."""

    size: int  # median shorter side of the training images, px
    grayscale: bool  # every looked-at image has equal R, G and B
    per_class: int  # median number of training images per class (multi-label: per label)


@dataclass(frozen=True)
class Recipe:
    """The resolved augmentation and regularisation of a classification run."""

    name: str  # "light", "medium" or "standard"
    reasons: tuple[str, ...]  # why, in words: ("small images", "10 epochs", "from scratch")
    imgsz: int
    crop_scale: float  # smallest random crop, as a fraction of the image area
    auto_augment: str  # "none", "randaugment" or "trivial"
    flip: bool
    dropout: float
    label_smoothing: float
    overridden: tuple[str, ...] = ()  # options the user set

    def describe(self) -> str:
        """One line for the start of a run."""
        line = f"recipe: {self.name} augmentation ({', '.join(self.reasons)}): imgsz {self.imgsz}, crops " \
               f"{self.crop_scale:.0%}-100%, auto-augment {self.auto_augment}, flips {'on' if self.flip else 'off'}, " \
               f"dropout {self.dropout:g}, label smoothing {self.label_smoothing:g}"
        return line + (f" (set by option: {', '.join(self.overridden)})" if self.overridden else "")


def classify_transforms(
    imgsz: int,
    train: bool,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    auto_augment: str | None = "none",
    random_erasing: float = 0.0,
    hflip: float = 0.0,
    scale: tuple[float, float] = (0.7, 1.0),
) -> v2.Compose:
    """Transform preset: PIL image, uint8 H x W x 3 array or uint8 3 x H x W tensor → normalised float32 tensor
    3 x imgsz x imgsz. The defaults are the light recipe of `ghostkit.data.recipe` (no flips, no auto-augment).

    train: RandomResizedCrop(imgsz, scale) → RandomHorizontalFlip(hflip) → TrivialAugmentWide / RandAugment /
    nothing → float → Normalize → RandomErasing(random_erasing) when > 0.
    val: the whole image resized to imgsz x imgsz → float → Normalize. No centre crop: the ImageNet habit of
    validating on the central 87.5% cuts off whatever lies near the border (an object, a digit's stroke, the larger of
    two shapes), and the training crops reach the whole image (scale up to 1.0), so the whole image is what training
    saw. Prediction prepares images the same way (the head's ``preprocess = "resize"``).
    The input is made a `tv_tensors.Image` first (`v2.ToImage`), so PIL images and arrays take the same path.
    """
    if imgsz <= 0:
        raise GhostkitError(f"imgsz must be > 0, got {imgsz}")
    if not 0.0 <= random_erasing <= 1.0:
        raise GhostkitError(f"random_erasing must be a probability in [0, 1], got {random_erasing}")
    if not 0.0 <= hflip <= 1.0:
        raise GhostkitError(f"hflip must be a probability in [0, 1], got {hflip}")
    if not 0.0 < scale[0] <= scale[1] <= 1.0:
        raise GhostkitError(f"scale must satisfy 0 < min <= max <= 1, got {tuple(scale)}")
    aug = "none" if auto_augment is None else str(auto_augment).lower()
    if aug not in AUTO_AUGMENTS:
        raise GhostkitError(f"auto_augment {auto_augment!r} is not one of: {', '.join(AUTO_AUGMENTS)}")
    to_float = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(mean), std=list(std))]
    if not train:
        return v2.Compose([v2.ToImage(), v2.Resize((imgsz, imgsz)), *to_float])
    ops: list[Any] = [v2.ToImage(), v2.RandomResizedCrop(imgsz, scale=tuple(scale))]
    if hflip > 0:
        ops.append(v2.RandomHorizontalFlip(hflip))
    if aug == "trivial":
        ops.append(v2.TrivialAugmentWide())
    elif aug == "randaugment":
        ops.append(v2.RandAugment())
    ops += to_float
    if random_erasing > 0:
        ops.append(v2.RandomErasing(p=random_erasing, value=0))
    return v2.Compose(ops)


def _rgb_array(source) -> np.ndarray:
    if isinstance(source, torch.Tensor):  # 3 x H x W uint8
        return source.permute(1, 2, 0).numpy()
    if isinstance(source, Image.Image):
        return np.asarray(source)
    return np.asarray(source)


def data_stats(sources: Sequence, targets: Sequence) -> DataStats:
    """Size, colour and images per class of a training set.

    sources: decoded images (uint8 3 x H x W tensors or H x W (x 3) arrays, all looked at) or file paths (an even
    sample of `_STATS_SAMPLE`, decoded); targets: int class indices or multi-hot vectors.
    """
    if not sources:
        raise GhostkitError("the training set is empty")
    decoded = isinstance(sources[0], (torch.Tensor, np.ndarray, Image.Image))
    step = 1 if decoded else max(1, len(sources) // _STATS_SAMPLE)
    sides, gray = [], True
    for source in list(sources)[::step]:
        if not decoded:
            from ghostkit.data.images import read_image

            source = read_image(source)
        arr = _rgb_array(source)
        sides.append(min(arr.shape[:2]))
        if gray and arr.ndim == 3 and arr.shape[2] == 3:
            gray = bool((arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all())
    first = np.asarray(targets[0])
    if first.ndim == 0:
        counts = list(Counter(int(t) for t in targets).values())
    else:
        counts = [int(c) for c in np.asarray(targets).sum(axis=0) if c > 0]
    return DataStats(size=int(np.median(sides)), grayscale=gray, per_class=int(np.median(counts)))


def choose_recipe(stats: DataStats, epochs: int, pretrained: bool = False, *, task: str = "classify",
                  imgsz: int | None = None,
                  crop_scale: float | None = None, auto_augment: str | None = None, flip: bool | None = None,
                  dropout: float | None = None, label_smoothing: float | None = None) -> Recipe:
    """The recipe of the module docstring for `stats` and the run; keyword options that are not None replace the
    rule's choice and are listed in `Recipe.overridden`; `task`: whose default image size bounds the chosen one."""
    reasons = []
    if stats.size < SMALL_IMAGE:
        reasons.append("small images")
    if stats.per_class < FEW_PER_CLASS:
        reasons.append(f"{stats.per_class} images per class")
    reasons.append(f"{epochs} epochs")
    reasons.append("pretrained" if pretrained else "from scratch")
    small_or_few = stats.size < SMALL_IMAGE or stats.per_class < FEW_PER_CLASS
    name = "light" if not pretrained and epochs < LONG_RUN else "medium" if small_or_few else "standard"
    if stats.grayscale:
        reasons.append("grayscale")
    rule = dict(imgsz=default_imgsz(task, stats.size), flip=False,
                auto_augment="randaugment" if name == "standard" and not stats.grayscale else "none",
                **dict(light=LIGHT, medium=MEDIUM, standard=STANDARD)[name])
    given = dict(imgsz=imgsz, crop_scale=crop_scale, auto_augment=auto_augment, flip=flip, dropout=dropout,
                 label_smoothing=label_smoothing)
    overridden = tuple(k for k, v in given.items() if v is not None)
    chosen = rule | {k: given[k] for k in overridden}
    if not 0.0 < chosen["crop_scale"] <= 1.0:
        raise GhostkitError(f"--crop-scale must be in (0, 1], got {chosen['crop_scale']}")
    return Recipe(name=name, reasons=tuple(reasons), overridden=overridden, **chosen)


def scaled_lr(base_lr: float, batch: int, base_batch: int) -> float:
    """The default learning rate at `batch`: `base_lr` (tuned at `base_batch`) x sqrt(batch / base_batch) for larger
    batches, `base_lr` for smaller ones.

    The square-root rule keeps the update noise of Adam-type optimizers about constant as the batch grows (the
    linear rule is SGD's). Below the reference batch the rule is not applied: a short run at batch 32 learned less
    at the scaled-down rate (textures set of benchmarks/recipe.py, 10 epochs: top1 0.25 at 1.4e-3 vs 0.31 at 2e-3)."""
    return base_lr * max(1.0, batch / base_batch) ** 0.5
