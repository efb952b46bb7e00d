"""Detection data: COCO / YOLO / VOC / WIDER FACE readers, bad input, transforms, collate, built-in shapes."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ghostkit.cli import main
from ghostkit.data.detect import (
    DetectionDataset,
    build_detect_data,
    collate_detect,
    detect_format,
    detect_transforms,
    task_data,
)
from ghostkit.data.formats.boxes import BoxesFixedWarning
from ghostkit.data.formats.coco import read_coco_boxes as read_coco
from ghostkit.data.formats.voc import VOC_CLASSES, read_voc, voc_class_names
from ghostkit.data.formats.widerface import read_widerface
from ghostkit.data.formats.yolo import read_yolo
from ghostkit.data.images import SkippedFilesWarning
from ghostkit.errors import GhostkitError


def _image(path: Path, size: tuple[int, int] = (40, 30)) -> Path:
    """An RGB image of ``size`` = (width, height)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(path)))
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


# -- COCO ----------------------------------------------------------------------------------------------------------
def _coco(root: Path, split: str = "train", annotations: list | None = None, categories: list | None = None,
          n_images: int = 2) -> Path:
    images = []
    for i in range(n_images):
        _image(root / "images" / f"{split}_{i}.png")
        images.append({"id": 10 + i, "file_name": f"{split}_{i}.png", "width": 40, "height": 30})
    if annotations is None:
        annotations = [
            {"id": 1, "image_id": 10, "category_id": 7, "bbox": [2, 3, 10, 5]},
            {"id": 2, "image_id": 10, "category_id": 3, "bbox": [30, 20, 20, 20]},  # reaches outside: clipped
            {"id": 3, "image_id": 11, "category_id": 3, "bbox": [5, 5, 0.2, 8]},  # degenerate: dropped
            {"id": 4, "image_id": 11, "category_id": 7, "bbox": [0, 0, 40, 30], "iscrowd": 1},  # crowd: left out
        ]
    categories = categories or [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}]
    path = root / "annotations" / f"instances_{split}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}, indent=1))
    return path


def test_coco_reader_maps_sorted_category_ids_and_cleans_boxes(tmp_path):
    _coco(tmp_path)
    with pytest.warns(BoxesFixedWarning, match="clipped 1 box.*dropped 1 degenerate"):
        items, cats = read_coco(tmp_path, "train")
    assert cats == [(3, "cat"), (7, "dog")]  # sorted by id → labels 0, 1
    (p0, a0), (p1, a1) = items
    assert p0.name == "train_0.png"
    np.testing.assert_allclose(a0["boxes"], [[2, 3, 12, 8], [30, 20, 40, 30]])
    assert a0["labels"].tolist() == [1, 0]
    assert a1["boxes"].shape == (0, 4) and a1["labels"].dtype == np.int64


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda p: p.write_text('{"images": [],\n "annotations": [,]}'), r"instances_train.json:2: malformed JSON"),
    (lambda p: _coco(p.parent.parent, annotations=[{"id": 5, "image_id": 10, "category_id": 99,
                                                    "bbox": [0, 0, 4, 4]}]), "annotation 5 has category id 99"),
    (lambda p: _coco(p.parent.parent, annotations=[{"id": 6, "image_id": 77, "category_id": 3,
                                                    "bbox": [0, 0, 4, 4]}]), "annotation 6 names image id 77"),
    (lambda p: _coco(p.parent.parent, annotations=[{"id": 8, "image_id": 10, "category_id": 3, "bbox": [0, 0]}]),
     r"annotation 8 needs 'bbox'"),
    (lambda p: p.write_text('{"images": []}'), "not a COCO instances file"),
])
def test_coco_bad_input_names_the_file(tmp_path, mutate, message):
    path = _coco(tmp_path)
    mutate(path)
    with pytest.raises(GhostkitError, match=message) as info:
        read_coco(tmp_path, "train")
    assert "instances_train.json" in str(info.value)


def test_coco_missing_image_file_is_an_error(tmp_path):
    _coco(tmp_path)
    (tmp_path / "images" / "train_1.png").unlink()
    with pytest.raises(GhostkitError, match="train_1.png .*not found"):
        read_coco(tmp_path, "train")


def test_coco_val_uses_training_categories(tmp_path):
    _coco(tmp_path)
    _coco(tmp_path, "val", annotations=[{"id": 1, "image_id": 10, "category_id": 7, "bbox": [1, 1, 5, 5]}],
          categories=[{"id": 7, "name": "dog"}])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BoxesFixedWarning)
        data = build_detect_data(tmp_path, imgsz=32)
    assert data.class_names == ["cat", "dog"]
    assert data.val.items[0][1]["labels"].tolist() == [1]  # "dog" keeps its training label


# -- YOLO ----------------------------------------------------------------------------------------------------------
def _yolo(root: Path, names: object = ("a", "b")) -> None:
    (root / "data.yaml").write_text(json.dumps({"names": names if isinstance(names, dict) else list(names)}))
    for split in ("train", "val"):
        _image(root / "images" / split / "x.png", (40, 20))
        _image(root / "images" / split / "empty.png", (40, 20))
        lbl = root / "labels" / split / "x.txt"
        lbl.parent.mkdir(parents=True, exist_ok=True)
        lbl.write_text("1 0.5 0.5 0.5 0.5\n\n0 0.95 0.5 0.2 0.2\n")


def test_yolo_reader_converts_normalised_boxes(tmp_path):
    _yolo(tmp_path)
    assert detect_format(tmp_path) == "yolo"
    with pytest.warns(BoxesFixedWarning, match="clipped 1 box"):
        items, names = read_yolo(tmp_path, "train")
    assert names == ["a", "b"]
    by_name = {p.name: a for p, a in items}
    np.testing.assert_allclose(by_name["x.png"]["boxes"], [[10, 5, 30, 15], [34, 8, 40, 12]], atol=1e-4)
    assert by_name["x.png"]["labels"].tolist() == [1, 0]
    assert len(by_name["empty.png"]["labels"]) == 0  # no label file: a negative image


def test_yolo_names_dict(tmp_path):
    _yolo(tmp_path, names={0: "zero", 1: "one"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BoxesFixedWarning)
        assert read_yolo(tmp_path, "train")[1] == ["zero", "one"]


@pytest.mark.parametrize(("line", "message"), [
    ("0 0.5 0.5 0.2", r"x.txt:2: expected 5 fields"),
    ("0 0.5 0.5 0.2 0.2 0.3", r"x.txt:2: expected 5 fields"),
    ("5 0.5 0.5 0.2 0.2", r"x.txt:2: class id 5 is out of range 0..1"),
    ("a 0.5 0.5 0.2 0.2", r"x.txt:2: expected an integer class"),
])
def test_yolo_bad_lines_name_file_and_line(tmp_path, line, message):
    _yolo(tmp_path)
    (tmp_path / "labels" / "train" / "x.txt").write_text(f"0 0.5 0.5 0.1 0.1\n{line}\n")
    with pytest.raises(GhostkitError, match=message):
        read_yolo(tmp_path, "train")


def test_yolo_without_names_is_an_error(tmp_path):
    _yolo(tmp_path)
    (tmp_path / "data.yaml").write_text("nc: 2\n")
    with pytest.raises(GhostkitError, match="data.yaml: 'names' must be"):
        read_yolo(tmp_path, "train")


# -- Pascal VOC ----------------------------------------------------------------------------------------------------
def _voc_xml(name: str, objects: list[tuple[str, tuple, int]]) -> str:
    objs = "".join(f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
                   f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>" for n, b, d in objects)
    return (f"<annotation><filename>{name}.jpg</filename><size><width>40</width><height>30</height><depth>3"
            f"</depth></size>{objs}</annotation>")


def _voc(root: Path, classes: tuple[str, str] = ("dog", "cat")) -> None:
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    for i in range(4):
        _image(root / "JPEGImages" / f"{i:04d}.jpg")
        objs = [(classes[i % 2], (1, 2, 10, 12), 0), (classes[0], (5, 5, 20, 20), 1)]
        (root / "Annotations" / f"{i:04d}.xml").write_text(_voc_xml(f"{i:04d}", objs))
    (root / "ImageSets" / "Main" / "train.txt").write_text("0000\n0001\n0002\n")
    (root / "ImageSets" / "Main" / "val.txt").write_text("0003\n")


def test_voc_reader(tmp_path):
    _voc(tmp_path)
    assert detect_format(tmp_path) == "voc"
    names = voc_class_names(tmp_path)
    assert names == list(VOC_CLASSES)  # every name is a VOC class: VOC's own order
    items = read_voc(tmp_path, ["0000", "0001"], names)
    np.testing.assert_allclose(items[0][1]["boxes"], [[0, 1, 10, 12]])  # 1-based corners → 0-based edges
    assert items[0][1]["labels"].tolist() == [VOC_CLASSES.index("dog")]  # the difficult object is left out
    assert items[1][1]["labels"].tolist() == [VOC_CLASSES.index("cat")]
    data = build_detect_data(tmp_path, imgsz=32)
    assert len(data.train) == 3 and len(data.val) == 1


def test_voc_custom_classes_sorted_and_bad_xml(tmp_path):
    _voc(tmp_path, classes=("zebra", "ant"))
    assert voc_class_names(tmp_path) == ["ant", "zebra"]
    with pytest.raises(GhostkitError, match="unknown class 'zebra'"):
        read_voc(tmp_path, ["0000"], ["ant"])
    (tmp_path / "Annotations" / "0001.xml").write_text("<annotation>\n<object>\n</annotation>")
    with pytest.raises(GhostkitError, match=r"0001.xml:3: malformed XML"):
        read_voc(tmp_path, ["0001"], ["ant", "zebra"])


# -- WIDER FACE ----------------------------------------------------------------------------------------------------
_WIDER = """0--Parade/a.jpg
2
1 2 10 8 0 0 0 0 0 0
5 5 0 4 0 0 0 0 0 0
0--Parade/b.jpg
0
0 0 0 0 0 0 0 0 0 0
1--Crowd/c.jpg
2
3 3 6 6 0 0 0 1 0 0
30 20 30 30 0 0 0 0 0 0
"""


def _wider(root: Path, text: str = _WIDER) -> None:
    for split in ("train", "val"):
        for name in ("0--Parade/a.jpg", "0--Parade/b.jpg", "1--Crowd/c.jpg"):
            _image(root / f"WIDER_{split}" / "images" / name)
        split_dir = root / "wider_face_split"
        split_dir.mkdir(exist_ok=True)
        (split_dir / f"wider_face_{split}_bbx_gt.txt").write_text(text)


def test_widerface_reader_skips_invalid_faces_with_a_count(tmp_path):
    _wider(tmp_path)
    assert detect_format(tmp_path) == "widerface"
    with pytest.warns(BoxesFixedWarning) as record:
        items = read_widerface(tmp_path, "train")
    text = " ".join(str(w.message) for w in record)
    assert "skipped 2 invalid or zero-size face box(es)" in text and "clipped 1 box" in text
    assert [p.name for p, _ in items] == ["a.jpg", "b.jpg", "c.jpg"]
    np.testing.assert_allclose(items[0][1]["boxes"], [[1, 2, 11, 10]])
    assert len(items[1][1]["boxes"]) == 0
    np.testing.assert_allclose(items[2][1]["boxes"], [[30, 20, 40, 30]])
    assert build_detect_data(tmp_path, imgsz=32).class_names == ["face"]


def test_widerface_bad_count_names_the_line(tmp_path):
    _wider(tmp_path, _WIDER.replace("0--Parade/b.jpg\n0", "0--Parade/b.jpg\nmany"))
    with pytest.raises(GhostkitError, match=r"wider_face_train_bbx_gt.txt:6: expected the face count"):
        read_widerface(tmp_path, "train")


# -- datasets, transforms, built-in data ---------------------------------------------------------------------------
def test_unreadable_images_are_skipped_and_missing_val_is_split(tmp_path):
    _yolo(tmp_path)
    for i in range(6):
        _image(tmp_path / "images" / "train" / f"more{i}.png")
    (tmp_path / "images" / "train" / "broken.png").write_bytes(b"not a png")
    import shutil

    shutil.rmtree(tmp_path / "images" / "val")
    with pytest.warns(SkippedFilesWarning, match="skipped 1 unreadable"):
        data = build_detect_data(tmp_path, imgsz=32, val_fraction=0.25)
    names = [p.name for p, _ in data.train.items + data.val.items]
    assert "broken.png" not in names and len(names) == 8 and len(data.val) == 2


def test_in_memory_images_give_what_the_files_give(tmp_path):
    _yolo(tmp_path)
    for i in range(3):
        _image(tmp_path / "images" / "train" / f"more{i}.png", (36, 24))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BoxesFixedWarning)
        files = task_data("detect", tmp_path, 32, cache_mb=0)
        memory = task_data("detect", tmp_path, 32, cache_mb=1)
        too_small = task_data("detect", tmp_path, 32, cache_mb=1e-4)  # 105 bytes: less than one decoded image
    assert not files.in_memory and memory.in_memory and not too_small.in_memory
    assert memory.train.images[0].dtype == torch.uint8 and len(memory.train.images) == len(memory.train) == 5
    for split in ("train", "val"):
        a, b = getattr(files, split), getattr(memory, split)
        assert [p for p, _ in a.items] == [p for p, _ in b.items]
        for i in range(len(a)):
            torch.manual_seed(i)  # the same random flips and colour draws for both
            xa, ta = a[i]
            torch.manual_seed(i)
            xb, tb = b[i]
            torch.testing.assert_close(xa, xb)
            torch.testing.assert_close(ta["boxes"], tb["boxes"])


def test_val_transform_scales_boxes_to_imgsz():
    image = np.zeros((50, 100, 3), np.uint8)
    item = (image, {"boxes": np.array([[10, 5, 60, 45]], np.float32), "labels": np.array([2])})
    ds = DetectionDataset([item], detect_transforms(64, train=False))
    x, target = ds[0]
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32
    torch.testing.assert_close(target["boxes"], torch.tensor([[6.4, 6.4, 38.4, 57.6]]))
    assert target["labels"].tolist() == [2] and int(target["index"]) == 0


def test_train_transform_keeps_boxes_valid_and_negatives():
    rng = np.random.default_rng(0)
    items = [(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8),
              {"boxes": np.array([[4, 4, 30, 40], [40, 10, 63, 30]], np.float32)[:k], "labels": np.arange(k)})
             for k in (0, 1, 2)]
    ds = DetectionDataset(items, detect_transforms(32, train=True, zoom_out=1.0, iou_crop=1.0, photometric=1.0))
    torch.manual_seed(0)
    for _ in range(10):
        for i in range(3):
            x, t = ds[i]
            b = t["boxes"]
            assert x.shape == (3, 32, 32) and b.shape == (len(t["labels"]), 4)
            assert (b[:, 2:] - b[:, :2] >= 1).all() and (b >= 0).all() and (b <= 32).all()
            assert set(t["labels"].tolist()) <= set(range(i))
    images, targets = collate_detect([ds[0], ds[2]])
    assert images.shape == (2, 3, 32, 32) and len(targets["detect"]) == 2


def test_builtin_shapes():
    data = build_detect_data("shapes", imgsz=32)
    assert data.class_names == ["circle", "square", "triangle"] and data.imgsz == 32
    assert len(data.train) == 1250 and len(data.val) == 200
    x, t = data.val[0]
    assert x.shape == (3, 32, 32) and abs(float(x.mean())) < 3
    torch.testing.assert_close(data.val[0][0], x)  # validation is fixed
    # training images are new on every read: a fixed image would give at most two box sets (flipped or not)
    assert len({data.train[0][1]["boxes"].numpy().tobytes() for _ in range(4)}) > 2
    assert len(t["boxes"]) >= 1 and t["boxes"].max() <= 32


def test_unknown_folder_layout_is_an_error(tmp_path):
    (tmp_path / "stuff").mkdir()
    with pytest.raises(GhostkitError, match="no detection data found"):
        build_detect_data(tmp_path)
    with pytest.raises(GhostkitError, match="no such data folder"):
        build_detect_data(tmp_path / "missing")


def test_cli_bad_label_line_exits_2(tmp_path, capsys):
    _yolo(tmp_path)
    (tmp_path / "labels" / "train" / "x.txt").write_text("0 0.5 0.5\n")
    code = main(["train", "--task", "detect", "--data", str(tmp_path), "--epochs", "1", "--workers", "0",
                 "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2
    assert "x.txt:1: expected 5 fields" in err and "Traceback" not in err
