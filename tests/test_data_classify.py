"""Classification datasets, transform presets and build_classify_data (ghostkit/data/classify.py)."""

import io
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from ghostkit.data.classify import (
    ImageListDataset,
    build_classify_data,
    classify_transforms,
    read_imagefolder,
    read_multilabel_csv,
)
from ghostkit.data.common import IMAGENET_MEAN, IMAGENET_STD, split_items
from ghostkit.data.images import SkippedFilesWarning
from ghostkit.errors import GhostkitError

CLASSES = ["cat", "dog", "fox"]


def save_image(path: Path, seed: int, size: int = 24) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size, size + 4, 3), dtype=np.uint8)).save(path)
    return path


def write_truncated(path: Path, fmt: str) -> None:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, format=fmt)
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])


def make_imagefolder(root: Path, counts: dict[str, int], seed: int = 0) -> None:
    for c, (name, n) in enumerate(counts.items()):
        for i in range(n):
            save_image(root / name / f"{i:03d}.png", seed=seed * 1000 + c * 100 + i)


def make_multilabel(root: Path, rows: dict[str, list[tuple[str, str]]]) -> None:
    """rows: split → [(filename, labels)]; images are created for every filename."""
    for split, entries in rows.items():
        lines = ["filename,labels"] + [f"{name},{labels}" for name, labels in entries]
        (root / f"{split}.csv").parent.mkdir(parents=True, exist_ok=True)
        (root / f"{split}.csv").write_text("\n".join(lines) + "\n")
        for i, (name, _) in enumerate(entries):
            if not (root / "images" / name).exists():
                save_image(root / "images" / name, seed=i)


ML_TRAIN = [("a.png", "cat dog"), ("b.png", "dog"), ("c.png", "fox cat"), ("d.png", "cat"), ("e.png", "dog fox")]
ML_VAL = [("f.png", "cat"), ("g.png", "fox dog")]


# ---------------------------------------------------------------------------------------------- transforms


def test_classify_transforms_shapes_for_pil_and_numpy():
    pil = Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8))
    arr = np.array(pil)
    for train in (True, False):
        tf = classify_transforms(40, train=train, mean=IMAGENET_MEAN, std=IMAGENET_STD)
        for x in (pil, arr):
            out = tf(x)
            assert out.shape == (3, 40, 40) and out.dtype == torch.float32


def test_classify_transforms_val_is_deterministic_and_normalised():
    tf = classify_transforms(32, train=False, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    resize = next(t for t in tf.transforms if isinstance(t, v2.Resize))
    assert resize.size == [32, 32]
    assert not any(isinstance(t, v2.CenterCrop) for t in tf.transforms)
    grey = np.full((40, 60, 3), 255, dtype=np.uint8)
    out = tf(grey)
    torch.testing.assert_close(out, torch.full((3, 32, 32), 2.0))  # (1 - 0.5) / 0.25
    img = np.random.default_rng(1).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    torch.testing.assert_close(tf(img), tf(img))


def test_classify_transforms_options():
    kinds = lambda tf: [type(t) for t in tf.transforms]  # noqa: E731
    train = classify_transforms(32, True, IMAGENET_MEAN, IMAGENET_STD)  # defaults: the light recipe, no flips
    assert kinds(train) == [v2.ToImage, v2.RandomResizedCrop, v2.ToDtype, v2.Normalize]
    wide = classify_transforms(32, True, IMAGENET_MEAN, IMAGENET_STD, auto_augment="trivial", hflip=0.5)
    assert kinds(wide)[:4] == [v2.ToImage, v2.RandomResizedCrop, v2.RandomHorizontalFlip, v2.TrivialAugmentWide]
    assert v2.RandomErasing not in kinds(wide)
    ra = classify_transforms(32, True, IMAGENET_MEAN, IMAGENET_STD, auto_augment="randaugment", random_erasing=0.25)
    assert v2.RandAugment in kinds(ra) and kinds(ra)[-1] is v2.RandomErasing
    plain = classify_transforms(32, True, IMAGENET_MEAN, IMAGENET_STD, auto_augment=None, hflip=0.0)
    assert v2.TrivialAugmentWide not in kinds(plain) and v2.RandomHorizontalFlip not in kinds(plain)
    none = classify_transforms(32, True, IMAGENET_MEAN, IMAGENET_STD, auto_augment="none", hflip=0.0)
    assert kinds(none) == kinds(plain)
    crop = next(t for t in train.transforms if isinstance(t, v2.RandomResizedCrop))
    assert crop.scale == (0.7, 1.0)
    with pytest.raises(GhostkitError, match="autoaugment"):
        classify_transforms(32, True, IMAGENET_MEAN, IMAGENET_STD, auto_augment="autoaugment")
    with pytest.raises(GhostkitError, match="imgsz"):
        classify_transforms(0, True, IMAGENET_MEAN, IMAGENET_STD)


# ---------------------------------------------------------------------------------------------- dataset


def test_image_list_dataset_sources_and_targets(tmp_path):
    path = save_image(tmp_path / "a.png", seed=0)
    grey_pil = Image.new("L", (10, 12), 50)
    grey_arr = np.full((9, 9), 200, dtype=np.uint8)
    multi_hot = np.array([1, 0, 1], dtype=np.float32)
    ds = ImageListDataset([(path, 2), (grey_pil, 0), (grey_arr, multi_hot)])
    assert len(ds) == 3 and ds.targets[0] == 2
    x, y = ds[0]
    assert x.shape == (3, 24, 28) and x.dtype == torch.float32 and y == 2 and isinstance(y, int)
    x, _ = ds[1]
    assert x.shape == (3, 12, 10)
    torch.testing.assert_close(x, torch.full_like(x, 50 / 255))
    x, y = ds[2]
    assert x.shape == (3, 9, 9)
    assert y.dtype == torch.float32 and y.tolist() == [1.0, 0.0, 1.0]
    tf = classify_transforms(16, False, IMAGENET_MEAN, IMAGENET_STD)
    assert ImageListDataset([(path, 1)], tf)[0][0].shape == (3, 16, 16)


# ---------------------------------------------------------------------------------------------- imagefolder


def test_read_imagefolder(tmp_path):
    make_imagefolder(tmp_path, {"dog": 3, "cat": 2, "fox": 4})
    (tmp_path / "README.txt").write_text("ignored")
    items, names = read_imagefolder(tmp_path)
    assert names == ["cat", "dog", "fox"]
    assert Counter(t for _, t in items) == {0: 2, 1: 3, 2: 4}
    assert all(Path(p).parent.name == names[t] for p, t in items)
    # Read with a given class list (as for val): indices follow it and classes may be absent.
    items, names = read_imagefolder(tmp_path, class_names=["ant", "cat", "dog", "fox"])
    assert names == ["ant", "cat", "dog", "fox"] and Counter(t for _, t in items) == {1: 2, 2: 3, 3: 4}


def test_read_imagefolder_skips_unreadable_with_one_warning(tmp_path):
    make_imagefolder(tmp_path, {"cat": 3, "dog": 3})
    write_truncated(tmp_path / "cat" / "cut.jpg", "JPEG")
    write_truncated(tmp_path / "dog" / "cut.png", "PNG")
    (tmp_path / "dog" / "noise.jpg").write_bytes(np.random.default_rng(3).bytes(300))
    with pytest.warns(SkippedFilesWarning) as record:
        items, names = read_imagefolder(tmp_path)
    assert len(record) == 1
    message = str(record[0].message)
    assert f"skipped 3 unreadable image(s) in {tmp_path}" in message
    assert "cat/cut.jpg" in message and "dog/cut.png" in message and "dog/noise.jpg" in message
    assert len(items) == 6 and not any(p.name in ("cut.jpg", "cut.png", "noise.jpg") for p, _ in items)


def test_read_imagefolder_errors(tmp_path):
    with pytest.raises(GhostkitError, match="missing"):
        read_imagefolder(tmp_path / "missing")
    (tmp_path / "flat").mkdir()
    save_image(tmp_path / "flat" / "a.png", 0)
    with pytest.raises(GhostkitError, match=r"flat: no class folders"):
        read_imagefolder(tmp_path / "flat")
    make_imagefolder(tmp_path / "ds", {"cat": 2})
    (tmp_path / "ds" / "empty_class").mkdir()
    (tmp_path / "ds" / "empty_class" / "notes.txt").write_text("x")
    with pytest.raises(GhostkitError, match=r"empty_class: class folder has no images"):
        read_imagefolder(tmp_path / "ds")
    make_imagefolder(tmp_path / "val", {"cat": 1, "wolf": 1})
    with pytest.raises(GhostkitError, match=r"wolf.*not one of the training classes"):
        read_imagefolder(tmp_path / "val", class_names=["cat", "dog"])


# ---------------------------------------------------------------------------------------------- multi-label csv


def test_read_multilabel_csv(tmp_path):
    make_multilabel(tmp_path, {"train": ML_TRAIN, "val": ML_VAL})
    items, names = read_multilabel_csv(tmp_path, "train")
    assert names == CLASSES
    assert [p.name for p, _ in items] == ["a.png", "b.png", "c.png", "d.png", "e.png"]
    assert items[0][1].tolist() == [1, 1, 0] and items[2][1].tolist() == [1, 0, 1]
    # The class list is the union over train.csv and val.csv.
    make_multilabel(tmp_path / "u", {"train": [("a.png", "cat")], "val": [("b.png", "dog")]})
    assert read_multilabel_csv(tmp_path / "u", "train")[1] == ["cat", "dog"]
    # classes.txt sets the list and its order.
    (tmp_path / "classes.txt").write_text("fox\ndog\ncat\nowl\n")
    items, names = read_multilabel_csv(tmp_path, "val")
    assert names == ["fox", "dog", "cat", "owl"]
    assert items[1][1].tolist() == [1, 1, 0, 0]


def test_read_multilabel_csv_skips_unreadable(tmp_path):
    make_multilabel(tmp_path, {"train": ML_TRAIN})
    write_truncated(tmp_path / "images" / "b.png", "PNG")
    with pytest.warns(SkippedFilesWarning, match=r"skipped 1 unreadable image\(s\).*b\.png") as record:
        items, _ = read_multilabel_csv(tmp_path, "train")
    assert len(record) == 1 and len(items) == 4


@pytest.mark.parametrize(
    "csv_text,match",
    [
        ("file,labels\na.png,cat\n", r"train\.csv:1: missing column\(s\) filename"),
        ("filename,labels\na.png,cat\nzzz.png,dog\n", r"train\.csv:3: zzz\.png does not exist"),
        ("filename,labels\na.png,cat\nb.png,\n", r"train\.csv:3: b\.png has no labels"),
        ("filename,labels\na.png,cat,extra\n", r"train\.csv:2: expected 2 fields, got 3"),
        ("filename,labels\na.png\n", r"train\.csv:2: expected 2 fields, got 1"),
        ('filename,labels\n"a.png,cat\n', r"train\.csv:\d+: "),
        ("", r"train\.csv: empty file"),
    ],
)
def test_read_multilabel_csv_errors(tmp_path, csv_text, match):
    make_multilabel(tmp_path, {"train": ML_TRAIN})
    (tmp_path / "train.csv").write_text(csv_text)
    with pytest.raises(GhostkitError, match=match):
        read_multilabel_csv(tmp_path, "train")


def test_read_multilabel_csv_unknown_label_with_classes_txt(tmp_path):
    make_multilabel(tmp_path, {"train": ML_TRAIN})
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    with pytest.raises(GhostkitError, match=r"train\.csv:4: unknown label 'fox'.*classes\.txt"):
        read_multilabel_csv(tmp_path, "train")


def test_read_multilabel_csv_missing_files(tmp_path):
    with pytest.raises(GhostkitError, match=r"images: no such folder"):
        read_multilabel_csv(tmp_path, "train")
    (tmp_path / "images").mkdir()
    with pytest.raises(GhostkitError, match=r"val\.csv: no such file"):
        read_multilabel_csv(tmp_path, "val")


# ---------------------------------------------------------------------------------------------- split


def test_split_items_deterministic_and_stratified():
    items = [(f"img{i}", c) for c in range(3) for i in range(10 * (c + 1))]  # 10, 20, 30 items
    train, val = split_items(items, 0.2, seed=0)
    assert split_items(items, 0.2, seed=0) == (train, val)
    assert split_items(items, 0.2, seed=1) != (train, val)
    assert Counter(t for _, t in val) == {0: 2, 1: 4, 2: 6}
    assert sorted(train + val) == sorted(items) and not set(train) & set(val)
    # A class with a single item stays in train; with two, one goes to val.
    train, val = split_items([("a", 0), ("b", 1), ("c", 1)], 0.2)
    assert train == [("a", 0), ("b", 1)] or train == [("a", 0), ("c", 1)]
    assert len(val) == 1 and val[0][1] == 1


# ---------------------------------------------------------------------------------------------- build


def test_build_digits():
    data = build_classify_data("digits", imgsz=40)
    assert data.class_names == [str(d) for d in range(10)] and not data.multilabel
    assert len(data.train) + len(data.val) == 1797
    assert 350 <= len(data.val) <= 370
    val_counts = Counter(data.val.targets)
    all_counts = Counter(data.train.targets) + val_counts
    for c in range(10):
        assert abs(val_counts[c] - 0.2 * all_counts[c]) <= 1  # stratified
    x, y = data.train[0]
    assert x.shape == (3, 40, 40) and x.dtype == torch.float32 and isinstance(y, int)
    assert data.val[0][0].shape == (3, 40, 40)
    kinds = [type(t) for t in data.train.transform.transforms]
    # small grayscale images, 30 epochs (the default) from scratch: the medium recipe (no flip, no auto-augment), as
    # for any such folder
    assert v2.RandomHorizontalFlip not in kinds and v2.TrivialAugmentWide not in kinds and v2.RandAugment not in kinds
    assert data.recipe.name == "medium" and data.recipe.overridden == ("imgsz",)
    again = build_classify_data("digits", imgsz=40)
    assert again.val.targets == data.val.targets  # fixed split
    assert data.mean == IMAGENET_MEAN and data.std == IMAGENET_STD and data.imgsz == 40 and data.num_classes == 10
    with pytest.raises(GhostkitError, match="digits"):
        build_classify_data("digits", imgsz=32, multilabel=True)


def test_build_shapes_single_and_multilabel():
    data = build_classify_data("shapes", imgsz=32)
    assert data.class_names == ["circle", "square", "triangle"] and not data.multilabel
    assert len(data.train) == 2000 and len(data.val) == 400
    assert set(data.train.targets) == {0, 1, 2}
    x, y = data.val[3]
    assert x.shape == (3, 32, 32) and isinstance(y, int)
    ml = build_classify_data("shapes", imgsz=32, multilabel=True)
    assert ml.multilabel and len(ml.train) == 2000 and len(ml.val) == 400
    x, y = ml.train[0]
    assert x.shape == (3, 32, 32) and y.dtype == torch.float32 and y.shape == (3,)
    assert y.sum() >= 1 and set(y.unique().tolist()) <= {0.0, 1.0}
    # The single-label target (largest shape) is one of the multi-label targets.
    assert all(ml.val.targets[i][data.val.targets[i]] == 1 for i in range(50))


def test_build_imagefolder_with_val(tmp_path):
    make_imagefolder(tmp_path / "train", {"cat": 4, "dog": 5})
    make_imagefolder(tmp_path / "val", {"cat": 2, "dog": 1}, seed=1)
    data = build_classify_data(tmp_path, imgsz=20)
    assert data.class_names == ["cat", "dog"] and not data.multilabel
    assert len(data.train) == 9 and len(data.val) == 3
    x, y = data.train[0]
    assert x.shape == (3, 20, 20) and y == 0
    # val may miss a class, but not add one
    make_imagefolder(tmp_path / "val", {"wolf": 1})
    with pytest.raises(GhostkitError, match=r"wolf"):
        build_classify_data(tmp_path, imgsz=20)


def test_build_imagefolder_auto_split(tmp_path):
    make_imagefolder(tmp_path / "train", {"cat": 10, "dog": 15, "fox": 5})
    data = build_classify_data(str(tmp_path), imgsz=24, val_fraction=0.2, seed=0)
    assert len(data.train) == 24 and len(data.val) == 6
    assert Counter(data.val.targets) == {0: 2, 1: 3, 2: 1}  # stratified per class
    again = build_classify_data(str(tmp_path), imgsz=24, val_fraction=0.2, seed=0)
    assert [p for p, _ in again.val.items] == [p for p, _ in data.val.items]  # fixed seed → same split
    assert not {p for p, _ in data.train.items} & {p for p, _ in data.val.items}
    # The split-off val part uses the deterministic val transforms.
    assert not any(isinstance(t, (v2.CenterCrop, v2.RandomResizedCrop)) for t in data.val.transform.transforms)
    torch.testing.assert_close(data.val[0][0], data.val[0][0])
    assert data.val[0][0].shape == (3, 24, 24)


def test_build_multilabel_csv(tmp_path):
    make_multilabel(tmp_path, {"train": ML_TRAIN, "val": ML_VAL})
    data = build_classify_data(tmp_path, imgsz=16, multilabel=True)
    assert data.multilabel and data.class_names == CLASSES
    assert len(data.train) == 5 and len(data.val) == 2
    x, y = data.val[1]
    assert x.shape == (3, 16, 16) and y.tolist() == [0.0, 1.0, 1.0]
    # Without val.csv, val is split off train deterministically.
    (tmp_path / "val.csv").unlink()
    data = build_classify_data(tmp_path, imgsz=16, multilabel=True, val_fraction=0.4)
    assert len(data.train) == 3 and len(data.val) == 2
    again = build_classify_data(tmp_path, imgsz=16, multilabel=True, val_fraction=0.4)
    assert [p for p, _ in again.val.items] == [p for p, _ in data.val.items]


def test_build_multilabel_csv_needs_multilabel_task(tmp_path):
    make_multilabel(tmp_path, {"train": ML_TRAIN})
    with pytest.raises(GhostkitError, match=r"holds multi-label data \(train\.csv\)"):
        build_classify_data(tmp_path, imgsz=16)


def test_build_multilabel_val_with_unknown_class(tmp_path):
    make_multilabel(tmp_path, {"train": ML_TRAIN, "val": [("f.png", "cat owl")]})
    with pytest.raises(GhostkitError, match=r"val\.csv:2: unknown label 'owl'"):
        build_classify_data(tmp_path, imgsz=16, multilabel=True)


def test_build_errors(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(GhostkitError, match=r"nowhere: no such data folder \(built-in data: digits, shapes\)"):
        build_classify_data(str(missing), imgsz=32)
    with pytest.raises(GhostkitError, match="imgsz"):
        build_classify_data("digits", imgsz=0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(GhostkitError, match=r"empty: no train/ folder"):
        build_classify_data(tmp_path / "empty", imgsz=32)
    make_imagefolder(tmp_path / "ds" / "train", {"cat": 2})
    with pytest.raises(GhostkitError, match=r"ds: multi-label data needs"):
        build_classify_data(tmp_path / "ds", imgsz=32, multilabel=True)
    with pytest.raises(GhostkitError, match="val_fraction"):
        build_classify_data(tmp_path / "ds", imgsz=32, val_fraction=1.5)
