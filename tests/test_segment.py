"""Semantic segmentation: heads, loss, postprocess, readers (folders, VOC, COCO), bad input, metrics, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

import ghostkit
import ghostkit.data.segment as seg_data
from ghostkit.cli import main
from ghostkit.data.common import IMAGENET_MEAN, IMAGENET_STD
from ghostkit.data.images import SkippedFilesWarning
from ghostkit.data.segment import (
    VOC_SEGMENT_CLASSES,
    SegmentDataset,
    build_segment_data,
    read_mask,
    segment_transforms,
)
from ghostkit.engine.segment import SegmentMetrics
from ghostkit.errors import GhostkitError
from ghostkit.models import create_model
from ghostkit.tasks import build_head
from ghostkit.tasks.segment import IGNORE_INDEX, color_palette, resize_argmax


@pytest.fixture(scope="module")
def backbone():
    return create_model("ghostnet_050", features_only=True, out_indices=(1, 2, 3, 4)).eval()


# ---------------------------------------------------------------------------------------------------- heads


@pytest.mark.parametrize("kind", ["lraspp", "deeplabv3"])
@pytest.mark.parametrize("size", [(33, 47), (64, 64), (97, 61)])
def test_head_logits_at_input_size(backbone, kind: str, size: tuple[int, int]) -> None:
    head = build_head("segment", backbone.feature_info, num_classes=5, head=kind).eval()
    images = torch.randn(2, 3, *size)
    with torch.no_grad():
        out = head(backbone(images), images)
    assert out.shape == (2, 5, *size)
    assert torch.isfinite(out).all()


def test_aux_head_trains_and_backpropagates(backbone) -> None:
    head = build_head("segment", backbone.feature_info, num_classes=3, aux_loss=True).train()
    images, targets = torch.randn(2, 3, 45, 39), torch.randint(0, 3, (2, 45, 39))
    out = head(backbone(images), images)
    assert set(out) == {"out", "aux"} and out["aux"].shape == (2, 3, 45, 39)
    losses = head.loss(out, targets)
    assert losses["loss"].item() == pytest.approx(losses["ce"].item() + 0.5 * losses["aux"].item(), rel=1e-5)
    losses["loss"].backward()
    assert head.aux[-1].weight.grad is not None and head.classifier.low_classifier.weight.grad is not None
    head.eval()  # inference gives the main logits only
    assert head(backbone(images), images).shape == (2, 3, 45, 39)


def test_dilated_backbone_and_deeplab_rates() -> None:
    bb = create_model("ghostnet_050", features_only=True, out_indices=(1, 2, 3, 4), output_stride=16).eval()
    head = build_head("segment", bb.feature_info, num_classes=4, head="deeplabv3", output_stride=16).eval()
    rates = [m[0].dilation[0] for m in head.classifier[0].convs[1:4]]
    assert rates == [6, 12, 18]
    images = torch.randn(1, 3, 50, 70)
    with torch.no_grad():
        assert head(bb(images), images).shape == (1, 4, 50, 70)


def test_bad_head_config_is_a_user_error(backbone) -> None:
    with pytest.raises(GhostkitError, match="lraspp"):
        build_head("segment", backbone.feature_info, num_classes=3, head="unet")
    with pytest.raises(GhostkitError, match="num_classes"):
        build_head("segment", backbone.feature_info, num_classes=300)


# ----------------------------------------------------------------------------------------- loss, postprocess


def test_loss_ignores_255(backbone) -> None:
    head = build_head("segment", backbone.feature_info, num_classes=4)
    logits = torch.randn(2, 4, 10, 12)
    targets = torch.randint(0, 4, (2, 10, 12))
    targets[:, :3] = IGNORE_INDEX
    keep = targets != IGNORE_INDEX
    expected = F.cross_entropy(logits.permute(0, 2, 3, 1)[keep], targets[keep])
    assert head.loss(logits, targets)["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    changed = logits.clone()
    changed[:, :, :3] = 100 * torch.randn_like(changed[:, :, :3])  # ignored pixels may hold anything
    assert head.loss(changed, targets)["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    everything_ignored = torch.full_like(targets, IGNORE_INDEX)
    assert head.loss(logits, everything_ignored)["loss"].item() == 0.0


def test_postprocess_returns_masks_at_original_sizes(backbone) -> None:
    head = build_head("segment", backbone.feature_info, num_classes=3).eval()
    logits = torch.zeros(2, 3, 16, 16)
    logits[:, 2, :, 8:] = 5.0  # right half: class 2
    results = head.postprocess(logits, [(37, 53), (120, 20)])
    assert [tuple(r["mask"].shape) for r in results] == [(37, 53), (120, 20)]
    for r in results:
        mask = r["mask"]
        assert mask.dtype == torch.int64
        assert (mask[:, : mask.shape[1] // 2 - 2] == 0).all() and (mask[:, mask.shape[1] // 2 + 2:] == 2).all()


def test_resize_argmax_in_strips_matches_interpolate() -> None:
    logits = torch.randn(5, 9, 13)
    whole = resize_argmax(logits, (101, 77))
    strips = resize_argmax(logits, (101, 77), max_elems=5 * 77 * 7)  # 7 rows at a time
    assert strips.shape == (101, 77)
    assert (whole == strips).float().mean() > 0.999  # float rounding may flip exact ties


def test_format_and_render(backbone) -> None:
    head = build_head("segment", backbone.feature_info, num_classes=3)
    mask = torch.zeros(20, 30, dtype=torch.long)
    mask[:10, :15] = 2
    names = ["background", "cat", "dog"]
    res = head.format_result({"mask": mask}, names, topk=5, threshold=0.5)
    assert res["classes_present"] == ["background", "dog"]
    assert res["pixel_fraction"] == {"background": 0.75, "dog": 0.25}
    json.dumps(res)
    pictures = head.render(Image.new("RGB", (30, 20), (10, 200, 10)), {"mask": mask}, names)
    assert pictures["mask"].mode == "P" and pictures["mask"].size == (30, 20)
    assert np.array_equal(np.asarray(pictures["mask"]), mask.numpy())  # indices survive, colours in the palette
    overlay = np.asarray(pictures["overlay"])
    assert overlay.shape == (20, 30, 3)
    assert tuple(overlay[15, 20]) == (10, 200, 10)  # background untinted
    assert tuple(overlay[0, 0]) != (10, 200, 10)


# ---------------------------------------------------------------------------------------------- readers


def _save_mask(path: Path, mask: np.ndarray, palette: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(mask.astype(np.uint8))
    if palette:
        img.putpalette([v for rgb in color_palette() for v in rgb])
    img.save(path)


def _sample(seed: int, h: int = 40, w: int = 48, classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mask = np.zeros((h, w), np.uint8)
    mask[5:25, 10:30] = 1 + seed % (classes - 1)
    mask[0, :] = IGNORE_INDEX
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8), mask


def make_mask_folders(root: Path, n: dict[str, int], classes: list[str] | None = None) -> Path:
    for split, count in n.items():
        for i in range(count):
            image, mask = _sample(i)
            (root / "images" / split).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(root / "images" / split / f"im{i}.jpg")
            _save_mask(root / "masks" / split / f"im{i}.png", mask)
    if classes:
        (root / "classes.txt").write_text("\n".join(classes) + "\n")
    return root


def test_mask_folders_with_and_without_classes_txt(tmp_path: Path) -> None:
    root = make_mask_folders(tmp_path / "d", {"train": 4, "val": 2}, ["background", "road", "car"])
    d = build_segment_data(root, imgsz=32)
    assert d.class_names == ["background", "road", "car"]
    assert len(d.train) == 4 and len(d.val) == 2
    image, mask = d.val[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert mask.shape == (32, 32) and mask.dtype == torch.int64
    assert set(mask.unique().tolist()) <= {0, 1, 2, IGNORE_INDEX} and (mask == IGNORE_INDEX).any()
    (root / "classes.txt").unlink()
    assert build_segment_data(root, imgsz=32).class_names == ["class_0", "class_1", "class_2"]


def test_flat_mask_folder_is_split(tmp_path: Path) -> None:
    root = tmp_path / "flat"
    for i in range(10):
        image, mask = _sample(i)
        (root / "images").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / "images" / f"{i}.png")
        _save_mask(root / "masks" / f"{i}.png", mask)
    d = build_segment_data(root, imgsz=32)
    assert len(d.train) == 8 and len(d.val) == 2
    train_names = {p.name for p, _ in d.train.items}
    assert not train_names & {p.name for p, _ in d.val.items}


def test_pascal_voc_layout(tmp_path: Path) -> None:
    voc = tmp_path / "VOCdevkit" / "VOC2012"
    for split, stems in {"train": ["2007_000001", "2007_000002"], "val": ["2007_000003"]}.items():
        (voc / "ImageSets" / "Segmentation").mkdir(parents=True, exist_ok=True)
        (voc / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(stems) + "\n")
        for k, stem in enumerate(stems):
            image, mask = _sample(k)
            mask[5:25, 10:30] = 15  # person
            (voc / "JPEGImages").mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(voc / "JPEGImages" / f"{stem}.jpg")
            _save_mask(voc / "SegmentationClass" / f"{stem}.png", mask, palette=True)
    d = build_segment_data(tmp_path, imgsz=40)  # finds VOCdevkit/VOC2012 below the given folder
    assert d.class_names == list(VOC_SEGMENT_CLASSES) and len(d.class_names) == 21
    assert len(d.train) == 2 and len(d.val) == 1
    assert read_mask(voc / "SegmentationClass" / "2007_000003.png")[10, 20] == 15  # index, not the palette colour
    _, mask = d.val[0]
    assert set(mask.unique().tolist()) == {0, 15, IGNORE_INDEX}


def _coco_json(path: Path, images: list[dict], annotations: list[dict]) -> None:
    categories = [{"id": 18, "name": "dog"}, {"id": 3, "name": "car"}]  # not sorted: classes follow sorted ids
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))


def make_coco(root: Path) -> Path:
    from pycocotools import mask as mask_utils

    for split in ("train", "val"):
        (root / "images").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((40, 60, 3), 90, np.uint8)).save(root / "images" / f"{split}.jpg")
        block = np.zeros((40, 60), np.uint8, order="F")
        block[30:38, 40:58] = 1
        rle = mask_utils.encode(np.asfortranarray(block))
        rle["counts"] = rle["counts"].decode()
        crowd = np.zeros((40, 60), np.uint8)
        crowd[0:5, 0:5] = 1
        uncompressed = {"size": [40, 60], "counts": _uncompressed_counts(crowd)}
        anns = [
            {"id": 1, "image_id": 7, "category_id": 3, "iscrowd": 0,
             "segmentation": [[5, 10, 25, 10, 25, 20, 5, 20]]},  # polygon: car (index 1)
            {"id": 2, "image_id": 7, "category_id": 18, "iscrowd": 0, "segmentation": rle},  # RLE: dog (index 2)
            {"id": 3, "image_id": 7, "category_id": 18, "iscrowd": 1, "segmentation": uncompressed},
        ]
        _coco_json(root / "annotations" / f"instances_{split}.json",
                   [{"id": 7, "file_name": f"{split}.jpg", "height": 40, "width": 60}], anns)
    return root


def _uncompressed_counts(mask: np.ndarray) -> list[int]:
    flat = mask.flatten(order="F")
    counts, current, run = [], 0, 0
    for v in flat:
        if v != current:
            counts.append(run)
            current, run = v, 0
        run += 1
    return [*counts, run]


def test_coco_polygons_and_rles_are_rasterised(tmp_path: Path) -> None:
    root = make_coco(tmp_path / "coco")
    d = build_segment_data(root, imgsz=32)
    assert d.class_names == ["background", "car", "dog"]
    mask = d.train.items[0][1].render()
    assert mask.shape == (40, 60)
    assert mask[15, 15] == 1  # inside the polygon
    assert mask[34, 50] == 2  # inside the RLE block
    assert mask[2, 2] == IGNORE_INDEX  # crowd region
    assert mask[35, 10] == 0
    _, m = d.val[0]
    assert set(m.unique().tolist()) == {0, 1, 2, IGNORE_INDEX}


def test_shapes_builtin() -> None:
    d = build_segment_data("shapes", imgsz=32)
    assert d.class_names == ["background", "circle", "square", "triangle"]
    image, mask = d.train[0]
    assert image.shape == (3, 32, 32) and mask.shape == (32, 32) and mask.max() <= 3
    # new images on every read: a fixed image would give at most two masks (flipped or not)
    assert len({d.train[0][1].numpy().tobytes() for _ in range(4)}) > 2
    torch.testing.assert_close(d.val[0][0], d.val[0][0])  # validation is fixed
    assert len(d.train) == 2000 and len(d.val) == 200


def test_train_transform_keeps_image_and_mask_aligned() -> None:
    mask = np.zeros((64, 80), np.uint8)
    mask[10:40, 20:70] = 1
    image = np.where(mask[..., None] == 1, 230, 20).astype(np.uint8).repeat(3, axis=2)
    ds = SegmentDataset([(image, mask)] * 8, segment_transforms(48, train=True))
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    torch.manual_seed(0)
    for i in range(8):
        x, m = ds[i]
        grey = (x * std + mean).mean(0)
        if m.min() == m.max():
            continue
        threshold = (grey[m == 1].mean() + grey[m == 0].mean()) / 2
        agree = ((grey > threshold) == (m == 1)).float().mean()
        assert agree > 0.95  # only interpolated edge pixels may disagree


# ------------------------------------------------------------------------------------------------ bad input


def test_bad_masks_name_the_file(tmp_path: Path) -> None:
    root = make_mask_folders(tmp_path / "d", {"train": 2, "val": 1}, ["background", "a", "b"])
    bad = root / "masks" / "train" / "im1.png"

    _save_mask(bad, np.zeros((10, 10), np.uint8))  # other size than its image
    with pytest.raises(GhostkitError, match=r"im1\.png.*10 x 10"):
        build_segment_data(root, imgsz=32)

    mask = _sample(1)[1]
    mask[3, 3] = 7  # classes.txt has 3 classes
    _save_mask(bad, mask)
    with pytest.raises(GhostkitError, match=r"im1\.png: mask value 7"):
        build_segment_data(root, imgsz=32)

    Image.fromarray(np.zeros((40, 48, 3), np.uint8)).save(bad)  # RGB colour mask
    with pytest.raises(GhostkitError, match=r"im1\.png: RGB mask"):
        build_segment_data(root, imgsz=32)

    bad.unlink()
    with pytest.raises(GhostkitError, match=r"im1\.jpg: no mask .*im1\.png"):
        build_segment_data(root, imgsz=32)


def test_empty_or_missing_folders(tmp_path: Path) -> None:
    (tmp_path / "e" / "images" / "train").mkdir(parents=True)
    (tmp_path / "e" / "masks" / "train").mkdir(parents=True)
    with pytest.raises(GhostkitError, match=r"train: no images"):
        build_segment_data(tmp_path / "e", imgsz=32)
    with pytest.raises(GhostkitError, match="no such data folder"):
        build_segment_data(tmp_path / "nothing", imgsz=32)
    (tmp_path / "f").mkdir()
    with pytest.raises(GhostkitError, match="no images/ folder"):
        build_segment_data(tmp_path / "f", imgsz=32)


def test_voc_mask_value_out_of_range(tmp_path: Path) -> None:
    voc = tmp_path / "VOC2012"
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    (voc / "JPEGImages").mkdir()
    image, mask = _sample(0)
    mask[1, 1] = 40
    Image.fromarray(image).save(voc / "JPEGImages" / "a.jpg")
    _save_mask(voc / "SegmentationClass" / "a.png", mask, palette=True)
    for split in ("train", "val"):
        (voc / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("a\n")
    with pytest.raises(GhostkitError, match=r"a\.png: mask value 40 .*0\.\.20"):
        build_segment_data(voc, imgsz=32)


def test_bad_coco_files(tmp_path: Path) -> None:
    root = make_coco(tmp_path / "coco")
    ann = root / "annotations" / "instances_val.json"
    ann.write_text('{"images": [\n  {"id": 1,,}\n]}')
    with pytest.raises(GhostkitError, match=r"instances_val\.json:2: malformed JSON"):
        build_segment_data(root, imgsz=32)
    _coco_json(ann, [{"id": 7, "file_name": "val.jpg", "height": 40, "width": 60}],
               [{"id": 9, "image_id": 7, "category_id": 99, "segmentation": [[1, 1, 5, 1, 5, 5]]}])
    with pytest.raises(GhostkitError, match=r"instances_val\.json: annotation 9 has category id 99"):
        build_segment_data(root, imgsz=32)
    _coco_json(ann, [{"id": 7, "file_name": "val.jpg", "height": 40, "width": 60}],
               [{"id": 9, "image_id": 7, "category_id": 3, "segmentation": [[1, 1, 5]]}])
    with pytest.raises(GhostkitError, match="annotation 9: a polygon"):
        build_segment_data(root, imgsz=32)
    _coco_json(ann, [{"id": 7, "file_name": "val.jpg", "height": 41, "width": 60}], [])
    with pytest.raises(GhostkitError, match=r"val\.jpg is 60 x 40, the file says 60 x 41"):
        build_segment_data(root, imgsz=32)


def test_unreadable_images_and_masks_are_skipped(tmp_path: Path) -> None:
    root = make_mask_folders(tmp_path / "d", {"train": 4, "val": 2})
    (root / "images" / "train" / "im0.jpg").write_bytes(b"not an image")
    (root / "masks" / "train" / "im1.png").write_bytes(b"\x89PNG broken")
    with pytest.warns(SkippedFilesWarning) as record:
        d = build_segment_data(root, imgsz=32)
    assert len(d.train) == 2
    text = " ".join(str(w.message) for w in record)
    assert "im0.jpg" in text and "im1.png" in text


def test_cli_reports_bad_data_in_one_line(tmp_path: Path, capsys) -> None:
    root = make_mask_folders(tmp_path / "d", {"train": 2, "val": 1})
    Image.fromarray(np.zeros((40, 48, 3), np.uint8)).save(root / "masks" / "val" / "im0.png")
    code = main(["train", "--task", "segment", "--data", str(root), "--out", str(tmp_path / "run"), "--workers", "0"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and "im0.png: RGB mask" in err and "Traceback" not in err
    assert main(["train", "--task", "segment", "--head", "unet", "--data", "shapes", "--out", str(tmp_path)]) == 2


# -------------------------------------------------------------------------------------------------- metrics


def test_metrics_iou_accuracy_and_ignore() -> None:
    m = SegmentMetrics(["background", "a", "b", "never"])
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    target[0, :2] = 1
    target[0, 3, 3] = IGNORE_INDEX
    logits = F.one_hot(target.clamp(max=2), 4).permute(0, 3, 1, 2).float()
    logits[0, :, 3, 3] = torch.tensor([0.0, 0.0, 9.0, 0.0])  # wrong, but on an ignored pixel
    m.update(logits, target)
    v = m.compute()
    assert v["miou"] == pytest.approx(1.0) and v["pixel_acc"] == pytest.approx(1.0)
    assert set(v["per_class"]) == {"background", "a"}  # classes neither labelled nor predicted have no IoU
    m.reset()
    logits[0, :, 0, 0] = torch.tensor([9.0, 0.0, 0.0, 0.0])  # one of 8 "a" pixels predicted background
    m.update(logits, target)
    v = m.compute()
    assert v["per_class"]["a"]["iou"] == pytest.approx(7 / 8)
    assert v["per_class"]["background"]["iou"] == pytest.approx(7 / 8)
    assert v["pixel_acc"] == pytest.approx(14 / 15)
    assert len(m.samples) == 1


# ----------------------------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_train_val_predict_end_to_end(tmp_path: Path, monkeypatch, capsys) -> None:
    # a smaller built-in set keeps this test short; everything else is the default pipeline
    monkeypatch.setattr(seg_data, "_SHAPES_TRAIN", 48)
    monkeypatch.setattr(seg_data, "_SHAPES_VAL", 16)
    out = tmp_path / "run"
    assert main(["train", "--task", "segment", "--data", "shapes", "--epochs", "1", "--imgsz", "64", "--workers",
                 "0", "--batch", "16", "--out", str(out)]) == 0
    for name in ("best.ckpt", "last.ckpt", "metrics.json", "metrics.csv", "curves.png", "val_overlays.png",
                 "confusion_matrix.png", "config.yaml"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["miou"] <= 1.0 and 0.0 <= metrics["pixel_acc"] <= 1.0
    assert set(metrics["per_class"]) <= {"background", "circle", "square", "triangle"}
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["lr"] == 4e-3  # the task's default

    assert main(["val", "--weights", str(out / "best.ckpt"), "--data", "shapes", "--workers", "0",
                 "--out", str(tmp_path / "val")]) == 0
    validated = json.loads((tmp_path / "val" / "metrics.json").read_text())
    assert validated["miou"] == pytest.approx(metrics["miou"], abs=1e-6)

    src = tmp_path / "src"
    src.mkdir()
    Image.open(sorted((out / "samples").glob("*.png"))[0]).resize((75, 51)).save(src / "odd.png")
    capsys.readouterr()
    assert main(["predict", "--weights", str(out / "best.ckpt"), "--source", str(src), "--json",
                 "--save", str(tmp_path / "pred")]) == 0
    result = json.loads(next(x for x in capsys.readouterr().out.splitlines() if x.startswith("{")))
    assert result["size"] == [51, 75]
    assert sum(result["pixel_fraction"].values()) == pytest.approx(1.0, abs=1e-4)
    mask, overlay = Image.open(tmp_path / "pred" / "odd_mask.png"), Image.open(tmp_path / "pred" / "odd_overlay.png")
    assert mask.mode == "P" and mask.size == (75, 51) and overlay.size == (75, 51)
    assert np.asarray(mask).max() <= 3

    predictor = ghostkit.load_model(out / "best.ckpt")
    raw = predictor.predict(np.zeros((33, 130, 3), np.uint8), raw=True)[0]["raw"]["segment"]
    assert raw["mask"].shape == (33, 130)
