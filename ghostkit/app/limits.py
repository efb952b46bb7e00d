"""Bounded resources for the web app: request size and image size limits, a work queue with a concurrency limit,
and one-line errors. Pure ASGI and anyio, no FastAPI: the CLI reads :class:`Limits`' defaults from here without
importing the server."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image

from ..errors import GhostkitError

__all__ = ["Limits", "AppError", "WorkQueue", "BodyLimit", "decode_image", "check_options"]


@dataclass(frozen=True)
class Limits:
    """Bounds on what one request may cost. ``max_upload_mb``: request body size (image or video);
    ``max_megapixels``: decoded image or video frame size; ``max_frames``: frames predicted per video (the rest is
    cut, and the response says so); ``max_samples``: images a generative model draws per request; ``concurrency``:
    predictions running at once; ``queue``: requests that may wait for a free slot (more get 503)."""

    max_upload_mb: float = 20.0
    max_megapixels: float = 16.0
    max_frames: int = 300
    max_samples: int = 64
    concurrency: int = 1
    queue: int = 16

    def __post_init__(self) -> None:
        for name in ("max_upload_mb", "max_megapixels", "max_frames", "max_samples", "concurrency"):
            if getattr(self, name) <= 0:
                raise GhostkitError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.queue < 0:
            raise GhostkitError(f"--queue must not be negative, got {self.queue}")


class AppError(Exception):
    """A user-facing failure: HTTP ``status`` and a one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def decode_image(data: bytes, name: str, max_megapixels: float) -> Image.Image:
    """Uploaded bytes → RGB image, checking the pixel count from the header before decoding."""
    from ..data.images import read_image

    if not data:
        raise AppError(400, f"{name}: the file is empty")
    try:
        with Image.open(io.BytesIO(data)) as probe:
            width, height = probe.size
    except Image.DecompressionBombError:
        raise AppError(413, f"{name}: the image is far over the limit of {max_megapixels:g} megapixels") from None
    except Exception:  # PIL raises many types on non-image data
        raise AppError(400, f"{name}: not an image, or a format that cannot be read") from None
    if width * height > max_megapixels * 1e6:
        raise AppError(413, f"{name}: {width} x {height} pixels is over the limit of {max_megapixels:g} megapixels")
    try:
        return read_image(io.BytesIO(data))
    except GhostkitError as e:  # read_image names its argument, a BytesIO here: name the upload instead
        raise AppError(400, f"{name}: {str(e).split(': ', 1)[-1]}") from None


def check_options(topk: int, threshold: float | None, conf: float | None, iou: float | None,
                  alpha: float | None = None) -> dict:
    if topk <= 0:
        raise AppError(400, f"topk must be positive, got {topk}")
    if threshold is not None and not 0 <= threshold <= 1:
        raise AppError(400, f"threshold must be in [0, 1], got {threshold}")
    if conf is not None and not 0 <= conf < 1:
        raise AppError(400, f"conf must be in [0, 1), got {conf}")
    if iou is not None and not 0 < iou <= 1:
        raise AppError(400, f"iou must be in (0, 1], got {iou}")
    if alpha is not None and not 0 <= alpha <= 1:
        raise AppError(400, f"alpha must be in [0, 1], got {alpha}")
    return {"topk": topk, "threshold": threshold, "conf": conf, "iou": iou, "alpha": alpha}


class WorkQueue:
    """At most ``concurrency`` predictions run at once (in worker threads), up to ``queue`` more wait in FIFO order;
    beyond that a request is turned away at once with 503 rather than piling up."""

    def __init__(self, concurrency: int, queue: int) -> None:
        import anyio

        self.limiter = anyio.CapacityLimiter(concurrency)
        self.capacity, self.active = concurrency + queue, 0

    async def run(self, fn: Callable, *args) -> object:
        if self.active >= self.capacity:  # checked and counted on the event loop's thread: no lock needed
            raise AppError(503, f"busy: {self.active} requests running or queued; try again shortly")
        self.active += 1
        try:
            import anyio.to_thread

            return await anyio.to_thread.run_sync(fn, *args, limiter=self.limiter)
        finally:
            self.active -= 1


class BodyLimit:
    """ASGI middleware bounding request bodies before anything is parsed or spooled: POSTs must declare a
    Content-Length (411 otherwise) within ``limit`` bytes (413); a body longer than declared is cut there."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is None or not length.isdigit():
            return await _send_error(send, 411, "the request needs a Content-Length header")
        if int(length) > self.limit:
            return await _send_error(send, 413, f"the upload ({int(length) / 2**20:.1f} MB) is over the limit of "
                                                f"{self.limit / 2**20:g} MB")
        seen = 0

        async def bounded():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > int(length):
                return {"type": "http.request", "body": b"", "more_body": False}
            return message

        await self.app(scope, bounded, send)


async def _send_error(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
