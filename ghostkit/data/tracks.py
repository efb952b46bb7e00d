"""Built-in ``tracks`` data: procedural videos of moving shapes with identities, written as a MOTChallenge folder.

Each sequence has a static textured background and several circles / squares / triangles (so several of the same
class) moving in straight lines at constant speed: they enter and leave the frame, and they come in pairs whose
paths cross at about the same moment, so one passes in front of the other (the later-drawn object hides the other).
Ground truth follows MOTChallenge: one row per object and frame while at least ``_MIN_IN_FRAME`` of it lies inside
the frame; the box is the extent of its part inside the frame (including pixels another object hides),
and ``visibility`` is the fraction of its pixels that can be seen. The folder it writes is read by
:func:`ghostkit.data.formats.mot.read_mot` like any user's folder.

Training sequence ``i`` of seed ``s`` depends only on ``(s, i)`` and the size options, validation sequence ``j`` on
``(s, j)`` drawn from another stream: the splits never share a sequence, and the validation sequences stay the same
whatever the training split's size. The drawing reuses the ``shapes`` generator's helpers.

Sizes of the built-in set: 96 px frames; 2 validation sequences of 80 frames, 5-8 objects each, one colour per
object, to track; 400 training sequences of 2 frames, each a stretch of an 80-frame sequence from a random start,
with 10-16 objects (about 8 in view per frame, twice the validation's) sharing 2 colours. A default detector
training from scratch (30 epochs, the medium recipe: colour distortion and flips) has 800 images to learn from and
takes about 6 minutes of wall time on 2 CPU cores (docs/benchmarks.md, Tracking). The training split is made of
many short, crowded scenes because such a detector learns the object instances rather than the shapes when it sees
few of them (consecutive frames of one sequence are near copies), and its objects share colours so that a colour
cannot name a class within a scene.

Measured with the defaults of the time (ghostnet_100, FCOS, imgsz 96, 30 epochs, no augmentation, one torch thread;
Intel Xeon, Sapphire Rapids class, 2 cores shared with other work, torch 2.14.1, 2026-12-02); "val10": the 2
validation sequences and 8 more of the same kind (``write_tracks(val_sequences=10)``), mAP50 class-aware:

- 160 sequences of 4 frames, 5-8 objects, own colours (generator version 4): mAP50 0.43 on its validation sequences
  at the 30th epoch (811 CPU s); val10 0.38, class-agnostic recall 0.87 at IoU 0.5 (score 0.3 and above) but 0.46
  of the found objects given the right class (0.50 of the fully visible ones).
- 320 of 2 frames, 8-12 objects: 0.26 at the 2nd epoch, 0.50 at the 13th (stopped there); val10 0.49.
- 400 of 2 frames, 10-16 objects: 0.44-0.56 from the 7th to the 21st epoch (stopped there; about 32 CPU s an epoch)
  while the training loss kept falling; val10 0.50, class-agnostic recall 0.92, right class 0.51 (0.86 on training
  frames): boxes generalise, classes are learnt per instance.
- the same with 2 colours per training scene (the built-in set): 0.49 at the 6th epoch, 0.56-0.62 from the 11th to
  the 30th, 0.59 at the end (1006 CPU s in all, 22 minutes of wall time on the shared cores); val10 0.55 (best
  checkpoint) and 0.53 (last), class-agnostic recall 0.91 (0.60 of the objects under 30% visible), right class 0.60
  (0.66 of the fully visible ones; 0.82 on training frames).
- 400 of 2 frames, 8-12 objects, 3 colours per training scene: 0.51-0.61 from the 11th epoch, 0.59 at the end (952
  CPU s); val10 0.55: the same.

The detector finds the objects, occluded ones included; what stays short of the tracker's needs is telling the
shapes apart on unseen instances. Colour distortion (the detection recipe from 30 epochs on) raises the built-in
set's mAP50 to 0.70 and val10's class-agnostic MOTA from 0.55 to 0.65, flips (every detection recipe) the mAP50 to
0.82-0.85; per-layout and per-option numbers are in docs/benchmarks.md (Tracking).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from ghostkit.data.common import cached_folder
from ghostkit.data.synthetic import SHAPE_CLASSES, _pick_colour, _pixel_centres, _shape_mask, _texture
from ghostkit.errors import GhostkitError

__all__ = ["BUILTIN_TRACKS", "TRACK_CLASSES", "builtin_tracks", "data_root", "write_tracks"]

BUILTIN_TRACKS = "tracks"  # the --data name

TRACK_CLASSES: tuple[str, ...] = SHAPE_CLASSES
_VERSION = 7  # bump when the generator changes, so cached folders are rebuilt
# A shape's sprite is drawn by `_shape_mask` on a canvas of this fraction of the frame: objects measure about
# 10%-30% of the frame side (`_shape_mask` sizes shapes at 15%-45% of its canvas), 10 px and more at 96 px.
_SPRITE_CANVAS = 0.65
_MIN_IN_FRAME = 0.3  # fraction of an object's pixels inside the frame for it to be in the ground truth
_SPEED = (1.5, 3.0)  # pixels per frame, per 100 pixels of frame side
_JPEG_QUALITY = 95


def write_tracks(root: str | Path, seed: int = 0, imgsz: int = 96, train_sequences: int = 400, val_sequences: int = 2,
                 frames: int = 80, train_frames: int = 2, objects: tuple[int, int] = (5, 8),
                 train_objects: tuple[int, int] | None = (10, 16), train_colours: int | None = 2,
                 frame_rate: float = 30.0) -> Path:
    """Write ``root/{train,val}/<SEQ>/{img1/*.jpg, gt/gt.txt, seqinfo.ini}`` and ``root/classes.txt``; returns root.

    imgsz: frame side in pixels (square frames). frames: frames per validation sequence; train_frames: per training
    sequence. objects: (min, max) objects per validation sequence over its whole length (in an 80-frame sequence
    about half of them are in view at a time); train_objects: the same for a training sequence (None: ``objects``).
    train_colours: colours a training sequence's objects share (None: one colour per object, as in validation), so
    that a colour names no class and a detector has to tell the classes by their shapes.
    """
    train_objects = objects if train_objects is None else tuple(train_objects)
    if imgsz < 32 or min(frames, train_frames) < 2 or not 1 <= objects[0] <= objects[1] \
            or not 1 <= train_objects[0] <= train_objects[1] or train_sequences < 1 or val_sequences < 1 or seed < 0 \
            or (train_colours is not None and train_colours < 1):
        raise GhostkitError(f"tracks: need imgsz >= 32, frames and train_frames >= 2, 1 <= objects[0] <= objects[1] "
                            f"(and train_objects), >= 1 sequence per split, train_colours >= 1 and seed >= 0; got "
                            f"imgsz={imgsz}, frames={frames}, train_frames={train_frames}, objects={objects}, "
                            f"train_objects={train_objects}, train_colours={train_colours}, "
                            f"train_sequences={train_sequences}, val_sequences={val_sequences}, seed={seed}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("".join(f"{c}\n" for c in TRACK_CLASSES), encoding="utf-8")
    for i in range(train_sequences + val_sequences):
        split = "train" if i < train_sequences else "val"
        train = split == "train"
        # keyed by split and index within it: the validation sequences do not change with the training split's size
        key = [seed, 0, i] if train else [seed, 1, i - train_sequences]
        _write_sequence(root / split / f"shapes-{i + 1:02d}", np.random.default_rng(key), imgsz,
                        train_frames if train else frames, max(frames, train_frames),
                        train_objects if train else objects, (train_colours or 0) if train else 0, frame_rate)
    return root


def builtin_tracks(cache_dir: str | Path | None = None, **options) -> Path:
    """The built-in ``tracks`` folder for these :func:`write_tracks` options, generated once under ``cache_dir``
    (default ``~/.cache/ghostkit``) and reused afterwards; written into a temporary folder and renamed into place,
    so an interrupted run never leaves half a data set behind."""
    return cached_folder("tracks", (_VERSION, sorted(options.items())), lambda tmp: write_tracks(tmp, **options),
                         cache_dir)


def data_root(data: str | Path) -> Path:
    """The folder a ``--data`` value names: the built-in ``tracks`` folder (default options, written on first use)
    for ``"tracks"``, else the path itself. Every reader then treats it as a user's MOTChallenge folder."""
    return builtin_tracks() if str(data) == BUILTIN_TRACKS else Path(data)


def _objects(rng: np.random.Generator, imgsz: int, frames: int, count: int, bg: np.ndarray,
             palette: int = 0) -> list[dict]:
    """Class, sprite mask, colour and straight-line path ``centre(t) = cross + velocity * (t - t_cross)``.
    palette: 0 gives every object its own colour; else object ``k`` takes colour ``k % palette``."""
    objs: list[dict] = []
    colours: list[np.ndarray] = []
    canvas = max(16, int(round(_SPRITE_CANVAS * imgsz)))
    for k in range(count):
        cls = int(rng.integers(len(TRACK_CLASSES)))
        mask, _ = _shape_mask(rng, cls, canvas)
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        mask = mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        if palette and k >= palette:
            colour = colours[k % palette]
        else:
            colour = _pick_colour(rng, bg, colours)
            colours.append(colour)
        speed = rng.uniform(*_SPEED) * imgsz / 100
        if k % 2 == 0:  # a new crossing: where, when, and the first object's heading
            cross = rng.uniform(0.25, 0.75, size=2) * imgsz
            t_cross = rng.uniform(0.2, 0.8) * frames
            heading = rng.uniform(0, 2 * math.pi)
        else:  # its partner crosses the same place at about the same time, at least 45 degrees off
            cross = objs[-1]["cross"] + rng.uniform(-3, 3, size=2)
            t_cross = objs[-1]["t_cross"] + rng.uniform(-2, 2)
            heading = objs[-1]["heading"] + rng.choice([-1, 1]) * rng.uniform(math.pi / 4, 3 * math.pi / 4)
        velocity = speed * np.array([math.cos(heading), math.sin(heading)])
        objs.append({"cls": cls, "mask": mask, "colour": colour, "cross": cross, "t_cross": t_cross,
                     "heading": heading, "velocity": velocity})
    return objs


def _write_sequence(folder: Path, rng: np.random.Generator, imgsz: int, frames: int, span: int,
                    objects: tuple[int, int], palette: int, frame_rate: float) -> None:
    """Objects timed over ``span`` frames; ``frames`` consecutive ones from a random start are written (a short
    sequence shows a stretch of a long one: objects as sparse as there, not all at their crossings)."""
    xx, yy = _pixel_centres(imgsz)
    c0 = rng.uniform(0, 255, size=3)
    c1 = np.clip(c0 + rng.uniform(-70, 70, size=3), 0, 255)
    weight = _texture(rng, int(rng.integers(4)), xx, yy, imgsz).astype(np.float32)
    background = c0.astype(np.float32) + weight[..., None] * (c1 - c0).astype(np.float32)
    objs = _objects(rng, imgsz, span, int(rng.integers(objects[0], objects[1] + 1)), np.stack([c0, c1]),
                    palette)
    noise = np.float32(rng.uniform(0, 24))
    start = int(rng.integers(span - frames + 1)) if span > frames else 0

    (folder / "img1").mkdir(parents=True, exist_ok=True)
    (folder / "gt").mkdir(exist_ok=True)
    rows = []
    for t in range(1, frames + 1):
        image = background.copy()
        owner = np.zeros((imgsz, imgsz), dtype=np.int32)  # 1 + index of the object seen at each pixel
        placed = []
        for k, o in enumerate(objs):
            h, w = o["mask"].shape
            centre = o["cross"] + o["velocity"] * (start + t - o["t_cross"])
            x0, y0 = int(round(centre[0] - w / 2)), int(round(centre[1] - h / 2))
            fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x0 + w, imgsz), min(y0 + h, imgsz)
            if fx0 >= fx1 or fy0 >= fy1:
                continue
            part = o["mask"][fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]
            in_frame = int(part.sum())
            if in_frame == 0:
                continue
            image[fy0:fy1, fx0:fx1][part] = o["colour"]
            owner[fy0:fy1, fx0:fx1][part] = k + 1
            rs, cs = np.flatnonzero(part.any(axis=1)), np.flatnonzero(part.any(axis=0))
            placed.append((k, (fx0 + cs[0], fy0 + rs[0], fx0 + cs[-1] + 1, fy0 + rs[-1] + 1), in_frame))
        visible = np.bincount(owner.ravel(), minlength=len(objs) + 1)
        for k, (fx0, fy0, fx1, fy1), in_frame in placed:
            total = int(objs[k]["mask"].sum())
            if in_frame >= _MIN_IN_FRAME * total:
                rows.append(f"{t},{k + 1},{fx0},{fy0},{fx1 - fx0},{fy1 - fy0},1,{objs[k]['cls'] + 1},"
                            f"{visible[k + 1] / total:.3f}\n")
        image += (rng.random(image.shape, dtype=np.float32) - np.float32(0.5)) * noise
        pixels = np.clip(np.rint(image), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / "img1" / f"{t:06d}.jpg", quality=_JPEG_QUALITY)
    (folder / "gt" / "gt.txt").write_text("".join(rows), encoding="utf-8")
    (folder / "seqinfo.ini").write_text(
        f"[Sequence]\nname={folder.name}\nimDir=img1\nframeRate={frame_rate:g}\nseqLength={frames}\n"
        f"imWidth={imgsz}\nimHeight={imgsz}\nimExt=.jpg\n", encoding="utf-8")
