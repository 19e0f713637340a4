"""The status page rendered by headless Chromium (Debian's `chromium`, or the binary in env CHROMIUM).

What is checked, and how:
- the rendered DOM (`--dump-dom`) shows the seeded state's key figures and the verdict's reasons;
- the console stays empty: with `--enable-logging=stderr` Chromium writes every console message, uncaught
  exception, failed load and Content-Security-Policy violation as an `INFO:CONSOLE` line; the page has no
  script, so any such line is an error (a control page proves the detector sees them);
- on a 412 px wide phone viewport nothing is wider than the screen (a copy of the page measures itself);
- a screenshot at 412x915 is kept as artifacts/status-page.png.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.status_page import render_html
from shared.status_report import build_status
from tests.helpers import ROOT
from tests.integration.test_status_report import seed_state

pytestmark = pytest.mark.browser

PHONE = "412,915"
CONSOLE_LINE = re.compile(r":CONSOLE[:(]\d*\)?\]\s*(.*)")


def chromium() -> str:
    candidate = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(candidate).is_file():
        pytest.skip(f"Chromium not installed ({candidate}); install Debian's: apt-get install -y chromium")
    return candidate


@dataclass
class Rendered:
    dom: str
    console: list[str]


def render(page: Path, profile: Path, *extra: str) -> Rendered:
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        f"--window-size={PHONE}",
        "--enable-logging=stderr",
        "--v=0",
        *extra,
        page.as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    console = [m.group(1) for line in done.stderr.splitlines() if (m := CONSOLE_LINE.search(line))]
    return Rendered(done.stdout, console)


def visible_text(dom: str) -> str:
    body = re.sub(r"<(style|title)[^>]*>.*?</\1>", " ", dom, flags=re.DOTALL | re.IGNORECASE)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split())


@pytest.fixture
def page(make_runtime, tmp_path: Path) -> Path:
    seeded = seed_state(make_runtime(BOBO_TIMEZONE="Europe/London"))
    path = tmp_path / "status.html"
    path.write_text(render_html(build_status(seeded.runtime, now=seeded.now)), encoding="utf-8")
    return path


def test_console_detector_sees_errors(tmp_path: Path) -> None:
    # Without this, an empty console could just mean the log format changed.
    control = tmp_path / "control.html"
    control.write_text("<!doctype html><p>x</p><script>throw new Error('boom-1234')</script>", encoding="utf-8")
    rendered = render(control, tmp_path / "profile", "--dump-dom")
    assert any("Uncaught Error: boom-1234" in line for line in rendered.console), rendered.console


def test_page_shows_the_figures_without_console_errors(page: Path, tmp_path: Path) -> None:
    rendered = render(page, tmp_path / "profile", "--dump-dom")

    assert rendered.console == []
    text = visible_text(rendered.dom)
    assert "Not healthy" in text
    for reason in (
        "AtHoc authentication failing since",
        "invalid_grant",
        "mapping sync has not succeeded for 3 days",
        "2 files waiting, oldest 47 minutes",
        "1 file failed in the last 24 hours",
    ):
        assert reason in text, reason
    # Key figures: waiting, failed, mappings, processed / rows / users in the last 24 hours.
    for figure in (
        "2 files waiting",
        "2 files failed",
        "3 mappings",
        "7 files processed",
        "72 rows read 2 rejected",
        "50 users updated 3 not found",
        "4 unmapped employees",
    ):
        assert figure in text, figure
    assert "bad-20251021T101010Z.csv" in text and "notes.txt" in text and "not a .csv file" in text
    assert "<svg" in rendered.dom and rendered.dom.count("<rect") >= 48  # 24 hours x (processed, failed)


def test_page_fits_a_phone_and_keeps_a_screenshot(page: Path, tmp_path: Path) -> None:
    # A copy that measures itself (the real page allows no script: its CSP is replaced in the copy only).
    probe = tmp_path / "probe.html"
    measuring = "<script>document.body.dataset.overflow = document.documentElement.scrollWidth - innerWidth</script>"
    source = page.read_text(encoding="utf-8")
    source = re.sub(r"<meta http-equiv=Content-Security-Policy[^>]*>", "", source)
    probe.write_text(source.replace("</body>", measuring + "</body>"), encoding="utf-8")
    measured = render(probe, tmp_path / "profile", "--dump-dom")
    overflow = re.search(r'data-overflow="(-?\d+)"', measured.dom)
    assert overflow is not None, measured.console
    assert int(overflow.group(1)) <= 0, "the page is wider than a 412 px phone screen"

    artifacts = ROOT / "artifacts"
    artifacts.mkdir(exist_ok=True)
    shot = artifacts / "status-page.png"
    shot.unlink(missing_ok=True)
    render(page, tmp_path / "profile2", f"--screenshot={shot}")
    assert shot.is_file() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    width = int.from_bytes(shot.read_bytes()[16:20], "big")
    assert width == 412
