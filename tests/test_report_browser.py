"""The report opens in a real browser, offline, and shows something (slow: needs Debian's chromium,
installed by `make chromium`, which `make test-slow` runs first)."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from matplotlib.image import imread
from support.report import make_results

from wiseft import report

pytestmark = pytest.mark.slow


def screenshot(html, png, tmp_path, height=2000):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.fail("chromium is not installed; run `make chromium` (apt-get install chromium)")
    profile = tmp_path / "profile"
    profile.mkdir()
    cmd = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", f"--screenshot={png}", f"--window-size=1280,{height}",
        html.resolve().as_uri(),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and png.is_file(), done.stderr[-2000:]
    return imread(png)[..., :3]


def test_report_html_renders_with_its_images_in_headless_chromium(tmp_path):
    out = report.build(make_results(), tmp_path / "report")
    img = screenshot(out / "report.html", tmp_path / "shot.png", tmp_path, height=6000)
    assert img.shape[:2] == (6000, 1280)
    gray = img.mean(axis=2)
    assert gray.std() > 0.05  # not blank
    # The embedded plots drew: their orange/blue/green lines are saturated colours that the page's own
    # text and borders (greys, black) never use.
    saturation = img.max(axis=2) - img.min(axis=2)
    assert (saturation > 0.3).mean() > 0.002
    # Content runs down the page (plots, table), not only a heading at the top.
    rows_with_content = (gray.std(axis=1) > 0.01).mean()
    assert rows_with_content > 0.3


def test_blank_page_is_detected(tmp_path):
    """The check above can fail: an empty page gives a flat screenshot."""
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>")
    img = screenshot(blank, tmp_path / "blank.png", tmp_path, height=600)
    assert img.mean(axis=2).std() < 0.01
    assert np.allclose(img, img[0, 0])
