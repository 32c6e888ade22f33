"""Drive the web page (ui/app.py) in a real Chromium: used by tests/test_ui.py and, through the
same functions, to take the README's screenshot of a running `make serve` + `make ui`:

    python -m tests.ui_driver --url http://127.0.0.1:7860 --video ../shared/data/videos/fake/X.mp4 \
        --screenshot docs/ui.png

Playwright cannot download its own browser here: Debian's `chromium` package is launched
instead (`make browser` installs it when missing).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, Page, expect, sync_playwright

from client.api import ServerAddress
from support.torchserve import REPO_ROOT, wait_for_http

# Any of these in the banner means the page has answered (a verdict or an error).
# Any verdict banner (ui/present.py HEADLINES) or the error banner: the page has answered.
ANSWERED = re.compile(
    r"Likely manipulated|No sign of face manipulation|Uncertain: too close|No face found|Could not"
)
ANSWER_TIMEOUT_MS = 180_000


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        raise FileNotFoundError(
            "Chromium is not installed: `make browser` installs Debian's chromium package "
            "(apt-get install chromium)"
        )
    return found


@contextmanager
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=["--no-sandbox"]
        )
        try:
            yield launched
        finally:
            launched.close()


@contextmanager
def running_app(
    port: int, address: ServerAddress, log_path: Path, samples: Path | None = None
) -> Iterator[str]:
    """`python -m ui.app` (what `make ui` runs) against `address` until the block ends."""
    command = [
        sys.executable, "-m", "ui.app", "--port", str(port),
        "--inference-url", address.inference_url, "--management-url", address.management_url,
    ]  # fmt: skip
    command += ["--no-auth"] if address.key_file is None else ["--key-file", str(address.key_file)]
    if samples is not None:
        command += ["--samples", str(samples)]
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "w") as log:
        app = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_http(url, app, log_path, "the web page", timeout_s=120)
            yield url
        finally:
            app.terminate()
            app.wait(timeout=30)


def analyse(page: Page, url: str, video: Path) -> str:
    """Open the page, upload `video`, press Analyse; the banner's text once it has answered."""
    page.goto(url)
    page.locator("#video-input input[type=file]").set_input_files(str(video))
    # Gradio draws the name's stem and suffix in two cells: read as "clip .mp4" at some widths.
    shown = re.compile(re.escape(video.stem) + r"\s*" + re.escape(video.suffix))
    expect(page.locator("#video-input")).to_contain_text(shown, timeout=60_000)
    page.locator("#analyse").click()
    banner = page.locator("#verdict")
    expect(banner).to_contain_text(ANSWERED, timeout=ANSWER_TIMEOUT_MS)
    page.wait_for_load_state("networkidle")
    return banner.inner_text()


def gallery_images(page: Page, element_id: str) -> int:
    return page.locator(f"#{element_id} img").count()


def screenshot(page: Page, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="screenshot the page after analysing a video")
    parser.add_argument("--url", default="http://127.0.0.1:7860")
    parser.add_argument("--video", type=Path, required=True)
    parser.add_argument("--screenshot", type=Path, default=Path("docs/ui.png"))
    args = parser.parse_args(argv)
    with browser() as chromium:
        page = chromium.new_page(viewport={"width": 1400, "height": 1000})
        print(analyse(page, args.url, args.video).splitlines()[0])
        print(f"ui_driver: {screenshot(page, args.screenshot)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
