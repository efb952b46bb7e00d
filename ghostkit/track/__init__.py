"""Multi-object tracking on top of any detect model: trackers (``build_tracker``) and MOT metrics (``track_metrics``).

Import direction: ``track`` uses ``errors`` and third-party libraries only; metrics import py-motmetrics lazily.
"""

from ghostkit.track.kalman import KalmanBoxFilter
from ghostkit.track.metrics import track_metrics
from ghostkit.track.tracker import TRACKERS, AppearanceTracker, ByteTracker, SortTracker, Tracker, build_tracker

__all__ = [
    "TRACKERS",
    "AppearanceTracker",
    "ByteTracker",
    "KalmanBoxFilter",
    "SortTracker",
    "Tracker",
    "build_tracker",
    "track_metrics",
]
