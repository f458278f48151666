"""Headless Chromium for the report tests and the README screenshots: the system browser
(Debian's ``chromium`` and ``chromium-driver``) driven by Selenium; nothing is downloaded.

A page is opened from disk and, once its slice viewers have settled, the page is checked:
every image's ``naturalWidth``, every network request the browser made (Chrome's performance
log: only ``file:``, ``data:`` and ``blob:`` URLs may appear) and the console log.
"""

from __future__ import annotations

import base64
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: URL schemes a self-contained report may load.
LOCAL_SCHEMES = ("file:", "data:", "blob:")


def missing() -> str | None:
    """Why no headless Chromium can run here (None when it can)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists() and not shutil.which(Path(path).name):
            return (
                f"no {path}: install Debian's browser with "
                "`apt-get install -y chromium chromium-driver` (.ci/run does)"
            )
    return None


def start(width: int = 1280, height: int = 900):
    """A headless Chromium session (Selenium ``webdriver.Chrome``); quit it when done.

    WebGL 2 (the slice viewer) runs on SwiftShader, Chromium's software renderer, so no
    GPU or display is needed.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        f"--window-size={width},{height}",
        "--use-angle=swiftshader",
        "--enable-unsafe-swiftshader",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        # nothing may reach the network; these keep Chromium's own services quiet
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--no-default-browser-check",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = shutil.which("chromedriver") or CHROMEDRIVER
    return webdriver.Chrome(service=Service(driver), options=options)


@dataclass
class PageCheck:
    """What one opened page showed."""

    url: str
    text: str
    images: list[dict] = field(default_factory=list)  # {"alt", "naturalWidth", "complete"}
    requests: list[str] = field(default_factory=list)
    console: list[dict] = field(default_factory=list)  # Chrome's log entries
    viewers: list[str] = field(default_factory=list)  # each viewer's data-state

    @property
    def broken_images(self) -> list[str]:
        return [i["alt"] for i in self.images if not i["complete"] or i["naturalWidth"] <= 0]

    @property
    def remote_requests(self) -> list[str]:
        return [u for u in self.requests if not u.startswith(LOCAL_SCHEMES)]

    @property
    def console_errors(self) -> list[str]:
        return [e["message"] for e in self.console if e["level"] in ("SEVERE", "ERROR")]


def open_page(driver, path: Path, settle_seconds: float = 30.0) -> PageCheck:
    """Open ``path`` and wait until the page has loaded and its viewers have started."""
    driver.get_log("performance")  # drop what an earlier page left
    driver.get_log("browser")
    driver.get(Path(path).resolve().as_uri())
    deadline = time.monotonic() + settle_seconds
    while time.monotonic() < deadline:
        state = driver.execute_script(
            "return [document.readyState,"
            " [...document.querySelectorAll('div.viewer')].map(v => v.dataset.state)]"
        )
        if state[0] == "complete" and "loading" not in state[1]:
            break
        time.sleep(0.25)
    images = driver.execute_script(
        "return [...document.images].map(i => ({alt: i.alt, naturalWidth: i.naturalWidth,"
        " complete: i.complete}))"
    )
    requests = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            requests.append(message["params"]["request"]["url"])
    return PageCheck(
        url=driver.current_url,
        text=driver.execute_script("return document.body.innerText"),
        images=images,
        requests=requests,
        console=driver.get_log("browser"),
        viewers=driver.execute_script(
            "return [...document.querySelectorAll('div.viewer')].map(v => v.dataset.state)"
        ),
    )


def full_page_png(
    driver, out: Path, top: float = 0.0, bottom: float | None = None, width: float | None = None
) -> Path:
    """A screenshot of the whole page (not only the window), or of its band from ``top`` to
    ``bottom`` (CSS pixels), as PNG."""
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics.get("cssContentSize") or metrics["contentSize"]
    bottom = size["height"] if bottom is None else min(bottom, size["height"])
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {
                "x": 0,
                "y": top,
                "width": width or size["width"],
                "height": max(1.0, bottom - top),
                "scale": 1,
            },
        },
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(base64.b64decode(shot["data"]))
    return out
