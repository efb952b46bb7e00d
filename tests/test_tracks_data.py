"""The built-in tracks generator's split composition: objects per training sequence, validation independent of the
training split's size."""

from __future__ import annotations

import numpy as np
import pytest

from ghostkit.data.formats.mot import read_mot
from ghostkit.data.tracks import _objects, write_tracks
from ghostkit.errors import GhostkitError


def _ids(seq) -> set[int]:
    return {int(i) for g in seq.gt.values() for i in g["ids"]}


def test_train_objects_sets_the_training_density(tmp_path):
    # a sequence as long as its objects' timing span shows every object at its crossing
    root = write_tracks(tmp_path, imgsz=48, train_sequences=3, val_sequences=2, frames=20, train_frames=20,
                        objects=(2, 2), train_objects=(6, 6))
    train, val = read_mot(root, "train"), read_mot(root, "val")
    assert [len(_ids(s)) for s in train.sequences] == [6, 6, 6]
    assert [len(_ids(s)) for s in val.sequences] == [2, 2]
    same = write_tracks(tmp_path / "same", imgsz=48, train_sequences=1, val_sequences=1, frames=20, train_frames=20,
                        objects=(3, 3), train_objects=None)
    assert [len(_ids(s)) for s in read_mot(same, "train").sequences] == [3]
    with pytest.raises(GhostkitError, match="train_objects"):
        write_tracks(tmp_path / "bad", train_objects=(4, 2))


def test_validation_does_not_depend_on_the_training_split(tmp_path):
    small = write_tracks(tmp_path / "small", imgsz=48, train_sequences=1, val_sequences=2, frames=12)
    large = write_tracks(tmp_path / "large", imgsz=48, train_sequences=5, val_sequences=2, frames=12, train_frames=3)
    for a, b in zip(read_mot(small, "val").sequences, read_mot(large, "val").sequences, strict=True):
        assert (small / "val" / a.name / "gt/gt.txt").read_text() == (large / "val" / b.name / "gt/gt.txt").read_text()
        first = sorted((small / "val" / a.name / "img1").iterdir())[0]
        assert first.read_bytes() == (large / "val" / b.name / "img1" / first.name).read_bytes()


def test_training_objects_share_a_palette():
    # a colour names no class in a training scene: the classes must be told by their shapes
    rng = np.random.default_rng(0)
    bg = np.array([[40.0, 40.0, 40.0], [60.0, 60.0, 60.0]])
    shared = _objects(rng, 96, 80, 12, bg, palette=2)
    assert len({tuple(o["colour"]) for o in shared}) == 2
    by_colour = {}
    for o in shared:
        by_colour.setdefault(tuple(o["colour"]), set()).add(o["cls"])
    assert max(len(c) for c in by_colour.values()) > 1
    # partners of a crossing (objects 2k and 2k+1) keep apart colours
    assert all((shared[k]["colour"] != shared[k + 1]["colour"]).any() for k in range(0, 12, 2))
    own = _objects(np.random.default_rng(0), 96, 80, 12, bg)
    assert len({tuple(o["colour"]) for o in own}) == 12


def test_bad_train_colours(tmp_path):
    with pytest.raises(GhostkitError, match="train_colours=0"):
        write_tracks(tmp_path, train_colours=0)
