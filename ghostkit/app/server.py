"""The web app and HTTP API: one FastAPI application over the models' tabs (:mod:`ghostkit.app.tabs`: a
:class:`~ghostkit.predict.Predictor` per image model, a generator per generative model).

Why FastAPI (+ uvicorn) and a hand-written page rather than Gradio: the page must work with no network at all (the
tests run offline), and Gradio's front end fetches web fonts and checks for updates, and wraps results in its own
queue protocol; here ``POST /predict`` returns exactly the JSON that ``ghostkit predict --json`` prints, so any HTTP
client (curl, ``requests``) is a client. The page (``page.html``: inline CSS and JavaScript, no external assets)
calls the same functions through ``POST /api/view``, which adds the heads' pictures.

Endpoints::

    GET  /                          the page: one tab per model
    GET  /api/models                the model cards (tasks, classes, input size, the run's metrics.json, controls)
    GET  /api/examples/{tab}/{i}    example image i of tab (the run's samples/ folder, else built-in images)
    GET  /api/style/{tab}           a style-transfer model's own style image (PNG)
    POST /predict                   multipart: image (file), model (tab name; default the first), topk, threshold,
                                    conf, iou, alpha, style (file) → the result dict of ``ghostkit predict --json``;
                                    "source" is the uploaded file's name
    POST /api/view                  the same form → {"result", "pictures": {name: PNG data URL}, "ms"}; restored
                                    and stylised images come back here, as pictures
    POST /api/video                 multipart: video (file) + the same options → {"frames", "fps", "truncated",
                                    "video": WebM data URL of the annotated clip, "results": one dict per frame}
    POST /generate                  form: model, num, class (empty: every class in turn), seed → {"num", "seed",
                                    "classes", "size", "grid": PNG data URL, "images": PNG data URLs}
    GET  /openapi.json              the API's OpenAPI schema

Images are decoded in memory; an uploaded video is copied into a temporary folder (OpenCV reads files) that is
removed after the request, and the app's whole temporary folder at shutdown.

Errors are JSON ``{"error": "one line"}`` with a 4xx status: 400 unreadable upload or bad option, 404 unknown model,
411 no Content-Length, 413 upload or image over the limits, 503 queue full; never a traceback.

``--share``: the app listens on every network interface and prints the machine's LAN addresses, with a warning that
anyone who can reach them can use the model. There is no public link: a relay on the internet (Gradio's
``share=True`` tunnels through Hugging Face's servers) would send every upload through a third party's machine and
needs the network, which ghostkit never assumes; to publish the app, put it behind your own reverse proxy or tunnel.
"""

from __future__ import annotations

import logging
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import GhostkitError
from .limits import AppError, BodyLimit, Limits, WorkQueue, check_options, decode_image
from .tabs import GeneratorTab, ModelTab, open_tab

try:
    import uvicorn
    from fastapi import FastAPI, File, Form, Request, UploadFile
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, Response
except ImportError:  # pragma: no cover - depends on the install
    raise GhostkitError("the web app needs FastAPI and uvicorn: pip install 'ghostkit[app]'") from None

__all__ = ["create_app", "make_server", "serve", "lan_addresses"]

log = logging.getLogger("ghostkit.app")
PAGE = Path(__file__).with_name("page.html")
SHARE_WARNING = ("--share: anyone who can reach these addresses can use the model (no password); "
                 "stop the app with Ctrl+C when done")


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
    tabs = [open_tab(name, p, limits) for name, p in zip(_tab_names(paths), paths)]
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

    def tab_of(model: str | None, kind: type = ModelTab) -> ModelTab | GeneratorTab:
        if model is None or model == "":
            matching = [t for t in tabs if isinstance(t, kind)]
            if not matching:
                what = "takes images" if kind is ModelTab else "generates images"
                raise AppError(400, f"no model here {what}; available: {', '.join(by_name)}")
            return matching[0]
        if model not in by_name:
            raise AppError(404, f"no model {model!r}; available: {', '.join(by_name)}")
        if not isinstance(by_name[model], kind):
            raise AppError(400, f"{model}: a generative model; call POST /generate" if kind is ModelTab
                           else f"{model}: takes images; call POST /predict")
        return by_name[model]

    async def run_image(image: UploadFile, style: UploadFile | None, model, options: dict,
                        pictures: bool) -> tuple[dict, dict]:
        """An image (and a style image) through a tab; the style image is read from a file, as ``--style`` is."""
        tab = tab_of(model)
        data = await image.read()
        name = Path(image.filename or "upload").name[:200]
        style_data = await style.read() if style is not None else None
        style_name = Path(style.filename or "style.png").name[:200] if style is not None else ""
        folder = Path(tempfile.mkdtemp(dir=tmp_root.name)) if style is not None else None

        def work_fn():
            picture = decode_image(data, name, limits.max_megapixels)
            style_file = None
            if style_data is not None:
                decode_image(style_data, style_name, limits.max_megapixels)  # the same checks as for the image
                style_file = folder / ("style" + Path(style_name).suffix.lower()[:8])
                style_file.write_bytes(style_data)
            return tab.predict(picture, name, options, pictures, style_file and (style_file, style_name))

        try:
            return await work.run(work_fn)
        finally:
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)

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

    @app.get("/api/style/{tab}")
    async def own_style(tab: int):
        if not 0 <= tab < len(tabs) or tabs[tab].style_png is None:
            raise AppError(404, f"model {tab} has no style image of its own")
        return Response(tabs[tab].style_png, media_type="image/png")

    @app.post("/predict")
    async def predict(image: UploadFile = File(...), model: str | None = Form(None), topk: int = Form(5),
                      threshold: float | None = Form(None), conf: float | None = Form(None),
                      iou: float | None = Form(None), alpha: float | None = Form(None),
                      style: UploadFile | None = File(None)):
        options = check_options(topk, threshold, conf, iou, alpha)
        result, _ = await run_image(image, style, model, options, pictures=False)
        return result

    @app.post("/api/view")
    async def view(image: UploadFile = File(...), model: str | None = Form(None), topk: int = Form(5),
                   threshold: float | None = Form(None), conf: float | None = Form(None),
                   iou: float | None = Form(None), alpha: float | None = Form(None),
                   style: UploadFile | None = File(None)):
        t0 = time.perf_counter()
        options = check_options(topk, threshold, conf, iou, alpha)
        result, pictures = await run_image(image, style, model, options, pictures=True)
        return {"result": result, "pictures": pictures, "ms": round(1000 * (time.perf_counter() - t0), 1)}

    @app.post("/api/video")
    async def video(video: UploadFile = File(...), model: str | None = Form(None), topk: int = Form(5),
                    threshold: float | None = Form(None), conf: float | None = Form(None),
                    iou: float | None = Form(None)):
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

    @app.post("/generate")
    async def generate(model: str | None = Form(None), num: int = Form(8),
                       class_name: str = Form("", alias="class"), seed: int = Form(0)):
        tab = tab_of(model, GeneratorTab)
        return await work.run(tab.generate, num, class_name, seed)

    return app


def lan_addresses() -> list[str]:
    """This computer's IPv4 addresses that other machines may reach (not loopback), best first: the one of the
    default route (found by routing a UDP socket, which sends nothing), then those the host name resolves to."""
    found = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed on the internet; only the route is looked up
            found.append(s.getsockname()[0])
        except OSError:  # no route at all: an offline machine
            pass
    try:
        found += [info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)]
    except OSError:
        pass
    return list(dict.fromkeys(a for a in found if not a.startswith("127.") and a != "0.0.0.0"))


def make_server(weights: list[str | Path], host: str = "127.0.0.1", port: int = 7860, limits: Limits | None = None,
                share: bool = False, log: Callable[[str], None] = print) -> uvicorn.Server:
    """Load the models and return the (not yet started) server; ``log`` gets the URLs to open. ``share``: listen on
    every interface (``host`` must be left at 127.0.0.1 or be 0.0.0.0) and print the LAN URLs with a warning."""
    limits = limits or Limits()
    if not 0 < port < 65536:
        raise GhostkitError(f"--port must be in 1..65535, got {port}")
    if share:
        if host not in ("127.0.0.1", "0.0.0.0"):
            raise GhostkitError(f"--share listens on every interface (0.0.0.0); it does not go with --host {host}")
        host = "0.0.0.0"
    with socket.socket() as s:  # uvicorn would log a bind failure and exit; a GhostkitError names the option
        try:
            s.bind((host, port))
        except OSError as e:
            raise GhostkitError(f"--host {host} --port {port}: cannot listen there ({e.strerror})") from None
    app = create_app(weights, limits)
    shown = "127.0.0.1" if host == "0.0.0.0" else host
    log(f"ghostkit app: {len(app.state.tabs)} model(s); open http://{shown}:{port}/ (Ctrl+C to stop)")
    if host == "0.0.0.0":
        addresses = lan_addresses()
        for address in addresses:
            log(f"  on the network: http://{address}:{port}/")
        log(SHARE_WARNING if addresses else "--share: no network address found besides this computer's own")
    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))


def serve(weights: list[str | Path], host: str = "127.0.0.1", port: int = 7860, limits: Limits | None = None,
          share: bool = False) -> None:
    """Load the models and serve the page and API until interrupted."""
    make_server(weights, host, port, limits, share, log=lambda line: print(line, flush=True)).run()
