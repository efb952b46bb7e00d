"""COCO instances files: ``images/`` + ``annotations/instances_{train,val}.json``, read once for every task.

:func:`load_coco` parses and checks a file (structure, categories, images, which image and category each
annotation names) and finds the images: ``images/<file_name>``, then ``images/<split>/<file_name>``, then
``images/<split>2017/<file_name>``. An image's size is the file's ``width`` / ``height``, else its header's as
displayed (EXIF rotation applied). Category ids map to labels in sorted id order; with ``categories`` (the training
split's), labels follow them and any other category id is an error. On top of it:

* :func:`read_coco_boxes` (detection): ``bbox`` → xyxy boxes, crowd annotations left out, boxes clipped and
  degenerate ones dropped with one counted warning;
* :func:`read_coco_masks` (segmentation): polygons and RLEs → a :class:`CocoMask` rasterised on demand with
  pycocotools; class index = label + 1 (0 = background); pixels claimed by two classes, and crowd regions, are
  ignored (255).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ghostkit.data.formats.boxes import BoxCleaner
from ghostkit.data.images import filter_readable, image_size, resolve_inside
from ghostkit.errors import GhostkitError
from ghostkit.tasks.registry import IGNORE_INDEX

__all__ = ["CocoFile", "CocoImage", "CocoMask", "load_coco", "read_coco_boxes", "read_coco_masks"]

Categories = list[tuple[int, str]]  # (category id, name) in label order


@dataclass
class CocoImage:
    file: Path
    width: float
    height: float
    annotations: list[dict] = field(default_factory=list)  # each names a known image and category


@dataclass
class CocoFile:
    path: Path
    categories: Categories  # the file's own, sorted by id
    images: list[CocoImage]
    label_of: dict[int, int]  # category id → label (in the given categories' order, else the file's)


def _load_json(path: Path) -> Any:
    if not path.is_file():
        raise GhostkitError(f"{path}: no such file")
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as e:
        raise GhostkitError(f"{path}:{e.lineno}: malformed JSON ({e.msg})") from None
    except UnicodeDecodeError:
        raise GhostkitError(f"{path}: not a UTF-8 text file") from None
    except OSError as e:
        raise GhostkitError(f"{path}: cannot read ({e.strerror or e})") from None


def _categories(path: Path, data: Any) -> Categories:
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "categories")) or (
            not isinstance(data.get("annotations", []), list)):
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
    return [(i, cats[i]) for i in sorted(cats)]


def _image_file(root: Path, split: str, name: str, source: Path) -> Path | None:
    """The first existing ``images/[<split>/|<split>2017/]<name>``; a ``name`` that leaves ``images/`` is refused
    (:func:`~ghostkit.data.images.resolve_inside`)."""
    images = root / "images"
    return next((c for c in (resolve_inside(d, name, source) for d in (images, images / split, images / f"{split}2017"))
                 if c.is_file()), None)


def load_coco(root: str | Path, split: str, categories: Categories | None = None) -> CocoFile:
    """Parse and check ``root/annotations/instances_<split>.json`` (see the module docstring)."""
    root = Path(root)
    path = root / "annotations" / f"instances_{split}.json"
    data = _load_json(path)
    own = _categories(path, data)
    where = "the training categories" if categories is not None else "categories"
    ids = [cid for cid, _ in (categories if categories is not None else own)]
    label_of = {cid: i for i, cid in enumerate(ids)}
    images: dict[Any, CocoImage] = {}
    for img in data["images"]:
        if not isinstance(img, dict) or "id" not in img or not isinstance(img.get("file_name"), str):
            raise GhostkitError(f"{path}: image entry {img!r} needs an 'id' and a 'file_name'")
        if img["id"] in images:
            raise GhostkitError(f"{path}: duplicate image id {img['id']}")
        file = _image_file(root, split, img["file_name"], path)
        if file is None:
            raise GhostkitError(f"{path}: image {img['file_name']} (id {img['id']}) not found in {root / 'images'}")
        w, h = img.get("width"), img.get("height")
        if not (isinstance(w, (int, float)) and isinstance(h, (int, float)) and w > 0 and h > 0):
            w, h = image_size(file) or (0, 0)
        images[img["id"]] = CocoImage(file, w, h)
    for k, ann in enumerate(data.get("annotations") or []):
        if not isinstance(ann, dict):
            raise GhostkitError(f"{path}: annotation #{k} is not an object")
        name = f"annotation {ann.get('id', '#' + str(k))}"
        if ann.get("image_id") not in images:
            raise GhostkitError(f"{path}: {name} names image id {ann.get('image_id')!r}, which is not in 'images'")
        if ann.get("category_id") not in label_of:
            raise GhostkitError(f"{path}: {name} has category id {ann.get('category_id')!r}, which is not in "
                                f"{where} {ids}")
        images[ann["image_id"]].annotations.append(ann)
    return CocoFile(path, own, list(images.values()), label_of)


def read_coco_boxes(root: str | Path, split: str, categories: Categories | None = None
                    ) -> tuple[list[tuple[Path, dict[str, np.ndarray]]], Categories]:
    """Detection items ``(image path, {"boxes": float32 N x 4 xyxy px, "labels": int64 N})`` of a COCO split and
    the categories ``[(id, name)]`` in label order (``categories`` when given, else the file's)."""
    coco = load_coco(root, split, categories)
    clean = BoxCleaner()
    items = []
    for image in coco.images:
        boxes, labels = [], []
        for ann in image.annotations:
            bbox = ann.get("bbox")
            if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
                raise GhostkitError(f"{coco.path}: annotation {ann.get('id', '?')} needs 'bbox': [x, y, width, "
                                    f"height], got {bbox!r}")
            if ann.get("iscrowd", 0):
                continue  # crowd regions are not single objects
            x, y, w, h = bbox
            boxes.append([x, y, x + w, y + h])
            labels.append(coco.label_of[ann["category_id"]])
        items.append((image.file, clean(np.array(boxes, np.float32), np.array(labels), image.width, image.height)))
    clean.warn(coco.path)
    return items, list(categories if categories is not None else coco.categories)


@dataclass
class CocoMask:
    """A COCO image's annotations, rasterised on demand: ``render() -> uint8 height x width`` class indices.

    ``objects``: ``(class index, segmentation, iscrowd)`` with segmentation a polygon list or an RLE dict.
    """

    height: int
    width: int
    objects: list[tuple[int, Any, bool]] = field(default_factory=list)

    def render(self) -> np.ndarray:
        from pycocotools import mask as mask_utils

        h, w = self.height, self.width
        label = np.zeros((h, w), dtype=np.uint8)
        crowd = np.zeros((h, w), dtype=bool)
        for cls, seg, iscrowd in self.objects:
            if isinstance(seg, list):
                m = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(seg, h, w)))
            elif isinstance(seg.get("counts"), list):  # uncompressed RLE
                m = mask_utils.decode(mask_utils.frPyObjects(seg, h, w))
            else:
                m = mask_utils.decode(seg)
            m = m.astype(bool)
            if iscrowd:
                crowd |= m
                continue
            conflict = m & (label != 0) & (label != cls)  # two classes claim the pixel: neither is right
            label[m & (label == 0)] = cls
            label[conflict] = IGNORE_INDEX
        label[crowd & (label == 0)] = IGNORE_INDEX
        return label


def _check_segmentation(seg: Any, where: str) -> None:
    if isinstance(seg, list):
        if not seg or not all(isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0 for p in seg):
            raise GhostkitError(f"{where}: a polygon needs an even number (>= 6) of coordinates")
        if not all(isinstance(v, (int, float)) for p in seg for v in p):
            raise GhostkitError(f"{where}: polygon coordinates must be numbers")
    elif not (isinstance(seg, dict) and "counts" in seg and "size" in seg):
        raise GhostkitError(f"{where}: segmentation must be a polygon list or an RLE {{'counts', 'size'}}")


def read_coco_masks(root: str | Path, split: str, categories: Categories | None = None
                    ) -> tuple[list[tuple[Path, CocoMask]], Categories]:
    """Segmentation items ``(image path, CocoMask)`` of a COCO split and its categories ``[(id, name)]`` sorted by
    id; ``categories`` (the training split's) must be the file's. Unreadable images are skipped with the shared
    warning; an image whose stored size differs from the file's is an error (masks are drawn on stored pixels)."""
    coco = load_coco(root, split, categories)
    if len(coco.categories) >= IGNORE_INDEX:
        raise GhostkitError(f"{coco.path}: {len(coco.categories)} categories; segmentation supports at most "
                            f"{IGNORE_INDEX - 1}")
    if categories is not None and coco.categories != list(categories):
        raise GhostkitError(f"{coco.path}: its categories differ from the training set's")
    pairs = []
    for image in coco.images:
        mask = CocoMask(int(image.height), int(image.width))
        for ann in image.annotations:
            seg = ann.get("segmentation")
            _check_segmentation(seg, f"{coco.path}: annotation {ann.get('id', '?')}")
            mask.objects.append((coco.label_of[ann["category_id"]] + 1, seg, bool(ann.get("iscrowd", 0))))
        pairs.append((image.file, mask))
    if not pairs:
        raise GhostkitError(f"{coco.path}: no images")
    images_dir = Path(root) / "images"
    good = set(filter_readable([img for img, _ in pairs], folder=images_dir)[0])
    items = []
    for file, mask in pairs:
        if file not in good:
            continue
        size = image_size(file, exif=False)
        if size != (mask.width, mask.height):
            raise GhostkitError(f"{coco.path}: image {file.name} is {size[0]} x {size[1]}, the file says "
                                f"{mask.width} x {mask.height}")
        items.append((file, mask))
    if not items:
        raise GhostkitError(f"{coco.path}: none of the images is readable")
    return items, coco.categories
