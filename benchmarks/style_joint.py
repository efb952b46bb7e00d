"""Classification + style trained jointly (``--task classify,style``) against the two single-task runs; prints a
markdown table.

Data: built-in shapes (``make_shapes``, 64 px, seed 0 for training and seed 1 for validation; images without a
shape dropped), written once as an ImageFolder (``train/<class>/``, ``val/<class>/``) for the classifier and the
joint run and as flat photo folders (``train/``, ``val/``, the same files) for the style run. Every run:
ghostnet_050, ``--imgsz`` (default 64, the shapes' own size; the style image is scaled to it), ``--batch 16``,
``--lr 2e-3``, ``--epochs N`` (default 5), seed 0, the built-in mosaic style, the style head at its default width
and depth, each task's own data pipeline; the joint run with learned task weights (the multi-task default). The
style run's loss network is a fixed random-weight ghostnet_050 (the single-task default without ``--pretrained``);
the joint run's is its own backbone. Every style metric is measured by the fixed evaluation network of
``ghostkit.engine.style`` on the validation images; the joint run's best checkpoint is picked by its combined score.

``joint-learning`` is the alternative design ghostkit does not ship: the style losses' gradients also train the
shared backbone (here by replacing ``StyleHead._loss_features`` for that run: the backbone in eval mode as in
ghostkit, its weights not detached).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/style_joint.py [--epochs 5] [--train 400] [--val 120] \
        [--imgsz 64] [--runs classify,style,joint,joint-learning]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from PIL import Image

import ghostkit
from ghostkit.data.synthetic import SHAPE_CLASSES, make_shapes
from ghostkit.tasks.style import StyleHead

COMMON = dict(model="ghostnet_050", batch=16, lr=2e-3, seed=0, workers=0, exist_ok=True)


def _cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _write(root: Path, n_train: int, n_val: int) -> None:
    """The ImageFolder ``root/classes`` and the flat photo folders ``root/photos`` (hard links to the same files)."""
    for split, n, seed in (("train", n_train, 0), ("val", n_val, 1)):
        (root / "photos" / split).mkdir(parents=True)
        for i, s in enumerate(x for x in make_shapes(n, imgsz=64, seed=seed) if len(x.labels)):
            folder = root / "classes" / split / SHAPE_CLASSES[s.label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(s.image).save(folder / f"{i:05d}.png")
            (root / "photos" / split / f"{i:05d}.png").hardlink_to(folder / f"{i:05d}.png")


def _learning_features(self: StyleHead, images):
    """``StyleHead._loss_features`` of the ``joint-learning`` run: the shared backbone's features with gradients
    into its weights."""
    backbone = self._shared[0]
    was_training = backbone.training
    backbone.eval()
    try:
        return list(backbone((images - self.in_mean) / self.in_std))
    finally:
        backbone.train(was_training)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--imgsz", type=int, default=64)
    parser.add_argument("--runs", default="classify,style,joint,joint-learning")
    parser.add_argument("--train", type=int, default=400)
    parser.add_argument("--val", type=int, default=120)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _write(root, args.train, args.val)
        runs = {"classify": dict(task="classify", data=str(root / "classes")),
                "style": dict(task="style", data=str(root / "photos")),
                "joint": dict(task="classify,style", data=str(root / "classes")),
                "joint-learning": dict(task="classify,style", data=str(root / "classes"))}
        results = {}
        shipped = StyleHead._loss_features
        for name in args.runs.split(","):
            StyleHead._loss_features = _learning_features if name == "joint-learning" else shipped
            wall, cpu = time.perf_counter(), _cpu_seconds()
            metrics = ghostkit.train(out=str(root / "runs" / name), epochs=args.epochs, imgsz=args.imgsz, **COMMON,
                                     **runs[name])
            results[name] = (metrics, time.perf_counter() - wall, _cpu_seconds() - cpu)
        StyleHead._loss_features = shipped
    print(f"\n{args.epochs} epochs, {args.train} / {args.val} shapes images (those with a shape), {args.imgsz} px\n")
    print("| run | top1 | style_loss | style_loss_baseline | content_loss | ssim_content | wall s | CPU s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (m, wall, cpu) in results.items():
        top1 = m.get("top1", m.get("classify", {}).get("top1"))
        style = m.get("style", m) if name != "classify" else None
        cells = [f"{top1:.3f}" if top1 is not None else "–"]
        cells += [f"{style[k]:.4f}" for k in ("style_loss", "style_loss_baseline", "content_loss", "ssim_content")
                  ] if style else ["–"] * 4
        print(f"| {name} | {' | '.join(cells)} | {wall:.0f} | {cpu:.0f} |")


if __name__ == "__main__":
    main()
