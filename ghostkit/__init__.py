"""ghostkit: GhostNet (v1, v2, v3) backbones and task modules for real work."""

from .api import load_model, train, val
from .errors import GhostkitError
from .models import create_model, list_models, reparameterize
from .tasks import build_head
from .tasks.model import MultiTaskModel, TaskModel

__version__ = "0.1.0"
__all__ = ["GhostkitError", "create_model", "list_models", "reparameterize", "load_model", "train", "val",
           "TaskModel", "MultiTaskModel", "build_head", "__version__"]
