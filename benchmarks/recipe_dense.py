"""Do ghostkit's detection and segmentation defaults hold on scenes they were not tuned on? Defaults vs plain loops.

Builds small data sets from what the project already has (no download) and writes them to disk in the formats users
bring (COCO json for detection; ``images/{train,val}`` + ``masks/{train,val}`` + ``classes.txt`` for
segmentation), so ``ghostkit train`` reads them like a user's folder. The sets are sized to be learnable in a
CPU-sized run (600 training images x 8 epochs = 300 optimizer steps at batch 16; more images and fewer epochs than
a set of 200 seen 15 times, so the runs measure learning rather than memorising a few scenes):

- ``scenes``: 64 px crops of the photographs shipped with scikit-learn (and scikit-image, when installed) with one
  to four of scikit-learn's handwritten digits pasted on each, 16-29 px tall, in a colour that stands out from the
  background; four classes (the digits 0, 1, 4 and 7). Training scenes use the upper half of each photograph and
  80% of the digit scans, validation scenes the lower half and the other 20%, so no validation pixel or digit is
  seen in training. 600 training and 100 validation scenes.
- ``small`` (not run by default): the same at 128 px with digits of 10-19 px (objects under 1/8 of the image side).
- ``shapes``: the built-in procedural shapes (64 px, seeds 0 and 1) written to the same layouts, 600 / 100 images.

Each set is trained with ``ghostkit.train`` and nothing but ``--task``, ``--data``, ``--model``, ``--epochs`` and
``--seed`` (the defaults: recipe, image size, head, batch, learning rate), and with a plain loop on the same
backbone's features, from scratch, no augmentation, the images decoded once and resized to the image size ghostkit
chose, AdamW (lr 1e-3, constant), batch 16, the same epochs (8 by default):

- detection: torchvision's ``FCOS`` (its ``FCOSHead``, 4-conv towers) on a ``FeaturePyramidNetwork`` over the
  stride 8, 16 and 32 maps, 64 channels (ghostkit's head width; ``--plain-fpn 256`` for torchvision's), anchor sizes
  equal to the strides (torchvision's ``fcos_resnet50_fpn``), plus ``LastLevelP6P7`` from 256 px on (below, P6 and
  P7 are 1-2 px maps whose 64 and 128 px anchors span the whole image: on 64 px scenes that loop's best boxes were
  whole-image halves and mAP50 stayed at 0.000); COCO mAP50 with the same pycocotools evaluation as
  ``ghostkit val`` (score threshold 0.001).
- segmentation: torchvision's ``LRASPPHead`` on the stride 8 and 32 maps (as ``lraspp_mobilenet_v3_large``),
  logits upsampled bilinearly, cross-entropy; mIoU with ghostkit's metric (classes present).

ghostkit reports its best checkpoint (chosen by mAP / mIoU), the plain loops their best epoch by the same metric.
With several ``--seeds`` both contenders run once per seed (interleaved) and the table shows the means.
Run: ``python benchmarks/recipe_dense.py [--epochs 8] [--seeds 0 1] [--sets scenes small shapes] [--tasks detect
segment] [--contenders ghostkit plain]``; one set and task per invocation runs them in parallel.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from PIL import Image
from recipe import photographs  # benchmarks/recipe.py, beside this script
from torch import nn
from torchmetrics.detection import MeanAveragePrecision
from torchvision.models.detection import FCOS
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.segmentation.lraspp import LRASPPHead
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

import ghostkit
from ghostkit.data.common import split_items
from ghostkit.data.detect import build_detect_data
from ghostkit.data.segment import build_segment_data
from ghostkit.data.synthetic import SHAPE_CLASSES, make_shapes
from ghostkit.engine.segment import SegmentMetrics

# the sets' sizes: enough training images for a few hundred optimizer steps in a few epochs (more images, fewer
# epochs: each image is seen less often, so the runs measure learning rather than memorising 200 scenes)
N_TRAIN, N_VAL = 600, 100
EPOCHS = 8
SCENE_SIZE = 64  # px
SCENE_DIGITS = (0, 1, 4, 7)  # four shapes that differ at 15-30 px


# -- data sets -----------------------------------------------------------------------------------------------------
def _scene(rng: np.random.Generator, photos: list[np.ndarray], half: int, digits: list[tuple[np.ndarray, int]],
           size: int, obj: tuple[float, float]) -> tuple[np.ndarray, list[list[float]], list[int], np.ndarray]:
    """One scene: a crop of the upper (`half` 0) or lower (1) half of a photograph, resized to `size`, with 1-4
    digits pasted → (uint8 size x size x 3, xyxy boxes, labels, uint8 mask: 0 background, digit + 1)."""
    photo = photos[int(rng.integers(len(photos)))]
    h, w = photo.shape[:2]
    side = int(rng.integers(h // 4, h // 2))
    y = int(rng.integers(half * h // 2, (half + 1) * h // 2 - side + 1))
    x = int(rng.integers(0, w - side + 1))
    image = np.asarray(Image.fromarray(photo[y:y + side, x:x + side]).resize((size, size), Image.BILINEAR), np.float32)
    mask = np.zeros((size, size), np.uint8)
    boxes: list[list[float]] = []
    labels: list[int] = []
    for _ in range(int(rng.integers(1, 5))):
        scan, digit = digits[int(rng.integers(len(digits)))]
        k = int(rng.uniform(*obj) * size)
        alpha = np.asarray(Image.fromarray((scan * 255 / 16).astype(np.uint8)).resize((k, k), Image.BILINEAR),
                           np.float32) / 255
        for _ in range(20):  # a place that overlaps no earlier digit
            x0, y0 = (int(v) for v in rng.integers(0, size - k + 1, 2))
            if all(x0 >= b[2] or x0 + k <= b[0] or y0 >= b[3] or y0 + k <= b[1] for b in boxes):
                break
        else:
            continue
        region = image[y0:y0 + k, x0:x0 + k]
        colour = np.where(region.mean((0, 1)) > 127, rng.uniform(0, 60, 3), rng.uniform(195, 255, 3))
        region[:] = region * (1 - alpha[..., None]) + colour * alpha[..., None]
        ys, xs = np.nonzero(alpha > 0.25)
        boxes.append([x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1, y0 + ys.max() + 1])
        labels.append(digit)
        mask[y0:y0 + k, x0:x0 + k][alpha > 0.5] = digit + 1
    return image.round().astype(np.uint8), boxes, labels, mask


def _write(root: Path, split: str, samples: list[tuple[np.ndarray, list, list[int], np.ndarray]],
           names: list[str]) -> None:
    """COCO detection files (`root/detect`) and mask folders (`root/segment`) of the same scenes."""
    det, seg = root / "detect", root / "segment"
    for d in (det / "images" / split, det / "annotations", seg / "images" / split, seg / "masks" / split):
        d.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i, (image, boxes, labels, mask) in enumerate(samples):
        file = f"{split}_{i:05d}.png"
        Image.fromarray(image).save(det / "images" / split / file)
        Image.fromarray(image).save(seg / "images" / split / file)
        Image.fromarray(mask).save(seg / "masks" / split / file)
        images.append({"id": i + 1, "file_name": file, "width": image.shape[1], "height": image.shape[0]})
        for (x1, y1, x2, y2), label in zip(boxes, labels, strict=True):
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": int(label) + 1,
                                "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                                "area": float((x2 - x1) * (y2 - y1)), "iscrowd": 0})
    categories = [{"id": c + 1, "name": n} for c, n in enumerate(names)]
    (det / "annotations" / f"instances_{split}.json").write_text(json.dumps(
        {"images": images, "annotations": annotations, "categories": categories}))
    (seg / "classes.txt").write_text("\n".join(["background", *names]) + "\n")


def make_scenes(root: Path, size: int = SCENE_SIZE, obj: tuple[float, float] = (0.25, 0.45), n_train: int = N_TRAIN,
                n_val: int = N_VAL, digits: tuple[int, ...] = SCENE_DIGITS) -> None:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    keep = bunch.target < 0  # the chosen digits, relabelled 0..len(digits)-1 in the order given
    labels = np.zeros_like(bunch.target)
    for c, d in enumerate(digits):
        keep |= bunch.target == d
        labels[bunch.target == d] = c
    scans = list(zip(bunch.images[keep], labels[keep].tolist(), strict=True))
    train_digits, val_digits = split_items(scans, 0.2, seed=0)
    photos, rng = photographs(), np.random.default_rng(0)
    for split, n, half, pool in (("train", n_train, 0, train_digits), ("val", n_val, 1, val_digits)):
        scenes = [_scene(rng, photos, half, pool, size, obj) for _ in range(n)]
        _write(root, split, scenes, [str(d) for d in digits])


def make_small(root: Path) -> None:
    make_scenes(root, size=128, obj=(0.08, 0.15))


def make_shapes_sets(root: Path, n_train: int = N_TRAIN, n_val: int = N_VAL) -> None:
    for split, n, seed in (("train", n_train, 0), ("val", n_val, 1)):
        _write(root, split, [(s.image, s.boxes.tolist(), s.labels.tolist(), s.mask)
                             for s in make_shapes(n, seed=seed)], list(SHAPE_CLASSES))


SETS = {"scenes": make_scenes, "small": make_small, "shapes": make_shapes_sets}


# -- plain loops ---------------------------------------------------------------------------------------------------
def _tensors(dataset) -> tuple[torch.Tensor, list]:
    """A ghostkit data set's images, decoded and resized once (its validation transform), and targets."""
    xs, ys = zip(*[dataset[i] for i in range(len(dataset))], strict=True)
    return torch.stack(xs), list(ys)


class _FPNBackbone(nn.Module):
    """The ghostkit backbone's stride 8, 16 and 32 maps through an FPN, with P6 / P7 (as torchvision's FCOS) when
    `p6p7`: under 256 px they would be 1-2 px maps whose 64 and 128 px anchors cover the whole image."""

    def __init__(self, model: str, fpn_chs: int, p6p7: bool) -> None:
        super().__init__()
        self.body = ghostkit.create_model(model, features_only=True)
        chs = [f["num_chs"] for f in self.body.feature_info[1:]]
        self.fpn = FeaturePyramidNetwork(chs, fpn_chs, extra_blocks=LastLevelP6P7(fpn_chs, fpn_chs) if p6p7 else None)
        self.out_channels = fpn_chs

    def forward(self, x: torch.Tensor) -> OrderedDict:
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(self.body(x)[1:])))


def plain_detect(root: Path, model_name: str, epochs: int, imgsz: int, fpn_chs: int, batch: int = 16) -> float:
    """mAP50 (at the best epoch by mAP) of torchvision's FCOS on the backbone, AdamW, no augmentation."""
    data = build_detect_data(root, imgsz=imgsz)
    data.train.transform = data.val.transform  # the whole image resized, nothing random
    (xt, yt), (xv, yv) = _tensors(data.train), _tensors(data.val)
    # the images are normalised already: the model's own transform only batches them (no resize, no normalisation)
    p6p7 = imgsz >= 256
    sizes = ((8,), (16,), (32,), (64,), (128,))[:5 if p6p7 else 3]
    model = FCOS(_FPNBackbone(model_name, fpn_chs, p6p7), num_classes=len(data.class_names), min_size=imgsz,
                 max_size=imgsz, image_mean=[0.0] * 3, image_std=[1.0] * 3, score_thresh=0.001,
                 anchor_generator=AnchorGenerator(sizes, ((1.0,),) * len(sizes)))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    best = (-1.0, 0.0)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(xt)).split(batch):
            targets = [{"boxes": yt[i]["boxes"], "labels": yt[i]["labels"]} for i in idx.tolist()]
            loss = sum(model(list(xt[idx]), targets).values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", backend="pycocotools",
                                      iou_thresholds=np.linspace(0.5, 0.95, 10).tolist(),
                                      rec_thresholds=np.linspace(0.0, 1.0, 101).tolist())
        with torch.no_grad():
            for start in range(0, len(xv), 32):
                preds = model(list(xv[start:start + 32]))
                metric.update([{k: p[k] for k in ("boxes", "scores", "labels")} for p in preds],
                              [{"boxes": t["boxes"], "labels": t["labels"]} for t in yv[start:start + 32]])
        r = metric.compute()
        best = max(best, (float(r["map"]), float(r["map_50"])))
    return best[1]


class _PlainSegment(nn.Module):
    def __init__(self, model: str, num_classes: int) -> None:
        super().__init__()
        self.body = ghostkit.create_model(model, features_only=True)
        chs = [f["num_chs"] for f in self.body.feature_info]
        self.head = LRASPPHead(chs[1], chs[3], num_classes, 128)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.body(x)
        return F.interpolate(self.head({"low": f[1], "high": f[3]}), size=x.shape[-2:], mode="bilinear",
                             align_corners=False)


def plain_segment(root: Path, model_name: str, epochs: int, imgsz: int, batch: int = 16) -> float:
    """Best-epoch mIoU of an LR-ASPP head on the backbone, cross-entropy, AdamW, no augmentation."""
    data = build_segment_data(root, imgsz=imgsz)
    data.train.transform = data.val.transform
    (xt, mt), (xv, mv) = _tensors(data.train), _tensors(data.val)
    mt, mv = torch.stack(mt), torch.stack(mv)
    model = _PlainSegment(model_name, len(data.class_names))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    best = 0.0
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(xt)).split(batch):
            loss = F.cross_entropy(model(xt[idx]), mt[idx], ignore_index=255)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        metric = SegmentMetrics(data.class_names)
        with torch.no_grad():
            for start in range(0, len(xv), 32):
                metric.update(model(xv[start:start + 32]), mv[start:start + 32])
        best = max(best, metric.compute()["miou"])
    return best


# -- the run -------------------------------------------------------------------------------------------------------
def run_pair(root: Path, out: Path, name: str, task: str, args: argparse.Namespace) -> dict:
    """One set and task, every seed: ghostkit's defaults and the plain loop, interleaved seed by seed."""
    key = {"detect": "map50", "segment": "miou"}[task]
    row = {"set": name, "task": task, "metric": key, "epochs": args.epochs, "ghostkit": [], "ghostkit_s": 0.0,
           "plain": [], "plain_s": 0.0}
    for seed in args.seeds:
        start = time.perf_counter()
        # a one-epoch run also tells the image size the plain loop is to use
        metrics = ghostkit.train(task=task, data=str(root), model=args.model, out=str(out), exist_ok=True, seed=seed,
                                 epochs=args.epochs if "ghostkit" in args.contenders else 1)
        if "ghostkit" in args.contenders:
            row["ghostkit"].append(metrics[key])
            row["ghostkit_s"] += time.perf_counter() - start
        row["imgsz"] = yaml.safe_load((out / "config.yaml").read_text())["train"]["imgsz"]
        if "plain" in args.contenders:
            torch.manual_seed(seed)
            start = time.perf_counter()
            row["plain"].append(plain_detect(root, args.model, args.epochs, row["imgsz"], args.plain_fpn)
                                if task == "detect" else plain_segment(root, args.model, args.epochs, row["imgsz"]))
            row["plain_s"] += time.perf_counter() - start
        print({k: v for k, v in row.items()}, flush=True)
    return row


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ghostnet_050")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--sets", nargs="+", default=["scenes", "shapes"], choices=list(SETS))
    parser.add_argument("--tasks", nargs="+", default=["detect", "segment"], choices=["detect", "segment"])
    parser.add_argument("--plain-fpn", type=int, default=64, help="FPN / FCOS head width of the plain detector")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run per seed; the table shows means")
    parser.add_argument("--contenders", nargs="+", default=["ghostkit", "plain"], choices=["ghostkit", "plain"],
                        help="train only these (the plain loops do not depend on ghostkit's defaults)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows to this file")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.sets:
            root = Path(tmp) / name
            SETS[name](root)
            rows += [run_pair(root / task, Path(tmp) / f"run_{name}_{task}", name, task, args) for task in args.tasks]
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    print(f"\n{args.model}, {args.epochs} epochs, seeds {args.seeds}, {torch.get_num_threads()} torch threads")
    print("| set | task | imgsz | plain loop | per seed | s | ghostkit defaults | per seed | s |")
    print("|---|---|---:|---:|---|---:|---:|---|---:|")
    for r in rows:
        seeds = {c: " / ".join(f"{v:.3f}" for v in r[c]) for c in ("plain", "ghostkit")}
        print(f"| {r['set']} | {r['task']} ({r['metric']}) | {r['imgsz']} | {_mean(r['plain']):.3f} | {seeds['plain']} "
              f"| {r['plain_s']:.0f} | {_mean(r['ghostkit']):.3f} | {seeds['ghostkit']} | {r['ghostkit_s']:.0f} |")


if __name__ == "__main__":
    main()
