"""Forge: genetic programming of trading strategies on 1-minute crypto bars."""

__version__ = "0.1.0"
