"""Model summary for ``ghostkit info MODEL``: parameter and MAC counts (training and deploy form) and feature maps.

MACs are measured, not computed from a formula: one batch-1 forward pass in eval mode under
:class:`torch.utils.flop_counter.FlopCounterMode`, with ``MACs = FLOPs / 2``. The counter sees convolutions and
matrix products (it ignores element-wise work such as BN, activations, pooling and gates), which is also how the
papers count: ghostnet_100 gives 141M at 224 x 224.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .registry import create_model
from .reparam import reparameterize

__all__ = ["model_summary", "count_params", "count_macs"]


def count_params(model: nn.Module) -> int:
    """Number of parameters (buffers such as BN running statistics excluded)."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_macs(model: nn.Module, imgsz: tuple[int, int] = (224, 224), in_chans: int = 3) -> int:
    """Multiply-accumulates of one ``1 x in_chans x H x W`` forward pass in eval mode, counted by FlopCounterMode.

    The model's train/eval state is restored afterwards.
    """
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
        x = torch.zeros(1, in_chans, *imgsz, device=device, dtype=dtype)
        with FlopCounterMode(display=False) as counter:
            model(x)
        return int(counter.get_total_flops()) // 2
    finally:
        model.train(was_training)


def model_summary(name: str, imgsz: tuple[int, int] = (224, 224)) -> dict:
    """Summary of the registered model ``name`` at input size ``imgsz = (H, W)``.

    Returns a dict with:

    * ``name``, ``version`` ("v1" / "v2" / "v3"), ``width`` (channel multiplier);
    * ``params`` and ``macs`` of the training-structure classifier (MACs at batch 1, ``imgsz``);
    * ``deploy_params`` and ``deploy_macs`` after :func:`ghostkit.models.reparameterize` (BN folded, GhostNetV3
      branches merged);
    * ``features``: one dict per feature stage of a ``features_only`` model with ``out_indices=(0, 1, 2, 3, 4)``:
      ``index``, ``module`` (the stage's last module), ``stride`` (reduction vs. the input), ``channels`` and
      ``shape`` (``[C, H, W]`` of that feature map for one ``imgsz`` image).
    """
    h, w = int(imgsz[0]), int(imgsz[1])
    model = create_model(name).eval()
    deploy = reparameterize(model)
    summary = dict(
        name=name,
        version=getattr(model, "version", None),
        width=getattr(model, "width", None),
        params=count_params(model),
        macs=count_macs(model, (h, w)),
        deploy_params=count_params(deploy),
        deploy_macs=count_macs(deploy, (h, w)),
    )
    del model, deploy
    feats_model = create_model(name, features_only=True, out_indices=(0, 1, 2, 3, 4)).eval()
    with torch.no_grad():
        feats = feats_model(torch.zeros(1, 3, h, w))
    summary["features"] = [
        dict(index=i, module=info["module"], stride=info["reduction"], channels=info["num_chs"],
             shape=list(f.shape[1:]))
        for i, (info, f) in enumerate(zip(feats_model.feature_info, feats, strict=True))
    ]
    return summary
