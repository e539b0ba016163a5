"""Self-contained HTML report of a gauntlet run (plots embedded as base64 PNG; no network needed).

Order of the page, numbers first:

1. verdict line and the gating policy (which stages gate, which are diagnostics, the false-pass bounds);
2. metrics table: each candidate's out-of-sample return next to buy-and-hold on the same bars, excess
   return, Sharpe, maximum drawdown, trades, turnover, exposure, and why a rejected one failed;
3. stage table: each stage's deciding number (p-values labelled as the stage names them, statistics
   rounded to 3 significant digits) with its threshold in the column header;
4. full-width plots: out-of-sample equity vs buy-and-hold with drawdown, evolution progress from the
   run's ``generations.jsonl``, the DSR against the number of trials with the threshold drawn
   (candidates whose curves coincide share one line), and the CSCV logit histogram of PBO;
5. every stage's one-line reason per candidate.

Stages and shared keys are rendered generically: a stage added or renamed in ``gauntlet.stages``
appears without a change here.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from forge.core.artifacts import atomic_write_text

__all__ = ["write_html_report", "render_html", "metrics_rows", "stage_cell", "fmt_value", "dsr_groups"]

FIG_W = 14.0  # inches: full page width at 100 dpi (the <img> is scaled to 100% of a 1,400 px page)


# --------------------------------------------------------------------------- numbers


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def fmt_value(v: Any, kind: str = "num") -> str:
    """One formatting rule for the page. kind: "num" (3 significant digits), "p" (p/q-value: 3
    decimals, "<0.001"), "pct" (signed percentage of a fraction), "pct0" (unsigned), "dd" (a loss
    fraction as a negative percentage), "int" (thousands separators). Absent/NaN -> "—"."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, str):
        return html.escape(v)
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float) and math.isinf(v):
        return "∞" if v > 0 else "−∞"
    if kind == "p":
        return "&lt;0.001" if v < 0.001 else f"{v:.3f}"
    if kind == "pct":
        return f"{100 * v:+.2f}%"
    if kind == "pct0":
        return f"{100 * v:.1f}%"
    if kind == "dd":
        return f"−{100 * abs(v):.2f}%" if v else "0.00%"
    if kind == "int":
        return f"{int(v):,}"
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:.3g}" if abs(v) < 1e4 else f"{v:,.0f}"


def _p_label(stage: dict[str, Any]) -> str:
    name = str(stage.get("statistic_name") or "")
    if name.lower().startswith("q") or " q" in name.lower():
        return "q"
    if "holm" in name.lower():
        return "p (Holm)"
    return "p"


def stage_cell(stage: dict[str, Any]) -> str:
    """Table cell text of one stage (``StageResult.to_dict()``): ✓/✗, then the p-value labelled as
    the stage names it (p, p (Holm), q), else the statistic; HTML-escaped."""
    mark = "✓" if stage.get("passed") else "✗"
    if stage.get("p_value") is not None:
        return f"{mark} {_p_label(stage)} {fmt_value(stage['p_value'], 'p')}"
    v, thr = stage.get("statistic"), stage.get("threshold")
    if v is not None:
        # a probability-like statistic with a threshold inside (0, 1) (DSR, PBO): 3 decimals like p
        prob = _finite(v) and 0 <= v <= 1 and _finite(thr) and 0 < thr < 1
        return f"{mark} {fmt_value(v, 'p' if prob else 'num')}"
    return mark


def _stage_header(name: str, candidates: list[dict[str, Any]]) -> str:
    st = next((c["stages"][name] for c in candidates if name in c["stages"]), {})
    label = html.escape(str(st.get("statistic_name") or ""))
    thr = st.get("threshold")
    sub = label + (f"; threshold {fmt_value(thr)}" if thr is not None else "")
    return f"<th>{html.escape(name)}<br><small>{sub}</small></th>"


# --------------------------------------------------------------------------- metrics


def metrics_rows(report: Any) -> list[dict[str, Any]]:
    """Per candidate: rank, survived, failed (gating stages), OOS metrics and buy-and-hold metrics
    (forge.backtest.Metrics dicts) taken from the run context's backtests, else from the ``oos``
    stage's details."""
    d = report.to_dict() if hasattr(report, "to_dict") else report
    ctx = getattr(report, "context", None)
    by_rank = {getattr(c, "rank", None): c for c in getattr(ctx, "candidates", [])} if ctx is not None else {}
    bh_ctx = getattr(getattr(ctx, "buy_and_hold", None), "metrics", None)
    out = []
    for c in d["candidates"]:
        oos_stage = (c.get("stages") or {}).get("oos", {}).get("details") or {}
        cand = by_rank.get(c["rank"])
        m = cand.oos_result.metrics.to_dict() if cand is not None and getattr(cand, "oos_result", None) is not None \
            else oos_stage.get("metrics") or {}
        bh = bh_ctx.to_dict() if bh_ctx is not None else oos_stage.get("buy_and_hold") or {}
        out.append({"rank": c["rank"], "survived": c.get("survived"), "failed": c.get("failed") or [],
                    "edge_kind": c.get("edge_kind"), "metrics": m, "buy_and_hold": bh})
    return out


def _metrics_table(d: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    esc = html.escape
    heads = ["#", "verdict", "OOS return", "buy-and-hold", "excess", "Sharpe", "B&H Sharpe", "max drawdown",
             "trades", "turnover", "exposure", "why rejected"]
    reasons = {c["rank"]: c for c in d["candidates"]}
    body = []
    for r in rows:
        m, bh = r["metrics"], r["buy_and_hold"]
        ex = (m.get("total_return") - bh.get("total_return")) if _finite(m.get("total_return")) and \
            _finite(bh.get("total_return")) else None
        why = "" if r["survived"] else "<br>".join(
            f"<b>{esc(n)}</b>: {esc(_no_nan(reasons[r['rank']]['stages'][n]['reason']))}"
            for n in r["failed"] if n in reasons[r["rank"]]["stages"])
        cls = "ok" if r["survived"] else "bad"
        kind = f"<br><small>{esc(str(r['edge_kind']))}</small>" if r.get("edge_kind") else ""
        cells = [f"#{r['rank']}", f'<span class="{cls}">{"SURVIVED" if r["survived"] else "rejected"}</span>{kind}',
                 fmt_value(m.get("total_return"), "pct"), fmt_value(bh.get("total_return"), "pct"),
                 fmt_value(ex, "pct"), fmt_value(m.get("sharpe")), fmt_value(bh.get("sharpe")),
                 fmt_value(m.get("max_drawdown"), "dd"), fmt_value(m.get("n_trades"), "int"),
                 fmt_value(m.get("turnover")), fmt_value(m.get("exposure"), "pct0")]
        body.append("<tr>" + "".join(f"<td class='n'>{x}</td>" for x in cells) + f"<td class='why'>{why}</td></tr>")
    return ("<table class='metrics'><tr>" + "".join(f"<th>{esc(h)}</th>" for h in heads) + "</tr>"
            + "".join(body) + "</table>")


# --------------------------------------------------------------------------- plots


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _equity_plot(cand: Any, ctx: Any) -> str:
    import matplotlib.pyplot as plt

    a, b = ctx.evaluation
    t = ctx.open_time[a:b].astype("datetime64[ms]")
    eq = cand.oos_result.equity
    bh = ctx.buy_and_hold.equity
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(FIG_W, 5.0), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax1.plot(t, eq, label=f"strategy #{cand.rank} ({100 * (eq[-1] / eq[0] - 1):+.2f}%)", lw=1.3)
    ax1.plot(t, bh, label=f"buy-and-hold ({100 * (bh[-1] / bh[0] - 1):+.2f}%)", lw=1.0, alpha=0.8)
    ax1.set_ylabel("equity, USDT", fontsize=11)
    ax1.legend(loc="upper left", fontsize=11)
    ax1.grid(alpha=0.3)
    dd = 100 * (eq / np.maximum.accumulate(eq) - 1)
    ax2.fill_between(t, dd, 0, color="tab:red", alpha=0.5, label="strategy drawdown")
    ax2.set_ylabel("drawdown, %", fontsize=11)
    ax2.legend(loc="lower left", fontsize=10)
    ax2.grid(alpha=0.3)
    fig.autofmt_xdate()
    return _png(fig)


def _evolution_plot(run_dir: Path) -> str | None:
    import matplotlib.pyplot as plt

    from forge.core.runs import generation_curve

    curve = generation_curve(run_dir)
    if not curve:
        return None
    g = [x["gen"] for x in curve]
    fig, ax = plt.subplots(figsize=(FIG_W, 4.0))
    ax.plot(g, [x["best_so_far"] for x in curve], lw=2.2, marker="o", ms=4, label="best so far (hall of fame)")
    ax.plot(g, [x["best"] for x in curve], lw=1.2, ls="--", marker=".", label="generation best")
    ax.plot(g, [x["median"] for x in curve], lw=1.0, alpha=0.8, label="generation median")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("generation", fontsize=11)
    ax.set_ylabel("in-sample fitness", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=11, loc="lower right")
    return _png(fig)


_DSR_KEYS = ("sharpe", "n_obs", "skew", "kurtosis", "var_sharpe_used")


def dsr_groups(d: dict[str, Any]) -> list[tuple[list[int], dict[str, Any]]]:
    """Candidates of a report dict whose DSR curves coincide (same Sharpe, length, skew, kurtosis and
    trial variance in the ``dsr`` stage's details), as [(ranks, details)] in rank order; candidates
    without those details are left out. One line per group, so overlapping curves do not vanish."""
    groups: dict[tuple, list[int]] = {}
    params: dict[tuple, dict[str, Any]] = {}
    for c in d["candidates"]:
        det = ((c.get("stages") or {}).get("dsr") or {}).get("details") or {}
        if not all(_finite(det.get(k)) for k in _DSR_KEYS):
            continue
        key = tuple(round(float(det[k]), 12) for k in _DSR_KEYS)
        groups.setdefault(key, []).append(c["rank"])
        params[key] = det
    return [(ranks, params[k]) for k, ranks in groups.items()]


def _dsr_plot(d: dict[str, Any]) -> str | None:
    import matplotlib.pyplot as plt

    from gauntlet.stats import expected_max_sharpe, probabilistic_sharpe_ratio

    grouped = dsr_groups(d)
    if not grouped:
        return None
    n_eff = grouped[0][1].get("n_trials_effective") or ((d.get("shared") or {}).get("trials") or {}) \
        .get("n_effective") or 1
    ns = np.unique(np.geomspace(1, max(10 * n_eff, 100), 80).astype(int))
    fig, ax = plt.subplots(figsize=(FIG_W, 4.2))
    styles = ["-", "--", "-.", ":"]
    for i, (ranks, det) in enumerate(grouped):
        ys = [probabilistic_sharpe_ratio(det["sharpe"], expected_max_sharpe(n, det["var_sharpe_used"]),
                                         int(det["n_obs"]), det["skew"], det["kurtosis"]) for n in ns]
        label = "candidate" + ("s " if len(ranks) > 1 else " ") + ", ".join(f"#{r}" for r in ranks[:8]) + \
            (" …" if len(ranks) > 8 else "")
        ax.plot(ns, ys, lw=1.8, ls=styles[i % len(styles)], label=label)
    thr = (d.get("config") or {}).get("dsr_threshold", 0.95)
    ax.axhline(thr, color="tab:red", lw=1.2, label=f"pass threshold DSR = {thr}")
    ax.axvline(n_eff, color="k", ls="--", lw=1, label=f"effective trials N = {n_eff}")
    ax.set_xscale("log")
    ax.set_xlabel("number of independent trials N", fontsize=11)
    ax.set_ylabel("DSR", fontsize=11)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=10, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _png(fig)


def _pbo_plot(pbo: dict[str, Any], threshold: Any) -> str | None:
    import matplotlib.pyplot as plt

    logits = [x for x in (pbo.get("logits") or []) if _finite(x)]
    if not logits:
        return None
    fig, ax = plt.subplots(figsize=(FIG_W, 3.6))
    ax.hist(logits, bins=40, color="tab:blue", alpha=0.8, label="CSCV splits")
    ax.axvline(0, color="tab:red", lw=1.5, label="λ = 0 (left of it: in-sample best ranks below the median)")
    ax.set_xlabel("logit λ of the in-sample best's out-of-sample rank", fontsize=11)
    ax.set_ylabel("splits", fontsize=11)
    thr = f" (threshold {threshold})" if threshold is not None else ""
    ax.set_title(f"PBO = {pbo.get('pbo', float('nan')):.3f}{thr}", fontsize=12)
    ax.legend(fontsize=10, loc="upper left")
    ax.grid(alpha=0.3)
    return _png(fig)


# --------------------------------------------------------------------------- page


def _policy_html(d: dict[str, Any]) -> str:
    esc = html.escape
    pol = d.get("policy")
    if not isinstance(pol, dict):
        gating = (d.get("config") or {}).get("gating") or []
        return f"<p>Gating stages: {esc(', '.join(map(str, gating)))}.</p>"
    items = []
    for k, v in pol.items():
        if isinstance(v, (list, tuple)):
            text = ", ".join(map(str, v)) or "none"
        else:
            text = fmt_value(v) if _finite(v) else str(v)
        items.append(f"<li><b>{esc(k.replace('_', ' '))}</b>: {esc(text)}</li>")
    return "<h2>Verdict policy</h2><ul class='policy'>" + "".join(items) + "</ul>"


def _shared_html(d: dict[str, Any]) -> str:
    sh = d.get("shared") or {}
    parts = []
    tr = sh.get("trials") or {}
    if tr:
        parts.append("trials: " + ", ".join(f"{k.replace('_', ' ')} {fmt_value(v)}" for k, v in tr.items()
                                            if _finite(v)))
    spa = sh.get("spa") if isinstance(sh.get("spa"), dict) else None
    spa_p = spa.get("p") if spa else sh.get("spa_p")
    if "spa" in sh or "spa_p" in sh:
        parts.append(f"Hansen's SPA p {fmt_value(spa_p, 'p')}" if spa_p is not None else "Hansen's SPA: not run")
    if sh.get("pbo"):
        parts.append(f"PBO {fmt_value(sh['pbo'].get('pbo'), 'p')} over {fmt_value(sh['pbo'].get('n_strategies'))} "
                     f"strategies, {fmt_value(sh['pbo'].get('n_splits'))} CSCV splits")
    elif sh.get("pbo_skip"):
        parts.append(f"PBO not computed: {html.escape(str(sh['pbo_skip']))}")
    led = sh.get("ledger")
    if isinstance(led, dict) and led.get("line"):
        parts.append(f"trial ledger: {html.escape(str(led['line']))} (DSR's N {fmt_value(sh.get('n_trials_dsr'))}, "
                     f"other runs' trials included)")
    return "<p>" + "; ".join(parts) + ".</p>" if parts else ""


def fills_sentence(execution: dict[str, Any] | None) -> str:
    """One sentence on the fill model the returns were scored with (a report's ``execution`` record)."""
    if not execution or execution.get("mode", "taker") == "taker":
        return "Fills: market (taker) orders at the next open, with the run's taker fee and slippage."
    what = ("resting limits at the estimated touch, crossing at the deadline" if execution["mode"] == "kline-limit"
            else f"the execution policy {str(execution.get('policy_sha256') or '')[:12]}")
    return (f"Fills: the kline fill model, {what}: a limit fills only when a later bar trades through it, at most "
            f"{float(execution.get('max_volume_share', 0.1)):.0%} of that bar's volume, maker fee "
            f"{float(execution.get('maker_fee_bps') or 0):g} bp; Corwin-Schultz half-spread for crossing.")


def render_html(report: Any, max_plots: int = 5) -> str:
    """The report page as one HTML string (see module docstring). report: gauntlet.validate.GauntletReport."""
    import matplotlib

    matplotlib.use("Agg")
    d = report.to_dict()
    ctx = report.context
    esc = html.escape
    cands = d["candidates"]
    stages: list[str] = []
    for c in cands:
        for n in c["stages"]:
            if n not in stages:
                stages.append(n)
    rows = metrics_rows(report)
    stage_rows = []
    for c in cands:
        cells = "".join(
            (f'<td class="{"ok" if c["stages"][n]["passed"] else "bad"}" title="{esc(_no_nan(c["stages"][n]["reason"]))}">'
             f'{stage_cell(c["stages"][n])}</td>') if n in c["stages"] else "<td>—</td>" for n in stages)
        stage_rows.append(f'<tr><td class="n">#{c["rank"]}</td><td class="{"ok" if c["survived"] else "bad"}">'
                          f'{"SURVIVED" if c["survived"] else "rejected"}</td>{cells}'
                          f'<td class="expr">{esc(c["expression"])}</td></tr>')
    reasons = []
    for c in cands:
        items = "".join(f"<li class='{'ok' if s['passed'] else 'bad'}'><b>{esc(n)}</b> "
                        f"{'passed' if s['passed'] else 'failed'}: {esc(_no_nan(s['reason']))}</li>"
                        for n, s in c["stages"].items())
        reasons.append(f"<h3>#{c['rank']} <code>{esc(c['sha256'][:16])}</code> <code class='expr'>"
                       f"{esc(c['expression'])}</code></h3><ul>{items}</ul>")
    plots = []
    for cand in list(getattr(ctx, "candidates", []))[:max_plots]:
        plots.append(f"<figure><img src='{_equity_plot(cand, ctx)}' alt='equity #{cand.rank}'>"
                     f"<figcaption>#{cand.rank}: out-of-sample equity vs buy-and-hold of the same bars (same costs); "
                     f"drawdown below</figcaption></figure>")
    run_dir = Path(getattr(report, "run_dir", "."))
    evo = _evolution_plot(run_dir)
    if evo:
        plots.append(f"<figure><img src='{evo}' alt='evolution progress'><figcaption>Evolution progress "
                     "(generations.jsonl): the best so far never falls; the generation best can</figcaption></figure>")
    dsr = _dsr_plot(d)
    if dsr:
        plots.append(f"<figure><img src='{dsr}' alt='DSR'><figcaption>Deflated Sharpe ratio against the number of "
                     "independent trials N: a candidate passes where its curve is above the threshold at the "
                     "effective N</figcaption></figure>")
    sh = d.get("shared") or {}
    if sh.get("pbo"):
        pb = _pbo_plot(sh["pbo"], (d.get("config") or {}).get("pbo_threshold"))
        if pb:
            plots.append(f"<figure><img src='{pb}' alt='PBO'><figcaption>PBO: CSCV logit histogram; the share of "
                         "splits left of 0 is the probability of backtest overfitting</figcaption></figure>")
    ev = d["evaluation"]
    n_ev = ev["rows"][1] - ev["rows"][0]
    n_surv = len(d["survivors"])
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Gauntlet report {esc(str(d['run_id']))}</title>
<style>
body{{font-family:system-ui,-apple-system,sans-serif;margin:24px auto;max-width:1400px;padding:0 16px;color:#222}}
h1{{margin-bottom:4px}} h2{{margin-top:28px;border-bottom:1px solid #ddd}}
table{{border-collapse:collapse;font-size:14px;width:100%;margin:8px 0}}
td,th{{border:1px solid #ccc;padding:5px 8px;vertical-align:top}} th{{background:#f4f4f4;font-weight:600}}
th small{{font-weight:400;color:#555}}
td.n{{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}}
.ok{{background:#e6f4ea}} .bad{{background:#fce8e6}} span.ok,span.bad{{padding:1px 6px;border-radius:3px}}
td.why{{font-size:13px;min-width:320px}} .expr{{font-family:ui-monospace,monospace;font-size:12px}}
td.ok,td.bad{{white-space:nowrap}}
figure{{margin:14px 0}} figure img{{width:100%;height:auto;display:block}} figcaption{{color:#444;font-size:14px}}
.verdict{{font-size:20px}} ul.policy li{{margin:3px 0}}
</style></head><body>
<h1>Gauntlet report — run {esc(str(d['run_id']))}</h1>
<p class="verdict"><b>{n_surv}</b> of {len(cands)} candidate{'s' if len(cands) != 1 else ''} survive{_edge_line(cands)}.</p>
<p>Evaluation bars {esc(ev['first'][:16])} → {esc(ev['last'][:16])} ({n_ev:,} bars) from {esc(str(d['data_source']))}.
{esc(fills_sentence(d.get('execution')))}
{_evaluation_note(ev)}
{_provenance_html(d.get('provenance'))}</p>
<h2>Out-of-sample metrics</h2>
{_metrics_table(d, rows)}
<p>Returns are total returns over the evaluation bars, net of fees and slippage; buy-and-hold holds a full long on
the same bars with the same costs; max drawdown is the largest loss from a running peak; turnover is traded notional
over capital; exposure is the share of bars with a position.</p>
{_policy_html(d)}
{_shared_html(d)}
<h2>Stages</h2>
<table><tr><th>#</th><th>verdict</th>{''.join(_stage_header(s, cands) for s in stages)}<th>expression</th></tr>{''.join(stage_rows)}</table>
<p>Each cell shows the number the stage decided on (hover for its reason); p-values are labelled as the stage names
them.</p>
{_causal_graph_html(cands)}
<h2>Plots</h2>{''.join(plots)}
<h2>Reasons</h2>{''.join(reasons)}
<p style="color:#777">Generated by gauntlet validate in {fmt_value(d.get('seconds'))} s.</p></body></html>"""


def _provenance_html(prov: Any) -> str:
    """One sentence on the run's seed genomes: how many, where their selection record came from, and whether
    seeds of unknown provenance were allowed (``seed_provenance.json``)."""
    if not isinstance(prov, dict):
        return ""
    seeds = prov.get("seeds") or []
    allowed = bool(prov.get("allow_unknown_provenance"))
    if not seeds:
        return "No seed genomes." + (" (--allow-unknown-provenance was set.)" if allowed else "")
    srcs = ", ".join(sorted({html.escape(str(s.get("source"))) for s in seeds}))
    return (f"Seed genomes: {len(seeds)} (selection record: {srcs}); seeds of unknown provenance "
            + ("<b>allowed (--allow-unknown-provenance)</b>." if allowed else "refused."))


def _edge_line(cands: list[dict[str, Any]]) -> str:
    """", of which K directional, J risk timing" over the survivors (empty when the report has no labels)."""
    surv = [c for c in cands if c.get("survived") and c.get("edge_kind")]
    if not surv:
        return ""
    n_dir = sum(c["edge_kind"] == "directional" for c in surv)
    n_rt = sum(c["edge_kind"] == "risk timing" for c in surv)
    return (f", of which {n_dir} directional and {n_rt} risk timing (volatility-timing premium, Moreira &amp; Muir "
            "2017; published only with --allow-risk-timing)")


_NAN = re.compile(r"(?<![\w.])[+-]?nan(?![\w])")


def _no_nan(reason: Any) -> str:
    """A stage's reason as the page shows it: an undefined number ("Sharpe nan" of a series without
    variance, e.g. no trade) reads "Sharpe undefined", never "nan"."""
    return _NAN.sub("undefined", str(reason))


def _causal_graph_html(cands: list[dict[str, Any]]) -> str:
    """The dowhy stage's graph (edges) and DoWhy's backdoor adjustment set, per candidate that has them."""
    items = []
    test = ""
    for c in cands:
        det = ((c.get("stages") or {}).get("dowhy") or {}).get("details") or {}
        test = test or (((c.get("stages") or {}).get("pcmci") or {}).get("details") or {}).get("graph_test", "")
        if "graph" not in det:
            continue
        adj = ", ".join(det.get("adjustment_set") or []) or "empty"
        dup = "".join(f"; {html.escape(str(k))} is the input {html.escape(str(v))} (not adjusted)"
                      for k, v in (det.get("parents_that_are_inputs") or {}).items())
        items.append(f"<li>#{c['rank']}: adjustment set {{{html.escape(adj)}}}{dup}; graph "
                     f"<span class='expr'>{html.escape('; '.join(det['graph']))}</span></li>")
    if not items:
        return ""
    how = f" (PCMCI's CI test: {html.escape(str(test))})" if test else ""
    return ("<h2>Causal graph (dowhy stage)</h2><p>Edges from the PCMCI stage's market parents of the return"
            f"{how} and the genome's inputs; DoWhy's identify_effect chose the backdoor adjustment set.</p><ul>"
            + "".join(items) + "</ul>")


def _evaluation_note(ev: dict[str, Any]) -> str:
    """The line under the evaluation range: holdout, overlap or the run's own out-of-sample bars."""
    if ev.get("holdout"):
        return ("<b>Holdout</b>: fresh bars after the run's last bar, pre-registered on the candidates tested "
                "(Holm over them); DSR and PBO are the run's own, reported and not applied to these bars.")
    if ev.get("overlaps_in_sample"):
        return "<b>These bars overlap the in-sample range (--allow-overlap).</b>"
    return "Evolution never read these bars."


def write_html_report(report: Any, path: str | Path, max_plots: int = 5) -> Path:
    """Render ``report`` (gauntlet.validate.GauntletReport) to a single HTML file; returns the path."""
    p = atomic_write_text(path, render_html(report, max_plots=max_plots))
    os.chmod(p, 0o644)  # readable like the run's other outputs (the temporary file was 0600)
    return p
