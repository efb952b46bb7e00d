"""GhostNet backbones (no task code here)."""

from . import fastpath, variants  # noqa: F401  (variants registers the models; fastpath.enable / disable)
from .ghostnet import GhostBottleneck, GhostModule, GhostModuleV3, GhostNet
from .registry import create_model, list_models, register_model
from .reparam import is_deployed, reparameterize
from .summary import model_summary

__all__ = [
    "GhostNet", "GhostModule", "GhostModuleV3", "GhostBottleneck",
    "create_model", "list_models", "register_model", "reparameterize", "is_deployed",
    "model_summary",
]
