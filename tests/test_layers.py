"""The import layers of docs/architecture.md, kept by import-linter contracts (``[tool.importlinter]`` in
pyproject.toml): commands > loop (compositions) > gauntlet | crucible (applications) > forge (the research
kernel, plus the Forge's own evolution and synthesis, which the other applications may not import)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("forge", "gauntlet", "crucible", "loop", "commands")


def _lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if exe is None:
        pytest.fail("lint-imports (import-linter, a [test] dependency) is not installed")
    return subprocess.run([exe, "--no-cache"], cwd=cwd, capture_output=True, text=True,
                          env={"PYTHONPATH": str(cwd), "PATH": str(Path(sys.executable).parent)})


def test_the_import_contracts_hold():
    r = _lint(REPO)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "3 kept, 0 broken" in r.stdout


def test_the_contracts_fail_when_the_kernel_imports_an_application(tmp_path):
    """The same contracts on a copy of the tree whose kernel imports the Gauntlet: the check must break."""
    for name in (*PACKAGES, "pyproject.toml"):
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "*.parquet"))
        else:
            shutil.copy(src, tmp_path / name)
    bad = tmp_path / "forge" / "strategy.py"
    bad.write_text(bad.read_text() + "\nfrom gauntlet.stats import sharpe_per_bar  # noqa: E402,F401\n")
    r = _lint(tmp_path)
    assert r.returncode != 0
    assert "the research kernel imports no application BROKEN" in r.stdout


def test_nothing_imports_the_cli_module():
    """``cli.py`` is a module (import-linter layers take packages): no package module may import it."""
    offenders = []
    for pkg in PACKAGES:
        for path in (REPO / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
                if any(n == "cli" or n.startswith("cli.") for n in names):
                    offenders.append(str(path.relative_to(REPO)))
    assert offenders == []
