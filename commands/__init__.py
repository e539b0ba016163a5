"""CLI plumbing and every app's commands; ``cli.py`` registers them on the three Typer apps.

Plumbing: ``edge`` (the one exit-code table, ``@edge``, the consoles, packaged default configs), ``ui`` (the
terminal UI: progress line, tables, dashboard), ``preflight`` (checks run before a command starts work).

Commands, one module per group:

- ``evolve``: ``forge evolve``, ``forge config show`` and the hall-of-fame table.
- ``tools``: ``forge serve``, ``forge synthesize``, ``forge calibrate``, ``forge bench``.
- ``runs``: ``forge data inspect``, ``forge runs list|compare``, ``forge backtest`` (its body: ``backtest``).
- ``gauntlet``: ``gauntlet validate``, ``gauntlet show``.
- ``crucible``: ``crucible live``, ``crucible status``, ``crucible verify``.

This is the top layer below ``cli.py``: it may import every package; nothing imports it
(``tests/test_layers.py``).
"""
