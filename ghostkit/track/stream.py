"""Tracking with a trained detector: sources (videos, cameras, frame folders, MOTChallenge sequences) → per-frame
tracks. What ``ghostkit track`` and ``ghostkit.track(...)`` run.

Sources (:func:`open_source`):

- a video file (``.mp4``, ``.avi``, ... through OpenCV, the ``video`` extra) or a camera index (``"0"``);
- a MOTChallenge sequence folder (``SEQ/img1/`` + ``seqinfo.ini``; frame numbers from the file names, the frame
  rate from ``seqinfo.ini``), or a folder of such sequences (a split: ``MOT17/train``);
- any other folder of images: the frames in name order, numbered from 1, at 30 frames per second.

Each sequence gets a fresh tracker. The detector runs on the whole frame resized to its training size, with its
score threshold lowered to the tracker's ``min_score`` (ByteTrack's second stage needs the low-score boxes). Its
boxes then go through a second NMS, class-agnostic, at the detector's own IoU threshold: a detection head scores
every class at every location and suppresses overlaps within a class only, so an object whose class the detector
is unsure of comes out as one box per class, and the tracker, which matches across classes, would take them for
several objects.
A model with an ``embed`` head (``--task detect,embed``) adds each detection's L2-normalised embedding, which
``--tracker appearance`` needs. ``conf`` sets the tracker's high-score threshold (ByteTrack and appearance:
``track_thresh``, with ``new_track_thresh = conf + 0.1`` as in ByteTrack; SORT: ``score_thresh``). A video whose
decoding breaks off before its announced frame count ends with a :class:`BrokenVideoWarning` that says how many
frames were read; the tracks of those frames are kept.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import nn
from torchvision.ops import nms

from ghostkit.data.detect import is_mot_root
from ghostkit.data.formats.mot import read_mot_sequence
from ghostkit.data.images import list_images, read_image
from ghostkit.data.tasks import inference_transform
from ghostkit.deploy.runtime import load_model_file
from ghostkit.errors import GhostkitError
from ghostkit.predict import VIDEO_EXTENSIONS
from ghostkit.track.tracker import Tracker, build_tracker

__all__ = ["BrokenVideoWarning", "SourceSequence", "detect_frame", "load_detector", "open_source", "track",
           "track_sequence", "tracker_options"]


class BrokenVideoWarning(UserWarning):
    """A video stopped decoding before its announced number of frames (the message says how many were read)."""


@dataclass
class SourceSequence:
    """One sequence to track: ``frames()`` yields ``(frame number from 1, RGB PIL image)``."""

    name: str
    frame_rate: float
    source: str
    kind: str  # "video", "camera", "mot" or "folder"
    paths: dict[int, Path] | None = None  # frame number → image (mot, folder)

    def frames(self, max_frames: int = 0) -> Iterator[tuple[int, Image.Image]]:
        if self.paths is not None:
            for k, (frame, path) in enumerate(self.paths.items()):
                if max_frames and k >= max_frames:
                    return
                yield frame, read_image(path)
            return
        yield from _video_frames(self.source, max_frames)


def _is_sequence(folder: Path) -> bool:
    return (folder / "img1").is_dir() or (folder / "seqinfo.ini").is_file()


def _video_frames(source: str, max_frames: int) -> Iterator[tuple[int, Image.Image]]:
    try:
        import cv2
    except ImportError:
        raise GhostkitError("video and camera input need OpenCV: pip install 'ghostkit[video]'") from None
    camera = source.isdigit()
    cap = cv2.VideoCapture(int(source) if camera else source)
    if not cap.isOpened():
        raise GhostkitError(f"{source}: cannot open this {'camera' if camera else 'video'}")
    announced = 0 if camera else int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    read = 0
    try:
        while not max_frames or read < max_frames:
            ok, frame = cap.read()
            if not ok:
                break
            read += 1
            yield read, Image.fromarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    finally:
        cap.release()
    if read == 0:
        raise GhostkitError(f"{source}: no frame could be decoded")
    if announced > read and not (max_frames and read >= max_frames):
        warnings.warn(f"{source}: the video broke off after {read} of its {announced} frames; the {read} frames "
                      "read were tracked", BrokenVideoWarning, stacklevel=2)


def open_source(source: str | Path) -> list[SourceSequence]:
    """The sequences of a ``--source`` value (see the module docstring)."""
    text = str(source)
    if text.isdigit():
        return [SourceSequence(f"camera{text}", 30.0, text, "camera")]
    path = Path(text)
    if path.is_file():
        if path.suffix.lower() not in VIDEO_EXTENSIONS:
            raise GhostkitError(f"{path}: not a video file (expected one of {', '.join(VIDEO_EXTENSIONS)}), a "
                                "folder of frames or a MOTChallenge sequence")
        try:
            import cv2

            cap = cv2.VideoCapture(text)
            fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0) if cap.isOpened() else 0.0
            cap.release()
        except ImportError:
            fps = 0.0  # _video_frames names the missing extra
        return [SourceSequence(path.stem, fps if 0 < fps < 1000 else 30.0, text, "video")]
    if not path.is_dir():
        raise GhostkitError(f"{text}: no such video, camera index or folder")
    if _is_sequence(path):
        folders = [path]
    else:
        folders = [p for p in sorted(path.iterdir()) if p.is_dir() and _is_sequence(p)]
    if folders:
        out = []
        for folder in folders:
            seq = read_mot_sequence(folder, root=path)
            if not seq.frames:
                raise GhostkitError(f"{folder}: no frames in its image folder")
            out.append(SourceSequence(seq.name, seq.frame_rate, str(folder), "mot", seq.frames))
        return out
    if is_mot_root(path):
        raise GhostkitError(f"{path}: a MOTChallenge root; track one of its splits (e.g. {path / 'val'})")
    images = list_images(path)
    if not images:
        raise GhostkitError(f"{path}: no images, video or MOTChallenge sequences in this folder")
    return [SourceSequence(path.name, 30.0, text, "folder", {k: p for k, p in enumerate(images, 1)})]


def load_detector(weights: str | Path | nn.Module, tracker: str = "bytetrack") -> nn.Module:
    """A detection model (checkpoint, exported file or loaded model) in eval mode; other tasks' models and an
    appearance tracker without an embed head are refused with one line."""
    model = load_model_file(weights) if isinstance(weights, (str, Path)) else weights
    heads = list(model.heads)
    if "detect" not in heads:
        raise GhostkitError(f"{weights if isinstance(weights, (str, Path)) else 'model'}: a {','.join(heads)} model; "
                            "tracking needs a detector (train --task detect, or detect,embed for --tracker appearance)")
    if tracker == "appearance" and "embed" not in heads:
        raise GhostkitError(f"{weights if isinstance(weights, (str, Path)) else 'model'}: --tracker appearance needs "
                            "an embed head next to the detector (train --task detect,embed); or use bytetrack")
    return model.eval()


def tracker_options(name: str, conf: float | None) -> dict:
    """The tracker options that ``conf`` (the high-score threshold) stands for (module docstring)."""
    if conf is None:
        return {}
    if not 0 <= conf < 1:
        raise GhostkitError(f"--conf must be in [0, 1), got {conf}")
    if name == "sort":
        return {"score_thresh": conf}
    return {"track_thresh": conf, "new_track_thresh": min(1.0, conf + 0.1), "low_thresh": min(0.1, conf)}


def frame_transform(model: nn.Module):
    """The detector's input transform: a frame (PIL) resized to its training size, normalised (3 x H x W)."""
    config = model.config
    return inference_transform({"resize"}, tuple(config["imgsz"]), config["mean"], config["std"])


@torch.inference_mode()
def detect_frame(model: nn.Module, image: Image.Image, min_score: float, embeddings: bool = False,
                 device: str | torch.device = "cpu", transform=None) -> dict[str, torch.Tensor]:
    """One frame's detections for a tracker: ``{"boxes": N x 4 xyxy (image pixels), "scores": N, "labels": N}``
    scoring above ``min_score``, one box per object (the class-agnostic NMS of the module docstring), best first;
    with ``embeddings`` (a model with an ``embed`` head) also ``"embeddings": N x D``. Tensors on ``device``.
    ``transform``: :func:`frame_transform` of ``model``, built once by callers that detect many frames."""
    transform = transform or frame_transform(model)
    detect = model.heads["detect"]
    x = transform(image)[None].to(device)
    outputs = model(x)
    size = (image.height, image.width)
    det = detect.postprocess(outputs["detect"], [size], conf=min_score)[0]
    det = {k: v[nms(det["boxes"], det["scores"], detect.iou)] for k, v in det.items()}
    if embeddings:
        in_h, in_w = x.shape[-2:]
        scale = det["boxes"].new_tensor([in_w / size[1], in_h / size[0]] * 2)
        det["embeddings"] = model.heads["embed"].embed(outputs["embed"], [det["boxes"] * scale])[0]
    return det


@torch.inference_mode()
def track_sequence(model: nn.Module, sequence: SourceSequence, tracker: Tracker, device: str | torch.device = "cpu",
                   max_frames: int = 0) -> Iterator[dict]:
    """Track one sequence with ``tracker`` (reset first): yields per frame ``{"sequence", "frame" (1-based),
    "image" (RGB PIL), "tracks" (the tracker's output, original image pixels), "detections" (boxes the detector
    gave), "seconds" (detection and association time), "frame_rate"}``."""
    embeddings = "embed" in model.heads and tracker.needs_embeddings
    transform = frame_transform(model)
    tracker.reset()
    for frame, image in sequence.frames(max_frames):
        start = time.perf_counter()
        det = detect_frame(model, image, tracker.min_score, embeddings, device, transform)
        tracks = tracker.update({k: v.cpu() for k, v in det.items()})
        yield {"sequence": sequence.name, "frame": frame, "image": image, "tracks": tracks,
               "detections": len(det["boxes"]), "seconds": time.perf_counter() - start,
               "frame_rate": sequence.frame_rate}


def track(weights: str | Path | nn.Module, source: str | Path, tracker: str = "bytetrack", conf: float | None = None,
          device: str = "cpu", max_frames: int = 0, **options) -> Iterator[dict]:
    """Track every sequence of ``source`` (:func:`open_source`) with ``weights``' detector; yields
    :func:`track_sequence`'s per-frame dicts, sequence after sequence (the online tracker's output; the offline pass
    of ``ghostkit track``'s result files is :func:`ghostkit.track.refine_tracks`). ``options``: the tracker's own
    (``ghostkit.track.build_tracker``), over those ``conf`` sets."""
    model = load_detector(weights, tracker).to(device)
    options = {**tracker_options(tracker, conf), **options}
    build_tracker(tracker, **options)  # option errors before any frame is read
    for sequence in open_source(source):
        yield from track_sequence(model, sequence, build_tracker(tracker, frame_rate=sequence.frame_rate, **options),
                                  device, max_frames)
