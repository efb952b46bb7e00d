"""Detection data: COCO, YOLO, Pascal VOC and WIDER FACE readers, built-in shapes, transforms and collate.

Layouts, detected from the folder (`detect_format`):

- COCO: `images/` + `annotations/instances_{train,val}.json` (images at `images/<file_name>` or
  `images/<split>/<file_name>`). Category ids map to 0..C-1 in sorted id order; names come from `categories`;
  crowd annotations (`iscrowd: 1`) are left out.
- YOLO: `images/{train,val}/`, `labels/{train,val}/*.txt` (one `class cx cy w h` line per object, normalised to
  0..1; an image without a label file has no objects) and `data.yaml` whose `names` is a list or an {id: name} dict.
- Pascal VOC: `Annotations/*.xml`, `JPEGImages/`, `ImageSets/Main/{train,val}.txt`. Classes: VOC's 20 when every
  name is one of them, else the sorted names of all XMLs. Objects marked `difficult` are left out; VOC's 1-based
  inclusive pixel corners become 0-based xyxy edges.
- WIDER FACE: `wider_face_split/wider_face_{train,val}_bbx_gt.txt` + `WIDER_{train,val}/images/...`, one class
  "face"; boxes flagged invalid or of zero size are skipped and counted.
- built-in `shapes`: 1250 new training images every epoch (`ghostkit.data.synthetic.ShapeStream`) and 200 fixed
  validation images (`make_shapes`, seed 1).

A missing validation split is split off train (`val_fraction`, `seed`). Boxes are xyxy in pixels of the original
image. Boxes reaching outside their image are clipped and degenerate ones (under 1 px wide or high) dropped, with
one counted `BoxesFixedWarning` per file set; unreadable images are skipped with one `SkippedFilesWarning`; a
malformed annotation file, an unknown category or class id, a wrong field count or a missing image raise a
one-line `GhostkitError` naming the file (and line).
"""

from __future__ import annotations

import functools
import json
import math
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from ghostkit.data.classify import IMAGENET_MEAN, IMAGENET_STD, split_items
from ghostkit.data.images import filter_readable, list_images, read_image, resolve_inside
from ghostkit.data.synthetic import SHAPE_CLASSES, ShapeSample, ShapeStream, make_shapes
from ghostkit.errors import GhostkitError

__all__ = [
    "VOC_CLASSES",
    "BoxesFixedWarning",
    "DetectData",
    "DetectionDataset",
    "build_detect_data",
    "collate_detect",
    "detect_format",
    "detect_transforms",
    "read_coco",
    "read_voc",
    "read_widerface",
    "read_yolo",
]

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
    "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
# Built-in shapes: new training images per epoch, enough for a default `ghostkit train --task detect --data shapes`
# run to reach mAP50 >= 0.9 within 10 minutes on a 2-core CPU (30 epochs of 1000: 0.899 in 442 s; of 1250: README).
SHAPES_TRAIN, SHAPES_VAL, SHAPES_IMGSZ = 1250, 200, 64
_MIN_BOX = 1.0  # px: narrower or lower boxes are degenerate

ImageSource = Path | str | np.ndarray
# an image and its objects: {"boxes": float32 N x 4 xyxy pixels, "labels": int64 N}
Item = tuple[ImageSource, dict[str, np.ndarray]]


class BoxesFixedWarning(UserWarning):
    """Some boxes reached outside their image and were clipped, or were degenerate and dropped (counted)."""


class _BoxCleaner:
    """Clips boxes to their image and drops degenerate ones, counting both for one warning per file set."""

    def __init__(self) -> None:
        self.clipped = self.dropped = 0

    def __call__(self, boxes: np.ndarray, labels: np.ndarray, width: int, height: int) -> dict[str, np.ndarray]:
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        clipped = boxes.copy()
        clipped[:, 0::2] = clipped[:, 0::2].clip(0, width)
        clipped[:, 1::2] = clipped[:, 1::2].clip(0, height)
        ok = ((clipped[:, 2] - clipped[:, 0]) >= _MIN_BOX) & ((clipped[:, 3] - clipped[:, 1]) >= _MIN_BOX)
        self.dropped += int((~ok).sum())
        self.clipped += int((np.abs(clipped - boxes).max(1, initial=0) > 1e-2)[ok].sum())
        return {"boxes": clipped[ok], "labels": labels[ok]}

    def warn(self, where: Path | str) -> None:
        if self.clipped or self.dropped:
            warnings.warn(f"{where}: clipped {self.clipped} box(es) to their image and dropped {self.dropped} "
                          f"degenerate box(es)", BoxesFixedWarning, stacklevel=3)


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels (EXIF rotation applied)."""
    try:
        with Image.open(path) as img:
            w, h = img.size
            orientation = img.getexif().get(0x0112, 1)
    except Exception:  # unreadable: `filter_readable` drops it later with the shared warning
        return 0, 0
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


# -- COCO ----------------------------------------------------------------------------------------------------------
def _load_json(path: Path) -> Any:
    if not path.is_file():
        raise GhostkitError(f"{path}: no such file")
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as e:
        raise GhostkitError(f"{path}:{e.lineno}: malformed JSON ({e.msg})") from None
    except UnicodeDecodeError:
        raise GhostkitError(f"{path}: not a UTF-8 text file") from None


def _coco_categories(path: Path, data: Any) -> tuple[list[int], list[str]]:
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations",
                                                                                        "categories")):
        raise GhostkitError(f"{path}: not a COCO instances file (needs 'images', 'annotations' and 'categories' lists)")
    cats = {}
    for c in data["categories"]:
        if not isinstance(c, dict) or not isinstance(c.get("id"), int) or "name" not in c:
            raise GhostkitError(f"{path}: category {c!r} needs an integer 'id' and a 'name'")
        if c["id"] in cats:
            raise GhostkitError(f"{path}: duplicate category id {c['id']}")
        cats[c["id"]] = str(c["name"])
    if not cats:
        raise GhostkitError(f"{path}: no categories")
    ids = sorted(cats)
    return ids, [cats[i] for i in ids]


def read_coco(root: str | Path, split: str, categories: Sequence[tuple[int, str]] | None = None
              ) -> tuple[list[Item], list[tuple[int, str]]]:
    """Read `root/annotations/instances_<split>.json` → (items, [(category id, name)] in label order).

    With `categories` (the training split's), labels follow them and any other category id is an error."""
    root = Path(root)
    path = root / "annotations" / f"instances_{split}.json"
    data = _load_json(path)
    where = "the training categories" if categories is not None else "categories"
    if categories is None:
        categories = list(zip(*_coco_categories(path, data)))
    else:
        _coco_categories(path, data)  # still checks the file's structure
    ids = [cid for cid, _ in categories]
    label_of = {cid: i for i, cid in enumerate(ids)}
    images: dict[Any, dict] = {}
    for img in data["images"]:
        if not isinstance(img, dict) or "id" not in img or not isinstance(img.get("file_name"), str):
            raise GhostkitError(f"{path}: image entry {img!r} needs an 'id' and a 'file_name'")
        if img["id"] in images:
            raise GhostkitError(f"{path}: duplicate image id {img['id']}")
        file = resolve_inside(root / "images", img["file_name"], path)
        if not file.is_file() and (root / "images" / split / img["file_name"]).is_file():
            file = resolve_inside(root / "images" / split, img["file_name"], path)
        if not file.is_file():
            raise GhostkitError(f"{path}: image {img['file_name']} (id {img['id']}) not found in {root / 'images'}")
        w, h = img.get("width"), img.get("height")
        if not (isinstance(w, (int, float)) and isinstance(h, (int, float)) and w > 0 and h > 0):
            w, h = _image_size(file)
        images[img["id"]] = {"file": file, "size": (w, h), "boxes": [], "labels": []}
    for k, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            raise GhostkitError(f"{path}: annotation #{k} is not an object")
        name = f"annotation {ann.get('id', '#' + str(k))}"
        if ann.get("image_id") not in images:
            raise GhostkitError(f"{path}: {name} names image id {ann.get('image_id')!r}, which is not in 'images'")
        if ann.get("category_id") not in label_of:
            raise GhostkitError(f"{path}: {name} has category id {ann.get('category_id')!r}, which is not in "
                                f"{where} {ids}")
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
            raise GhostkitError(f"{path}: {name} needs 'bbox': [x, y, width, height], got {bbox!r}")
        if ann.get("iscrowd", 0):
            continue  # crowd regions are not single objects
        x, y, w, h = bbox
        entry = images[ann["image_id"]]
        entry["boxes"].append([x, y, x + w, y + h])
        entry["labels"].append(label_of[ann["category_id"]])
    clean = _BoxCleaner()
    items = [(e["file"], clean(np.array(e["boxes"], np.float32), np.array(e["labels"]), *e["size"]))
             for e in images.values()]
    clean.warn(path)
    return items, list(categories)


# -- YOLO ----------------------------------------------------------------------------------------------------------
def _yolo_names(root: Path) -> list[str]:
    path = next((root / n for n in ("data.yaml", "data.yml") if (root / n).is_file()), None)
    if path is None:
        raise GhostkitError(f"{root}: YOLO data needs a data.yaml with the class 'names'")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except yaml.YAMLError as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        raise GhostkitError(f"{path}{'' if line is None else f':{line + 1}'}: malformed YAML") from None
    names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, dict):
        try:
            ids = sorted(int(k) for k in names)
        except (TypeError, ValueError):
            raise GhostkitError(f"{path}: 'names' keys must be class ids 0..N-1") from None
        if ids != list(range(len(ids))):
            raise GhostkitError(f"{path}: 'names' ids must be 0..{len(ids) - 1} without gaps, got {ids}")
        names = [names[k] if k in names else names[str(k)] for k in ids]
    if not isinstance(names, list) or not names:
        raise GhostkitError(f"{path}: 'names' must be a non-empty list or {{id: name}} dict")
    return [str(n) for n in names]


def _read_yolo_labels(path: Path, num_classes: int, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    boxes, labels = [], []
    for lineno, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 5:
            raise GhostkitError(f"{path}:{lineno}: expected 5 fields 'class cx cy w h', got {len(fields)}")
        try:
            cls = int(fields[0])
            cx, cy, w, h = (float(v) for v in fields[1:])
        except ValueError:
            raise GhostkitError(f"{path}:{lineno}: expected an integer class and four numbers, got {line.strip()!r}"
                                ) from None
        if not 0 <= cls < num_classes:
            raise GhostkitError(f"{path}:{lineno}: class id {cls} is out of range 0..{num_classes - 1} (data.yaml)")
        if not all(math.isfinite(v) for v in (cx, cy, w, h)):
            raise GhostkitError(f"{path}:{lineno}: coordinates must be finite numbers")
        boxes.append([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height])
        labels.append(cls)
    return np.array(boxes, np.float32).reshape(-1, 4), np.array(labels, np.int64)


def read_yolo(root: str | Path, split: str, names: Sequence[str] | None = None) -> tuple[list[Item], list[str]]:
    """Read `root/images/<split>/` with `root/labels/<split>/*.txt` → (items, class names from data.yaml)."""
    root = Path(root)
    names = list(names) if names is not None else _yolo_names(root)
    img_dir, lbl_dir = root / "images" / split, root / "labels" / split
    clean = _BoxCleaner()
    items: list[Item] = []
    for img in list_images(img_dir, recursive=True):
        label_file = (lbl_dir / img.relative_to(img_dir)).with_suffix(".txt")
        w, h = _image_size(img)
        if label_file.is_file():
            boxes, labels = _read_yolo_labels(label_file, len(names), w, h)
        else:  # YOLO convention: an image without a label file shows no objects
            boxes, labels = np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
        items.append((img, clean(boxes, labels, w, h)))
    clean.warn(lbl_dir)
    return items, names


# -- Pascal VOC ----------------------------------------------------------------------------------------------------
def _parse_voc_xml(path: Path) -> ET.Element:
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as e:
        raise GhostkitError(f"{path}:{e.position[0]}: malformed XML ({str(e).split(':')[0]})") from None


def _voc_objects(path: Path, root: ET.Element) -> list[tuple[str, list[float], bool]]:
    """(class name, [xmin, ymin, xmax, ymax] 0-based edges, difficult) of each <object>."""
    objs = []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        box = obj.find("bndbox")
        if not name or box is None:
            raise GhostkitError(f"{path}: an <object> needs a <name> and a <bndbox>")
        try:
            x1, y1, x2, y2 = (float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (TypeError, ValueError):
            raise GhostkitError(f"{path}: <bndbox> of {name!r} needs numeric xmin, ymin, xmax, ymax") from None
        difficult = (obj.findtext("difficult") or "0").strip() == "1"
        objs.append((name, [x1 - 1, y1 - 1, x2, y2], difficult))
    return objs


def _voc_ids(root: Path, split: str) -> list[str] | None:
    path = root / "ImageSets" / "Main" / f"{split}.txt"
    if not path.is_file():
        return None
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def voc_class_names(root: str | Path) -> list[str]:
    """VOC's 20 classes when every XML name is one of them, else the sorted names found in the XMLs."""
    found = set()
    for xml in sorted((Path(root) / "Annotations").glob("*.xml")):
        found.update(name for name, _, _ in _voc_objects(xml, _parse_voc_xml(xml)))
    if not found:
        raise GhostkitError(f"{Path(root) / 'Annotations'}: no objects in any XML file")
    return list(VOC_CLASSES) if found <= set(VOC_CLASSES) else sorted(found)


def read_voc(root: str | Path, ids: Sequence[str] | None, names: Sequence[str]) -> list[Item]:
    """Read the VOC annotations of image `ids` (default: every XML in `root/Annotations`) → items."""
    root = Path(root)
    ann_dir = root / "Annotations"
    xmls = [ann_dir / f"{i}.xml" for i in ids] if ids is not None else sorted(ann_dir.glob("*.xml"))
    index = {n: i for i, n in enumerate(names)}
    clean = _BoxCleaner()
    items: list[Item] = []
    for xml in xmls:
        if not xml.is_file():
            raise GhostkitError(f"{xml}: no such annotation file (listed in ImageSets/Main)")
        tree = _parse_voc_xml(xml)
        image = resolve_inside(root / "JPEGImages", (tree.findtext("filename") or "").strip() or f"{xml.stem}.jpg",
                               xml)
        if not image.is_file():
            raise GhostkitError(f"{xml}: image {image.name} not found in {root / 'JPEGImages'}")
        try:
            w, h = int(float(tree.findtext("size/width"))), int(float(tree.findtext("size/height")))
        except (TypeError, ValueError):
            w, h = 0, 0
        if w <= 0 or h <= 0:
            w, h = _image_size(image)
        boxes, labels = [], []
        for name, box, difficult in _voc_objects(xml, tree):
            if name not in index:
                raise GhostkitError(f"{xml}: unknown class {name!r} (classes: {', '.join(names)})")
            if not difficult:
                boxes.append(box)
                labels.append(index[name])
        items.append((image, clean(np.array(boxes, np.float32), np.array(labels), w, h)))
    clean.warn(ann_dir)
    return items


# -- WIDER FACE ----------------------------------------------------------------------------------------------------
def read_widerface(root: str | Path, split: str) -> list[Item]:
    """Read `root/wider_face_split/wider_face_<split>_bbx_gt.txt` (image path, face count, then one
    `x y w h blur expression illumination invalid occlusion pose` line per face; a count of 0 is followed by one
    line of zeros) with images in `root/WIDER_<split>/images/`. Invalid-flagged and zero-size faces are skipped
    and counted in one warning."""
    root = Path(root)
    path = root / "wider_face_split" / f"wider_face_{split}_bbx_gt.txt"
    img_dir = root / f"WIDER_{split}" / "images"
    if not path.is_file():
        raise GhostkitError(f"{path}: no such file")
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    clean = _BoxCleaner()
    items: list[Item] = []
    skipped, i = 0, 0
    while i < len(lines):
        name = lines[i].strip()
        if not name:
            i += 1
            continue
        image = resolve_inside(img_dir, name, f"{path}:{i + 1}")
        if not image.is_file():
            raise GhostkitError(f"{path}:{i + 1}: image {name} not found in {img_dir}")
        try:
            count = int(lines[i + 1].strip())
        except (IndexError, ValueError):
            raise GhostkitError(f"{path}:{i + 2}: expected the face count of {name}") from None
        boxes = []
        for k in range(i + 2, i + 2 + max(count, 1)):
            fields = lines[k].split() if k < len(lines) else []
            try:
                values = [int(float(v)) for v in fields]
            except ValueError:
                values = []
            if len(values) < 4:
                raise GhostkitError(f"{path}:{k + 1}: expected 'x y w h ...' for a face of {name}")
            if count == 0:
                break
            x, y, w, h = values[:4]
            if w <= 0 or h <= 0 or (len(values) >= 8 and values[7] == 1):
                skipped += 1
                continue
            boxes.append([x, y, x + w, y + h])
        i += 2 + max(count, 1)
        width, height = _image_size(image)
        items.append((image, clean(np.array(boxes, np.float32), np.zeros(len(boxes), np.int64), width, height)))
    if skipped:
        warnings.warn(f"{path}: skipped {skipped} invalid or zero-size face box(es)", BoxesFixedWarning, stacklevel=2)
    clean.warn(path)
    return items


# -- datasets and transforms ---------------------------------------------------------------------------------------
def detect_transforms(imgsz: int, train: bool, mean: Sequence[float] = IMAGENET_MEAN,
                      std: Sequence[float] = IMAGENET_STD, hflip: float = 0.5, photometric: float = 0.5,
                      zoom_out: float = 0.5, iou_crop: float = 0.5) -> v2.Compose:
    """Transform preset for `(image, {"boxes": BoundingBoxes, "labels"})` → normalised float32 3 x imgsz x imgsz
    with boxes in the resized image's pixels.

    train (SSD-style, each step with its probability): RandomPhotometricDistort → RandomZoomOut (up to 2x, filled
    with the mean colour) → RandomIoUCrop → RandomHorizontalFlip → Resize → SanitizeBoundingBoxes (drops boxes
    cropped away or under 1 px). val: Resize only (the whole image, as the Predictor does)."""
    ops: list[Any] = [v2.ToImage()]
    if train:
        if photometric > 0:
            ops.append(v2.RandomPhotometricDistort(p=photometric))
        if zoom_out > 0:
            fill = {tv_tensors.Image: [round(255 * m) for m in mean], "others": 0}
            ops.append(v2.RandomZoomOut(fill=fill, side_range=(1.0, 2.0), p=zoom_out))
        if iou_crop > 0:
            ops.append(v2.RandomApply([v2.RandomIoUCrop()], p=iou_crop))
        if hflip > 0:
            ops.append(v2.RandomHorizontalFlip(hflip))
    ops.append(v2.Resize((imgsz, imgsz), antialias=True))
    if train:
        ops.append(v2.SanitizeBoundingBoxes(min_size=_MIN_BOX))
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    return v2.Compose(ops)


class DetectionDataset(Dataset):
    """Items `(image, {"boxes": N x 4 xyxy pixels, "labels": N})` → `(float32 3 x S x S, {"boxes": float32 N x 4
    in the transformed image's pixels, "labels": int64 N, "index": the item's index})`. An image is a file path or
    a uint8 H x W x 3 array."""

    def __init__(self, items: Sequence[Item], transform: Any = None) -> None:
        self.items = items if isinstance(items, ShapeStream) else list(items)
        self.transform = transform or v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int) -> Image.Image:
        """The item's image as it is stored (RGB PIL)."""
        source = self.items[index][0]
        return read_image(source) if isinstance(source, (str, Path)) else Image.fromarray(np.asarray(source))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        source, ann = self.items[index]
        if isinstance(source, (str, Path)):
            image = tv_tensors.Image(v2.functional.pil_to_tensor(read_image(source)))
        else:
            image = tv_tensors.Image(torch.from_numpy(np.array(source, dtype=np.uint8)).permute(2, 0, 1))
        boxes = tv_tensors.BoundingBoxes(torch.as_tensor(ann["boxes"], dtype=torch.float32).reshape(-1, 4),
                                         format="XYXY", canvas_size=tuple(image.shape[-2:]))
        image, target = self.transform(image, {"boxes": boxes, "labels": torch.as_tensor(ann["labels"])})
        return image, {"boxes": target["boxes"].as_subclass(torch.Tensor).float().reshape(-1, 4),
                       "labels": target["labels"].long(), "index": torch.tensor(index)}


def collate_detect(batch: list[tuple[torch.Tensor, dict]]) -> tuple[torch.Tensor, dict[str, list[dict]]]:
    """→ (images B x 3 x S x S, {"detect": [one target dict per image]})."""
    return torch.stack([b[0] for b in batch]), {"detect": [b[1] for b in batch]}


@dataclass
class DetectData:
    """Train / val `DetectionDataset`s and their metadata (what the validation transform used)."""

    train: DetectionDataset
    val: DetectionDataset
    class_names: list[str]
    imgsz: int
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD


def detect_format(root: str | Path) -> str:
    """Which layout `root` holds: "coco", "yolo", "voc" or "widerface"."""
    root = Path(root)
    if (root / "annotations" / "instances_train.json").is_file():
        return "coco"
    if (root / "labels").is_dir() or (root / "data.yaml").is_file() or (root / "data.yml").is_file():
        return "yolo"
    if (root / "Annotations").is_dir():
        return "voc"
    if (root / "wider_face_split").is_dir():
        return "widerface"
    raise GhostkitError(f"{root}: no detection data found (expected COCO annotations/instances_train.json, YOLO "
                        "data.yaml + labels/, VOC Annotations/, or WIDER FACE wider_face_split/)")


def _shape_item(sample: ShapeSample) -> Item:
    return sample.image, {"boxes": sample.boxes, "labels": sample.labels}


@functools.lru_cache(maxsize=4)
def _shapes(n: int, seed: int, imgsz: int) -> tuple[Item, ...]:
    items = []
    for s in make_shapes(n, imgsz=imgsz, seed=seed):
        s.image.flags.writeable = False  # shared by the cache
        items.append(_shape_item(s))
    return tuple(items)


def _readable(items: list[Item], where: Path) -> list[Item]:
    good = set(filter_readable([p for p, _ in items], folder=where)[0])
    return [it for it in items if it[0] in good]


def _read_folder(root: Path, val_fraction: float, seed: int) -> tuple[list[Item], list[Item] | None, list[str]]:
    fmt = detect_format(root)
    if fmt == "coco":
        train, cats = read_coco(root, "train")
        names = [name for _, name in cats]
        val = read_coco(root, "val", cats)[0] if (root / "annotations" / "instances_val.json").is_file() else None
    elif fmt == "yolo":
        if not (root / "images" / "train").is_dir():
            raise GhostkitError(f"{root / 'images' / 'train'}: no such folder (YOLO data: images/train, labels/train)")
        train, names = read_yolo(root, "train")
        val = read_yolo(root, "val", names)[0] if (root / "images" / "val").is_dir() else None
    elif fmt == "voc":
        names = voc_class_names(root)
        train_ids = _voc_ids(root, "train")
        val_ids = _voc_ids(root, "val")
        train = read_voc(root, train_ids, names)
        val = read_voc(root, val_ids, names) if val_ids is not None and train_ids is not None else None
    else:
        train, names = read_widerface(root, "train"), ["face"]
        has_val = (root / "wider_face_split" / "wider_face_val_bbx_gt.txt").is_file()
        val = read_widerface(root, "val") if has_val else None
    train = _readable(train, root)
    if val is None:
        train, val = split_items(train, val_fraction, seed, stratify=False) if len(train) > 1 else (train, [])
    else:
        val = _readable(val, root)
    return train, val, names


def build_detect_data(data: str | Path, imgsz: int | None = None, val_fraction: float = 0.2, seed: int = 0,
                      augment: dict | None = None) -> DetectData:
    """Resolve `--data` (a folder in one of the layouts above, or "shapes") to train / val datasets of
    3 x imgsz x imgsz tensors (default imgsz: 64 for shapes, 320 for folders). `augment` overrides
    `detect_transforms`' probabilities (hflip, photometric, zoom_out, iou_crop)."""
    name = str(data)
    if name == "shapes":
        imgsz = imgsz or SHAPES_IMGSZ
        train, val = ShapeStream(SHAPES_TRAIN, imgsz, _shape_item), list(_shapes(SHAPES_VAL, 1, imgsz))
        names = list(SHAPE_CLASSES)
        # synthetic shapes fill the frame already: zoom-out and IoU crops mostly slow the short CPU runs down
        augment = {"zoom_out": 0.0, "iou_crop": 0.0, "photometric": 0.5} | (augment or {})
    else:
        root = Path(data)
        if not root.exists():
            raise GhostkitError(f"{root}: no such data folder (built-in detection data: shapes)")
        if not root.is_dir():
            raise GhostkitError(f"{root}: not a folder (expected detection data or 'shapes')")
        imgsz = imgsz or 320
        train, val, names = _read_folder(root, val_fraction, seed)
    if imgsz < 32:
        raise GhostkitError(f"imgsz must be at least 32, got {imgsz}")
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    return DetectData(
        train=DetectionDataset(train, detect_transforms(imgsz, True, mean, std, **(augment or {}))),
        val=DetectionDataset(val, detect_transforms(imgsz, False, mean, std)),
        class_names=list(names),
        imgsz=imgsz,
        mean=mean,
        std=std,
    )
