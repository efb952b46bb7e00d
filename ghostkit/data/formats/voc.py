"""Pascal VOC: ``Annotations/*.xml`` (boxes), ``JPEGImages/``, ``ImageSets/Main/{train,val}.txt`` for detection;
``SegmentationClass/*.png`` (palette PNGs) with ``ImageSets/Segmentation/{train,val}.txt`` for segmentation.

Detection classes: VOC's 20 when every name is one of them, else the sorted names of all XMLs. Objects marked
``difficult`` are left out; VOC's 1-based inclusive pixel corners become 0-based xyxy edges. Segmentation: VOC's 20
classes after ``background``, 255 (object borders) ignored.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ghostkit.data.formats.boxes import BoxCleaner
from ghostkit.data.images import image_size, resolve_inside
from ghostkit.errors import GhostkitError

__all__ = ["VOC_CLASSES", "find_voc_root", "read_voc", "voc_class_names", "voc_ids", "voc_segmentation_pairs"]

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
    "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)

Item = tuple[Path, dict[str, np.ndarray]]


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


def voc_ids(root: Path, split: str) -> list[str] | None:
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
    listing = root / "ImageSets" / "Main"
    xmls = ([resolve_inside(ann_dir, f"{i}.xml", listing) for i in ids] if ids is not None
            else sorted(ann_dir.glob("*.xml")))
    index = {n: i for i, n in enumerate(names)}
    clean = BoxCleaner()
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
            w, h = image_size(image) or (0, 0)
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


def find_voc_root(root: Path) -> Path | None:
    """The VOC segmentation folder in ``root`` (itself, ``VOC*/`` or ``*/VOC*/``), or None."""
    for cand in (root, *sorted(root.glob("VOC*")), *sorted(root.glob("*/VOC*"))):
        if (cand / "JPEGImages").is_dir() and (cand / "SegmentationClass").is_dir():
            return cand
    return None


def voc_segmentation_pairs(root: str | Path, split: str) -> list[tuple[Path, Path]]:
    """A Pascal VOC folder (``JPEGImages``, ``SegmentationClass``, ``ImageSets/Segmentation/<split>.txt``) →
    [(image path, mask path)], unchecked (``ghostkit.data.segment`` checks the masks)."""
    root = Path(root)
    listing = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not listing.is_file():
        raise GhostkitError(f"{listing}: no such file (the Pascal VOC {split} list)")
    pairs = []
    for lineno, line in enumerate(listing.read_text().splitlines(), start=1):
        stem = line.strip().split(" ")[0] if line.strip() else ""
        if not stem:
            continue
        image = resolve_inside(root / "JPEGImages", f"{stem}.jpg", f"{listing}:{lineno}")
        if not image.is_file():
            raise GhostkitError(f"{listing}:{lineno}: {image} does not exist")
        pairs.append((image, root / "SegmentationClass" / f"{stem}.png"))
    if not pairs:
        raise GhostkitError(f"{listing}: lists no images")
    return pairs
