"""What researchers and operators see (issue 20): dashboards, progress lines, strict JSON, CLI errors."""

from __future__ import annotations

import io
import json
import re

import pytest
from rich.console import Console
from typer.testing import CliRunner

import cli
from forge import ui


def _render(renderable, width: int) -> str:
    con = Console(width=width, file=io.StringIO(), force_terminal=False, color_system=None)
    con.print(renderable)
    return con.file.getvalue()


# ----------------------------------------------------------------------------- 1. crucible live dashboard

SLOTS = [{"slot": f"s{i}", "symbol": sym, "status": st, "genome": "ab" * 20, "equity": 200.0 + i,
          "weight": 1 / 3, "target": t, "fills": 17 * i}
         for i, (sym, st, t) in enumerate([("BTCUSDT", "live", 1.0), ("ETHUSDT", "killed", 0.0),
                                           ("SOLUSDT", "live", -0.5)])]


@pytest.mark.parametrize("width", [80, 200])
def test_dashboard_shows_bars_time_and_every_slot(width):
    state = {"venue": "replay", "time": 1718582400000, "bars": 1234, "slots": SLOTS}
    text = _render(ui.crucible_dashboard(state, ["kill slot=s1"]), width)
    assert "1,234 bars" in text and "2024-06-17 00:00" in text
    assert "kill slot=s1" in text
    for sl in SLOTS:
        assert sl["slot"] in text
    assert "+1.00" in text and "-0.50" in text and "603.00" in text.replace(",", "")  # total equity
    assert max(len(line) for line in text.splitlines()) <= width


def test_throttle_limits_redraws_and_flush_forces_one():
    now = [0.0]
    calls = []
    th = ui.Throttle(lambda: calls.append(now[0]), interval=0.25, clock=lambda: now[0])
    for i in range(100):  # 100 bars within 0.99 s
        now[0] = i * 0.01
        th()
    assert calls == [0.0, 0.25, 0.5, 0.75]
    th.flush()
    assert len(calls) == 5


def test_crucible_live_dashboard_moves_on_a_terminal(tmp_path, monkeypatch):
    """On a terminal the dashboard is redrawn while bars arrive (it used to stay at 0 bars)."""
    out = io.StringIO()
    con = Console(file=out, force_terminal=True, width=120, color_system=None)
    monkeypatch.setattr(cli, "console", con)
    r = CliRunner().invoke(cli.crucible_app, ["live", "--max-bars", "60", "--journal", str(tmp_path / "j.sqlite")])
    assert r.exit_code == 0, r.output
    frames = [int(m.replace(",", "")) for m in re.findall(r"UTC\s+([\d,]+) bars", out.getvalue())]
    assert frames and max(frames) > 0, out.getvalue()[-2000:]
