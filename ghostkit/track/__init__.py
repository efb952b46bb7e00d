"""Multi-object tracking on top of any detect model: trackers (``build_tracker``), MOT metrics (``track_metrics``)
and tracking a trained detector through videos and image sequences.

The package is itself callable: ``ghostkit.track(weights, source, tracker="bytetrack", ...)`` is
:func:`ghostkit.track.stream.track`, a generator of per-frame tracks (``{"sequence", "frame", "tracks", ...}``).

The per-frame output is the online tracker's; :func:`ghostkit.track.offline.refine_tracks` makes a finished
sequence's ``(frame, tracks)`` pairs what ``ghostkit track`` writes (one class per track, gaps filled, starts
reported).

Import direction: trackers, metrics and the offline pass use ``errors`` and third-party libraries only (metrics
import py-motmetrics lazily); ``stream`` and ``evaluate`` (loaded on first call) add the detector, the data readers
and the runtime.
"""

import sys
import types

from ghostkit.track.kalman import KalmanBoxFilter
from ghostkit.track.metrics import track_metrics
from ghostkit.track.offline import refine_tracks
from ghostkit.track.tracker import TRACKERS, AppearanceTracker, ByteTracker, SortTracker, Tracker, build_tracker

__all__ = [
    "TRACKERS",
    "AppearanceTracker",
    "ByteTracker",
    "KalmanBoxFilter",
    "SortTracker",
    "Tracker",
    "build_tracker",
    "refine_tracks",
    "track",
    "track_metrics",
]


def track(weights, source, tracker: str = "bytetrack", conf: float | None = None, device: str = "cpu",
          max_frames: int = 0, **options):
    """Track every sequence of ``source`` with the detector in ``weights``: see :func:`ghostkit.track.stream.track`."""
    from ghostkit.track.stream import track as _track

    return _track(weights, source, tracker=tracker, conf=conf, device=device, max_frames=max_frames, **options)


class _CallableModule(types.ModuleType):
    """``ghostkit.track`` is both this package and the function :func:`track` (the API mirrors the CLI command)."""

    def __call__(self, *args, **kwargs):
        return track(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
