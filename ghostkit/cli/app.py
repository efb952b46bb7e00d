"""``ghostkit app``: the web page and HTTP API over one or more models (needs the ``app`` extra)."""

from __future__ import annotations

import typer

from ..app.limits import Limits  # no web libraries imported: those load when the command runs

__all__ = ["serve_app"]


def serve_app(
    weights: str = typer.Option(..., help="checkpoint, .onnx or OpenVINO .xml; several comma-separated (one tab each)"),
    host: str = typer.Option("127.0.0.1", help="address to listen on (0.0.0.0: every network interface)"),
    port: int = typer.Option(7860, help="port to listen on"),
    share: bool = typer.Option(False, "--share", help="listen on every network interface and print the LAN URLs "
                               "(anyone on the network can use the model; no public link is made)"),
    max_upload_mb: float = typer.Option(Limits.max_upload_mb, help="largest upload (image or video) in MB"),
    max_megapixels: float = typer.Option(Limits.max_megapixels, help="largest image or video frame in megapixels"),
    max_frames: int = typer.Option(Limits.max_frames, help="video: frames predicted at most (the rest is cut)"),
    max_samples: int = typer.Option(Limits.max_samples, help="generative models: samples drawn per request at most"),
    concurrency: int = typer.Option(Limits.concurrency, help="predictions running at once"),
    queue: int = typer.Option(Limits.queue, help="requests waiting for a free slot at most (more are turned away)"),
) -> None:
    """Serve a web page and an HTTP API (POST /predict, POST /generate) for one or more models (needs the app
    extra)."""
    from ..app.server import serve

    limits = Limits(max_upload_mb=max_upload_mb, max_megapixels=max_megapixels, max_frames=max_frames,
                    max_samples=max_samples, concurrency=concurrency, queue=queue)
    serve([w.strip() for w in weights.split(",") if w.strip()], host=host, port=port, limits=limits,
          share=share)
