"""The gauntlet report and the runs comparison rendered by a real browser (headless Chromium).

Skipped when /usr/bin/chromium is absent (``apt-get install chromium`` to run it). The screenshot must
be a real page: a PNG of the requested size with a substantial share of non-background pixels and
colour (the plots), not a blank or error page.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="headless Chromium not installed")


def screenshot(html: Path, png: Path, width: int = 1400, height: int = 3000) -> np.ndarray:
    """Render ``html`` in headless Chromium; returns the screenshot as an (h, w, channels) float array."""
    import matplotlib.image as mpimg

    subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                    f"--window-size={width},{height}", f"--screenshot={png}", html.resolve().as_uri()],
                   check=True, capture_output=True, timeout=120)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return mpimg.imread(png)


def _check(img: np.ndarray, width: int, height: int) -> None:
    assert img.shape[0] == height and img.shape[1] == width
    rgb = img[..., :3]
    ink = np.mean(np.any(rgb < 0.9, axis=-1))             # share of pixels that are not (near) white
    colour = np.mean(rgb.max(axis=-1) - rgb.min(axis=-1) > 0.25)  # plot lines, green/red cells
    assert ink > 0.05, f"page nearly blank ({ink:.3f} of pixels drawn)"
    assert colour > 0.005, f"no colour on the page ({colour:.4f})"


def test_gauntlet_report_in_headless_chromium(tmp_path):
    from gauntlet.report import write_html_report
    from test_report import fake_report

    html = write_html_report(fake_report(tmp_path / "run"), tmp_path / "report.html")
    img = screenshot(html, tmp_path / "report.png")
    _check(img, 1400, 3000)


def test_runs_compare_in_headless_chromium(tmp_path):
    from forge.core.runs import write_compare_html

    def run(i: int) -> dict:
        curve = [{"gen": g, "best": 1.0 + 0.1 * g * (i + 1) - 0.05 * (g % 2), "best_so_far": 1.0 + 0.1 * g * (i + 1),
                  "median": 0.5 + 0.05 * g} for g in range(8)]
        return {"run_id": f"run-{i}", "status": "finished", "seed": i, "generations": 7, "generations_run": 7,
                "population": 50, "candidates_evaluated": 900 + i, "best_fitness": curve[-1]["best_so_far"],
                "champion": {"expression": f"long_only(gt_c(rsi_14, {30 + i}))", "sha256": "ab" * 32},
                "oos": {"total_return": 0.02 * (i - 1), "sharpe": 1.5 - i, "max_drawdown": 0.03, "n_trades": 20 + i},
                "buy_and_hold": {"total_return": 0.0324}, "gauntlet": {"survivors": i, "candidates": 5},
                "curve": curve}

    html = write_compare_html({"runs": [run(i) for i in range(3)]}, tmp_path / "compare.html")
    img = screenshot(html, tmp_path / "compare.png", height=1800)
    _check(img, 1400, 1800)
