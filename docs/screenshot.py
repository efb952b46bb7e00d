"""The README's screenshot of ``ghostkit app`` (docs/images/app.png): the page after clicking a digit example.

    make demo                                   # trains runs/demo/best.ckpt on the built-in digits
    .venv/bin/python docs/screenshot.py         # --weights runs/demo/best.ckpt --example 3 --out docs/images/app.png

Starts the app on a free local port, opens it in Debian's Chromium (``/usr/bin/chromium``, driven by Playwright),
clicks the example, waits for the result, prints the classes shown and saves the screenshot as a palette PNG
(256 colours: the page is flat colours and greys, so this loses nothing visible and keeps the file small).
"""

from __future__ import annotations

import argparse
import io
import socket
import threading
import time
from pathlib import Path

import uvicorn
from PIL import Image
from playwright.sync_api import sync_playwright

from ghostkit.app.server import create_app

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", default="runs/demo/best.ckpt")
    parser.add_argument("--example", type=int, default=3, help="index of the example image to click")
    parser.add_argument("--out", default="docs/images/app.png")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app([args.weights]), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise SystemExit("the app did not start")
        time.sleep(0.05)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1100, "height": 620})
            page.goto(f"http://127.0.0.1:{port}/")
            page.click(f'#examples img[data-index="{args.example}"]')
            page.wait_for_selector("#result .row")
            page.wait_for_function("[...document.querySelectorAll('#result img')].every((i) => i.complete)")
            page.mouse.move(0, 0)  # no hover highlight in the picture
            shown = page.locator("#result .row .cls").all_text_contents()
            print(f"example {args.example}: classes shown, best first: {', '.join(shown)}")
            png = page.screenshot()
            browser.close()
    finally:
        server.should_exit = True
        thread.join(30)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.open(io.BytesIO(png)).convert("RGB").quantize(256).save(out, optimize=True)
    print(f"saved {out} ({out.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
