"""Where a training epoch's time goes: waiting for the data loader vs the model's forward, backward and step.

Lightning's own profilers time the same hooks but print pages of tables; a run needs two numbers at its end.
"""

from __future__ import annotations

import time

import lightning as L

__all__ = ["LoaderTimer"]


class LoaderTimer(L.Callback):
    """Sums, over training batches, the seconds spent waiting for the next batch (`data_s`: from the end of a step,
    or the epoch start, to the start of the next) and inside the step (`compute_s`)."""

    def __init__(self) -> None:
        self.data_s = self.compute_s = 0.0
        self.images = 0
        self._mark: float | None = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._mark = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        now = time.perf_counter()
        if self._mark is not None:
            self.data_s += now - self._mark
        self._mark = now

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        now = time.perf_counter()
        self.compute_s += now - self._mark
        self.images += len(batch[0])
        self._mark = now

    def summary(self) -> str:
        """One line: data-loading and compute seconds, their shares, and training images per second."""
        total = self.data_s + self.compute_s
        if total <= 0:
            return "training time: no training batches"
        return (f"training time: data loading {self.data_s:.1f} s ({self.data_s / total:.0%}), compute "
                f"{self.compute_s:.1f} s ({self.compute_s / total:.0%}), {self.images / total:.0f} images/s")
