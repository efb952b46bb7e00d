"""``ghostkit app``: the HTTP API against ``ghostkit predict --json``, the resource limits, ``--share``, and the page
in a real headless Chromium (Debian's ``/usr/bin/chromium`` driven by Playwright; skipped where either is missing).

One server for the module, on a free local port in a thread, with one tab per task: a digits classifier, a shapes
detector, a x2 restorer, a style-transfer model and a class-conditional GAN, each trained here for 1 epoch on a few
tiny images written as a user's folder, and an untrained segmentation model (pictures' sizes, legends, tables and
controls are what is checked, not accuracy). Set ``GHOSTKIT_APP_SCREENSHOT=docs/images/app.png`` to keep the page's
screenshot after a classification (``docs/screenshot.sh`` does, with a well-trained model).
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the app extra is not installed: pip install 'ghostkit[app]'")
uvicorn = pytest.importorskip("uvicorn", reason="the app extra is not installed: pip install 'ghostkit[app]'")
httpx = pytest.importorskip("httpx", reason="httpx (the dev extra) is needed to call the API")

from ghostkit.app.limits import AppError, Limits, WorkQueue  # noqa: E402
from ghostkit.app.server import create_app  # noqa: E402
from ghostkit.cli import main  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LIMITS = Limits(max_upload_mb=1, max_megapixels=1, max_frames=4, max_samples=16, concurrency=1, queue=4)
SEGMENT_CLASSES = ["background", "circle", "square", "triangle"]
TAB = {"digits": "digits/best.ckpt", "segment": "segment/model.ckpt", "detect": "detect/best.ckpt",
       "restore": "restore/best.ckpt", "style": "style/best.ckpt", "generate": "generate/best.ckpt"}


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> Path:
    """A run folder (best.ckpt, metrics.json, samples/) of a classifier trained on the built-in digits as `make demo`
    trains, shorter: ghostnet_050, 2 epochs of batch 16 (enough steps for BatchNorm's running statistics to settle:
    about 95% top-1). ``GHOSTKIT_APP_EPOCHS`` trains longer."""
    import ghostkit

    epochs = int(os.environ.get("GHOSTKIT_APP_EPOCHS", "2"))
    out = tmp_path_factory.mktemp("app") / "digits"
    ghostkit.train(task="classify", data="digits", model="ghostnet_050", epochs=epochs, warmup_epochs=0, batch=16,
                   workers=0, out=str(out))
    return out


@pytest.fixture(scope="module")
def segment_ckpt(tmp_path_factory) -> Path:
    from ghostkit.models.weights import save_weights
    from ghostkit.tasks.model import build_task_model

    config = {"format": 1, "backbone": {"name": "ghostnet_050", "kwargs": {"output_stride": 32}},
              "heads": {"segment": {"num_classes": len(SEGMENT_CLASSES)}}, "class_names": {"segment": SEGMENT_CLASSES},
              "imgsz": [64, 64], "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "deployed": False}
    path = tmp_path_factory.mktemp("app") / "segment" / "model.ckpt"
    return save_weights(build_task_model(config).eval(), path, config)


def _train(*args: str) -> None:
    assert main(["train", "--model", "ghostnet_050", "--epochs", "1", "--warmup-epochs", "0", "--workers", "0",
                 *args]) == 0


@pytest.fixture(scope="module")
def detect_run(tmp_path_factory) -> Path:
    """A detector (SSDLite) trained 1 epoch on 32 built-in shapes images written as a user's YOLO folder."""
    from ghostkit.data.synthetic import SHAPE_CLASSES, make_shapes

    root = tmp_path_factory.mktemp("app") / "shapes"
    for split, n, seed in (("train", 32, 0), ("val", 8, 1)):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i, sample in enumerate(make_shapes(n, imgsz=64, seed=seed)):
            Image.fromarray(sample.image).save(root / "images" / split / f"{i}.png")
            lines = [f"{c} {(x1 + x2) / 128} {(y1 + y2) / 128} {(x2 - x1) / 64} {(y2 - y1) / 64}"
                     for c, (x1, y1, x2, y2) in zip(sample.labels.tolist(), sample.boxes.tolist())]
            (root / "labels" / split / f"{i}.txt").write_text("\n".join(lines) + "\n")
    (root / "data.yaml").write_text(json.dumps({"names": list(SHAPE_CLASSES)}))  # JSON is YAML
    out = root.parent / "detect"
    _train("--task", "detect", "--data", str(root), "--head", "ssdlite", "--imgsz", "64", "--batch", "16",
           "--out", str(out))
    return out


def _photos(root: Path, n: int, size: tuple[int, int] = (40, 48)) -> None:
    """``n`` gradient-and-noise photos of ``size`` (h, w) in ``root/train`` and ``root/val``."""
    rng = np.random.default_rng(0)
    h, w = size
    for split in ("train", "val"):
        (root / split).mkdir(parents=True)
        for i in range(n):
            yy, xx = np.mgrid[0:h, 0:w]
            base = np.stack([xx * 255 / w, yy * 255 / h, np.full((h, w), 40.0 * i)], -1)
            Image.fromarray(np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)).save(
                root / split / f"p{i}.png")


@pytest.fixture(scope="module")
def restore_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("app")
    _photos(tmp / "photos", 3)
    _train("--task", "restore", "--data", str(tmp / "photos"), "--scale", "2", "--imgsz", "32", "--batch", "4",
           "--width", "8", "--depth", "1", "--out", str(tmp / "restore"))
    return tmp / "restore"


@pytest.fixture(scope="module")
def style_run(tmp_path_factory) -> Path:
    """A one-style model (the built-in mosaic style), 1 epoch on 3 photos."""
    tmp = tmp_path_factory.mktemp("app")
    _photos(tmp / "photos", 3)
    _train("--task", "style", "--data", str(tmp / "photos"), "--width", "4", "--depth", "1", "--imgsz", "32",
           "--batch", "4", "--out", str(tmp / "style"))
    return tmp / "style"


@pytest.fixture(scope="module")
def generate_run(tmp_path_factory) -> Path:
    """A class-conditional GAN (classes "bar" and "ring", 32 px), 1 epoch on 8 images per class."""
    from ghostkit.tasks.generate import GENERATE_DEFAULTS

    tmp = tmp_path_factory.mktemp("app")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:32, :32] / 32
    for kind in ("bar", "ring"):
        (tmp / "gan" / kind).mkdir(parents=True)
        for i in range(8):
            cy, cx = 0.5 + rng.uniform(-0.1, 0.1, 2)
            r = np.hypot(yy - cy, xx - cx)
            mask = (r > 0.2) & (r < 0.3) if kind == "ring" else np.abs(xx - cx) < 0.08
            img = np.zeros((32, 32, 3), np.uint8)
            img[mask] = rng.integers(150, 255, 3)
            Image.fromarray(img).save(tmp / "gan" / kind / f"{i}.png")
    old, GENERATE_DEFAULTS["feature_epochs"] = GENERATE_DEFAULTS["feature_epochs"], 1
    try:
        _train("--task", "generate", "--data", str(tmp / "gan"), "--batch", "8", "--width", "8", "--out",
               str(tmp / "generate"))
    finally:
        GENERATE_DEFAULTS["feature_epochs"] = old
    return tmp / "generate"


@pytest.fixture(scope="module")
def app(digits_run, segment_ckpt, detect_run, restore_run, style_run, generate_run):
    """The app with one model per task (tabs named as :data:`TAB`)."""
    weights = [digits_run / "best.ckpt", segment_ckpt, detect_run / "best.ckpt", restore_run / "best.ckpt",
               style_run / "best.ckpt", generate_run / "best.ckpt"]
    app = create_app(weights, LIMITS)
    assert [t.name for t in app.state.tabs] == list(TAB.values())
    return app


@pytest.fixture(scope="module")
def server(app):
    """Base URL of :func:`app` served on a free local port; stopped (and its temporary folder removed) at the end."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not srv.started:
        assert thread.is_alive() and time.time() < deadline, "the app did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(30)


def _png(size: tuple[int, int], seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _flat_png(size: tuple[int, int]) -> bytes:
    """A one-colour PNG: many pixels in few bytes."""
    buf = io.BytesIO()
    Image.new("RGB", size, (90, 120, 200)).save(buf, format="PNG")
    return buf.getvalue()


def _cli_json(capsys, *args: str) -> list[dict]:
    capsys.readouterr()
    assert main(["predict", *args, "--json"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]


# ------------------------------------------------------------------------------------------------------ HTTP API


@pytest.mark.slow
def test_predict_json_equals_cli(server, digits_run, segment_ckpt, capsys):
    image = digits_run / "samples" / "sample_03.png"
    for weights, model, extra in ((digits_run / "best.ckpt", "", {"topk": "3"}),
                                  (segment_ckpt, "segment/model.ckpt", {})):
        r = httpx.post(f"{server}/predict", files={"image": (image.name, image.read_bytes(), "image/png")},
                       data={"model": model, **extra}, timeout=60)
        assert r.status_code == 200, r.text
        args = [a for k, v in extra.items() for a in (f"--{k}", v)]
        (cli,) = _cli_json(capsys, "--weights", str(weights), "--source", str(image), *args)
        assert r.json() == {**cli, "source": image.name}  # the API names the upload, the CLI the path


@pytest.mark.slow
def test_bad_uploads_get_a_4xx_json_error(server):
    def post(name: str, data: bytes, **form) -> httpx.Response:
        return httpx.post(f"{server}/predict", files={"image": (name, data, "image/png")}, data=form, timeout=60)

    good = _png((40, 30))
    cases = [
        (post("notes.txt", b"just some text"), 400, "notes.txt: not an image"),
        (post("cut.png", good[: len(good) // 2]), 400, "cut.png: cannot read image"),
        (post("empty.png", b""), 400, "empty.png: the file is empty"),
        (post("wide.png", _flat_png((1200, 1000))), 413, "1200 x 1000 pixels is over the limit of 1 megapixels"),
        (post("big.png", good + b"\0" * 2**20), 413, "is over the limit of 1 MB"),
        (post("ok.png", good, topk="0"), 400, "topk must be positive"),
        (post("ok.png", good, topk="many"), 400, "topk:"),
        (post("ok.png", good, conf="0.3"), 400, "conf and iou apply to detection models"),
        (post("ok.png", good, model="nope"), 404, "no model 'nope'"),
        (httpx.post(f"{server}/predict", timeout=60), 400, "image: Field required"),
    ]
    for response, status, message in cases:
        assert response.status_code == status, response.text
        assert message in response.json()["error"]
        assert "Traceback" not in response.text
    assert post("ok.png", good).status_code == 200  # the server is still fine


@pytest.mark.slow
def test_video_is_annotated_and_cut_at_the_frame_limit(server, tmp_path):
    cv2 = pytest.importorskip("cv2")
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (48, 40))
    for i in range(6):
        writer.write(np.full((40, 48, 3), 40 * i, np.uint8))
    writer.release()
    r = httpx.post(f"{server}/api/video", files={"video": ("clip.mp4", clip.read_bytes(), "video/mp4")}, timeout=120)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["frames"] == LIMITS.max_frames and out["truncated"] and out["fps"] > 0
    assert [f["frame"] for f in out["results"]] == list(range(LIMITS.max_frames))
    assert out["results"][0]["source"] == "clip.mp4" and len(out["results"][0]["topk"]) == 5
    assert out["video"].startswith("data:video/webm;base64,") and len(out["video"]) > 200
    bad = httpx.post(f"{server}/api/video", files={"video": ("x.mp4", b"not a video", "video/mp4")}, timeout=60)
    assert bad.status_code == 400 and "x.mp4" in bad.json()["error"] and "/tmp" not in bad.json()["error"]


def test_queue_turns_requests_away_when_full():
    anyio = pytest.importorskip("anyio")
    queue, outcomes = WorkQueue(concurrency=1, queue=1), []

    async def one(delay: float) -> None:
        try:
            outcomes.append(await queue.run(time.sleep, delay) or "done")
        except AppError as e:
            outcomes.append(e.status)

    async def three() -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(3):  # one runs, one waits, the third finds the queue full
                tg.start_soon(one, 0.3)
                await anyio.sleep(0.05)

    anyio.run(three)
    assert sorted(outcomes, key=str) == [503, "done", "done"]
    assert queue.active == 0


def test_cli_app_bad_options(tmp_path, capsys):
    assert main(["app", "--weights", str(tmp_path / "missing.ckpt")]) == 2
    assert "missing.ckpt: no such model file" in capsys.readouterr().err
    assert main(["app", "--weights", "x.ckpt", "--port", "70000"]) == 2
    assert main(["app", "--weights", "x.ckpt", "--max-upload-mb", "0"]) == 2
    assert "--max-upload-mb must be positive" in capsys.readouterr().err
    assert main(["app", "--weights", "x.ckpt", "--share", "--host", "10.1.2.3"]) == 2
    assert "it does not go with --host 10.1.2.3" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- in a browser


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        pytest.skip(f"no {CHROMIUM}: install Debian's chromium (apt-get install chromium) for the browser tests")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (the dev extra) is not installed")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server, tmp_path, request):
    """A fresh page on the app; a screenshot of it goes into the test's tmp folder when the test fails."""
    context = browser.new_context(viewport={"width": 1100, "height": 720})
    page = context.new_page()
    page.set_default_timeout(60_000)
    failed_before = request.session.testsfailed
    try:
        page.goto(server)
        page.wait_for_selector("nav button.active")
        yield page
    finally:
        if request.session.testsfailed > failed_before:  # the test's call failed: its report is already counted
            page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
        context.close()


@pytest.mark.slow
def test_page_classifies_a_clicked_example(page, digits_run, capsys):
    """The path of a newcomer: a model trained on the digits, its page, a click on each digit example. Every example
    shows the classes ``ghostkit predict`` gives for it, best first, and the examples the short-trained model gets
    right (labels found by their pixels among scikit-learn's digits) show their true class on top."""
    from ghostkit.data.synthetic import load_digits

    cli = _cli_json(capsys, "--weights", str(digits_run / "best.ckpt"), "--source", str(digits_run / "samples"))
    assert "classify" in page.text_content("#card") and "top1" in page.text_content("#card")  # the model card
    images, labels, names = load_digits(32)
    truth = {image.tobytes(): names[label] for image, label in zip(images, labels)}
    right = []
    for index in range(8):
        page.click(f'#examples img[data-index="{index}"]')
        page.wait_for_selector(f"#status:has-text('example_{index}.png: ')")
        shown = page.locator("#result .row .cls").all_text_contents()
        assert shown == [x["class"] for x in cli[index]["topk"]], index
        label = truth[np.asarray(Image.open(digits_run / "samples" / f"sample_{index:02d}.png")).tobytes()]
        if shown[0] == label:
            right.append(index)
            if len(right) == 1 and os.environ.get("GHOSTKIT_APP_SCREENSHOT"):
                page.screenshot(path=os.environ["GHOSTKIT_APP_SCREENSHOT"])
    assert right, "no example shows its true class on top"


@pytest.mark.slow
def test_page_shows_bad_uploads_as_messages(page):
    page.set_input_files("#file", {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"no pixels here"})
    page.wait_for_selector("#result .error")
    assert "notes.txt: not an image" in page.text_content("#result .error")
    page.set_input_files("#file", {"name": "big.png", "mimeType": "image/png", "buffer": _png((8, 8)) + b"\0" * 2**20})
    page.wait_for_selector("#result .error:has-text('over the limit of 1 MB')")
    page.set_input_files("#file", {"name": "ok.png", "mimeType": "image/png", "buffer": _png((24, 24))})
    page.wait_for_selector("#result .row")  # and the page still works


@pytest.mark.slow
def test_page_segment_tab_overlay_and_legend(page):
    page.click("nav button:has-text('segment/model.ckpt')")
    page.wait_for_selector("#card:has-text('segment classes')")
    page.set_input_files("#file", {"name": "scene.png", "mimeType": "image/png", "buffer": _png((48, 40), seed=1)})
    picture = page.wait_for_selector("#result img.picture")
    page.wait_for_function("document.querySelector('#result img.picture').complete")
    assert picture.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [48, 40]  # overlay at the image's size
    legend = page.locator("#result table tr td:first-child").all_text_contents()
    assert legend and set(legend) <= set(SEGMENT_CLASSES)


def _picture_sizes(page) -> dict[str, list[int]]:
    """``{caption: [natural width, height]}`` of the result's pictures, once all have loaded."""
    page.wait_for_function("[...document.querySelectorAll('#result img')].every((i) => i.complete && i.naturalWidth)")
    return page.evaluate("Object.fromEntries([...document.querySelectorAll('#result figure')].map((f) => "
                         "[f.querySelector('figcaption').textContent, [f.querySelector('img').naturalWidth, "
                         "f.querySelector('img').naturalHeight]]))")


def _data_url_pixels(url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))


def _open_tab(page, task: str) -> None:
    page.click(f"nav button:has-text('{TAB[task]}')")
    page.wait_for_selector(f"#card h2:has-text('{TAB[task]}')")


def _set_slider(page, name: str, value: float) -> None:
    """Move a slider as a user does (input, then change) and wait for the new result."""
    before = page.inner_html("#result")
    page.locator(f"#controls input[name='{name}']").evaluate(
        "(el, v) => { el.value = v; el.dispatchEvent(new Event('input')); el.dispatchEvent(new Event('change')); }",
        str(value))
    page.wait_for_function("([b]) => document.querySelector('#result').innerHTML !== b && "
                           "!document.querySelector('#status').textContent.startsWith('predicting')", arg=[before],
                           timeout=30_000)


@pytest.mark.slow
def test_page_detect_annotates_and_sliders_change_the_result(page, server):
    from ghostkit.data.synthetic import make_shapes

    buf = io.BytesIO()
    # 320 x 256, not square: large enough to be drawn at its own size (smaller images are drawn scaled up)
    Image.fromarray(make_shapes(1, imgsz=320, seed=5)[0].image[:256]).save(buf, format="PNG")
    _open_tab(page, "detect")
    assert page.locator("#controls input").evaluate_all("els => els.map((e) => e.name)") == ["conf", "iou"]
    assert not page.is_hidden("#video-box")
    page.set_input_files("#file", {"name": "shapes.png", "mimeType": "image/png", "buffer": buf.getvalue()})
    page.wait_for_selector("#status:has-text('shapes.png: ')")
    assert _picture_sizes(page) == {"input": [320, 256], "detect": [320, 256]}  # boxes drawn on the image itself
    _set_slider(page, "conf", 0.01)

    def api_boxes(conf: float) -> int:
        r = httpx.post(f"{server}/predict", files={"image": ("s.png", buf.getvalue(), "image/png")},
                       data={"model": TAB["detect"], "conf": str(conf)}, timeout=60)
        assert r.status_code == 200, r.text
        return len(r.json()["detections"])

    low = page.locator("#result table tr").count() - 1  # minus the header
    assert low == api_boxes(0.01) > 0
    assert page.locator("#result table th").all_text_contents() == ["class", "score", "box (x1, y1, x2, y2)"]
    _set_slider(page, "conf", 0.95)
    high = max(page.locator("#result table tr").count() - 1, 0)
    assert high == api_boxes(0.95) < low
    if high == 0:
        assert "no objects above the confidence threshold" in page.text_content("#result")


@pytest.mark.slow
def test_page_restore_shows_before_and_after(page):
    _open_tab(page, "restore")
    assert page.locator("#controls input").count() == 0
    page.set_input_files("#file", {"name": "small.png", "mimeType": "image/png", "buffer": _png((30, 24), seed=2)})
    page.wait_for_selector("#status:has-text('small.png: ')")
    # x2: input | bicubic | restored, side by side at the restored size
    assert _picture_sizes(page) == {"input": [30, 24], "compare": [3 * 60, 48]}
    assert "restored image: 60 x 48 pixels (scale 2)" in page.text_content("#result")


@pytest.mark.slow
def test_page_video_upload_for_detect(page, tmp_path):
    cv2 = pytest.importorskip("cv2")
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (320, 256))
    for i in range(6):
        writer.write(np.full((256, 320, 3), 30 * i, np.uint8))
    writer.release()
    _open_tab(page, "detect")
    page.set_input_files("#video", str(clip))
    page.wait_for_selector("#result video")
    status = page.text_content("#status")
    assert re.fullmatch(r"clip\.mp4: 4 frames at [0-9.]+ frames/s \(cut at the frame limit\)", status), status
    assert float(status.split(" at ")[1].split()[0]) > 0
    page.wait_for_function("document.querySelector('#result video').readyState >= 1", timeout=30_000)
    assert page.evaluate("(v => [v.videoWidth, v.videoHeight])(document.querySelector('#result video'))") == [320, 256]


@pytest.mark.slow
def test_page_generate_grid_and_the_same_json_over_http(page, server):
    _open_tab(page, "generate")
    assert page.is_hidden("#image-box") and not page.is_hidden("#generate-box")
    assert page.locator("#gen-class option").all_text_contents() == ["every class in turn", "bar", "ring"]
    assert "generate classes" in page.text_content("#card") and "fid" in page.text_content("#card")
    page.select_option("#gen-class", "ring")
    page.fill("#gen-num", "6")
    page.fill("#gen-seed", "3")
    page.click("#gen-go")
    page.wait_for_selector("#status:has-text('seed 3')")
    assert page.text_content("#status") == "6 samples of 32 x 32 pixels, seed 3"
    assert _picture_sizes(page) == {"ring": [3 * 33 - 1, 2 * 33 - 1]}  # 2 rows of 3, 1 px apart
    shown = page.get_attribute("#result img", "src")
    api = httpx.post(f"{server}/generate", data={"model": TAB["generate"], "num": "6", "class": "ring", "seed": "3"},
                     timeout=60).json()
    assert api["grid"] == shown and api["classes"] == ["ring"] * 6 and len(api["images"]) == 6  # same seed, same
    assert _data_url_pixels(api["images"][0]).shape == (32, 32, 3)
    page.fill("#gen-seed", "4")
    page.click("#gen-go")
    page.wait_for_selector("#status:has-text('seed 4')")
    assert page.get_attribute("#result img", "src") != shown


def test_generate_api_errors(server):
    def post(**form) -> httpx.Response:
        return httpx.post(f"{server}/generate", data=form, timeout=60)

    every = post(num="4")  # the first generative tab; classes in turn
    assert every.status_code == 200 and every.json()["classes"] == ["bar", "ring", "bar", "ring"]
    cases = [(post(num="0"), 400, "num must be in 1..16"), (post(num="17"), 400, "num must be in 1..16"),
             (post(**{"class": "cat"}), 400, "class 'cat' is not one of the model's classes (bar, ring)"),
             (post(seed="-1"), 400, "seed must be"), (post(num="x"), 400, "num:"),
             (post(model=TAB["digits"]), 400, "takes images; call POST /predict")]
    for response, status, message in cases:
        assert response.status_code == status and message in response.json()["error"], response.text
    r = httpx.post(f"{server}/predict", files={"image": ("a.png", _png((32, 32)), "image/png")},
                   data={"model": TAB["generate"]}, timeout=60)
    assert r.status_code == 400 and "a generative model; call POST /generate" in r.json()["error"]


def test_an_exported_generator_samples_as_its_checkpoint(generate_run, tmp_path, capsys):
    """An ONNX generator gets a generate tab too: the same samples for the same seed (within the export's
    tolerance: one grey level), and ``ghostkit predict --num`` samples from it."""
    from fastapi.testclient import TestClient

    from ghostkit.deploy.generate import export_generator

    onnx = export_generator(generate_run / "best.ckpt", out=tmp_path / "g.onnx", log=None).path  # batch 1
    with TestClient(create_app([generate_run / "best.ckpt", onnx], LIMITS)) as client:
        cards = client.get("/api/models").json()
        assert [m["tasks"] for m in cards] == [["generate"], ["generate"]]
        got = [client.post("/generate", data={"model": m["name"], "num": "3", "class": "ring", "seed": "5"}).json()
               for m in cards]
    assert got[0]["classes"] == got[1]["classes"] == ["ring"] * 3
    for a, b in zip(got[0]["images"], got[1]["images"]):
        assert np.abs(_data_url_pixels(a).astype(int) - _data_url_pixels(b).astype(int)).max() <= 1
    assert main(["predict", "--weights", str(onnx), "--num", "2", "--save", str(tmp_path / "s")]) == 0
    assert sorted(p.name for p in (tmp_path / "s").rglob("*.png")) == ["0.png", "0.png", "1.png", "1.png", "grid.png"]
    assert main(["predict", "--weights", str(onnx), "--source", str(tmp_path / "s" / "grid.png")]) == 2
    assert "a generative model; sample from it with --num N --save DIR" in capsys.readouterr().err


@pytest.mark.slow
def test_page_style_own_style_and_alpha(page, server, style_run):
    photo = _png((40, 36), seed=4)
    _open_tab(page, "style")
    assert page.is_hidden("#style-upload") and not page.is_hidden("#style-fixed")  # one style: no style upload
    page.wait_for_function("document.querySelector('#own-style').naturalWidth > 0")
    page.set_input_files("#file", {"name": "photo.png", "mimeType": "image/png", "buffer": photo})
    page.wait_for_selector("#status:has-text('photo.png: ')")
    sizes = _picture_sizes(page)
    assert sizes["input"] == sizes["style"] == [40, 36] and "style image" in sizes
    assert "stylised image: 40 x 36 pixels" in page.text_content("#result")
    _set_slider(page, "alpha", 0)  # alpha 0: the photo itself
    stylised = page.get_attribute("#result img[data-name='style']", "src")
    assert np.array_equal(_data_url_pixels(stylised), np.asarray(Image.open(io.BytesIO(photo))))
    r = httpx.post(f"{server}/predict", files={"image": ("p.png", photo, "image/png"),
                                               "style": ("s.png", _png((32, 32)), "image/png")},
                   data={"model": TAB["style"]}, timeout=60)
    assert r.status_code == 400 and "renders the one style it was trained on" in r.json()["error"]
    r = httpx.post(f"{server}/predict", files={"image": ("p.png", photo, "image/png")},
                   data={"model": TAB["style"], "alpha": "1.5"}, timeout=60)
    assert r.status_code == 400 and "alpha must be in [0, 1]" in r.json()["error"]


@pytest.mark.slow
def test_page_sends_a_style_image_to_an_arbitrary_style_model(app, browser, server, tmp_path):
    """With a head that takes any style (``arbitrary = True``), the page offers a style upload and shows the style
    it was sent; the page of a one-style model offers none (test above)."""
    tab = app.state.tabs[list(TAB).index("style")]
    h, w = tab.heads["style"].style_image.shape[1:]
    style = np.random.default_rng(5).integers(0, 255, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(style).save(buf, format="PNG")
    tab.arbitrary_style = True
    context = browser.new_context(viewport={"width": 1100, "height": 720})
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        page.goto(server)
        _open_tab(page, "style")
        assert not page.is_hidden("#style-upload") and page.is_hidden("#style-fixed")
        page.set_input_files("#file", {"name": "photo.png", "mimeType": "image/png", "buffer": _png((40, 36))})
        page.wait_for_selector("#status:has-text('photo.png: ')")
        own = page.get_attribute("#result img[data-name='style image']", "src")
        page.set_input_files("#style-file", {"name": "style.png", "mimeType": "image/png", "buffer": buf.getvalue()})
        page.wait_for_function("(own) => { const i = document.querySelector(\"#result img[data-name='style image']\");"
                               " return i && i.src !== own; }", arg=own)
        sent = page.get_attribute("#result img[data-name='style image']", "src")
        assert np.array_equal(_data_url_pixels(sent), style)  # read at the training size: this one already is
    except Exception:
        page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
        raise
    finally:
        tab.arbitrary_style = False
        context.close()


def test_style_image_goes_to_an_arbitrary_style_head_and_back(style_run):
    """The app's side of arbitrary-style heads (``arbitrary = True``): the uploaded style image is read as --style is,
    set with ``set_style`` for the request, shown, and the head's own style is back afterwards."""
    from fastapi.testclient import TestClient

    app = create_app([style_run / "best.ckpt"], LIMITS)
    tab = app.state.tabs[0]
    tab.arbitrary_style = True
    head = tab.heads["style"]
    own = head.style_image.clone()
    h, w = own.shape[1:]
    style = np.random.default_rng(3).integers(0, 255, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(style).save(buf, format="PNG")
    seen = []
    original = tab.predictor.predict
    tab.predictor.predict = lambda *a, **k: (seen.append(head.style_image.clone()), original(*a, **k))[1]
    with TestClient(app) as client:
        r = client.post("/api/view", files={"image": ("p.png", _png((40, 36)), "image/png"),
                                            "style": ("s.png", buf.getvalue(), "image/png")}, data={"alpha": "0.5"})
        bad = client.post("/api/view", files={"image": ("p.png", _png((40, 36)), "image/png"),
                                              "style": ("notes.txt", b"no pixels", "text/plain")})
    assert bad.status_code == 400 and bad.json()["error"].startswith("notes.txt: not an image")
    assert r.status_code == 200, r.text
    assert np.array_equal(seen[0].permute(1, 2, 0).numpy(), style)  # the request's style, during the request
    assert np.array_equal(_data_url_pixels(r.json()["pictures"]["style image"]), style)
    assert bool((head.style_image == own).all()) and head.alpha == 1.0  # the model's own again


def test_share_listens_everywhere_and_prints_lan_urls(digits_run):
    from ghostkit.app.server import SHARE_WARNING, lan_addresses, make_server
    from ghostkit.errors import GhostkitError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    lines: list[str] = []
    srv = make_server([digits_run / "best.ckpt"], port=port, share=True, log=lines.append)
    assert srv.config.host == "0.0.0.0"
    addresses = lan_addresses()
    assert lines[0].startswith(f"ghostkit app: 1 model(s); open http://127.0.0.1:{port}/")
    assert lines[1:-1] == [f"  on the network: http://{a}:{port}/" for a in addresses]
    assert lines[-1] == (SHARE_WARNING if addresses else "--share: no network address found besides this "
                                                          "computer's own")
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    try:
        deadline = time.time() + 60
        while not srv.started:
            assert thread.is_alive() and time.time() < deadline, "the app did not start"
            time.sleep(0.05)
        for address in ["127.0.0.1", *addresses]:  # reachable on every interface
            assert httpx.get(f"http://{address}:{port}/api/models", timeout=30).json()[0]["tasks"] == ["classify"]
    finally:
        srv.should_exit = True
        thread.join(30)
    local: list[str] = []
    assert make_server([digits_run / "best.ckpt"], port=port, log=local.append).config.host == "127.0.0.1"
    assert len(local) == 1
    with pytest.raises(GhostkitError, match="--share listens on every interface"):
        make_server([digits_run / "best.ckpt"], host="10.1.2.3", port=port, share=True)
