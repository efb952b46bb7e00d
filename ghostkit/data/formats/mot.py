"""MOTChallenge sequences (https://motchallenge.net/instructions/): reader of ground truth, writer of tracker results.

Layout of a data root::

    ROOT/classes.txt                 optional: class k = line k (1-based); without it one class "object"
    ROOT/{train,val}/<SEQ>/seqinfo.ini   [Sequence] name, imDir, frameRate, seqLength, imWidth, imHeight, imExt
    ROOT/{train,val}/<SEQ>/img1/000001.jpg ...   frame k is the file whose stem is the number k
    ROOT/{train,val}/<SEQ>/gt/gt.txt     frame,id,x,y,w,h,conf,class,visibility   (one box per line)

``seqinfo.ini`` is optional (frame count and image size then come from the files); ``gt/gt.txt`` is optional (a
sequence to track, not to evaluate). Ground-truth rows with ``conf`` 0 are ignored, as MOTChallenge's evaluation
does; rows with a non-positive width or height are dropped and counted in one warning. Box coordinates are taken as
given, top-left ``(x, y)`` and size ``(w, h)`` in pixels, and returned as ``x1, y1, x2, y2``; the result writer
writes them back the same way (as ByteTrack and FairMOT do), so a box read and written is unchanged.
Tracker results: ``frame,id,x,y,w,h,score,-1,-1,-1`` with 1-based frames, one file per sequence.

Bad input: a row with the wrong number of fields, a non-numeric value, a class outside ``classes.txt`` or a
repeated (frame, id) raises :class:`GhostkitError` naming the file and line; frames missing from ``img1/`` are
counted in one :class:`SkippedFilesWarning` per sequence; no path read (sequence folders, ``imDir``, images behind
symbolic links) may lie outside the data root.
"""

from __future__ import annotations

import configparser
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ghostkit.data.images import IMG_EXTENSIONS, SkippedFilesWarning, resolve_inside
from ghostkit.errors import GhostkitError
from ghostkit.io import atomic_write_text

__all__ = ["GT_FIELDS", "MOTData", "MOTSequence", "read_classes", "read_mot", "read_mot_boxes", "read_mot_sequence",
           "write_mot_results"]

GT_FIELDS = ("frame", "id", "x", "y", "w", "h", "conf", "class", "visibility")
DEFAULT_CLASSES = ("object",)
_SHOW = 5  # how many frame numbers a warning lists


@dataclass
class MOTSequence:
    """One sequence. ``frames``: frame number (1-based) → image path, for the frames present in ``img1/``.
    ``gt``: frame number → ``{"ids": N int64, "boxes": N x 4 float32 xyxy, "labels": N int64 (0-based index into
    the class names), "visibility": N float32}``, only frames with at least one box; empty without ``gt/gt.txt``."""

    name: str
    folder: Path
    frames: dict[int, Path]
    length: int
    frame_rate: float = 30.0
    width: int | None = None
    height: int | None = None
    gt: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)


@dataclass
class MOTData:
    """A split of a MOTChallenge root: its class names and sequences (sorted by folder name)."""

    root: Path
    split: str
    class_names: list[str]
    sequences: list[MOTSequence]


def read_classes(root: str | Path) -> list[str]:
    """Class names from ``ROOT/classes.txt`` (line k = class k, 1-based in gt.txt), or ``["object"]``."""
    path = Path(root) / "classes.txt"
    if not path.is_file():
        return list(DEFAULT_CLASSES)
    lines = path.read_text(encoding="utf-8").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    names = [line.strip() for line in lines]
    for i, name in enumerate(names, 1):
        if not name:
            raise GhostkitError(f"{path}:{i}: empty class name (class k is line k, so lines cannot be skipped)")
        if name in names[: i - 1]:
            raise GhostkitError(f"{path}:{i}: class '{name}' is listed twice")
    if not names:
        raise GhostkitError(f"{path}: no class names")
    return names


def read_mot(root: str | Path, split: str = "train") -> MOTData:
    """Every sequence under ``ROOT/<split>/`` with its ground truth (see the module docstring)."""
    root = Path(root)
    folder = root / split
    if not folder.is_dir():
        raise GhostkitError(f"{folder}: no such folder (a MOTChallenge root holds train/<SEQ>/ and val/<SEQ>/)")
    class_names = read_classes(root)
    classes_given = (root / "classes.txt").is_file()
    seqs = [read_mot_sequence(p, class_names if classes_given else None, root) for p in sorted(folder.iterdir())
            if p.is_dir() and not p.name.startswith(".")]
    if not seqs:
        raise GhostkitError(f"{folder}: no sequence folders")
    return MOTData(root, split, class_names, seqs)


def read_mot_boxes(root: str | Path, split: str = "train") -> tuple[list[tuple[Path, dict[str, np.ndarray]]],
                                                                      list[str]]:
    """Every frame of a split as a detection item ``(image path, {"boxes": N x 4 float32 xyxy, "labels": N int64,
    "ids": N int64})`` (frames without boxes are negatives), and the class names. ``ids`` number identities across
    the whole split from 0 (sequence by sequence), as identity classification over the training tracks needs.
    Boxes are as annotated and may reach past the image border (the detection data clips them)."""
    data = read_mot(root, split)
    items, offset = [], 0
    for seq in data.sequences:
        seq_ids = sorted({int(i) for g in seq.gt.values() for i in g["ids"]})
        index = {tid: offset + k for k, tid in enumerate(seq_ids)}
        offset += len(seq_ids)
        for frame, path in seq.frames.items():
            g = seq.gt.get(frame)
            if g is None:
                items.append((path, {"boxes": np.zeros((0, 4), np.float32), "labels": np.zeros(0, np.int64),
                                     "ids": np.zeros(0, np.int64)}))
            else:
                ids = np.array([index[int(i)] for i in g["ids"]], dtype=np.int64)
                items.append((path, {"boxes": g["boxes"], "labels": g["labels"], "ids": ids}))
    return items, data.class_names


def read_mot_sequence(folder: str | Path, class_names: list[str] | None = None,
                      root: str | Path | None = None) -> MOTSequence:
    """One sequence folder (``img1/``, optional ``seqinfo.ini`` and ``gt/gt.txt``); paths stay inside ``root``
    (default: the folder itself). ``class_names``: those of the data root's ``classes.txt``, which the class column
    must index; None: no such file, every box is class 0 (``object``)."""
    folder = Path(folder)
    root_real = Path(root if root is not None else folder).resolve()
    _inside(folder, root_real, folder)
    info = _read_seqinfo(folder / "seqinfo.ini")
    img_dir = resolve_inside(folder, info.get("imdir", "img1"), folder / "seqinfo.ini")
    if not img_dir.is_dir():
        raise GhostkitError(f"{folder}: not a MOTChallenge sequence: no {img_dir.name}/ folder of frames")
    _inside(img_dir, root_real, folder / "seqinfo.ini")
    suffixes = (info["imext"].lower(),) if "imext" in info else IMG_EXTENSIONS
    frames, outside, unnamed = {}, [], []
    for p in img_dir.iterdir():
        if p.name.startswith(".") or p.suffix.lower() not in suffixes:
            continue
        if not p.stem.isdigit() or int(p.stem) < 1:
            unnamed.append(p.name)
        elif p.resolve().is_relative_to(root_real):
            frames[int(p.stem)] = p
        else:
            outside.append(p.name)
    for bad, why in ((outside, f"linking outside {root_real}"), (unnamed, "whose names are not frame numbers")):
        if bad:
            warnings.warn(f"{img_dir}: skipped {len(bad)} images {why}: {', '.join(sorted(bad)[:_SHOW])}",
                          SkippedFilesWarning, stacklevel=2)
    length = int(_number(info, "seqlength", folder)) if "seqlength" in info else max(frames, default=0)
    gt_path = folder / "gt" / "gt.txt"
    known = length if "seqlength" in info else 0  # without seqinfo.ini, gt.txt may know of later frames
    gt = _read_gt(gt_path, None if class_names is None else len(class_names), known) if gt_path.is_file() else {}
    if "seqlength" not in info:
        length = max([length, *gt])
    missing = [k for k in range(1, length + 1) if k not in frames]
    if missing:
        shown = ", ".join(map(str, missing[:_SHOW])) + (", ..." if len(missing) > _SHOW else "")
        warnings.warn(f"{folder.name}: {len(missing)} of {length} frames missing from {img_dir.name}/ "
                      f"(frames {shown})", SkippedFilesWarning, stacklevel=2)
    return MOTSequence(
        name=info.get("name", folder.name), folder=folder, frames=dict(sorted(frames.items())), length=length,
        frame_rate=_number(info, "framerate", folder) if "framerate" in info else 30.0,
        width=int(_number(info, "imwidth", folder)) if "imwidth" in info else None,
        height=int(_number(info, "imheight", folder)) if "imheight" in info else None, gt=gt)


def write_mot_results(path: str | Path, frames: Iterable[tuple[int, Mapping]]) -> Path:
    """Write tracks as a MOTChallenge result file, atomically (:func:`ghostkit.io.atomic_write_text`).

    frames: ``(frame, tracks)`` pairs, ``frame`` 1-based, ``tracks`` a tracker's output for that frame
    (``{"ids": K, "boxes": K x 4 xyxy, "scores": K}``, tensors or arrays). Lines: ``frame,id,x,y,w,h,score,-1,-1,-1``.
    """
    path = Path(path)
    lines = []
    for frame, tracks in frames:
        if int(frame) < 1:
            raise GhostkitError(f"{path}: MOTChallenge frames are 1-based, got frame {frame}")
        ids, boxes = np.asarray(tracks["ids"]).reshape(-1), np.asarray(tracks["boxes"], dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(tracks["scores"]).reshape(-1) if "scores" in tracks else np.ones(len(ids))
        for i, (x1, y1, x2, y2), s in zip(ids.tolist(), boxes.tolist(), scores.tolist()):
            lines.append(f"{int(frame)},{int(i)},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},{s:.4f},-1,-1,-1\n")
    atomic_write_text(path, "".join(lines))
    return path


def _inside(path: Path, root_real: Path, named: Path) -> None:
    if not path.resolve().is_relative_to(root_real):
        raise GhostkitError(f"{named}: {path} lies outside the data root {root_real}")


def _read_seqinfo(path: Path) -> dict[str, str]:
    """The ``[Sequence]`` section of ``seqinfo.ini`` with lower-case keys; empty when the file is absent."""
    if not path.is_file():
        return {}
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as err:
        raise GhostkitError(f"{path}: not a valid seqinfo.ini ({str(err).splitlines()[0]})") from None
    if not parser.has_section("Sequence"):
        raise GhostkitError(f"{path}: no [Sequence] section")
    info = {k.lower(): v.strip() for k, v in parser.items("Sequence")}
    if "imext" in info and not info["imext"].startswith("."):
        info["imext"] = "." + info["imext"]
    return info


def _number(info: dict[str, str], key: str, folder: Path) -> float:
    try:
        value = float(info[key])
    except ValueError:
        raise GhostkitError(f"{folder / 'seqinfo.ini'}: {key} must be a number, got '{info[key]}'") from None
    if not np.isfinite(value) or value <= 0:
        raise GhostkitError(f"{folder / 'seqinfo.ini'}: {key} must be > 0, got '{info[key]}'")
    return value


def _read_gt(path: Path, num_classes: int | None, length: int) -> dict[int, dict[str, np.ndarray]]:
    """Parse ``gt.txt`` (9 fields a line) into per-frame arrays; raises on the first malformed line."""
    rows, seen, degenerate = [], set(), 0
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != len(GT_FIELDS):
            raise GhostkitError(f"{path}:{lineno}: expected {len(GT_FIELDS)} comma-separated fields "
                                f"({','.join(GT_FIELDS)}), got {len(parts)}")
        try:
            values = [float(p) for p in parts]
        except ValueError:
            bad = next(p for p in parts if not _is_float(p))
            raise GhostkitError(f"{path}:{lineno}: '{bad}' is not a number") from None
        frame, tid, x, y, w, h, conf, cls, vis = values
        if not all(np.isfinite(values)):
            raise GhostkitError(f"{path}:{lineno}: values must be finite")
        if frame != int(frame) or tid != int(tid) or cls != int(cls) or frame < 1:
            raise GhostkitError(f"{path}:{lineno}: frame (>= 1), id and class must be integers")
        if conf == 0:
            continue  # MOTChallenge: not evaluated
        if length and frame > length:
            raise GhostkitError(f"{path}:{lineno}: frame {int(frame)} is beyond the sequence length {length}")
        if (frame, tid) in seen:
            raise GhostkitError(f"{path}:{lineno}: id {int(tid)} appears twice in frame {int(frame)}")
        seen.add((frame, tid))
        label = 0
        if num_classes is not None:
            if not 1 <= cls <= num_classes:
                raise GhostkitError(f"{path}:{lineno}: class {int(cls)} is not in classes.txt (1..{num_classes})")
            label = int(cls) - 1
        if w <= 0 or h <= 0:
            degenerate += 1
            continue
        rows.append((int(frame), int(tid), x, y, x + w, y + h, label, vis))
    if degenerate:
        warnings.warn(f"{path}: dropped {degenerate} boxes with zero or negative width or height",
                      SkippedFilesWarning, stacklevel=3)
    gt: dict[int, dict[str, np.ndarray]] = {}
    if not rows:
        return gt
    table = np.array(rows, dtype=np.float64)
    table = table[np.lexsort((table[:, 1], table[:, 0]))]
    for frame in np.unique(table[:, 0]).astype(int):
        t = table[table[:, 0] == frame]
        gt[int(frame)] = {"ids": t[:, 1].astype(np.int64), "boxes": t[:, 2:6].astype(np.float32),
                          "labels": t[:, 6].astype(np.int64), "visibility": t[:, 7].astype(np.float32)}
    return gt


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
