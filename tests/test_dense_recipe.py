"""The detection and segmentation training recipes: the rule's decisions, no name-based paths (built-in shapes and a
folder of the same images get the same recipe and transforms), overrides, the printed line, config.yaml, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torchvision.transforms import v2

import ghostkit.data.detect as det
import ghostkit.data.segment as seg
from ghostkit.cli import main
from ghostkit.data.detect import DetectStats, build_detect_data, choose_detect_recipe, detect_stats, detect_transforms
from ghostkit.data.segment import build_segment_data, choose_segment_recipe, segment_transforms
from ghostkit.data.synthetic import SHAPE_CLASSES, SHAPES_IMGSZ, ShapeStream
from ghostkit.data.tasks import build_task_data
from ghostkit.errors import GhostkitError

N = 16  # built-in training images per epoch in these tests (monkeypatched): the rule reads the first N


def _kinds(transform: v2.Compose) -> list[str]:
    out = []
    for t in transform.transforms:
        out += [type(x).__name__ for x in t.transforms] if isinstance(t, v2.RandomApply) else [type(t).__name__]
    return out


# -- the rule --------------------------------------------------------------------------------------------------------
def test_detect_rule_light_short_medium_30_epochs_standard_long_or_pretrained():
    big = DetectStats(size=128, object_size=0.25, images=500)
    short = choose_detect_recipe(big, epochs=29)
    assert (short.name, short.crop_scale, short.zoom_out, short.flip, short.imgsz, short.photometric) == (
        "light", 1.0, False, True, 128, 0.0)
    medium = choose_detect_recipe(big, epochs=30)
    assert (medium.name, medium.crop_scale, medium.zoom_out, medium.photometric) == ("medium", 1.0, False,
                                                                                     det.PHOTOMETRIC)
    long = choose_detect_recipe(big, epochs=50)
    assert (long.name, long.crop_scale, long.zoom_out, long.flip) == ("standard", det.STANDARD_CROP, True, True)
    assert choose_detect_recipe(big, epochs=10, pretrained=True).name == "standard"
    # small objects: crops but no zoom-out; small images: no crops whatever the run, colour from 30 epochs on
    small_objects = choose_detect_recipe(DetectStats(size=128, object_size=0.1, images=500), epochs=80)
    assert (small_objects.crop_scale, small_objects.zoom_out) == (det.STANDARD_CROP, False)
    tiny = DetectStats(size=40, object_size=0.3, images=500)
    assert choose_detect_recipe(tiny, 10).name == "light"
    tiny_long = choose_detect_recipe(tiny, 80, True)
    assert (tiny_long.name, tiny_long.crop_scale) == ("medium", 1.0)
    assert "from scratch" in short.describe() and "crops none" in short.describe()
    assert "recipe: medium augmentation" in medium.describe() and "colour distortion 0.5" in medium.describe()
    # the transforms follow the recipe
    assert {"RandomIoUCrop", "RandomZoomOut"} <= set(_kinds(detect_transforms(128, True, **long.transform_options())))
    assert "RandomPhotometricDistort" in _kinds(detect_transforms(128, True, **long.transform_options()))
    light_ops = _kinds(detect_transforms(128, True, **short.transform_options()))
    # flips in every recipe, nothing else in the light one
    assert light_ops == ["ToImage", "RandomHorizontalFlip", "Resize", "SanitizeBoundingBoxes", "ToDtype", "Normalize"]
    medium_ops = _kinds(detect_transforms(128, True, **medium.transform_options()))
    assert medium_ops == ["ToImage", "RandomPhotometricDistort", "RandomHorizontalFlip", "Resize",
                          "SanitizeBoundingBoxes", "ToDtype", "Normalize"]


def test_detect_rule_overrides_and_bad_values():
    stats = DetectStats(size=128, object_size=0.25, images=500)
    r = choose_detect_recipe(stats, epochs=10, imgsz=96, crop_scale=0.5, flip=False)  # --no-flip: mirror-sensitive
    assert (r.imgsz, r.crop_scale, r.zoom_out, r.flip) == (96, 0.5, True, False)
    assert r.overridden == ("imgsz", "crop_scale", "flip") and "set by option: imgsz, crop_scale, flip" in r.describe()
    assert "RandomHorizontalFlip" not in _kinds(detect_transforms(96, True, **r.transform_options()))
    assert "flips off" in r.describe() and "flips on" in choose_detect_recipe(stats, epochs=10).describe()
    off = choose_detect_recipe(stats, epochs=100, crop_scale=1.0)  # 1: no crops and no zoom-out
    assert (off.name, off.crop_scale, off.zoom_out) == ("standard", 1.0, False)
    for bad in (0.0, 1.5):
        with pytest.raises(GhostkitError, match="--crop-scale must be in"):
            choose_detect_recipe(stats, epochs=10, crop_scale=bad)
    with pytest.raises(GhostkitError, match="--epochs"):
        choose_detect_recipe(stats, epochs=0)
    with pytest.raises(GhostkitError, match="hflip must be a probability"):
        detect_transforms(64, True, hflip=2.0)
    with pytest.raises(GhostkitError, match="empty"):
        detect_stats([])


def test_detect_stats_reads_object_size_relative_to_the_image():
    image = np.zeros((100, 200, 3), np.uint8)  # shorter side 100
    items = [(image, {"boxes": np.array([[0, 0, 20, 20], [0, 0, 40, 40]], np.float32), "labels": np.arange(2)})] * 3
    s = detect_stats(items)
    assert (s.size, s.images) == (100, 3) and s.object_size == pytest.approx(0.3)
    assert detect_stats([(image, {"boxes": np.zeros((0, 4)), "labels": np.zeros(0)})]).object_size == 0.0


def test_segment_rule_and_overrides():
    short = choose_segment_recipe(128, 500, epochs=30)
    assert (short.name, short.crop_scale, short.flip, short.imgsz) == ("light", 1.0, False, 128)
    long = choose_segment_recipe(128, 500, epochs=60)
    assert (long.name, long.crop_scale) == ("standard", seg.STANDARD_CROP)
    assert choose_segment_recipe(128, 500, epochs=5, pretrained=True).name == "standard"
    assert choose_segment_recipe(48, 500, epochs=100, pretrained=True).name == "light"
    assert (long.jitter, short.jitter) == (True, False)
    assert {"RandomResizedCrop", "ColorJitter"} <= set(_kinds(segment_transforms(64, True, crop_scale=long.crop_scale,
                                                                                 jitter=long.jitter)))
    light_ops = _kinds(segment_transforms(64, True, crop_scale=short.crop_scale, jitter=short.jitter))
    assert light_ops == ["Resize", "ToDtype", "Normalize"]  # no augmentation
    r = choose_segment_recipe(128, 500, epochs=5, crop_scale=0.5, flip=True, imgsz=64)
    assert (r.crop_scale, r.flip, r.imgsz, r.overridden) == (0.5, True, 64, ("imgsz", "crop_scale", "flip"))
    with pytest.raises(GhostkitError, match="--crop-scale must be in"):
        choose_segment_recipe(128, 500, epochs=5, crop_scale=0.0)
    with pytest.raises(GhostkitError, match="--crop-scale must be in"):
        segment_transforms(64, True, crop_scale=2.0)


# -- built-in data takes no path of its own ------------------------------------------------------------------------
def _shape_samples(monkeypatch, module, attr: str) -> list:
    """The first N images the built-in training stream gives after seeding torch with 0 (what the rule reads)."""
    monkeypatch.setattr(module, attr, N)
    torch.manual_seed(0)
    stream = ShapeStream(N, SHAPES_IMGSZ, lambda s: s)
    return [stream[i] for i in range(N)]


def test_detect_shapes_and_the_same_images_in_a_folder_get_the_same_recipe(tmp_path, monkeypatch):
    samples = _shape_samples(monkeypatch, det, "SHAPES_TRAIN")
    root = tmp_path / "coco"
    for split, part in (("train", samples), ("val", samples[:2])):
        (root / "images").mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for i, s in enumerate(part):
            Image.fromarray(s.image).save(root / "images" / f"{split}{i}.png")
            images.append({"id": i, "file_name": f"{split}{i}.png", "width": SHAPES_IMGSZ, "height": SHAPES_IMGSZ})
            annotations += [{"id": len(annotations), "image_id": i, "category_id": int(c),
                             "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]}
                            for (x1, y1, x2, y2), c in zip(s.boxes.tolist(), s.labels.tolist(), strict=True)]
        (root / "annotations").mkdir(exist_ok=True)
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps({
            "images": images, "annotations": annotations,
            "categories": [{"id": c, "name": n} for c, n in enumerate(SHAPE_CLASSES)]}))
    for epochs, pretrained in ((30, False), (60, False), (5, True)):
        folder = build_detect_data(root, epochs=epochs, pretrained=pretrained)
        torch.manual_seed(0)
        builtin = build_detect_data("shapes", epochs=epochs, pretrained=pretrained)
        assert builtin.recipe == folder.recipe and builtin.imgsz == folder.imgsz == SHAPES_IMGSZ
        assert repr(builtin.train.transform) == repr(folder.train.transform)
        assert repr(builtin.val.transform) == repr(folder.val.transform)
    assert builtin.recipe.name == "standard" and builtin.recipe.zoom_out  # shapes are large objects


def test_segment_shapes_and_the_same_images_in_a_folder_get_the_same_recipe(tmp_path, monkeypatch):
    samples = _shape_samples(monkeypatch, seg, "_SHAPES_TRAIN")
    root = tmp_path / "masks"
    for split, part in (("train", samples), ("val", samples[:2])):
        for sub in ("images", "masks"):
            (root / sub / split).mkdir(parents=True)
        for i, s in enumerate(part):
            Image.fromarray(s.image).save(root / "images" / split / f"{i}.png")
            Image.fromarray(s.mask).save(root / "masks" / split / f"{i}.png")
    (root / "classes.txt").write_text("\n".join(["background", *SHAPE_CLASSES]))
    for epochs, pretrained in ((30, False), (60, False)):
        folder = build_segment_data(root, epochs=epochs, pretrained=pretrained)
        torch.manual_seed(0)
        builtin = build_segment_data("shapes", epochs=epochs, pretrained=pretrained)
        assert builtin.recipe == folder.recipe and builtin.class_names == folder.class_names
        assert repr(builtin.train.transform) == repr(folder.train.transform)
        assert builtin.train[0][0].shape == folder.train[0][0].shape == (3, SHAPES_IMGSZ, SHAPES_IMGSZ)


# -- through the engine: printed, written into config.yaml, overridable ---------------------------------------------
def _tiny_coco(root: Path, n: int = 6) -> Path:
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    for split in ("train", "val"):
        images, annotations = [], []
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(root / "images" / f"{split}{i}.png")
            images.append({"id": i, "file_name": f"{split}{i}.png", "width": 64, "height": 64})
            annotations.append({"id": i, "image_id": i, "category_id": 1, "bbox": [8.0, 8.0, 24.0, 20.0]})
        (root / "annotations").mkdir(exist_ok=True)
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(
            {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "thing"}]}))
    return root


def test_task_data_resolves_the_recipe_and_takes_the_options(tmp_path):
    root = _tiny_coco(tmp_path / "coco")
    d = build_task_data("detect", str(root), None, epochs=100, crop_scale=0.5, flip=False, auto_augment="none")
    assert d.resolved == {"imgsz": 64, "crop_scale": 0.5, "flip": False}
    assert d.recipe.startswith("recipe: standard augmentation (") and "set by option: crop_scale, flip" in d.recipe
    d = build_task_data("detect", str(root), None, epochs=10)
    assert d.resolved == {"imgsz": 64, "crop_scale": 1.0, "flip": True} and "recipe: light" in d.recipe


@pytest.mark.slow
def test_detect_run_prints_the_recipe_and_writes_it_into_config(tmp_path, capsys):
    root = _tiny_coco(tmp_path / "coco")
    out = tmp_path / "run"
    assert main(["train", "--task", "detect", "--data", str(root), "--model", "ghostnet_050", "--epochs", "1",
                 "--workers", "0", "--batch", "4", "--no-flip", "--out", str(out)]) == 0
    line = capsys.readouterr().out
    assert "recipe: light augmentation (objects" in line and "flips off (set by option: flip)" in line
    train = yaml.safe_load((out / "config.yaml").read_text())["train"]
    assert (train["imgsz"], train["crop_scale"], train["flip"]) == (64, 1.0, False)


def test_cli_rejects_a_bad_crop_scale_in_one_line(tmp_path, capsys):
    root = _tiny_coco(tmp_path / "coco")
    code = main(["train", "--task", "segment", "--data", str(root), "--crop-scale", "1.5", "--out",
                 str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "--crop-scale must be in (0, 1]" in err
