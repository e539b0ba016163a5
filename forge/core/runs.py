"""Listing and comparing ``forge evolve`` run directories (``forge runs list`` / ``forge runs compare``).

Reads only the run-directory files (``manifest.json``, ``run_config.json``,
``generations.jsonl``, ``hall_of_fame.json``, ``gauntlet_report.json``);
never writes into a run.  A run without ``manifest.json`` is reported as
unfinished (interrupted or still running) with the last generation reached.
"""

from __future__ import annotations

import base64
import html
import io
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from forge.core.errors import RunDirError

__all__ = ["run_row", "list_runs", "generation_curve", "compare_runs", "write_compare_html", "RUN_INDEX",
           "index_path", "record_run", "find_runs", "resolve_run"]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _num(v: Any) -> float | int | None:
    """A metric read back from an artifact: floats, or the "inf"/"-inf" strings older writers used."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return v
    if v in ("inf", "+inf", "Infinity"):
        return float("inf")
    if v in ("-inf", "-Infinity"):
        return float("-inf")
    return None


def generation_curve(run_dir: str | Path) -> list[dict[str, Any]]:
    """Per generation of ``generations.jsonl``: {"gen", "best" (generation best), "best_so_far"
    (hall-of-fame best), "median", "evaluated_total", "seconds"}; a torn last line is skipped."""
    p = Path(run_dir) / "generations.jsonl"
    out = []
    if not p.is_file():
        return out
    for line in p.read_text().splitlines():
        try:
            g = json.loads(line)
        except ValueError:
            continue
        out.append({"gen": g.get("gen"), "best": _num(g.get("best")), "best_so_far": _num(g.get("hof_best")),
                    "median": _num(g.get("median")), "evaluated_total": g.get("evaluated_total"),
                    "seconds": _num(g.get("seconds"))})
    return out


def run_row(run_dir: str | Path) -> dict[str, Any]:
    """Summary of one run directory.

    returns {"run_id", "path", "created_utc", "status": "finished" | "unfinished", "seed", "symbol",
    "generations" (configured), "generations_run" (reached), "population", "candidates_evaluated",
    "seconds", "best_fitness" (best so far), "champion": {"expression", "sha256", "fitness"} | None,
    "oos": champion's out-of-sample metrics | None, "buy_and_hold": same bars | None,
    "gauntlet": {"survivors", "candidates"} | None, "ledger": {"runs", "trials", "other_runs",
    "other_trials", "line"} of the trial ledger on the run's in-sample bars (``forge.core.ledger``) | None}.
    raises RunDirError if the folder is not a run directory (no run_config.json nor manifest.json).
    """
    p = Path(run_dir)
    manifest = _read_json(p / "manifest.json")
    run_cfg = _read_json(p / "run_config.json")
    if manifest is None and run_cfg is None:
        raise RunDirError(f"{p}: not a forge evolve run directory (no manifest.json nor run_config.json)")
    conf = (manifest or {}).get("config") or (run_cfg or {}).get("config") or {}
    ev = conf.get("evolve", {})
    curve = generation_curve(p)
    hall = _read_json(p / "hall_of_fame.json") or {}
    members = hall.get("members") or []
    top = members[0] if members else None
    rep = _read_json(p / "gauntlet_report.json")
    created = (manifest or {}).get("created_utc")
    if created is None:
        created = datetime.fromtimestamp(p.stat().st_mtime, tz=timezone.utc).isoformat()
    return {
        "run_id": (manifest or {}).get("run_id", p.name),
        "path": str(p),
        "created_utc": created,
        "status": "finished" if manifest is not None else "unfinished",
        "seed": ev.get("seed"),
        "symbol": ((manifest or {}).get("data") or {}).get("symbol"),
        "generations": ev.get("generations"),
        "generations_run": curve[-1]["gen"] if curve else None,
        "population": ev.get("population"),
        "candidates_evaluated": (manifest or {}).get("candidates_evaluated",
                                                     curve[-1]["evaluated_total"] if curve else None),
        "seconds": _num((manifest or {}).get("seconds")),
        "best_fitness": curve[-1]["best_so_far"] if curve else None,
        "champion": None if top is None else {"expression": top.get("expression"),
                                              "sha256": (top.get("genome") or {}).get("sha256"),
                                              "fitness": _num(top.get("fitness"))},
        "oos": None if top is None else {k: _num(v) for k, v in top.get("out_of_sample", {}).items()},
        "buy_and_hold": None if top is None else {k: _num(v) for k, v in
                                                  top.get("out_of_sample_buy_and_hold", {}).items()},
        "gauntlet": None if not isinstance(rep, dict) else {"survivors": len(rep.get("survivors") or []),
                                                            "candidates": len(rep.get("candidates") or [])},
        "ledger": _ledger(p, manifest, ev),
    }


def _ledger(run_dir: Path, manifest: Any, evolve_cfg: dict[str, Any]) -> dict[str, Any] | None:
    """The trial-ledger tally of a finished run's in-sample bars (None for unfinished runs or no range)."""
    from forge.core.ledger import entry_for_manifest, ledger_path, tally_overlapping

    if not isinstance(manifest, dict):
        return None
    entry = entry_for_manifest(manifest)
    if entry is None:
        return None
    return tally_overlapping(ledger_path(run_dir, evolve_cfg.get("trial_ledger")), entry).to_dict()


def list_runs(root: str | Path) -> list[dict[str, Any]]:
    """:func:`run_row` of every run directory directly under ``root``, newest first (``[]`` when
    ``root`` does not exist). Folders that are not run directories are skipped."""
    r = Path(root)
    if not r.is_dir():
        return []
    rows = []
    for d in r.iterdir():
        if d.is_dir() and ((d / "manifest.json").is_file() or (d / "run_config.json").is_file()):
            rows.append(run_row(d))
    return sorted(rows, key=lambda x: x["created_utc"] or "", reverse=True)


RUN_INDEX = "run_index.jsonl"
"""File name of the run index, beside the default runs folder (``artifacts/run_index.jsonl``): one JSON line
``{"run_id", "path"}`` per run ``forge evolve`` started, wherever ``--run-dir`` put it."""


def index_path(output_dir: str | Path) -> Path:
    """The run index of a runs folder (``artifacts/runs`` -> ``artifacts/run_index.jsonl``), or the file
    named by the ``FORGE_RUN_INDEX`` environment variable when set."""
    import os

    env = os.environ.get("FORGE_RUN_INDEX")
    return Path(env) if env else Path(output_dir).parent / RUN_INDEX


def record_run(index: str | Path, run_id: str, run_dir: str | Path) -> None:
    """Append ``{"run_id", "path" (absolute)}`` to the run index (created with its folder). A failure to
    write it (read-only folder) is ignored: the index only helps ``forge runs list`` find the run."""
    p = Path(index)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        with p.open("a") as f:
            f.write(json.dumps({"run_id": run_id, "path": str(Path(run_dir).resolve())}) + "\n")
    except OSError:
        pass


def _indexed(index: str | Path | None) -> list[Path]:
    if index is None or not Path(index).is_file():
        return []
    out = []
    for line in Path(index).read_text().splitlines():
        try:
            out.append(Path(json.loads(line)["path"]))
        except (ValueError, KeyError, TypeError):
            continue  # a torn line
    return out


def find_runs(roots: Sequence[str | Path], index: str | Path | None = None) -> list[dict[str, Any]]:
    """:func:`run_row` of every run directory under each of ``roots`` (one level) and every run in the run
    ``index`` that still exists, each once (by resolved path), newest first."""
    seen: set[Path] = set()
    rows = []
    candidates: list[Path] = []
    for r in roots:
        rp = Path(r)
        if rp.is_dir():
            candidates += sorted(d for d in rp.iterdir() if d.is_dir())
    candidates += _indexed(index)
    for d in candidates:
        key = d.resolve()
        if key in seen or not ((d / "manifest.json").is_file() or (d / "run_config.json").is_file()):
            continue
        seen.add(key)
        rows.append(run_row(d))
    return sorted(rows, key=lambda x: x["created_utc"] or "", reverse=True)


def resolve_run(ref: str | Path, roots: Sequence[str | Path], index: str | Path | None = None) -> Path:
    """A run directory from a path or a run id (as ``forge runs list`` prints it). raises RunDirError naming
    the reference when it is neither."""
    p = Path(ref)
    if p.is_dir():
        return p
    hits = [r["path"] for r in find_runs(roots, index) if r["run_id"] == str(ref)]
    if not hits:
        raise RunDirError(f"{ref}: neither a run directory nor a run id that forge runs list knows")
    return Path(hits[0])


def compare_runs(run_dirs: Sequence[str | Path]) -> dict[str, Any]:
    """{"runs": [run_row + {"curve": generation_curve}]} in the given order. raises RunDirError."""
    if not run_dirs:
        raise RunDirError("forge runs compare needs at least one run directory")
    return {"schema": "forge-runs-compare/1",
            "runs": [{**run_row(d), "curve": generation_curve(d)} for d in run_dirs]}


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _pct(v: Any) -> str:
    return "—" if v is None or v != v or abs(v) == float("inf") else f"{100 * v:+.2f}%"


def _f(v: Any, digits: int = 2) -> str:
    if v is None or v != v:
        return "—"
    if abs(v) == float("inf"):
        return "never" if v > 0 else "—"
    return f"{v:,.{digits}f}"


def write_compare_html(comparison: dict[str, Any], path: str | Path) -> Path:
    """Self-contained HTML (plots as base64 PNG): fitness curves of every run (best so far solid,
    generation best dashed), out-of-sample return of each champion next to buy-and-hold, and a
    side-by-side metrics table. returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from forge.core.artifacts import atomic_write_text

    runs = comparison["runs"]
    fig, ax = plt.subplots(figsize=(13, 4.8))
    markers = "os^Dv<>ph*"
    for i, r in enumerate(runs):
        color = f"C{i % 10}"
        gens = [g["gen"] for g in r["curve"]]
        # distinct markers (shrinking with i) keep runs with identical curves visible
        ax.plot(gens, [g["best_so_far"] for g in r["curve"]], color=color, lw=2, marker=markers[i % len(markers)],
                ms=max(10 - 2 * i, 4), label=f"{r['run_id']} best so far")
        ax.plot(gens, [g["best"] for g in r["curve"]], color=color, lw=1, ls="--", alpha=0.7,
                label=f"{r['run_id']} generation best")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("generation", fontsize=11)
    ax.set_ylabel("in-sample fitness", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=11, loc="center left", bbox_to_anchor=(1.01, 0.5))
    curves = _png(fig)

    fig, ax = plt.subplots(figsize=(13, 0.6 + 0.55 * len(runs) + 1.2))
    names = [r["run_id"] for r in runs]
    y = range(len(runs))
    oos = [100 * ((r["oos"] or {}).get("total_return") or 0.0) for r in runs]
    bh = [100 * ((r["buy_and_hold"] or {}).get("total_return") or 0.0) for r in runs]
    ax.barh([v - 0.18 for v in y], oos, height=0.35, label="champion, out-of-sample", color="tab:blue")
    ax.barh([v + 0.18 for v in y], bh, height=0.35, label="buy-and-hold, same bars", color="tab:gray")
    ax.set_yticks(list(y), names, fontsize=10)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("total return, %")
    ax.legend(fontsize=11, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.grid(alpha=0.3, axis="x")
    bars = _png(fig)

    esc = html.escape
    heads = ["run", "status", "seed", "gens", "evaluated", "best fitness", "OOS return", "B&H return",
             "OOS Sharpe", "OOS max DD", "OOS trades", "gauntlet", "champion"]
    rows = []
    for r in runs:
        o, b = r["oos"] or {}, r["buy_and_hold"] or {}
        g = r["gauntlet"]
        dd = o.get("max_drawdown")
        cells = [esc(str(r["run_id"])), r["status"], str(r["seed"]), f"{r['generations_run']}/{r['generations']}",
                 _f(r["candidates_evaluated"], 0), _f(r["best_fitness"], 3), _pct(o.get("total_return")),
                 _pct(b.get("total_return")), _f(o.get("sharpe")), "—" if dd is None else f"-{100 * abs(dd):.2f}%",
                 _f(o.get("n_trades"), 0), "—" if g is None else f"{g['survivors']}/{g['candidates']} survive",
                 f"<code>{esc(str((r['champion'] or {}).get('expression')))}</code>"]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>forge runs compare</title>
<style>body{{font-family:system-ui,sans-serif;margin:24px;max-width:1500px}}img{{width:100%;height:auto}}
table{{border-collapse:collapse;font-size:14px;width:100%}}td,th{{border:1px solid #ccc;padding:5px 8px;white-space:nowrap}}
td:last-child{{white-space:normal}}th{{background:#f3f3f3}}td{{text-align:right}}td:first-child,td:last-child{{text-align:left}}
code{{font-size:12px}}</style></head><body>
<h1>forge runs compare — {len(runs)} runs</h1>
<h2>Out-of-sample metrics of each run's champion</h2>
<table><tr>{''.join(f'<th>{esc(h)}</th>' for h in heads)}</tr>{''.join(rows)}</table>
<p>OOS: the bars after each run's in-sample range (never seen by evolution); B&amp;H: buy-and-hold of the same bars
with the same costs; max DD as a loss from the running peak.</p>
<h2>Fitness per generation</h2><img src="{curves}" alt="fitness curves">
<h2>Champion vs buy-and-hold, out of sample</h2><img src="{bars}" alt="out-of-sample returns">
</body></html>"""
    p = atomic_write_text(path, doc)
    import os

    os.chmod(p, 0o644)  # readable like the run's other outputs (the temporary file was 0600)
    return p
