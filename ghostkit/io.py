"""Writing files safely: the one atomic writer behind every file ghostkit writes, and output-location checks.

A write goes to a temporary file in the target's own folder (so the final rename never crosses filesystems), is
flushed and fsynced, then renamed over the target with ``os.replace``: a reader sees the old file or the new one,
never half of one, and a failed write (full disk, read-only folder, Ctrl-C) leaves the old file in place and no
temporary behind. An ``OSError`` of the storage becomes a one-line :class:`GhostkitError` naming the file.

Libraries that write by path (matplotlib, PIL, onnx, safetensors, OpenVINO) use :func:`atomic_path`; torch
checkpoints from Lightning go through :class:`AtomicCheckpointIO`. Lightning's own path writes through fsspec,
whose temporary file lives in the system temp folder and is copied over the target when that is another
filesystem (not atomic, and a full disk truncates the target); hence this module.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from .errors import GhostkitError

__all__ = ["atomic_open", "atomic_path", "atomic_write_bytes", "atomic_write_text", "storage_error",
           "check_output_dir", "check_output_file", "remove_stale_temporaries"]

# the temporary files of atomic_path: ".<target name>.<mkstemp's 8 characters>.tmp<target suffix>"
_TEMPORARY = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp(\.[^.]+)?$")


def _reason(e: OSError) -> str:
    return {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
            errno.EROFS: "read-only filesystem", errno.EACCES: "permission denied",
            errno.EPERM: "permission denied"}.get(e.errno, e.strerror or str(e))


def storage_error(path: str | Path, e: OSError) -> GhostkitError:
    """One line for a failed write: the file and the reason (no space left, read-only, permission denied, ...)."""
    return GhostkitError(f"{path}: cannot write: {_reason(e)}; the previous file, if any, is left as it was")


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); not possible on every platform, where it is skipped."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix, so libraries pick the right format) for a library to
    write to; on success it is fsynced and renamed over ``path``; on any failure it is removed."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
        os.close(fd)
    except OSError as e:
        raise storage_error(path, e) from None
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise storage_error(path, e) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb", **kwargs: Any) -> Iterator[IO]:
    """``open(path, mode)`` that writes atomically (module docstring); ``mode`` is ``"wb"`` or ``"w"``."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    with atomic_open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    return Path(path)


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporary files a killed process (kill -9, power loss) left in ``folder``; returns them."""
    folder = Path(folder)
    stale = [p for p in folder.iterdir() if p.is_file() and _TEMPORARY.match(p.name)] if folder.is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def _writable_folder(folder: Path, option: str) -> None:
    """``folder`` (or, if it does not exist yet, its nearest existing parent) must be a folder we can write in."""
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise GhostkitError(f"{option} {folder}: {probe} is a file, not a folder")
    try:  # os.access misses read-only mounts seen as root; creating a file is the real test
        fd, name = tempfile.mkstemp(dir=probe, prefix=".ghostkit-write-test.")
        os.close(fd)
        os.unlink(name)
    except OSError as e:
        raise GhostkitError(f"{option} {folder}: cannot write there ({_reason(e)})") from None


def check_output_dir(folder: str | Path, option: str = "--out") -> Path:
    """Check before any work starts that ``folder`` can be a folder of outputs: not an existing file, and
    writable (itself or the nearest parent that exists)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise GhostkitError(f"{option} {folder}: is an existing file, not a folder")
    _writable_folder(folder, option)
    return folder


def check_output_file(path: str | Path, option: str = "--out") -> Path:
    """Check before any work starts that ``path`` can be written as a file: not a folder, in a writable folder."""
    path = Path(path)
    if path.is_dir():
        raise GhostkitError(f"{option} {path}: is a folder; name the output file")
    _writable_folder(path.parent, option)
    return path


def atomic_checkpoint_io():
    """A Lightning ``CheckpointIO`` that saves through :func:`atomic_open` (imported lazily: Lightning is heavy)."""
    import torch
    from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

    class AtomicCheckpointIO(TorchCheckpointIO):
        """``torch.save`` of the checkpoint into a temporary file beside it, fsync, rename (module docstring)."""

        def save_checkpoint(self, checkpoint: dict, path, storage_options: Any | None = None) -> None:
            with atomic_open(path, "wb") as f:
                torch.save(checkpoint, f)

    return AtomicCheckpointIO()
