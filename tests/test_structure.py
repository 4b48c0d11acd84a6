"""Layering holds: the lowerings, `import rnnedge` and rnnedge.runtime work with torch absent."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run_without_torch(code: str) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter where `import torch` fails (sys.modules['torch'] = None)."""
    prelude = "import sys; sys.modules['torch'] = None\n"
    return subprocess.run([sys.executable, "-c", prelude + code], cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("modules", [
    "exporters.native, exporters.scan, exporters.unrolled, exporters.cells, exporters.graph, exporters.names",
    "rnnedge, rnnedge.runtime, rnnedge.runtime.sessions, rnnedge.spec, rnnedge.errors",
])
def test_imports_without_torch(modules):
    done = _run_without_torch(f"import {modules}\nprint('imported')")
    assert done.returncode == 0 and "imported" in done.stdout, done.stderr[-2000:]


def test_torch_is_really_blocked_in_the_probe():
    """The probe itself can fail: importing the torch side must raise there."""
    done = _run_without_torch("import exporters.ops")
    assert done.returncode != 0 and "torch" in done.stderr
