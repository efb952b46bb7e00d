"""``ghostkit info``: a backbone's parameters, MACs and feature stages."""

from __future__ import annotations

import typer
from rich.table import Table

from ..errors import GhostkitError
from .common import console

__all__ = ["info"]


def info(
    model: str = typer.Argument(None, help="model name"),
    imgsz: tuple[int, int] = typer.Option((224, 224), help="input height and width for MACs and feature shapes"),
    list_all: bool = typer.Option(False, "--list", help="list the registered models; those with ImageNet weights "
                                                        "on the Hugging Face Hub (--pretrained imagenet) name them"),
) -> None:
    """Parameters, MACs at an input size, feature strides and channels of a model."""
    from ..models import list_models
    from ..models.hub import HUB_WEIGHTS
    from ..models.summary import model_summary

    if list_all or model is None:
        width = max(map(len, list_models()))
        for name in list_models():
            print(f"{name:<{width}}  imagenet: {HUB_WEIGHTS[name]}" if name in HUB_WEIGHTS else name)
        return
    if min(imgsz) < 32:
        raise GhostkitError(f"--imgsz must be at least 32 x 32, got {imgsz[0]} x {imgsz[1]}")
    s = model_summary(model, tuple(imgsz))
    table = Table(title=f"{model} at {imgsz[0]} x {imgsz[1]}")
    table.add_column("")
    table.add_column("train structure", justify="right")
    table.add_column("deploy (reparameterised)", justify="right")
    table.add_row("params", f"{s['params'] / 1e6:.3f} M", f"{s['deploy_params'] / 1e6:.3f} M")
    table.add_row("MACs", f"{s['macs'] / 1e6:.1f} M", f"{s['deploy_macs'] / 1e6:.1f} M")
    console.print(table)
    feats = Table(title="feature stages (features_only=True)")
    for col in ("index", "module", "stride", "channels", "shape"):
        feats.add_column(col)
    for f in s["features"]:
        shape = " x ".join(map(str, f["shape"]))
        feats.add_row(str(f["index"]), f["module"], str(f["stride"]), str(f["channels"]), shape)
    console.print(feats)
