"""``ghostkit app``: the HTTP API against ``ghostkit predict --json``, the resource limits, and the page in a real
headless Chromium (Debian's ``/usr/bin/chromium`` driven by Playwright; skipped where either is missing).

One server for the module, on a free local port in a thread: a digits classifier trained here (1 epoch) and an
untrained segmentation model (its pictures' sizes and legend are what is checked, not its accuracy).
Set ``GHOSTKIT_APP_SCREENSHOT=docs/images/app.png`` to keep the page's screenshot after a classification.
"""

from __future__ import annotations

import io
import json
import os
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
LIMITS = Limits(max_upload_mb=1, max_megapixels=1, max_frames=4, concurrency=1, queue=4)
SEGMENT_CLASSES = ["background", "circle", "square", "triangle"]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> Path:
    """A run folder (best.ckpt, metrics.json, samples/) of a classifier trained on 360 of the digits, written as a
    user's ImageFolder (the full set takes minutes when the cores are shared). ``GHOSTKIT_APP_EPOCHS`` (default 1)
    trains longer, for a screenshot with confident predictions."""
    import ghostkit
    from ghostkit.data.synthetic import load_digits, write_imagefolder

    tmp = tmp_path_factory.mktemp("app")
    images, labels, names = load_digits(32)
    write_imagefolder(tmp / "data" / "train", images[:300], labels[:300], names)
    write_imagefolder(tmp / "data" / "val", images[300:360], labels[300:360], names)
    epochs = int(os.environ.get("GHOSTKIT_APP_EPOCHS", "1"))
    ghostkit.train(task="classify", data=str(tmp / "data"), model="ghostnet_050", epochs=epochs, warmup_epochs=0,
                   imgsz=32, batch=50, workers=0, out=str(tmp / "digits"))
    return tmp / "digits"


@pytest.fixture(scope="module")
def segment_ckpt(tmp_path_factory) -> Path:
    from ghostkit.models.weights import save_weights
    from ghostkit.tasks.model import build_task_model

    config = {"format": 1, "backbone": {"name": "ghostnet_050", "kwargs": {"output_stride": 32}},
              "heads": {"segment": {"num_classes": len(SEGMENT_CLASSES)}}, "class_names": {"segment": SEGMENT_CLASSES},
              "imgsz": [64, 64], "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "deployed": False}
    path = tmp_path_factory.mktemp("app") / "segment" / "model.ckpt"
    return save_weights(build_task_model(config).eval(), path, config)


@pytest.fixture(scope="module")
def server(digits_run, segment_ckpt):
    """Base URL of the app serving both models; stopped (and its temporary folder removed) at the end."""
    app = create_app([digits_run / "best.ckpt", segment_ckpt], LIMITS)
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
    (cli,) = _cli_json(capsys, "--weights", str(digits_run / "best.ckpt"), "--source",
                       str(digits_run / "samples" / "sample_03.png"), "--topk", "5")
    assert "classify" in page.text_content("#card") and "top1" in page.text_content("#card")  # the model card
    page.click('#examples img[data-index="3"]')
    page.wait_for_selector("#result .row")
    shown = page.locator("#result .row .cls").all_text_contents()
    assert shown == [x["class"] for x in cli["topk"]]  # the same classes, best first, as ghostkit predict
    assert "example_3.png" in page.text_content("#status")
    if os.environ.get("GHOSTKIT_APP_SCREENSHOT"):
        page.screenshot(path=os.environ["GHOSTKIT_APP_SCREENSHOT"])


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
