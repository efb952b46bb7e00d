"""Appearance embeddings (``--task detect,embed``): head options and the retrieval metric for the engine.

metrics.json key: ``id_top1``, nearest-neighbour identity retrieval on the validation frames: for every validation
object whose identity appears in another validation image, is the closest embedding (cosine) among the objects of
all other images one of the same identity? Identity classification accuracy cannot be measured there, since the
validation sequences hold other identities than the training ones (the classifier only serves training).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import ConcatDataset

from ..data.tasks import build_task_data
from ..errors import GhostkitError
from .config import TrainConfig
from .spec import TaskData, TaskSpec, register_spec

__all__ = ["EmbedMetrics", "EmbedSpec", "count_identities"]


class EmbedMetrics(nn.Module):
    """``id_top1`` (module docstring) from the head's embeddings at the target boxes."""

    def __init__(self, head: nn.Module, chunk: int = 1024) -> None:
        super().__init__()
        self._embed = head.embed  # a bound method: the head stays out of this module's state
        self.chunk = chunk
        self.reset()

    def update(self, outputs: dict, targets: list[dict[str, torch.Tensor]]) -> None:
        for emb, t in zip(self._embed(outputs, [t["boxes"] for t in targets]), targets):
            self._emb.append(emb.float().cpu())
            self._ids.append(t["ids"].cpu())
            self._image.append(torch.full((len(emb),), int(t["index"]), dtype=torch.int64))

    def compute(self) -> dict:
        if not self._emb:
            return {"id_top1": 0.0}
        emb, ids, image = torch.cat(self._emb), torch.cat(self._ids), torch.cat(self._image)
        hits = total = 0
        for start in range(0, len(emb), self.chunk):  # rows in chunks: N x N similarities need not fit at once
            rows = slice(start, start + self.chunk)
            sim = emb[rows] @ emb.t()
            other = image[rows, None] != image[None, :]
            sim = sim.masked_fill(~other, -2.0)
            has_match = ((ids[rows, None] == ids[None, :]) & other).any(1)
            nearest = sim.argmax(1)
            hits += int(((ids[nearest] == ids[rows]) & has_match).sum())
            total += int(has_match.sum())
        return {"id_top1": hits / total if total else 0.0}

    def reset(self) -> None:
        self._emb: list[torch.Tensor] = []
        self._ids: list[torch.Tensor] = []
        self._image: list[torch.Tensor] = []


def count_identities(dataset) -> int:
    """Identities in a multi-task training set (``ids`` of its ``embed`` targets are 0..n-1)."""
    items = dataset.items
    parts = items.datasets if isinstance(items, ConcatDataset) else [items]
    top = -1
    for part in parts:
        for _, targets in part:
            ids = targets.get("embed", {}).get("ids")
            if ids is not None and len(ids):
                top = max(top, int(max(ids)))
    return top + 1


class EmbedSpec(TaskSpec):
    name = "embed"

    def build_data(self, cfg: TrainConfig) -> TaskData:
        return build_task_data(self.name, cfg.data, cfg.imgsz, cfg.val_fraction, cfg.seed)

    def head_config(self, cfg: TrainConfig, data: TaskData) -> dict:
        num_ids = count_identities(data.train)
        if num_ids < 2:
            raise GhostkitError(f"{cfg.data}: the embedding head learns to tell identities apart, but the training "
                                f"sequences hold {num_ids}")
        return {"num_ids": num_ids}

    def metrics(self, class_names: list[str], cfg: TrainConfig, head: nn.Module) -> nn.Module:
        return EmbedMetrics(head)


register_spec(EmbedSpec())
