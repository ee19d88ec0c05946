"""The one-way layers of pyproject.toml's import-linter contracts: ui draws, engine computes, app wires (and only
its Qt adapters import Qt). Run on the source tree, as a process, so a broken contract fails the suite."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = "from importlinter.cli import lint_imports_command; lint_imports_command()"  # the `lint-imports` command


def test_import_contracts_are_kept():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-c", LINT_IMPORTS, "--no-cache", "--config", "pyproject.toml"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "Contracts: 4 kept, 0 broken." in run.stdout
