"""``gauntlet validate`` and ``gauntlet show``: the Gauntlet's commands, assembled into ``cli:gauntlet_app``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from commands.edge import EXIT_REJECTED, console, default_config, edge, err_console
from commands.evolve import print_hall
from forge.core.jsonsafe import dumps as json_dumps
from commands.ui import fmt_p


@edge
def gauntlet_validate(
    run_dir: Annotated[Path, typer.Argument(help="A run directory from forge evolve.")],
    data: Annotated[Optional[list[Path]], typer.Option("--data", "-d", help="Bars to validate on (default: the run's own out-of-sample range).")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="Gauntlet TOML (default: the packaged configs/gauntlet.toml).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report JSON instead of the table.")] = False,
    report: Annotated[Optional[Path], typer.Option("--report", help="Write a self-contained HTML report here.")] = None,
    allow_overlap: Annotated[bool, typer.Option("--allow-overlap", help="Accept --data that overlaps the in-sample range.")] = False,
    fail_on_reject: Annotated[bool, typer.Option("--fail-on-reject", help="Exit 6 when no candidate survives.")] = False,
    publish_dir: Annotated[Path, typer.Option("--publish-dir", help="Survivors are published here.")] = Path("artifacts/champions"),
    no_publish: Annotated[bool, typer.Option("--no-publish", help="Do not publish survivors.")] = False,
    max_candidates: Annotated[Optional[int], typer.Option("--max-candidates", help="Validate only the top N of the hall of fame.")] = None,
    allow_risk_timing: Annotated[bool, typer.Option("--allow-risk-timing", help="Publish survivors labelled risk timing too (default: directional survivors only).")] = False,
    candidates: Annotated[Optional[str], typer.Option("--candidates", help="Candidates tested: champion, all or N (top N); default: the champion in a holdout, all otherwise.")] = None,
    l2: Annotated[Optional[Path], typer.Option("--l2", help="The run's L2 recording (forge evolve --l2) at another path than its manifest's; its book bars must still match the run's digest.")] = None,
    policy: Annotated[Optional[Path], typer.Option("--policy", help="Execution policy JSON (forge execution train) signed into published champions (default: the run config's [execution] policy in mode policy, else always-taker).")] = None,
) -> None:
    """Validate a run's hall of fame: OOS, look-ahead, DSR, PBO, permutation/SPA, PCMCI, DoWhy → verdicts.

    Holdout mode is automatic when --data holds bars after the run's last bar: only those are evaluated
    (earlier bars only warm features up), on the --candidates named (Holm over several); DSR and PBO are
    reported from the run's own validation, not applied; the report is gauntlet_holdout.json.

    Exit 0 when validation ran; 6 with --fail-on-reject when nothing survives; bad input exits with its
    error's code (config 2, data 3, genome 4, run directory 5; the table in commands/edge.py)."""
    from gauntlet.config import load_gauntlet_config
    from gauntlet.validate import validate_run

    cfg = load_gauntlet_config(config if config is not None else default_config("gauntlet.toml"))
    pol = None
    if policy is not None:
        from forge.execution.policy import ExecutionPolicy

        pol = ExecutionPolicy.load(policy)  # ConfigError (exit 2) naming the file: unreadable or sha256 mismatch
    result = validate_run(run_dir, cfg, data=[str(p) for p in data] if data else None, allow_overlap=allow_overlap,
                          publish_dir=None if no_publish else publish_dir, max_candidates=max_candidates,
                          allow_risk_timing=allow_risk_timing,
                          candidates=candidates, policy=pol, l2_dir=l2,
                          progress=None if as_json else (lambda m: err_console.print(f"[dim]{m}[/]", highlight=False)))
    # one strict-JSON text for the file validate_run wrote and for --json
    text = result.text
    d = json.loads(text)
    report_existed = report is not None and report.exists()
    if report is not None:
        from gauntlet.report import write_html_report

        write_html_report(result, report)
    if as_json:
        print(text)
    else:
        from rich.text import Text

        from commands.ui import fit_table

        sh = d["shared"]
        tr = sh.get("trials")
        trials = (f"effective trials {tr['n_effective']} of {tr['n_total']:,}; " if tr else "")
        mode = "holdout on fresh bars — " if d["evaluation"].get("holdout") else ""
        title = (f"Gauntlet — run {d['run_id']}: {mode}{len(d['survivors'])} of {len(d['candidates'])} "
                 f"survive ({trials}SPA p {fmt_p(_spa_p(sh))}"
                 + (f"; {sh['ledger']['line']}" if sh.get("ledger") else "") + ")")
        names = list(d["candidates"][0]["stages"]) if d["candidates"] else []
        rows = []
        for c, v in zip(d["candidates"], result.verdicts):
            cells = [v["stages"][n].cell() for n in names]
            rows.append([str(c["rank"]), Text("SURVIVED", "green") if c["survived"] else Text("rejected", "red"),
                         c.get("edge_kind") or "—",
                         *[Text(x, "green" if x.startswith("✓") else "red") for x in cells]])
        table = fit_table(title, [("#", "right"), ("verdict", "left"), ("edge", "left"), *[(n, "right") for n in names]], rows,
                          console.width)
        console.print(table)
        for c in d["candidates"][:3]:
            console.print(f"[bold]#{c['rank']}[/] [{c.get('edge_kind', '—')}] {c['expression']}", highlight=False)
            for n, s in c["stages"].items():
                console.print(f"   {'✓' if s['passed'] else '✗'} {n}: {s['reason']}", highlight=False)
        from gauntlet.validate import HOLDOUT_REPORT

        written = HOLDOUT_REPORT if d["evaluation"].get("holdout") else "gauntlet_report.json"
        console.print(f"wrote {Path(run_dir) / written}"
                      + (f", {report}" + (" (overwrote the existing file)" if report_existed else "") if report else "")
                      + (f"; published {len(d['published'])} to {publish_dir}" if d["published"] else ""))
    if fail_on_reject and not d["survivors"]:
        raise typer.Exit(EXIT_REJECTED)


def _spa_p(shared: dict[str, Any]) -> Optional[float]:
    """Hansen's SPA p-value of a report's shared block ({"spa": {"p"}} or the older {"spa_p"})."""
    spa = shared.get("spa")
    return spa.get("p") if isinstance(spa, dict) else shared.get("spa_p")


@edge
def gauntlet_show(
    run_dir: Annotated[Path, typer.Argument(help="A run directory from forge evolve.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the hall of fame as strict JSON.")] = False,
) -> None:
    """Hall of fame of a run: in-sample vs out-of-sample metrics next to buy-and-hold."""
    from forge.core.rundir import read_hall_of_fame

    hall = read_hall_of_fame(run_dir)  # RunDirError naming the file for a missing/corrupt hall of fame
    members = [m.to_dict() for m in hall.members]
    if as_json:
        from forge.core.jsonsafe import revive_nonfinite

        kinds = edge_kinds(Path(run_dir))
        members = [{**m, "edge_kind": kinds.get(int(m.get("rank", -1)))} for m in members]
        print(json_dumps(revive_nonfinite({"run_id": hall.run_id, "run_dir": str(run_dir),
                                           "members": members})))
        return
    print_hall(members)
    kinds = edge_kinds(Path(run_dir))
    if kinds:
        console.print("edge kind (gauntlet_report.json): " + ", ".join(f"#{r} {k}" for r, k in sorted(kinds.items())),
                      highlight=False)


def edge_kinds(run_dir: Path) -> dict[int, str]:
    """rank -> edge kind label from the run's ``gauntlet_report.json`` ({} when the run was not validated or the
    report predates the label)."""
    from forge.core.rundir import FILES

    path = run_dir / FILES.gauntlet_report
    try:
        d = json.loads(path.read_text())
        return {int(c["rank"]): str(c["edge_kind"]) for c in d.get("candidates", []) if c.get("edge_kind")}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return {}
