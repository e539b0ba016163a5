"""Self-contained HTML report of a gauntlet run (plots embedded as base64 PNG; no network needed).

Plots: out-of-sample equity vs buy-and-hold and drawdown per candidate (top
``max_plots``), the PBO logit histogram, and DSR against the number of trials.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np

from forge.core.artifacts import atomic_write_text

__all__ = ["write_html_report"]


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _equity_plot(cand, ctx) -> str:
    import matplotlib.pyplot as plt

    a, b = ctx.evaluation
    t = ctx.open_time[a:b].astype("datetime64[ms]")
    eq = cand.oos_result.equity
    bh = ctx.buy_and_hold.equity
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 4.2), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax1.plot(t, eq, label="strategy", lw=1)
    ax1.plot(t, bh, label="buy-and-hold", lw=1, alpha=0.7)
    ax1.set_ylabel("equity, USDT")
    ax1.legend(loc="best", fontsize=8)
    dd = 1 - eq / np.maximum.accumulate(eq)
    ax2.fill_between(t, -dd * 100, 0, color="tab:red", alpha=0.5)
    ax2.set_ylabel("drawdown, %")
    fig.autofmt_xdate()
    return _png(fig)


def _pbo_plot(logits: list[float], pbo: float) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    ax.hist(logits, bins=30, color="tab:blue", alpha=0.8)
    ax.axvline(0, color="k", lw=1)
    ax.set_xlabel("logit of the in-sample best's out-of-sample rank (λ)")
    ax.set_ylabel("CSCV splits")
    ax.set_title(f"PBO = {pbo:.2f}")
    return _png(fig)


def _dsr_plot(verdicts: list[dict[str, Any]], shared: dict[str, Any]) -> str:
    import matplotlib.pyplot as plt

    from gauntlet.stats import expected_max_sharpe, probabilistic_sharpe_ratio

    n_eff = shared["trials"]["n_effective"]
    ns = np.unique(np.geomspace(1, max(10 * n_eff, 100), 60).astype(int))
    fig, ax = plt.subplots(figsize=(6, 3))
    for vd in verdicts[:5]:
        d = vd["stages"]["dsr"].details
        if not d:
            continue
        v = d["var_sharpe_used"]  # the variance the stage used (trials' spread, floored at 1/T)
        ys = [probabilistic_sharpe_ratio(d["sharpe"], expected_max_sharpe(n, v), d["n_obs"], d["skew"], d["kurtosis"])
              for n in ns]
        ax.plot(ns, ys, label=f"#{vd['rank']}")
    ax.axvline(n_eff, color="k", ls="--", lw=1, label=f"effective N = {n_eff}")
    ax.set_xscale("log")
    ax.set_xlabel("number of independent trials N")
    ax.set_ylabel("DSR")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7)
    return _png(fig)


def write_html_report(report, path: str | Path, max_plots: int = 5) -> Path:
    """Render ``report`` (gauntlet.validate.GauntletReport) to a single HTML file; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    d = report.to_dict()
    ctx = report.context
    esc = html.escape
    stages = list(d["candidates"][0]["stages"]) if d["candidates"] else []
    rows = []
    for c in d["candidates"]:
        cells = "".join(
            f'<td class="{"ok" if s["passed"] else "bad"}" title="{esc(s["reason"])}">'
            f'{"✓" if s["passed"] else "✗"} {esc(_short(s))}</td>' for s in c["stages"].values())
        rows.append(f'<tr><td>#{c["rank"]}</td><td class="{"ok" if c["survived"] else "bad"}">'
                    f'{"SURVIVED" if c["survived"] else "rejected"}</td>{cells}'
                    f'<td class="expr">{esc(c["expression"])}</td></tr>')
    reasons = []
    for c in d["candidates"]:
        items = "".join(f"<li><b>{esc(n)}</b>: {esc(s['reason'])}</li>" for n, s in c["stages"].items())
        reasons.append(f"<h3>#{c['rank']} <code>{esc(c['sha256'][:16])}</code></h3><ul>{items}</ul>")
    plots = []
    for cand in ctx.candidates[:max_plots]:
        plots.append(f"<figure><img src='{_equity_plot(cand, ctx)}' alt='equity #{cand.rank}'>"
                     f"<figcaption>#{cand.rank}: out-of-sample equity vs buy-and-hold, drawdown</figcaption></figure>")
    sh = d["shared"]
    if sh.get("pbo"):
        plots.append(f"<figure><img src='{_pbo_plot(sh['pbo']['logits'], sh['pbo']['pbo'])}' alt='PBO'>"
                     "<figcaption>PBO: CSCV logit histogram (mass left of 0 = overfit)</figcaption></figure>")
    plots.append(f"<figure><img src='{_dsr_plot(report.verdicts, sh)}' alt='DSR'>"
                 "<figcaption>DSR vs number of trials</figcaption></figure>")
    ev = d["evaluation"]
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>Gauntlet report {esc(str(d['run_id']))}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}}table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:4px 6px}}.ok{{background:#e6f4ea}}.bad{{background:#fce8e6}}.expr{{font-family:monospace;font-size:11px}}
figure{{display:inline-block;margin:8px}}</style></head><body>
<h1>Gauntlet report — run {esc(str(d['run_id']))}</h1>
<p>Evaluation bars {ev['first'][:16]} → {ev['last'][:16]} ({ev['rows'][1] - ev['rows'][0]:,} bars) from {esc(d['data_source'])}.
{'<b>Overlaps the in-sample range (--allow-overlap).</b>' if ev['overlaps_in_sample'] else 'Evolution never read these bars.'}
Survivors: <b>{len(d['survivors'])}</b> of {len(d['candidates'])}. Gating stages: {esc(', '.join(d['config']['gating']))}.</p>
<p>Trials: {sh['trials']['n_total']:,} evaluated, {sh['trials']['n_sampled']} sampled, {sh['trials']['n_effective']} effective (clustered);
SPA p = {sh['spa_p'] if sh['spa_p'] is None else f"{sh['spa_p']:.3f}"}; PBO = {sh['pbo']['pbo'] if sh.get('pbo') else esc(str(sh.get('pbo_skip')))}.</p>
<table><tr><th>#</th><th>verdict</th>{''.join(f'<th>{esc(s)}</th>' for s in stages)}<th>expression</th></tr>{''.join(rows)}</table>
<h2>Plots</h2>{''.join(plots)}
<h2>Reasons</h2>{''.join(reasons)}
<p style="color:#777">Generated by gauntlet validate in {d['seconds']} s.</p></body></html>"""
    return atomic_write_text(path, doc)


def _short(s: dict[str, Any]) -> str:
    if s["p_value"] is not None:
        return f"p={s['p_value']:.3g}"
    if s["statistic"] is not None:
        return f"{s['statistic']:.3g}"
    return ""
