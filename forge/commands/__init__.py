"""The ``forge`` app's commands, one module per group; ``cli.py`` registers them on ``cli:forge_app``.

- ``evolve``: ``forge evolve``, ``forge config show`` and the hall-of-fame table.
- ``tools``: ``forge serve``, ``forge synthesize``, ``forge calibrate``, ``forge bench``.
- ``runs``: ``forge data inspect``, ``forge runs list|compare``, ``forge backtest``.
"""
