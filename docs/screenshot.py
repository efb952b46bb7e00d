"""The README's screenshot of ``ghostkit app`` (docs/images/app.png), taken along a newcomer's path.

    make demo                                   # trains runs/demo/best.ckpt on the built-in digits
    .venv/bin/python docs/screenshot.py         # --weights runs/demo/best.ckpt --example 3 --out docs/images/app.png

Runs ``ghostkit app --weights W --port P`` as a user does, opens the URL it prints in Debian's Chromium
(``/usr/bin/chromium``, driven by Playwright), clicks an example, waits for the result, prints the classes shown
and saves the screenshot as a palette PNG (256 colours: the page is flat colours and greys, so this loses nothing
visible and keeps the file small).
"""

from __future__ import annotations

import argparse
import io
import re
import socket
import subprocess
import sys
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

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
    app = subprocess.Popen([sys.executable, "-m", "ghostkit.cli", "app", "--weights", args.weights, "--port",
                            str(port)], stdout=subprocess.PIPE, text=True)
    try:
        line = app.stdout.readline()  # "ghostkit app: 1 model(s); open http://127.0.0.1:PORT/ (Ctrl+C to stop)"
        url = re.search(r"open (http://\S+)", line)
        if url is None:
            raise SystemExit(f"ghostkit app did not print its URL: {line!r}")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1100, "height": 620})
            for _ in range(600):  # the server prints its URL just before it starts listening
                try:
                    page.goto(url.group(1))
                    break
                except Exception:  # connection refused until uvicorn listens
                    page.wait_for_timeout(100)
            page.click(f'#examples img[data-index="{args.example}"]')
            page.wait_for_selector(f"#status:has-text('example_{args.example}.png: ')")
            page.wait_for_function("[...document.querySelectorAll('#result img')].every((i) => i.complete)")
            page.mouse.move(0, 0)  # no hover highlight in the picture
            shown = page.locator("#result .row .cls").all_text_contents()
            print(f"{url.group(1)}: example {args.example}: classes shown, best first: {', '.join(shown)}")
            png = page.screenshot()
            browser.close()
    finally:
        app.terminate()
        app.wait(30)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.open(io.BytesIO(png)).convert("RGB").quantize(256).save(out, optimize=True)
    print(f"saved {out} ({out.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
