"""Probability of Backtest Overfitting by CSCV over the hall of fame (Bailey, Borwein,
López de Prado & Zhu 2017). A set-level statistic: every candidate of the run shares it."""

from __future__ import annotations

from gauntlet.stages import StageResult

NAME = "pbo"


def run(ctx, cand, cfg, shared) -> StageResult:
    res = shared.get("pbo")
    if res is None:
        return StageResult(NAME, "PBO", None, None, cfg.pbo_threshold, True,
                           f"not applicable: {shared.get('pbo_skip', 'fewer than 2 distinct strategies')}", {})
    passed = res.pbo < cfg.pbo_threshold
    reason = (f"PBO {res.pbo:.2f} {'<' if passed else '>='} {cfg.pbo_threshold} over {res.n_strategies} strategies, "
              f"{res.n_splits} CSCV splits of {res.n_blocks} blocks")
    return StageResult(NAME, "PBO", res.pbo, None, cfg.pbo_threshold, passed, reason,
                       {"pbo": res.pbo, "n_splits": res.n_splits, "n_blocks": res.n_blocks,
                        "n_strategies": res.n_strategies, "logit_mean": float(res.logits.mean())})
