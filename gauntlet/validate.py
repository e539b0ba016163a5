"""``gauntlet validate``: run every stage on every hall-of-fame candidate, decide, report, publish.

A candidate survives when every stage listed in ``GauntletConfig.gating``
passes (the policy and its false-pass bounds: ``gating_policy``). Run-level
quantities (the in-sample trials, their effective number and PBO, the
Holm-adjusted out-of-sample PSR over the hall of fame, Hansen's SPA) are
computed once per run and shared by the stages.
"""

from __future__ import annotations

import hashlib
import importlib
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from forge.core.artifacts import atomic_write_text
from forge.core.champion import champion_stem
from forge.core.errors import ConfigError
from forge.core.rundir import FILES
from forge.core.jsonsafe import dumps as json_dumps
from gauntlet.config import GauntletConfig
from gauntlet.context import RunContext
from gauntlet.stages import STAGE_ORDER, StageResult

__all__ = ["validate_run", "GauntletReport", "REPORT_SCHEMA", "HOLDOUT_REPORT", "edge_label", "gating_policy", "publishable"]

REPORT_SCHEMA = "gauntlet-report/2"
HOLDOUT_REPORT = "gauntlet_holdout.json"
"""A holdout's report, next to (never over) the run's own ``gauntlet_report.json``."""
_MODULES = {"oos": "oos", "lookahead": "lookahead", "psr": "psr", "dsr": "dsr", "pbo": "pbo",
            "permutation": "permutation", "pcmci": "pcmci", "dowhy": "dowhy_refute", "edge_kind": "edge_kind"}


@dataclass
class GauntletReport:
    """verdicts: per candidate {"rank", "sha256", "expression", "survived", "stages": {name: StageResult}};
    shared: set-level numbers; published: meta paths of the survivors written to artifacts/champions/."""

    run_dir: Path
    config: GauntletConfig
    verdicts: list[dict[str, Any]]
    shared: dict[str, Any]
    published: list[str]
    seconds: float
    context: RunContext
    text: str = ""
    allow_risk_timing: bool = False

    @property
    def survivors(self) -> list[dict[str, Any]]:
        return [v for v in self.verdicts if v["survived"]]

    def to_dict(self) -> dict[str, Any]:
        ctx = self.context
        return {
            "schema": REPORT_SCHEMA,
            "run_id": ctx.manifest.run_id,
            "created_utc": datetime.now(timezone.utc).isoformat(),
            "data_source": ctx.data_source,
            "execution": ctx.fill.describe(),
            "evaluation": {"rows": list(ctx.evaluation), "first": _iso(ctx.open_time[ctx.evaluation[0]]),
                           "last": _iso(ctx.open_time[ctx.evaluation[1] - 1]), "overlaps_in_sample": ctx.overlap,
                           "holdout": ctx.holdout, "mode": "holdout" if ctx.holdout else "run"},
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(self.config).items()},
            "policy": {**gating_policy(self.config), "allow_risk_timing": self.allow_risk_timing},
            "shared": self.shared,
            "candidates": [{**{k: v for k, v in c.items() if k != "stages"},
                            "stages": {n: s.to_dict() for n, s in c["stages"].items()}} for c in self.verdicts],
            "survivors": [c["sha256"] for c in self.survivors],
            "published": self.published,
            "provenance": seed_record(self.run_dir),
            "seconds": round(self.seconds, 2),
        }


def seed_record(run_dir: Path) -> dict[str, Any] | None:
    """The run's ``seed_provenance.json`` (``forge.core.provenance``: each seed genome's selection bars and
    whether seeds of unknown provenance were allowed), or None for runs written before it existed."""
    import json

    from forge.core.provenance import PROVENANCE_FILE

    try:
        d = json.loads((Path(run_dir) / PROVENANCE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None


def selection_ranges(ctx: RunContext) -> list[dict[str, Any]]:
    """The bars that select a published survivor: the run's in-sample bars (evolution), the evaluation bars
    (this validation) and every seed's selection bars, merged (``forge.core.provenance.selected_on_dicts``)."""
    from forge.core.provenance import read_selected_on, selected_on_dicts
    from forge.data.ranges import DataRange

    t = ctx.open_time
    ranges = [DataRange(int(t[a]), int(t[b - 1]), b - a) for a, b in (ctx.in_sample, ctx.evaluation) if b > a]
    for s in (seed_record(ctx.run_dir) or {}).get("seeds") or []:
        try:
            ranges += list(read_selected_on(s.get("selected_on"), "seed_provenance.json"))
        except ConfigError:  # a malformed record cannot shrink the range: every bar up to the run's last
            ranges.append(DataRange(0, int(t[-1]), 0))
    return selected_on_dicts(ranges)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(int(ms) / 1000, tz=timezone.utc).isoformat()


def _shared(ctx: RunContext, cfg: GauntletConfig) -> dict[str, Any]:
    """Run-level quantities every stage reads: the in-sample trials (effective number, Sharpe variance, PBO),
    each candidate's market-hedged OOS returns and Holm-adjusted PSR p-value, and SPA over the hall of fame."""
    from gauntlet.stages.permutation import spa_over
    from gauntlet.stats import effective_trials, holm_adjust, pbo_cscv, psr_pvalue, screening_ratio, with_ledger_trials

    t0 = time.perf_counter()
    shared: dict[str, Any] = {}
    if ctx.holdout:
        shared["holdout"] = _holdout_selection(ctx)
    if ctx.in_sample[1] - ctx.in_sample[0] > 1:
        from forge.core.rundir import read_generations

        trials = ctx.in_sample_trials()
        shared["trial_set"] = trials
        ratio = screening_ratio(read_generations(ctx.run_dir))
        et = effective_trials(trials.hourly, cfg.trial_max_correlation, sharpe=trials.sharpe, n_obs=trials.n_obs,
                              screening=ratio, max_trials=cfg.max_trials, seed=cfg.seed,
                              dominated_level=cfg.trial_dominated_level)
        shared["trials"] = et
        shared["n_trials_total"] = trials.n_total
        reps = et.representatives
        n_hours = trials.hourly.shape[1]
        if trials.hourly.shape[0] < 2:
            shared["pbo_skip"] = "one distinct trial: no selection happened, nothing to overfit"
        elif reps.size < 2:
            shared["pbo_skip"] = (f"{reps.size} cluster of contending trials (of {trials.hourly.shape[0]} distinct, "
                                  f"{et.n_dominated} dominated): no selection among distinct strategies")
        elif n_hours < 2 * cfg.pbo_blocks:
            shared["pbo_skip"] = f"{n_hours} in-sample hours < 2 x {cfg.pbo_blocks} CSCV blocks"
        else:
            # CSCV over one representative per cluster: near-copies of one strategy are one strategy, and
            # dominated (fee-burning) trials, which no selection picks, do not push the chosen one up the ranks
            shared["pbo"] = pbo_cscv(trials.hourly[reps].T, cfg.pbo_blocks)
    else:  # holdout on fresh bars without the run's in-sample bars: nothing to recompute the selection from
        shared["trials"] = None
        shared["n_trials_total"] = int(ctx.n_evaluated)
        shared["pbo_skip"] = "holdout: the bars given do not hold the run's in-sample range"
    # other runs' trials on overlapping bars (the trial ledger) enlarge DSR's N
    shared["ledger"] = ctx.ledger
    if shared["trials"] is not None:
        other = ctx.ledger.other_trials if ctx.ledger is not None else 0
        shared["n_trials_dsr"] = with_ledger_trials(shared["trials"].n_effective, shared["n_trials_total"], other)
    # out of sample: each distinct candidate's hedged net returns, PSR(0) p-values, Holm over the hall of fame
    ev = ctx.evaluation
    hedges, seen, p_distinct, group = {}, {}, [], {}
    for c in ctx.candidates:
        hedges[c.rank] = ctx.hedged(c.oos_result, ev)
        key = np.nan_to_num(c.position[ev[0]:ev[1]]).tobytes()
        if key not in seen:
            seen[key] = len(p_distinct)
            p_distinct.append(psr_pvalue(hedges[c.rank].hedged)[0])
        group[c.rank] = seen[key]
    holm = holm_adjust(np.array(p_distinct))
    shared["oos_hedge"] = hedges
    shared["psr_holm"] = {r: float(holm[g]) for r, g in group.items()}
    shared["psr_family"] = len(p_distinct)
    distinct = list({group[c.rank]: hedges[c.rank].hedged for c in ctx.candidates}.values())
    shared["spa"] = spa_over(distinct, ctx.open_time[ev[0]:ev[1]], cfg)
    shared["seconds"] = time.perf_counter() - t0
    return shared


def _holdout_selection(ctx: RunContext) -> dict[str, Any]:
    """The run's own selection statistics for a holdout report: each candidate's DSR and PBO stage results
    from the run's own validation (its ``gauntlet_report.json``, when one exists for this run id), keyed by
    genome sha256. A holdout never gates on them: the selection happened on the run's bars, not the fresh ones.
    returns: {"source": path or None, "by_sha": {sha256: {"dsr": stage dict, "pbo": stage dict}}}."""
    import json

    path = Path(ctx.run_dir) / FILES.gauntlet_report
    out: dict[str, Any] = {"source": None, "by_sha": {}}
    try:
        rep = json.loads(path.read_text())
    except (OSError, ValueError):
        return out
    if str(rep.get("run_id")) != str(ctx.manifest.run_id) or (rep.get("evaluation") or {}).get("holdout"):
        return out
    out["source"] = str(path)
    for c in rep.get("candidates") or []:
        st = c.get("stages") or {}
        out["by_sha"][c.get("sha256")] = {n: st[n] for n in ("dsr", "pbo") if n in st}
    return out


def _shared_json(shared: dict[str, Any]) -> dict[str, Any]:
    t = shared["trials"]
    p = shared.get("pbo")
    trials = None if t is None else {
        "n_total": shared["n_trials_total"], "n_distinct": t.n_raw, "n_effective": t.n_effective,
        "n_clusters": t.n_clusters, "n_dominated": t.n_dominated, "screening_ratio": t.screening_ratio,
        "n_representatives": int(t.representatives.size), "sampled_by_cluster": t.sampled,
        "var_sharpe_per_bar": t.var_sharpe, "sample": "in-sample, net of costs, market-hedged"}
    return {"trials": trials,
            "pbo": None if p is None else {"pbo": p.pbo, "n_splits": p.n_splits, "n_blocks": p.n_blocks,
                                           "n_strategies": p.n_strategies, "logits": p.logits.tolist(),
                                           "prob_loss": p.prob_loss, "degradation": list(p.degradation)},
            "pbo_skip": shared.get("pbo_skip"), "psr_family": shared["psr_family"], "spa": shared["spa"],
            "ledger": shared["ledger"].to_dict() if shared.get("ledger") is not None else None,
            "n_trials_dsr": shared.get("n_trials_dsr"),
            "holdout": shared.get("holdout"), "seconds": round(shared["seconds"], 2)}


def gating_policy(cfg: GauntletConfig) -> dict[str, Any]:
    """The verdict rule written into every report: gating stages, diagnostics and the false-pass bounds."""
    return {
        "gating": list(cfg.gating), "diagnostics": list(cfg.diagnostics), "alpha": cfg.alpha,
        "rule": "a candidate survives only when every gating stage passes",
        "false_pass_per_candidate": (
            f"<= {cfg.alpha}: each gating hypothesis test (psr, permutation, pcmci, dowhy) has level {cfg.alpha} "
            "and a candidate must pass all of them (intersection-union test, Berger 1982), so correlation between "
            "stages on the same returns cannot raise the level; the threshold stages (oos, lookahead, dsr, pbo) "
            "only lower it; each test's measured size on the null suite: docs/gauntlet.md"),
        "false_pass_per_run": (
            f"<= {cfg.alpha}: psr is Holm-adjusted over the hall of fame's distinct candidates, which controls the "
            "family-wise error of the run"),
        "skill_not_beta": "psr, permutation, pcmci and dowhy test the strategy net of its market exposure",
        "edge_kind": ("each candidate is labelled directional (alpha against the market and a volatility-managed "
                      "market, and a position that predicts the market's direction) or risk timing (alpha against "
                      "the market only; Moreira & Muir 2017); only directional survivors are published unless "
                      "--allow-risk-timing"),
    }


def edge_label(stages: dict[str, StageResult]) -> str:
    """The candidate's edge kind ("directional", "risk timing", "no alpha") from its ``edge_kind`` stage."""
    st = stages.get("edge_kind")
    return str((st.details or {}).get("label", "no alpha")) if st is not None else "no alpha"


def publishable(verdict: dict[str, Any], allow_risk_timing: bool) -> bool:
    """A survivor is published when its edge is directional, or with ``allow_risk_timing`` when it is risk
    timing too."""
    kinds = ("directional", "risk timing") if allow_risk_timing else ("directional",)
    return bool(verdict["survived"]) and verdict.get("edge_kind") in kinds


def validate_run(run_dir: str | Path, cfg: GauntletConfig, *, data: Sequence[str | Path] | None = None,
                 allow_overlap: bool = False, publish_dir: str | Path | None = "artifacts/champions",
                 max_candidates: int | None = None, bars: Any = None,
                 progress: Callable[[str], None] | None = None, symbol: str | None = None,
                 lineage: dict[str, Any] | None = None, candidates: str | int | None = None,
                 allow_risk_timing: bool = False, policy: Any = None,
                 l2_dir: str | Path | None = None) -> GauntletReport:
    """Validate a ``forge evolve`` run directory.

    data: bars to evaluate on (default: the run's own out-of-sample range);
    allow_overlap: permit ``data`` that overlaps the in-sample range;
    publish_dir: survivors are published there (None: not published);
    bars: the run's own bars in memory (polars frame), instead of reloading its data;
    symbol: the symbol published champions trade (default: the run manifest's); lineage: recorded in each
    published champion's signed meta (:func:`gauntlet.publish.publish_champion`); allow_risk_timing: publish
    survivors labelled risk timing too (default: directional survivors only; see :func:`publishable`);
    policy: the execution policy published champions trade with (``forge.execution.policy.ExecutionPolicy``;
    None: the run config's ``[execution] policy`` file when its mode is "policy", else always-taker), signed
    into each meta with its sha256 (:func:`gauntlet.publish.publish_champion`).  The run config's
    ``[execution] sizing = "kelly"`` signs each champion's fractional-Kelly multiplier, measured on the run's
    in-sample rows only (``forge.execution.sizing.kelly_sizing``), into its meta.  l2_dir: the run's L2 recording
    at another path than its manifest's (``forge evolve --l2``; the rebuilt bars must match the run's digest).

    Holdout mode is automatic when ``data`` holds bars after the run's last bar (``RunContext.load``): only
    those bars are evaluated; the test is pre-registered on ``candidates`` ("champion" — the default in a
    holdout —, "all", or an int N for the top N of the hall of fame; outside a holdout the default is "all",
    capped by ``max_candidates``), the psr gate is Holm-adjusted over them (so at most alpha family-wise);
    DSR and PBO are reported from the run's own validation (its ``gauntlet_report.json``) or recomputed from
    its in-sample trials when the bars given hold them, and never gate: the selection they deflate happened
    on the run's bars, not on the fresh ones. A holdout writes ``gauntlet_holdout.json`` (the run's own
    report is kept); otherwise ``gauntlet_report.json`` is written (strict JSON, ``GauntletReport.text``)
    into the run directory before publishing, so each published meta carries the report's sha256.
    returns GauntletReport. raises RunDirError, DataError, ConfigError.
    """
    say = progress or (lambda _m: None)
    t0 = time.perf_counter()
    ctx = RunContext.load(run_dir, data, allow_overlap=allow_overlap, max_candidates=max_candidates,
                          bars=bars, candidates=candidates, l2_dir=l2_dir)
    say(f"loaded {len(ctx.candidates)} candidates, {ctx.evaluation[1] - ctx.evaluation[0]:,} evaluation bars"
        + (" (holdout: bars after the run's last bar)" if ctx.holdout else ""))
    shared = _shared(ctx, cfg)
    if shared["trials"] is not None:
        say(f"shared: {shared['trials'].n_effective} effective in-sample trials of {shared['trials'].n_raw} distinct")
    modules = {n: importlib.import_module(f"gauntlet.stages.{_MODULES[n]}") for n in STAGE_ORDER}
    verdicts = []
    for cand in ctx.candidates:
        stages: dict[str, StageResult] = {}
        for name in STAGE_ORDER:
            s0 = time.perf_counter()
            res = modules[name].run(ctx, cand, cfg, shared)
            res.seconds = time.perf_counter() - s0
            stages[name] = res
        survived = all(stages[n].passed for n in cfg.gating)
        failed = [n for n in cfg.gating if not stages[n].passed]
        kind = edge_label(stages)
        verdicts.append({"rank": cand.rank, "sha256": cand.genome.sha256, "expression": cand.genome.expression(),
                         "features": list(cand.genome.features), "survived": survived, "failed": failed,
                         "edge_kind": kind, "stages": stages})
        verdicts[-1]["published"] = publish_dir is not None and publishable(verdicts[-1], allow_risk_timing)
        say(f"{cand.name}: {'SURVIVED' if survived else 'rejected (' + ', '.join(failed) + ')'} [{kind}]")
    pol, ex = _run_policy(ctx, policy) if publish_dir is not None else (None, None)
    # the report is written first, so every published champion's signed meta names the report's sha256
    published = [str(Path(publish_dir) / f"{champion_stem(v['sha256'], pol.sha256 if pol else None)}.meta.json")
                 for v in verdicts if v["published"]] if publish_dir is not None else []
    report = GauntletReport(Path(run_dir), cfg, verdicts, _shared_json(shared), published,
                            time.perf_counter() - t0, ctx, allow_risk_timing=allow_risk_timing)
    report.text = json_dumps(report.to_dict())
    atomic_write_text(Path(run_dir) / (HOLDOUT_REPORT if ctx.holdout else FILES.gauntlet_report), report.text + "\n")
    if published:
        from gauntlet.publish import publish_champion

        digest = hashlib.sha256((report.text + "\n").encode()).hexdigest()
        for v, cand in zip(verdicts, ctx.candidates):
            if v["published"]:
                publish_champion(cand.genome, publish_dir, run_id=str(ctx.manifest.run_id),
                                 symbol=symbol or (ctx.manifest.data or {}).get("symbol"),
                                 features=list(cand.genome.features),
                                 verdict={n: s.to_dict() for n, s in v["stages"].items()}, library=ctx.library,
                                 regime_model=ctx.regimes,
                                 report_sha256=digest, lineage=lineage, edge_kind=v["edge_kind"],
                                 selected_on=selection_ranges(ctx), policy=pol,
                                 sizing=_in_sample_sizing(ctx, cand, ex) if ex.sizing == "kelly" else None)
    return report


def _run_policy(ctx: RunContext, policy: Any) -> tuple[Any, Any]:
    """(the execution policy published champions carry -- ``policy``, else the run config's ``[execution]
    policy`` file when its mode is "policy", else None = always-taker --, the run's ExecutionConfig).
    raises ConfigError for an unreadable or tampered policy file."""
    from forge.core.runconfig import config_from_dict
    from forge.execution.policy import ExecutionPolicy

    ex = config_from_dict(ctx.manifest.config, f"{ctx.run_dir}/manifest.json").execution
    if policy is None and ex.mode == "policy" and ex.policy:
        policy = ExecutionPolicy.load(ex.policy)
    return policy, ex


def _in_sample_sizing(ctx: RunContext, cand: Any, ex: Any) -> dict[str, Any]:
    """The candidate's fractional-Kelly record on the run's in-sample rows (never the evaluation rows).
    raises ConfigError when the bars given hold fewer than 2 in-sample rows (a holdout on fresh bars only)."""
    from forge.core.errors import ConfigError
    from forge.execution.sizing import kelly_sizing

    a, b = ctx.in_sample
    if b - a < 2:
        raise ConfigError("[execution] sizing = \"kelly\": the bars given hold fewer than 2 of the run's in-sample "
                          "bars, the only ones the Kelly multiplier may be measured on; pass data that holds them")
    o, c, t = ctx.arrays((0, ctx.bars.height))
    return kelly_sizing(o, c, t, cand.position, (a, b), ctx.backtest, cap=ex.kelly_cap,
                        max_leverage=ex.max_leverage, sized_on="in-sample (the run's in-sample rows)")
