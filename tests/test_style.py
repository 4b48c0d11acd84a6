"""The code stays lint-clean: ruff (configured in pyproject.toml) over every package, tests and samples."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_is_clean():
    if shutil.which("ruff") is None and subprocess.run([sys.executable, "-m", "ruff", "--version"], capture_output=True).returncode:
        pytest.fail("ruff is not installed: it is part of the dev extras (pip install -e '.[dev]')")
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "rnnedge", "exporters", "tests", "samples"], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
