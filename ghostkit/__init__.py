"""ghostkit: GhostNet (v1, v2, v3) backbones and task modules for real work.

The public API is loaded on first use: ``import ghostkit`` itself imports neither torch nor Lightning (the
``ghostkit`` command answers ``--help`` at once; training imports Lightning when it starts).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .errors import GhostkitError

if TYPE_CHECKING:  # what the lazy names below resolve to, for type checkers and the API reference
    from .api import export, load_model, train, val
    from .models import create_model, list_models, reparameterize
    from .tasks import build_head
    from .tasks.model import MultiTaskModel, TaskModel

__version__ = "0.1.0"
__all__ = ["GhostkitError", "create_model", "list_models", "reparameterize", "load_model", "train", "val", "export",
           "track", "TaskModel", "MultiTaskModel", "build_head", "__version__"]

# public name → the module that defines it
_LAZY = {"create_model": "models", "list_models": "models", "reparameterize": "models", "load_model": "api",
         "train": "api", "val": "api", "export": "api", "build_head": "tasks", "TaskModel": "tasks.model",
         "MultiTaskModel": "tasks.model"}


def __getattr__(name: str):
    if name == "track":  # the package ghostkit.track is callable: ghostkit.track(weights, source, ...)
        return importlib.import_module(f"{__name__}.track")
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'ghostkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
