"""Gauntlet: causal and statistical validation of evolved strategies."""
