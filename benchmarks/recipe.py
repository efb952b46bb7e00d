"""Do ghostkit's default training recipe hold on data it was not tuned on? Defaults vs a plain PyTorch loop.

Builds small ImageFolder sets of PNG files from what the project already has (no download):

- ``digits``: scikit-learn's 1797 handwritten digits, upscaled to 28 px grayscale (like a scanned-digits folder);
  stratified 80/20 split.
- ``textures``: 32 px crops of the photographs bundled with scikit-learn (and scikit-image, when installed), one
  class per region of a photograph (a 2 x 2 grid); training crops from the upper half of each region, validation
  crops from the lower half, so no validation pixel is seen in training.
- ``shapes``: the built-in procedural shapes written as a classification folder (class of the largest shape).

Each set is trained with ``ghostkit.train`` and nothing but ``--data``, ``--model`` and ``--epochs`` (the defaults:
recipe, image size, batch, learning rate), with the former ImageNet-style defaults for comparison (``imagenet``:
TrivialAugmentWide, flips, 35-100% crops, dropout 0.2), and with a plain loop: the same backbone, AdamW (lr 1e-3),
cross-entropy, no augmentation, the images resized to the image size ghostkit chose, batch 64, same epochs. The
table reports top1 on the validation folder: ghostkit's best checkpoint, and the plain loop's best epoch (the same
selection). Run: ``python benchmarks/recipe.py [--epochs 10 30] [--sets digits textures shapes]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image
from torch import nn
from torchvision import datasets
from torchvision.transforms import v2

import ghostkit
from ghostkit.data.common import IMAGENET_MEAN, IMAGENET_STD, split_items
from ghostkit.data.synthetic import SHAPE_CLASSES, make_shapes

IMAGENET_RECIPE = dict(auto_augment="trivial", flip=True, crop_scale=0.35, dropout=0.2, label_smoothing=0.1)


def _write(root: Path, split: str, images: list[np.ndarray], labels: list[int], names: list[str]) -> None:
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / split / names[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i:05d}.png")


def make_digits(root: Path) -> None:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = [np.asarray(Image.fromarray((d * 255 / 16).astype(np.uint8)).resize((28, 28), Image.BILINEAR))
              for d in bunch.images]
    train, val = split_items(list(zip(images, bunch.target.tolist(), strict=True)), 0.2, seed=0)
    names = [str(d) for d in range(10)]
    for split, items in (("train", train), ("val", val)):
        _write(root, split, [i for i, _ in items], [t for _, t in items], names)


def _photos() -> list[np.ndarray]:
    from sklearn.datasets import load_sample_images

    photos = list(load_sample_images().images)
    try:
        from skimage import data as skdata

        photos += [np.asarray(getattr(skdata, n)()) for n in ("astronaut", "coffee", "chelsea", "rocket")]
    except ImportError:
        pass
    return [p for p in photos if p.ndim == 3]


def make_textures(root: Path, size: int = 32, train_per_class: int = 80, val_per_class: int = 20) -> None:
    rng = np.random.default_rng(0)
    names, train_x, train_y, val_x, val_y = [], [], [], [], []
    for p, photo in enumerate(_photos()):
        h, w = photo.shape[:2]
        for gy in range(2):
            for gx in range(2):
                label = len(names)
                names.append(f"photo{p}_region{gy}{gx}")
                y0, x0, rh, rw = gy * h // 2, gx * w // 2, h // 2, w // 2
                for n, top, xs, ys in ((train_per_class, y0, train_x, train_y), (val_per_class, y0 + rh // 2,
                                                                                 val_x, val_y)):
                    for _ in range(n):  # train: upper half of the region, val: lower half
                        y = int(rng.integers(top, top + rh // 2 - size))
                        x = int(rng.integers(x0, x0 + rw - size))
                        xs.append(np.ascontiguousarray(photo[y:y + size, x:x + size, :3]))
                        ys.append(label)
    _write(root, "train", train_x, train_y, names)
    _write(root, "val", val_x, val_y, names)


def make_shapes_folder(root: Path, n_train: int = 800, n_val: int = 200, size: int = 32) -> None:
    for split, n, seed in (("train", n_train, 0), ("val", n_val, 1)):
        samples = make_shapes(n, imgsz=size, seed=seed)
        _write(root, split, [s.image for s in samples], [s.label for s in samples], list(SHAPE_CLASSES))


SETS = {"digits": make_digits, "textures": make_textures, "shapes": make_shapes_folder}


def plain_loop(root: Path, model_name: str, epochs: int, imgsz: int, batch: int = 64, seed: int = 0) -> float:
    """Best-epoch validation top1 of a plain loop: AdamW, no augmentation, images decoded once."""
    torch.manual_seed(seed)
    tf = v2.Compose([v2.ToImage(), v2.Resize((imgsz, imgsz)), v2.ToDtype(torch.float32, scale=True),
                     v2.Normalize(list(IMAGENET_MEAN), list(IMAGENET_STD))])

    def load(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        ds = datasets.ImageFolder(str(root / split), transform=tf)
        xs, ys = zip(*[ds[i] for i in range(len(ds))], strict=True)
        return torch.stack(xs), torch.tensor(ys)

    (xt, yt), (xv, yv) = load("train"), load("val")
    model = ghostkit.create_model(model_name, num_classes=int(yt.max()) + 1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    best = 0.0
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(xt)).split(batch):
            loss = nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            pred = torch.cat([model(x).argmax(1) for x in xv.split(256)])
        best = max(best, float((pred == yv).float().mean()))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ghostnet_050")
    parser.add_argument("--epochs", type=int, nargs="+", default=[10])
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--no-imagenet", action="store_true", help="leave out the former ImageNet-style defaults")
    parser.add_argument("--seed", type=int, default=0, help="training seed of every contender (the sets are fixed)")
    parser.add_argument("--batch", type=int, default=None,
                        help="batch size of every contender; adds ghostkit at the unscaled lr 2e-3 (default lr: "
                             "2e-3 x sqrt(batch / 64) above batch 64)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    variants = {"defaults": {}} | ({} if args.no_imagenet else {"imagenet": IMAGENET_RECIPE})
    if args.batch:
        variants["lr 2e-3"] = dict(lr=2e-3)
    batch = {"batch": args.batch} if args.batch else {}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.sets:
            root = Path(tmp) / name
            SETS[name](root)
            n_train = sum(1 for _ in (root / "train").rglob("*.png"))
            for epochs in args.epochs:
                row = {"set": name, "train": n_train, "epochs": epochs}
                for label, kw in variants.items():
                    start = time.perf_counter()
                    out = Path(tmp) / f"run_{name}_{epochs}_{label}"
                    m = ghostkit.train(data=str(root), model=args.model, epochs=epochs, out=str(out), exist_ok=True,
                                       seed=args.seed, **batch, **kw)
                    row[label] = m["top1"]
                    row[f"{label}_s"] = time.perf_counter() - start
                    row["imgsz"] = yaml.safe_load((out / "config.yaml").read_text())["train"]["imgsz"]
                start = time.perf_counter()
                row["plain"] = plain_loop(root, args.model, epochs, row["imgsz"], args.batch or 64, args.seed)
                row["plain_s"] = time.perf_counter() - start
                rows.append(row)
                print(row, flush=True)
    labels = list(variants)
    heads = " | ".join(f"ghostkit {v}" for v in labels)
    print(f"\n{args.model}, batch {args.batch or 64}, {torch.get_num_threads()} torch threads")
    print(f"| set | train images | imgsz | epochs | plain loop top1 | {heads} |")
    print("|---|---|---|---|---|" + "---|" * len(labels))
    for r in rows:
        cells = " | ".join(f"{r[v]:.3f}" for v in labels)
        print(f"| {r['set']} | {r['train']} | {r['imgsz']} | {r['epochs']} | {r['plain']:.3f} | {cells} |")


if __name__ == "__main__":
    main()
