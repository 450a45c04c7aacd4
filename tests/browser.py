"""A real headless browser for the HTML report's tests: Debian's Chromium, installed on first use
where it is missing (as root with apt-get, as CI runs); its screenshots are kept in
tests/artifacts/ (not committed)."""
from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).parent / "artifacts"
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium() -> str:
    """The browser's path, installed with Debian's apt where it is missing and kdiff runs as root."""
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.fail("the HTML report is tested in a real browser: install Chromium (Debian: apt-get install chromium)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                                                     "chromium"]):
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
        assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
    return shutil.which("chromium")


def _headless(browser: str, page: Path, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--virtual-time-budget=5000", *options, page.resolve().as_uri()],
                          capture_output=True, text=True, timeout=120)


def open_page(browser: str, page: Path, screenshot: str | None = None) -> tuple[dict, str]:
    """The page as the browser left it after its scripts ran: <body>'s data attributes (what the
    report's script says it drew, and the errors it met) and what it drew (the <main> element, as
    HTML); with ``screenshot``, a PNG of it is kept in tests/artifacts/."""
    result = _headless(browser, page, "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    body = re.search(r"<body([^>]*)>", result.stdout)
    assert body, result.stdout[:2000]
    attributes = {name: html.unescape(value) for name, value in re.findall(r'data-([\w-]+)="([^"]*)"', body.group(1))}
    drawn = re.search(r'<main id="report">(.*?)</main>', result.stdout, re.DOTALL)
    assert drawn, result.stdout[:2000]
    if screenshot:
        ARTIFACTS.mkdir(exist_ok=True)
        target = ARTIFACTS / screenshot
        shot = _headless(browser, page, "--window-size=1280,2600", f"--screenshot={target}")
        assert shot.returncode == 0 and target.stat().st_size > 10_000, shot.stderr[-2000:]
    return attributes, drawn.group(1)


def assert_drawn(attributes: dict, plots: int) -> None:
    """The page drew without an error, and each of its ``plots`` plots drew something on its canvas."""
    assert attributes.get("rendered") == "yes", attributes
    assert json.loads(attributes["errors"]) == []
    assert int(attributes["plots"]) == plots and int(attributes["drawn"]) == plots, attributes
