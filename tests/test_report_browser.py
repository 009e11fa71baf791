"""The report opens in a real browser, offline, at 1280 px, on five kinds of run (slow: needs Debian's
chromium, installed by `make chromium`, which `make test-slow` runs first).

The five runs: the demo, a δ sweep, a training trajectory, a sample store made only by `wiseft store
import` (two variants from another engine) and a run on a task nobody solves (every metric 0). For each, the
report is built, a copy of report.html with a measuring script is loaded in headless Chromium at 1280 px
(`--dump-dom` returns the page after its load event), and a full-page screenshot is taken. The screenshots,
the reports and the measurements are kept, for a person to look at, in
`test-artifacts/report-screenshots/<run>/` (gitignored).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread
from support.report import (
    layout_problems,
    make_all_zero_results,
    make_demo_like_results,
    make_imported_store,
    make_results,
    make_sweep_results,
    make_trajectory_results,
)

from wiseft import report
from wiseft.report.data import Results
from wiseft.report.plots import make_figures

pytestmark = pytest.mark.slow

WIDTH = 1280
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "report-screenshots"
RUNS = ("demo", "sweep", "trajectory", "imported", "all_zero")

# Runs on the load event (images decoded by then): the page's widths, every image, and anything wider than
# its box; then again with every <details> open. The result goes into the DOM, which --dump-dom prints.
MEASURE = """<script>
addEventListener("load", () => {
  const doc = document.documentElement;
  const measure = () => ({
    scrollWidth: doc.scrollWidth, clientWidth: doc.clientWidth, height: doc.scrollHeight,
    imgs: [...document.images].map(i => ({alt: i.alt, complete: i.complete, natural: i.naturalWidth,
      shown: i.getBoundingClientRect().width, box: i.parentElement.getBoundingClientRect().width})),
    beyond: [...document.body.querySelectorAll("*")].filter(el => el.getBoundingClientRect().right > doc.clientWidth + 0.5)
      .map(el => el.tagName + (el.id ? "#" + el.id : "")),
    overflow: [...document.querySelectorAll("figure, figcaption, h1, h2, h3, p, li, .best, .scroll, pre")]
      .filter(el => el.scrollWidth > el.clientWidth + 1).map(el => el.tagName + "." + el.className),
  });
  const closed = measure();
  document.querySelectorAll("details").forEach(d => d.open = true);
  const opened = measure();
  const out = document.createElement("pre");
  out.id = "measure";
  out.textContent = JSON.stringify({closed, opened});
  document.body.appendChild(out);
});
</script>"""


def chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.fail("chromium is not installed; run `make chromium` (apt-get install chromium)")
    profile.mkdir(parents=True, exist_ok=True)
    cmd = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--hide-scrollbars", f"--user-data-dir={profile}", *args,
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def screenshot(html: Path, png: Path, profile: Path, height: int) -> np.ndarray:
    chromium([f"--screenshot={png}", f"--window-size={WIDTH},{height}", html.resolve().as_uri()], profile)
    assert png.is_file()
    return imread(png)[..., :3]


def measure(html: Path, profile: Path) -> dict:
    """The page's measurements at 1280 px (see MEASURE), from a copy of `html` with the script added."""
    probe = html.with_name("measure.html")
    probe.write_text(
        html.read_text(encoding="utf-8").replace("</body>", MEASURE + "</body>"), encoding="utf-8"
    )
    done = chromium(["--dump-dom", "--virtual-time-budget=5000", f"--window-size={WIDTH},1000", probe.as_uri()],
                    profile)  # fmt: skip
    probe.unlink()
    found = re.search(r'<pre id="measure">(.*?)</pre>', done.stdout, re.S)
    assert found, done.stdout[-2000:]
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))


def five_runs(tmp: Path) -> dict:
    make_imported_store(tmp / "imported.db")
    return {
        "demo": make_demo_like_results(),
        "sweep": make_sweep_results(),
        "trajectory": make_trajectory_results(),
        "imported": report.load_results(tmp / "imported.db"),
        "all_zero": make_all_zero_results(),
    }


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS.parent / ".gitignore").write_text("*\n")
    return ARTIFACTS


@pytest.fixture(scope="module")
def built(artifacts, tmp_path_factory) -> dict[str, Path]:
    """Each run's report under the artefacts directory, every figure checked for layout faults."""
    out = {}
    for name, results in five_runs(tmp_path_factory.mktemp("stores")).items():
        caught: list[str] = []
        res = Results(results, name)
        headline, curve_ks = report.resolve_ks(res, None)
        for fig_name, fig in make_figures(res, headline, curve_ks, caught).items():
            assert layout_problems(fig) == [], (name, fig_name)
        assert caught == [], (name, caught)  # nothing for matplotlib to warn about
        out[name] = report.build(results, artifacts / name / "report", force=True, source=name)
    return out


@pytest.mark.parametrize("run", RUNS)
def test_report_at_1280px_in_headless_chromium(built, artifacts, tmp_path, run):
    html = built[run] / "report.html"
    m = measure(html, tmp_path / "profile")
    (artifacts / run / "measure.json").write_text(json.dumps(m, indent=1), encoding="utf-8")
    for state in ("closed", "opened"):  # the <details> tables folded, then open
        page = m[state]
        assert page["clientWidth"] == WIDTH
        assert page["scrollWidth"] <= page["clientWidth"], (state, page["beyond"])  # no sideways scroll
        assert page["beyond"] == [] and page["overflow"] == [], state
    pngs = sorted(built[run].glob("*.png"))
    assert len(m["closed"]["imgs"]) == len(pngs) > 0
    for img in m["closed"]["imgs"]:
        assert img["complete"] and img["natural"] > 0, img  # decoded
        assert 0 < img["shown"] <= img["box"] + 0.5, img  # scaled into its figure, never wider
    shot = screenshot(
        html, artifacts / run / "page.png", tmp_path / "profile", min(m["closed"]["height"], 16000)
    )
    assert shot.shape[1] == WIDTH
    gray = shot.mean(axis=2)
    assert gray.std() > 0.05 and (gray.std(axis=1) > 0.01).mean() > 0.3  # content all down the page


def test_blank_page_is_detected(tmp_path):
    """The checks above can fail: an empty page gives a flat screenshot, a wide one a sideways scroll."""
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>")
    img = screenshot(blank, tmp_path / "blank.png", tmp_path / "profile", 600)
    assert np.allclose(img, img[0, 0])
    wide = tmp_path / "wide.html"
    wide.write_text('<!DOCTYPE html><html><body><table><tr><td style="white-space:nowrap">' + "x" * 600
                    + "</td></tr></table></body></html>")  # fmt: skip
    page = measure(wide, tmp_path / "profile")["closed"]
    assert page["scrollWidth"] > page["clientWidth"] and page["beyond"]


def test_full_report_renders_with_its_images(tmp_path):
    out = report.build(make_results(), tmp_path / "report")
    img = screenshot(out / "report.html", tmp_path / "shot.png", tmp_path / "profile", 6000)
    assert img.shape[:2] == (6000, WIDTH)
    gray = img.mean(axis=2)
    assert gray.std() > 0.05 and (gray.std(axis=1) > 0.01).mean() > 0.3  # content runs down the page
