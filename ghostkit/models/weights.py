"""Reading and writing weights: official Huawei files, timm state dicts and ghostkit checkpoints.

Key mapping (official / timm → ghostkit). ghostkit keeps the official parameter names, so the mapping is small:

* a ``state_dict`` / ``model`` / ``state_dict_ema`` wrapper (training-script checkpoints) is unwrapped;
* a ``module.`` prefix (saved from DataParallel / DDP) is stripped;
* the official GhostNetV3 release names the BN of its re-parameterisable branches ``bn``
  (``...primary_rpr_conv.0.bn.weight``); ghostkit and timm name it ``bn1``;
* profiler counters (``total_ops``, ``total_params``, written by thop) are dropped.

The official v1 release and timm share one key layout, so a plain state dict is reported as "timm".

Files are read without unpickling arbitrary objects: torch files with ``torch.load(weights_only=True)``,
safetensors natively. Writes are atomic (:mod:`ghostkit.io`).
"""

from __future__ import annotations

import json
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from ..errors import GhostkitError
from ..io import atomic_open, atomic_path

__all__ = ["read_checkpoint", "load_weights", "save_weights", "atomic_torch_save", "remap_state_dict"]

_WRAPPERS = ("state_dict_ema", "state_dict", "model")
_V3_BN = re.compile(r"(_rpr_(?:conv\.\d+|scale))\.bn\.")


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` through :func:`ghostkit.io.atomic_open`: no reader ever sees a half-written file and an
    interrupted or failed write leaves the previous file intact."""
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


def save_weights(model: nn.Module, path: str | Path, config: dict | None = None) -> Path:
    """Save ``model``'s weights with a ghostkit config: ``.safetensors`` (config as JSON metadata) or a torch file
    (``{"ghostkit": config, "state_dict": ...}``, loadable with ``weights_only=True``)."""
    path = Path(path)
    config = dict(config or {})
    config.setdefault("model", getattr(model, "model_name", None))
    config.setdefault("kwargs", getattr(model, "model_kwargs", {}))
    config.setdefault("deployed", bool(getattr(model, "deployed", False)))
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if path.suffix == ".safetensors":
        with atomic_path(path) as tmp:
            save_file(state, str(tmp), metadata={"ghostkit": json.dumps(config)})
    else:
        atomic_torch_save({"ghostkit": config, "state_dict": state}, path)
    return path


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict | None, str]:
    """Read ``path`` → ``(state_dict, ghostkit_config or None, format)`` with format one of
    ``"ghostkit"``, ``"official"``, ``"timm"``. Raises :class:`GhostkitError` naming the file on any problem."""
    path = Path(path)
    if not path.is_file():
        raise GhostkitError(f"{path}: no such weights file")
    if path.suffix == ".safetensors":
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                state = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:  # safetensors raises its own error types for bad headers
            raise GhostkitError(f"{path}: not a readable safetensors file ({e})") from None
        if "ghostkit" in meta:
            return state, json.loads(meta["ghostkit"]), "ghostkit"
        return remap_state_dict(state)
    with open(path, "rb") as f:
        head = f.read(4)
    if not head.startswith(b"PK\x03\x04") and head[:1] != b"\x80":  # torch files: a zip archive or a raw pickle
        raise GhostkitError(f"{path}: not a checkpoint (neither a PyTorch file nor safetensors)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about odd pickle protocols before failing on them
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        if not found:  # the unpickler met no Python object, only bytes it cannot read
            raise GhostkitError(f"{path}: not a checkpoint (unreadable PyTorch data)") from None
        raise GhostkitError(
            f"{path}: refused: the file holds pickled Python objects ({found.group(1)}), not only tensors; "
            "save a plain state dict or a .safetensors file"
        ) from None
    except Exception as e:
        if head.startswith(b"PK"):  # a zip archive torch cannot read: cut short by a crash or a full disk
            raise GhostkitError(f"{path}: truncated or damaged checkpoint (incomplete zip archive)") from None
        raise GhostkitError(f"{path}: not a readable checkpoint ({type(e).__name__}: "
                            f"{str(e).splitlines()[0][:120] if str(e) else ''})") from None
    if not isinstance(obj, dict):
        raise GhostkitError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    if isinstance(obj.get("ghostkit"), dict) and isinstance(obj.get("state_dict"), dict):
        return obj["state_dict"], obj["ghostkit"], "ghostkit"
    return remap_state_dict(obj, source=path)


def remap_state_dict(obj: dict, source: str | Path = "state dict") -> tuple[dict[str, torch.Tensor], None, str]:
    """Apply the official/timm → ghostkit key mapping (module docstring) → ``(state_dict, None, format)``."""
    fmt = "timm"
    for key in _WRAPPERS:
        if isinstance(obj.get(key), dict):
            obj, fmt = obj[key], "official"
            break
    state: dict[str, torch.Tensor] = {}
    for k, v in obj.items():
        if not isinstance(v, torch.Tensor):
            raise GhostkitError(f"{source}: entry {k!r} is a {type(v).__name__}, not a tensor; not a state dict")
        if k.endswith(("total_ops", "total_params")):
            fmt = "official"
            continue
        if k.startswith("module."):
            k = k[len("module.") :]
        new = _V3_BN.sub(r"\1.bn1.", k)
        if new != k:
            fmt = "official"
        state[new] = v
    return state, None, fmt


def load_weights(model: nn.Module, source: str | Path | dict, allow_new_classifier: bool = False) -> str:
    """Load weights into ``model`` strictly and return the format found ("ghostkit", "official" or "timm").

    Parameters absent from a ``features_only`` model (head, stages after the deepest tap) are ignored. With
    ``allow_new_classifier`` a classifier of another class count is left freshly initialised. Any other
    missing, unexpected or mis-shaped key raises :class:`GhostkitError` listing them.
    """
    name = str(source) if not isinstance(source, dict) else "state dict"
    if isinstance(source, dict):
        state, config, fmt = remap_state_dict(source)
    else:
        state, config, fmt = read_checkpoint(source)
    if config and config.get("deployed") and not getattr(model, "deployed", False):
        raise GhostkitError(f"{name}: holds deploy-mode (re-parameterised) weights; reparameterize the model first")
    skip = getattr(model, "removed_prefixes", lambda: ())()
    state = {k: v for k, v in state.items() if not k.startswith(skip)} if skip else state
    own = model.state_dict()
    if allow_new_classifier:
        state = {k: v for k, v in state.items()
                 if not (k.startswith("classifier.") and k in own and v.shape != own[k].shape)}
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if allow_new_classifier:
        missing = [k for k in missing if not k.startswith("classifier.")]
    shape = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
             for k in state if k in own and state[k].shape != own[k].shape]
    if missing or unexpected or shape:
        model_name = getattr(model, "model_name", type(model).__name__)
        parts = [f"{label} ({len(keys)}): {', '.join(keys[:4])}{', ...' if len(keys) > 4 else ''}"
                 for label, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                                     ("shape mismatch", shape)) if keys]
        raise GhostkitError(f"{name}: weights do not fit {model_name} ({fmt} format): {'; '.join(parts)}")
    model.load_state_dict(state, strict=False)
    return fmt
