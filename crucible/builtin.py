"""Small hand-written genomes shipped with the Crucible so ``crucible live``
runs on any machine (``genome = "builtin:NAME"`` in a slot).  They are plain
genomes (same JSON, same VM) and no claim of profitability is made.
"""

from __future__ import annotations

from pathlib import Path

from forge.core.errors import ConfigError
from forge.gp import Genome

__all__ = ["BUILTIN", "builtin_genome", "resolve_genome"]

BUILTIN: dict[str, tuple[list[str], list[float]]] = {
    # 15-bar momentum with a dead band
    "momentum": (["long_short", "gt_c", "feature:ret_15", "const:0", "lt_c", "feature:ret_15", "const:1"],
                 [0.002, -0.002]),
    # 5-bar mean reversion
    "meanrev": (["long_short", "lt_c", "feature:ret_5", "const:0", "gt_c", "feature:ret_5", "const:1"],
                [-0.002, 0.002]),
    # fast vs slow mean of 1-bar returns
    "trend": (["pos_sign", "sub", "ts_mean", "feature:ret_1", "window:20", "ts_mean", "feature:ret_1",
               "window:240"], []),
    # taker order-flow imbalance
    "flow": (["long_short", "gt_c", "feature:taker_imb_20", "const:0", "lt_c", "feature:taker_imb_20", "const:1"],
             [0.1, -0.1]),
    # RSI extremes (Wilder RSI: infinite memory)
    "rsi": (["long_short", "lt_c", "feature:rsi_14", "const:0", "gt_c", "feature:rsi_14", "const:1"], [30.0, 70.0]),
    # 1h return above its 60-bar high as of 5 bars ago (ts_max includes the current bar, hence the lag)
    "breakout": (["long_only", "gt", "feature:ret_60", "lag", "ts_max", "feature:ret_60", "window:60", "window:5"],
                 []),
}


def builtin_genome(name: str) -> Genome:
    """The built-in genome ``name``; raises ConfigError for an unknown name."""
    if name not in BUILTIN:
        raise ConfigError(f"unknown builtin genome {name!r}; known: {', '.join(BUILTIN)}")
    tokens, consts = BUILTIN[name]
    return Genome.from_tokens(tokens, consts, meta={"builtin": name})


def resolve_genome(ref: str) -> Genome:
    """A slot's genome from ``builtin:NAME`` or a genome JSON path; raises ConfigError / GenomeError."""
    if ref.startswith("builtin:"):
        return builtin_genome(ref.split(":", 1)[1])
    return Genome.load(Path(ref))
