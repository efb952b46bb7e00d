"""The web app and HTTP API: one FastAPI application over one :class:`~ghostkit.predict.Predictor` per model file.

Why FastAPI (+ uvicorn) and a hand-written page rather than Gradio: the page must work with no network at all (the
tests run offline), and Gradio's front end fetches web fonts and checks for updates, and wraps results in its own
queue protocol; here ``POST /predict`` returns exactly the JSON that ``ghostkit predict --json`` prints, so any HTTP
client (curl, ``requests``) is a client. The page (``page.html``: inline CSS and JavaScript, no external assets)
calls the same functions through ``POST /api/view``, which adds the heads' pictures.

Endpoints::

    GET  /                          the page: one tab per model
    GET  /api/models                the model cards (tasks, classes, input size, the run's metrics.json, controls)
    GET  /api/examples/{tab}/{i}    example image i of tab (the run's samples/ folder, else built-in images)
    POST /predict                   multipart: image (file), model (tab name; default the first), topk, threshold,
                                    conf, iou → the result dict of ``ghostkit predict --json``; "source" is the
                                    uploaded file's name
    POST /api/view                  the same form → {"result", "pictures": {name: PNG data URL}, "ms"}
    POST /api/video                 multipart: video (file) + the same options → {"frames", "fps", "truncated",
                                    "video": WebM data URL of the annotated clip, "results": one dict per frame}
    GET  /openapi.json              the API's OpenAPI schema

Images are decoded in memory; an uploaded video is copied into a temporary folder (OpenCV reads files) that is
removed after the request, and the app's whole temporary folder at shutdown.

Errors are JSON ``{"error": "one line"}`` with a 4xx status: 400 unreadable upload or bad option, 404 unknown model,
411 no Content-Length, 413 upload or image over the limits, 503 queue full; never a traceback.

Per-task parts are data: :data:`TASK_VIEWS` says which of the head's ``render`` pictures the page shows and which
controls (sliders) it offers; the page's ``RENDERERS`` table draws each task's JSON. A new task (generate, style)
adds one entry to each; the pictures come from the head's own ``render`` through
:func:`~ghostkit.predict.render_result`, so the app has no drawing code of its own.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from ..errors import GhostkitError
from ..predict import Predictor, render_result
from .limits import AppError, BodyLimit, Limits, WorkQueue, check_options, decode_image

try:
    import uvicorn
    from fastapi import FastAPI, File, Form, Request, UploadFile
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, Response
except ImportError:  # pragma: no cover - depends on the install
    raise GhostkitError("the web app needs FastAPI and uvicorn: pip install 'ghostkit[app]'") from None

__all__ = ["TaskView", "TASK_VIEWS", "create_app", "serve"]

log = logging.getLogger("ghostkit.app")
PAGE = Path(__file__).with_name("page.html")


# ------------------------------------------------------------------------------------------------ per-task parts


def _slider(name: str, label: str, lo: float, hi: float, step: float, value: float) -> dict:
    return {"name": name, "label": label, "min": lo, "max": hi, "step": step, "value": value}


@dataclass(frozen=True)
class TaskView:
    """What the page shows for a task: ``pictures``, the suffixes of the head's ``render`` output to show (``""``:
    its main picture), and ``controls(head)``, the sliders whose values are sent with each request."""

    pictures: tuple[str, ...] = ()
    controls: Callable[[object], list[dict]] = field(default=lambda head: [])


TASK_VIEWS: dict[str, TaskView] = {
    "classify": TaskView((), lambda h: [_slider("topk", "top-k", 1, min(10, h.num_classes), 1, min(5, h.num_classes))]),
    "multilabel": TaskView((), lambda h: [_slider("threshold", "threshold", 0.05, 0.95, 0.05, 0.5)]),
    "detect": TaskView(("",), lambda h: [_slider("conf", "confidence", 0.01, 0.95, 0.01, round(h.conf, 2)),
                                         _slider("iou", "NMS IoU", 0.1, 1.0, 0.05, round(h.iou, 2))]),
    "segment": TaskView(("overlay",)),
    "restore": TaskView(("compare",)),
}


def _png_data_url(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


# --------------------------------------------------------------------------------------------------- one model


class ModelTab:
    """One model file: its Predictor, model card and example images. Predictions on one model are serialised by a
    lock, because the detection sliders set the head's ``conf`` / ``iou`` for the duration of a request."""

    def __init__(self, name: str, path: Path, limits: Limits) -> None:
        from ..api import load_model

        self.name, self.path, self.limits = name, path, limits
        self.predictor: Predictor = load_model(path)
        self.heads = self.predictor.model.heads
        self.tasks = list(self.heads)
        self.lock = threading.Lock()
        self.examples = self._examples()

    def _examples(self, n: int = 8) -> list[bytes]:
        """PNG bytes of the run's ``samples/`` images (written by ``ghostkit train`` beside the weights), else a few
        built-in pictures (procedural shapes and handwritten digits) at the model's input size."""
        from ..data.images import list_images, read_image

        folder = self.path.parent / "samples"
        if folder.is_dir():
            images = [read_image(p) for p in list_images(folder)[:n]]
        else:
            from ..data.synthetic import load_digits, make_shapes

            size = max(self.predictor.model.config["imgsz"])
            images = [Image.fromarray(s.image) for s in make_shapes(n // 2, imgsz=max(64, size))]
            images += [Image.fromarray(a) for a in load_digits(max(32, size))[0][: n - len(images)]]
        out = []
        for image in images:
            buf = io.BytesIO()
            image.save(buf, format="PNG")
            out.append(buf.getvalue())
        return out

    def card(self, index: int) -> dict:
        config = self.predictor.model.config
        metrics_file = self.path.parent / "metrics.json"
        try:
            metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else None
        except (OSError, ValueError):
            metrics = None
        palette = {}
        if "segment" in self.heads:
            from ..tasks.segment import color_palette

            names = config.get("class_names", {}).get("segment", [])
            palette["segment"] = {n: "#{:02x}{:02x}{:02x}".format(*c) for n, c in zip(names, color_palette(len(names)))}
        return {"index": index, "name": self.name, "file": str(self.path), "tasks": self.tasks,
                "backbone": config.get("backbone", {}).get("name"), "imgsz": config.get("imgsz"),
                "classes": config.get("class_names", {}), "metrics": _scalars(metrics), "palette": palette,
                "examples": len(self.examples), "video": "detect" in self.heads,
                "controls": [c for t in self.tasks for c in TASK_VIEWS.get(t, TaskView()).controls(self.heads[t])]}

    def _settings(self, options: dict) -> tuple[dict, dict]:
        """Split request options into the heads' ``format_result`` options and detection's conf / iou."""
        head_opts = {k: v for k in ("conf", "iou") if (v := options.pop(k, None)) is not None}
        if head_opts and "detect" not in self.heads:
            raise AppError(400, f"{self.name}: conf and iou apply to detection models")
        return options, head_opts

    def _with_detect(self, head_opts: dict, fn: Callable[[], object]) -> object:
        with self.lock:
            head = self.heads.get("detect") if head_opts else None
            saved = (head.conf, head.iou) if head is not None else None
            try:
                if head is not None:
                    head.conf, head.iou = head_opts.get("conf", head.conf), head_opts.get("iou", head.iou)
                return fn()
            finally:
                if head is not None:
                    head.conf, head.iou = saved

    def predict(self, image: Image.Image, source: str, options: dict, pictures: bool) -> tuple[dict, dict]:
        """The ``ghostkit predict --json`` dict of one image and (``pictures``) the page's PNG data URLs."""
        options, head_opts = self._settings(dict(options))
        result = self._with_detect(head_opts, lambda: self.predictor.predict([image], raw=pictures, **options)[0])
        result["source"] = source
        raw, seen = result.pop("raw", None), result.pop("image", image)  # seen: the decoded image the model saw
        if raw is None:
            return result, {}
        drawn = render_result(self.predictor.model, seen, raw, self.predictor.class_names)
        if len(self.tasks) == 1:
            wanted = [s for s in TASK_VIEWS.get(self.tasks[0], TaskView(("",))).pictures if s in drawn]
        else:  # every head's own pictures after the combined one
            wanted = ["all"] + [k for k in drawn if k != "all" and not k.endswith("_mask")]
        return result, {k or self.tasks[0]: _png_data_url(drawn[k]) for k in wanted}

    def video(self, path: Path, out_path: Path, options: dict, name: str) -> dict:
        """Annotate a clip frame by frame (at most ``max_frames``) into a WebM (VP8, which browsers play)."""
        import cv2
        import numpy as np

        options, head_opts = self._settings(dict(options))
        cap = cv2.VideoCapture(str(path))
        src_fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
        cap.release()
        max_pixels = self.limits.max_megapixels * 1e6

        def run() -> dict:
            writer, results, t0 = None, [], time.perf_counter()
            stream = self.predictor.stream(path, max_frames=self.limits.max_frames + 1, **options)
            try:
                for image, result in stream:
                    if result["frame"] == self.limits.max_frames:
                        return {"results": results, "truncated": True, "seconds": time.perf_counter() - t0}
                    if image.width * image.height > max_pixels:
                        raise AppError(413, f"video frames of {image.width} x {image.height} pixels are over the "
                                            f"limit of {self.limits.max_megapixels:g} megapixels")
                    drawn = render_result(self.predictor.model, image, result.pop("raw"), self.predictor.class_names)
                    picture = drawn.get("all", drawn.get("overlay", drawn.get("", image))).convert("RGB")
                    if writer is None:
                        size = picture.size
                        writer = cv2.VideoWriter(str(out_path), cv2.VideoWriter_fourcc(*"VP80"), src_fps, size)
                    writer.write(cv2.cvtColor(np.asarray(picture.resize(size)), cv2.COLOR_RGB2BGR))
                    result["source"] = name
                    results.append(result)
            finally:
                stream.close()
                if writer is not None:
                    writer.release()
            return {"results": results, "truncated": False, "seconds": time.perf_counter() - t0}

        out = self._with_detect(head_opts, run)
        frames = len(out["results"])
        video = base64.b64encode(out_path.read_bytes()).decode() if out_path.is_file() else ""
        return {"frames": frames, "fps": round(frames / max(out["seconds"], 1e-9), 2), "truncated": out["truncated"],
                "video": "data:video/webm;base64," + video, "results": out["results"]}


def _scalars(metrics: dict | None) -> dict | None:
    """metrics.json without per-class tables: numbers, and for multi-task runs each task's numbers."""
    if not isinstance(metrics, dict):
        return None
    out = {}
    for key, value in metrics.items():
        if isinstance(value, (int, float)):
            out[key] = value
        elif isinstance(value, dict) and key != "per_class":
            out[key] = {k: v for k, v in value.items() if isinstance(v, (int, float))}
    return out


# ------------------------------------------------------------------------------------------- request handling


def _tab_names(paths: list[Path]) -> list[str]:
    """``run/best.ckpt`` style names, made unique."""
    names = []
    for p in paths:
        name = f"{p.parent.name}/{p.name}" if p.parent.name else p.name
        names.append(name if name not in names else f"{name} ({len(names) + 1})")
    return names


def create_app(weights: list[str | Path], limits: Limits | None = None) -> FastAPI:
    """The FastAPI application serving ``weights`` (checkpoints, ``.onnx`` or OpenVINO ``.xml`` files; one tab
    each). Uploads of videos go to a temporary folder removed after each request and at shutdown."""
    limits = limits or Limits()
    paths = [Path(w) for w in weights]
    if not paths:
        raise GhostkitError("--weights: no model file given")
    for p in paths:
        if not p.is_file():
            raise GhostkitError(f"{p}: no such model file")
    tabs = [ModelTab(name, p, limits) for name, p in zip(_tab_names(paths), paths)]
    by_name = {t.name: t for t in tabs}
    work = WorkQueue(limits.concurrency, limits.queue)
    tmp_root = tempfile.TemporaryDirectory(prefix="ghostkit-app-")

    async def lifespan(app):
        yield
        tmp_root.cleanup()

    # no Swagger / ReDoc pages: they load their scripts from a CDN; the schema stays at /openapi.json
    app = FastAPI(title="ghostkit", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.add_middleware(BodyLimit, limit=int(limits.max_upload_mb * 2**20))
    app.state.tabs = tabs

    @app.exception_handler(AppError)
    async def app_error(request: Request, exc: AppError):
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    @app.exception_handler(GhostkitError)
    async def ghostkit_error(request: Request, exc: GhostkitError):
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def bad_form(request: Request, exc: RequestValidationError):
        parts = [f"{'.'.join(str(x) for x in e['loc'][1:])}: {e['msg']}" for e in exc.errors()]
        return JSONResponse({"error": "; ".join(parts) or "bad request"}, status_code=400)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception):
        log.exception("request failed")
        return JSONResponse({"error": f"internal error ({type(exc).__name__}); see the server log"}, status_code=500)

    def tab_of(model: str | None) -> ModelTab:
        if model is None or model == "":
            return tabs[0]
        if model not in by_name:
            raise AppError(404, f"no model {model!r}; available: {', '.join(by_name)}")
        return by_name[model]

    async def run_image(image: UploadFile, model, topk, threshold, conf, iou, pictures: bool) -> tuple[dict, dict]:
        tab = tab_of(model)
        options = check_options(topk, threshold, conf, iou)
        data = await image.read()
        name = Path(image.filename or "upload").name[:200]

        def work_fn():
            return tab.predict(decode_image(data, name, limits.max_megapixels), name, options, pictures)

        return await work.run(work_fn)

    @app.get("/", response_class=HTMLResponse)
    async def page():
        return PAGE.read_text(encoding="utf-8")

    @app.get("/api/models")
    async def models():
        return [t.card(i) for i, t in enumerate(tabs)]

    @app.get("/api/examples/{tab}/{index}")
    async def example(tab: int, index: int):
        if not 0 <= tab < len(tabs) or not 0 <= index < len(tabs[tab].examples):
            raise AppError(404, f"no example {index} for model {tab}")
        return Response(tabs[tab].examples[index], media_type="image/png")

    @app.post("/predict")
    async def predict(image: UploadFile = File(...), model: str | None = Form(None), topk: int = Form(5),
                      threshold: float = Form(0.5), conf: float | None = Form(None), iou: float | None = Form(None)):
        result, _ = await run_image(image, model, topk, threshold, conf, iou, pictures=False)
        return result

    @app.post("/api/view")
    async def view(image: UploadFile = File(...), model: str | None = Form(None), topk: int = Form(5),
                   threshold: float = Form(0.5), conf: float | None = Form(None), iou: float | None = Form(None)):
        t0 = time.perf_counter()
        result, pictures = await run_image(image, model, topk, threshold, conf, iou, pictures=True)
        return {"result": result, "pictures": pictures, "ms": round(1000 * (time.perf_counter() - t0), 1)}

    @app.post("/api/video")
    async def video(video: UploadFile = File(...), model: str | None = Form(None), topk: int = Form(5),
                    threshold: float = Form(0.5), conf: float | None = Form(None), iou: float | None = Form(None)):
        tab = tab_of(model)
        options = check_options(topk, threshold, conf, iou)
        name = Path(video.filename or "clip.mp4").name[:200]
        folder = Path(tempfile.mkdtemp(dir=tmp_root.name))
        try:
            src = folder / ("input" + Path(name).suffix.lower()[:8])
            with src.open("wb") as f:
                shutil.copyfileobj(video.file, f)
            try:
                return await work.run(tab.video, src, folder / "annotated.webm", options, name)
            except GhostkitError as e:  # name the upload, not the temporary copy
                raise AppError(400, str(e).replace(str(src), name)) from None
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    return app


def serve(weights: list[str | Path], host: str = "127.0.0.1", port: int = 7860, limits: Limits | None = None) -> None:
    """Load the models and serve the page and API until interrupted."""
    limits = limits or Limits()
    if not 0 < port < 65536:
        raise GhostkitError(f"--port must be in 1..65535, got {port}")
    with socket.socket() as s:  # uvicorn would log a bind failure and exit; a GhostkitError names the option
        try:
            s.bind((host, port))
        except OSError as e:
            raise GhostkitError(f"--host {host} --port {port}: cannot listen there ({e.strerror})") from None
    app = create_app(weights, limits)
    print(f"ghostkit app: {len(app.state.tabs)} model(s); open http://{host}:{port}/ (Ctrl+C to stop)", flush=True)
    uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning")).run()
