"""Command-line edge: three Typer apps (``forge``, ``gauntlet``, ``crucible``).

Thin by design: parse, load config, call one library function, render with rich.  This module only
assembles the apps; each app's commands live in the ``commands`` package (``commands/evolve.py``,
``commands/gauntlet.py``, ``commands/crucible.py``).  Library errors (``ForgeError`` subclasses) become
a one-line message and the class's exit code in ``commands/edge.py`` (the one exit-code table and the
``@edge`` handler), and nowhere else.
"""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from commands.crucible import crucible_live, crucible_record, crucible_status, crucible_verify
from commands.data import data_download
from commands.edge import (  # noqa: F401  (re-exported: the exit-code table and the edge, one place)
    EXIT_DATA,
    EXIT_ERROR,
    EXIT_GENOME,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_RUNDIR,
    EXIT_USAGE,
    console,
    default_config,
    edge,
    err_console,
    exit_code_of,
)
from commands.evolve import (  # noqa: F401  (evolve_summary, hall_table, interrupted_message: public helpers)
    config_show,
    evolve,
    evolve_summary,
    hall_table,
    interrupted_message,
    resolve_run_config,
)
from commands.execution import execution_eval, execution_train
from commands.runs import backtest_cmd, data_inspect, runs_compare, runs_list
from commands.tools import bench, calibrate, serve, synthesize, warmup_cmd
from commands.gauntlet import gauntlet_show, gauntlet_validate

forge_app = typer.Typer(
    help="Forge: evolve trading strategies by typed genetic programming on 1-minute crypto bars.",
    no_args_is_help=True,
    add_completion=False,
)
data_app = typer.Typer(help="Download Binance kline data from the public archive; inspect coverage, gaps, duplicates.",
                       no_args_is_help=True)
forge_app.add_typer(data_app, name="data")
gauntlet_app = typer.Typer(
    help="Gauntlet: validate evolved strategies on data evolution never touched.",
    no_args_is_help=True,
    add_completion=False,
)
crucible_app = typer.Typer(
    help="Crucible: run validated champions live (testnet or replay).",
    no_args_is_help=True,
    add_completion=False,
)


config_app = typer.Typer(help="Show the resolved configuration of forge evolve.", no_args_is_help=True)
forge_app.add_typer(config_app, name="config")
runs_app = typer.Typer(help="List and compare forge evolve run directories.", no_args_is_help=True)
forge_app.add_typer(runs_app, name="runs")
execution_app = typer.Typer(help="Train and evaluate the execution policy (LOB simulator, kline fill model).",
                            no_args_is_help=True)
forge_app.add_typer(execution_app, name="execution")


def _version_option(app: str) -> Any:
    def show(value: bool) -> None:
        if value:
            console.print(f"{app} {package_version()}", highlight=False)
            raise typer.Exit(EXIT_OK)

    return typer.Option("--version", help="Print the version and exit.", callback=show, is_eager=True)


def package_version() -> str:
    """The installed distribution's version (``forge-gauntlet-crucible``), else forge.__version__."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("forge-gauntlet-crucible")
    except PackageNotFoundError:  # pragma: no cover - running from a checkout without install
        import forge

        return str(getattr(forge, "__version__", "unknown"))


@forge_app.callback()
def _forge_main(version: Annotated[Optional[bool], _version_option("forge")] = None) -> None:
    """Forge: evolve trading strategies by typed genetic programming on 1-minute crypto bars."""


@gauntlet_app.callback()
def _gauntlet_main(version: Annotated[Optional[bool], _version_option("gauntlet")] = None) -> None:
    """Gauntlet: validate evolved strategies on data evolution never touched."""


@crucible_app.callback()
def _crucible_main(version: Annotated[Optional[bool], _version_option("crucible")] = None) -> None:
    """Crucible: run validated champions live (testnet or replay)."""


# --------------------------------------------------------------------------- the commands, in help order

forge_app.command()(evolve)
config_app.command("show")(config_show)
data_app.command("inspect")(data_inspect)
data_app.command("download")(data_download)
forge_app.command()(serve)
forge_app.command()(synthesize)
forge_app.command()(calibrate)
forge_app.command()(bench)
forge_app.command("warmup")(warmup_cmd)
runs_app.command("list")(runs_list)
runs_app.command("compare")(runs_compare)
forge_app.command("backtest")(backtest_cmd)
execution_app.command("train")(execution_train)
execution_app.command("eval")(execution_eval)

gauntlet_app.command("validate")(gauntlet_validate)
gauntlet_app.command("show")(gauntlet_show)

crucible_app.command("live")(crucible_live)
crucible_app.command("status")(crucible_status)
crucible_app.command("verify")(crucible_verify)
crucible_app.command("record")(crucible_record)


if __name__ == "__main__":  # pragma: no cover
    forge_app()
