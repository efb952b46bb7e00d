"""Do ghostkit's default training recipe hold on data it was not tuned on? Defaults vs a plain PyTorch loop.

Builds small data folders of PNG files from what the project already has (no download):

- ``digits``: scikit-learn's 1797 handwritten digits, upscaled to 28 px grayscale (like a scanned-digits folder);
  stratified 80/20 split, ImageFolder.
- ``textures``: 32 px crops of the photographs bundled with scikit-learn (and scikit-image, when installed), one
  class per region of a photograph (a 2 x 2 grid); training crops from the upper half of each region, validation
  crops from the lower half, so no validation pixel is seen in training. ImageFolder.
- ``shapes``: 32 px object crops of the built-in procedural shapes (one shape per image, a window of 1.25 x its box),
  the same number of images per class, written as an ImageFolder (the class of the shape).
- ``scenes``: multi-label (``images/`` + ``train.csv`` / ``val.csv``): one or two of the handwritten digits 0-4
  (20-26 px tall) pasted on 32 px crops of the photographs; the labels are the digits present. Backgrounds and
  digits of the validation images are never seen in training (lower halves of the photographs; the held-out 20% of
  the digits).

Each set is trained with ``ghostkit.train`` and nothing but ``--data``, ``--model``, ``--epochs`` (and ``--task
multilabel`` for scenes): the defaults choose recipe, image size, batch and learning rate. The plain loop trains the
same backbone with AdamW (lr 1e-3), cross-entropy (binary cross-entropy for multi-label), no augmentation, the images
decoded once and resized to the image size ghostkit chose, batch 64, the same epochs. Both report the best epoch on
the validation split (ghostkit's best checkpoint): top1, or for multi-label mAP (the primary metric) and macro F1 at
the decision threshold (ghostkit: the one it chose on the training images; the plain loop: 0.5). ``--imagenet``
adds the former ImageNet-style defaults (TrivialAugmentWide, flips, 35-100% crops, dropout 0.2).

The default plan: every set at 10 epochs; ``--long-sets`` at ``--long`` epochs (where augmentation should help);
``--batch-sets`` at batch ``--big-batch``, where ghostkit's default learning rate (2e-3 x sqrt(batch / 64)) is run
next to the unscaled 2e-3 and the plain loop runs at the same batch. Run:
``python benchmarks/recipe.py [--epochs 10] [--long 30 --long-sets textures] [--big-batch 256 --batch-sets digits]
[--plain-sets shapes]``.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image
from torch import nn
from torchmetrics.functional import classification as tmf
from torchvision import datasets
from torchvision.transforms import v2

import ghostkit
from ghostkit.data.common import IMAGENET_MEAN, IMAGENET_STD, split_items
from ghostkit.data.synthetic import SHAPE_CLASSES, make_shapes, write_imagefolder

IMAGENET_RECIPE = dict(auto_augment="trivial", flip=True, crop_scale=0.35, dropout=0.2, label_smoothing=0.1)
DIGIT_NAMES = [str(d) for d in range(10)]


def _digits(size: int) -> tuple[list, list]:
    """scikit-learn's digits upscaled to `size` px (uint8, ink bright), split 80/20 stratified: (train, val) items."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = [np.asarray(Image.fromarray((d * 255 / 16).astype(np.uint8)).resize((size, size), Image.BILINEAR))
              for d in bunch.images]
    return split_items(list(zip(images, bunch.target.tolist(), strict=True)), 0.2, seed=0)


def make_digits(root: Path) -> None:
    for split, items in zip(("train", "val"), _digits(28), strict=True):
        write_imagefolder(root / split, [i for i, _ in items], [t for _, t in items], DIGIT_NAMES)


def photographs() -> list[np.ndarray]:
    """The colour photographs scikit-learn (and scikit-image, when installed) ship, as H x W x 3 uint8 arrays."""
    from sklearn.datasets import load_sample_images

    photos = list(load_sample_images().images)
    try:
        from skimage import data as skdata

        photos += [np.asarray(getattr(skdata, n)()) for n in ("astronaut", "coffee", "chelsea", "rocket")]
    except ImportError:
        pass
    return [p[..., :3] for p in photos if p.ndim == 3]


def _crop(rng: np.random.Generator, photo: np.ndarray, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """A random `size` x `size` RGB crop whose top-left corner lies in box = (y0, x0, height, width) - size."""
    y0, x0, h, w = box
    y, x = int(rng.integers(y0, y0 + h - size)), int(rng.integers(x0, x0 + w - size))
    return np.ascontiguousarray(photo[y:y + size, x:x + size, :3])


def make_textures(root: Path, size: int = 32, train_per_class: int = 80, val_per_class: int = 20) -> None:
    rng = np.random.default_rng(0)
    names, split_images = [], {"train": ([], []), "val": ([], [])}
    for p, photo in enumerate(photographs()):
        h, w = photo.shape[:2]
        for gy in range(2):
            for gx in range(2):
                label = len(names)
                names.append(f"photo{p}_region{gy}{gx}")
                y0, x0, rh, rw = gy * h // 2, gx * w // 2, h // 2, w // 2
                for split, n, top in (("train", train_per_class, y0), ("val", val_per_class, y0 + rh // 2)):
                    xs, ys = split_images[split]  # train: upper half of the region, val: lower half
                    for _ in range(n):
                        xs.append(_crop(rng, photo, (top, x0, rh // 2, rw), size))
                        ys.append(label)
    for split, (xs, ys) in split_images.items():
        write_imagefolder(root / split, xs, ys, names)


def make_shapes_folder(root: Path, n_train: int = 1500, n_val: int = 300, size: int = 32, draw_px: int = 128,
                       margin: float = 1.25) -> None:
    """Object crops of the built-in shapes: one shape per image drawn at `draw_px`, a square window `margin` x the
    shape's larger box side around it (shifted by up to 10% of the window), resized to `size` px; the same number of
    images per class (the first of each class drawn). Whole 64 px images, where a shape may cover 15% of the side on a
    textured background, were learned by neither loop in 10 epochs (1500 images: top1 0.39-0.42, chance 0.33): a
    4-layer plain CNN read 0.50 at best there, and 0.987 on these crops (docs/benchmarks.md)."""
    rng = np.random.default_rng(0)
    for split, n, seed in (("train", n_train, 0), ("val", n_val, 1)):
        per_class, drawn, picked = n // len(SHAPE_CLASSES), 0, {c: [] for c in range(len(SHAPE_CLASSES))}
        while any(len(v) < per_class for v in picked.values()):
            batch = make_shapes(n, imgsz=draw_px, seed=seed + 2 * drawn, max_objects=1)  # seeds 0, 2, ... / 1, 3, ...
            drawn += 1
            for s in batch:
                if not len(s.labels) or len(picked[s.label]) >= per_class:
                    continue
                x0, y0, x1, y1 = s.boxes[0]
                side = min(draw_px, round(margin * max(x1 - x0, y1 - y0)))
                cx, cy = (x0 + x1) / 2 + rng.uniform(-0.1, 0.1) * side, (y0 + y1) / 2 + rng.uniform(-0.1, 0.1) * side
                left = int(np.clip(round(cx - side / 2), 0, draw_px - side))
                top = int(np.clip(round(cy - side / 2), 0, draw_px - side))
                crop = Image.fromarray(s.image[top:top + side, left:left + side]).resize((size, size), Image.BILINEAR)
                picked[s.label].append(np.asarray(crop))
        write_imagefolder(root / split, [im for c in picked for im in picked[c]],
                          [c for c in picked for _ in picked[c]], SHAPE_CLASSES)


def make_scenes(root: Path, size: int = 32, n_train: int = 1200, n_val: int = 400, classes: int = 5,
                max_digits: int = 2, digit_px: tuple[int, int] = (20, 26)) -> None:
    """Multi-label scenes: 1 to `max_digits` distinct digits of the first `classes` (`digit_px` px tall, 0.7 of that
    wide, like handwriting; dark or light, whichever contrasts with the spot) pasted on `size` px photograph crops,
    side by side when two fit; `images/`, `train.csv`, `val.csv`, `classes.txt`. (Ten classes, 1-3 square digits of
    14-18 px in 1000 training images were learned by no contender in 10 epochs: every sigmoid stayed at its class's
    frequency; five classes, 1-2 such digits in 1200 images: mAP 0.30-0.31 against 0.25 for a random ranking.)"""
    rng = np.random.default_rng(0)
    photos = photographs()
    digits = [[(g, t) for g, t in split if t < classes] for split in _digits(8)]  # 8 x 8 glyphs, resized per paste
    (root / "images").mkdir(parents=True)
    (root / "classes.txt").write_text("\n".join(DIGIT_NAMES[:classes]) + "\n")
    for split, n, glyphs in (("train", n_train, digits[0]), ("val", n_val, digits[1])):
        rows = []
        for i in range(n):
            photo = photos[int(rng.integers(len(photos)))]
            h, w = photo.shape[:2]
            top = 0 if split == "train" else h // 2  # train: upper half of each photograph, val: lower half
            canvas = _crop(rng, photo, (top, 0, h // 2, w), size).astype(np.float32)
            labels: set[int] = set()
            boxes: list[tuple[int, int, int, int]] = []  # y, x, height, width
            count = int(rng.integers(1, max_digits + 1))
            for k in range(count):
                glyph, label = glyphs[int(rng.integers(len(glyphs)))]
                dh = int(rng.integers(digit_px[0], digit_px[1] + 1))
                dw = round(0.7 * dh)
                for _ in range(20):  # a spot that overlaps an earlier digit by at most 3 px on one axis
                    y, x = int(rng.integers(0, size - dh + 1)), int(rng.integers(0, size - dw + 1))
                    if k == 0 and count > 1:  # the first of several at the left or right edge, leaving room
                        x = int(rng.choice([0, size - dw])) + int(rng.integers(-2, 3)) * (x > 0)
                        x = min(max(x, 0), size - dw)
                    if all(abs(x - bx) >= max(dw, bw) - 3 or abs(y - by) >= max(dh, bh) - 3
                           for by, bx, bh, bw in boxes):
                        break
                else:
                    continue
                if label in labels:
                    continue
                labels.add(label)
                boxes.append((y, x, dh, dw))
                alpha = np.asarray(Image.fromarray(glyph).resize((dw, dh), Image.BILINEAR), np.float32)[..., None] / 255
                spot = canvas[y:y + dh, x:x + dw]
                ink = 0.0 if spot.mean() > 127 else 255.0
                canvas[y:y + dh, x:x + dw] = spot * (1 - alpha) + ink * alpha
            name = f"{split}{i:05d}.png"
            Image.fromarray(canvas.round().astype(np.uint8)).save(root / "images" / name)
            rows.append((name, " ".join(DIGIT_NAMES[k] for k in sorted(labels))))
        with open(root / f"{split}.csv", "w", newline="") as f:
            csv.writer(f).writerows([("filename", "labels"), *rows])


SETS = {"digits": make_digits, "textures": make_textures, "shapes": make_shapes_folder, "scenes": make_scenes}
MULTILABEL = {"scenes"}


def _load(root: Path, split: str, imgsz: int, multilabel: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """A split decoded once: (float32 N x 3 x imgsz x imgsz normalised, int64 N or float32 N x C multi-hot)."""
    tf = v2.Compose([v2.ToImage(), v2.Resize((imgsz, imgsz)), v2.ToDtype(torch.float32, scale=True),
                     v2.Normalize(list(IMAGENET_MEAN), list(IMAGENET_STD))])
    if not multilabel:
        ds = datasets.ImageFolder(str(root / split), transform=tf)
        return torch.stack([ds[i][0] for i in range(len(ds))]), torch.tensor(ds.targets)
    names = (root / "classes.txt").read_text().split()
    with open(root / f"{split}.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    xs = [tf(Image.open(root / "images" / r["filename"]).convert("RGB")) for r in rows]
    ys = torch.zeros(len(rows), len(names))
    for i, r in enumerate(rows):
        ys[i, [names.index(label) for label in r["labels"].split()]] = 1.0
    return torch.stack(xs), ys


def plain_loop(root: Path, model_name: str, epochs: int, imgsz: int, multilabel: bool = False, batch: int = 64,
               seed: int = 0) -> dict[str, float]:
    """Best-epoch validation metrics of a plain loop: AdamW, no augmentation, images decoded once. Single-label:
    {"top1"}; multi-label: {"map", "f1_macro"} of the epoch with the best mAP."""
    torch.manual_seed(seed)
    (xt, yt), (xv, yv) = _load(root, "train", imgsz, multilabel), _load(root, "val", imgsz, multilabel)
    n_classes = yt.shape[1] if multilabel else int(yt.max()) + 1
    model = ghostkit.create_model(model_name, num_classes=n_classes)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = nn.functional.binary_cross_entropy_with_logits if multilabel else nn.functional.cross_entropy
    best: dict[str, float] = {}
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(xt)).split(batch):
            loss = loss_fn(model(xt[idx]), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            logits = torch.cat([model(x) for x in xv.split(256)])
        if multilabel:
            y = yv.long()
            got = {"map": float(tmf.multilabel_average_precision(logits.sigmoid(), y, n_classes, average="macro")),
                   "f1_macro": float(tmf.multilabel_f1_score(logits.sigmoid(), y, n_classes, average="macro"))}
        else:
            got = {"top1": float((logits.argmax(1) == yv).float().mean())}
        key = "map" if multilabel else "top1"
        if got[key] > best.get(key, -1.0):
            best = got
    return best


def _cell(metrics: dict[str, float], multilabel: bool) -> str:
    return f"mAP {metrics['map']:.3f}, F1 {metrics['f1_macro']:.3f}" if multilabel else f"{metrics['top1']:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ghostnet_050")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--sets", nargs="*", default=list(SETS), choices=list(SETS))
    parser.add_argument("--long", type=int, default=30, help="epochs of the long rows")
    parser.add_argument("--long-sets", nargs="*", default=["textures"], choices=list(SETS))
    parser.add_argument("--big-batch", type=int, default=256, help="batch of the learning-rate rows")
    parser.add_argument("--batch-sets", nargs="*", default=["digits"], choices=list(SETS))
    parser.add_argument("--imagenet", action="store_true", help="add the former ImageNet-style defaults")
    parser.add_argument("--seed", type=int, default=0, help="training seed of every contender (the sets are fixed)")
    parser.add_argument("--plain-sets", nargs="*", default=None, choices=list(SETS),
                        help="sets whose plain loop is trained (default: all; none: ghostkit only, e.g. after a "
                             "change of its defaults, as the plain loop does not depend on them)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    plan = [(s, args.epochs, None) for s in args.sets] + [(s, args.long, None) for s in args.long_sets] + \
        [(s, args.epochs, args.big_batch) for s in args.batch_sets]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in dict.fromkeys(s for s, _, _ in plan):
            SETS[name](Path(tmp) / name)
        for name, epochs, batch in plan:
            root, multilabel = Path(tmp) / name, name in MULTILABEL
            variants = {"defaults": {}} | ({"imagenet": IMAGENET_RECIPE} if args.imagenet else {}) | \
                ({"lr 2e-3": dict(lr=2e-3)} if batch else {})
            task = dict(task="multilabel") if multilabel else {}
            size = dict(batch=batch) if batch else {}
            n = {split: len(list((root / split).rglob("*.png"))) if not multilabel else
                 len((root / f"{split}.csv").read_text().splitlines()) - 1 for split in ("train", "val")}
            row = {"set": name, "n": f"{n['train']} / {n['val']}", "epochs": epochs, "batch": batch or 64}
            for label, kw in variants.items():
                start = time.perf_counter()
                out = Path(tmp) / f"run_{name}_{epochs}_{batch}_{label}"
                row[label] = ghostkit.train(data=str(root), model=args.model, epochs=epochs, out=str(out),
                                            exist_ok=True, seed=args.seed, **task, **size, **kw)
                row[f"{label}_s"] = time.perf_counter() - start
                config = yaml.safe_load((out / "config.yaml").read_text())["train"]
                if label == "defaults":
                    row["imgsz"], row["lr"] = config["imgsz"], config["lr"]
            start = time.perf_counter()
            if args.plain_sets is None or name in args.plain_sets:
                row["plain"] = plain_loop(root, args.model, epochs, row["imgsz"], multilabel, batch or 64, args.seed)
            row["plain_s"] = time.perf_counter() - start
            rows.append(row)
            print({k: (_cell(v, multilabel) if isinstance(v, dict) else v) for k, v in row.items()}, flush=True)
    labels = ["defaults"] + (["imagenet"] if args.imagenet else []) + (["lr 2e-3"] if args.batch_sets else [])
    print(f"\n{args.model}, {torch.get_num_threads()} torch threads; plain loop: AdamW lr 1e-3, no augmentation")
    print("| set | train / val | imgsz | epochs | batch | plain loop | " +
          " | ".join(f"ghostkit {v}" for v in labels) + " | seconds (plain, defaults) |")
    print("|---|---|---|---|---|---|" + "---|" * len(labels) + "---|")
    for r in rows:
        ml = r["set"] in MULTILABEL
        cells = " | ".join(_cell(r[v], ml) if v in r else "-" for v in labels)
        defaults = f" (lr {r['lr']:.2g})" if r["batch"] != 64 else ""
        plain = _cell(r["plain"], ml) if "plain" in r else "-"
        print(f"| {r['set']} | {r['n']} | {r['imgsz']} | {r['epochs']} | {r['batch']}{defaults} | "
              f"{plain} | {cells} | {r['plain_s']:.0f}, {r['defaults_s']:.0f} |")


if __name__ == "__main__":
    main()
