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


@pytest.mark.parametrize("name", ["export", "quantize"])
def test_public_function_survives_importing_its_submodule(name):
    """`import rnnedge.export; import rnnedge` leaves `rnnedge.export` the function, not the module."""
    done = subprocess.run([sys.executable, "-c", f"import rnnedge.{name}\nimport rnnedge, types\n"
                           f"f = rnnedge.{name}\nprint(callable(f), isinstance(f, types.FunctionType))\n"
                           f"from rnnedge.{name} import {name} as real\nprint(real.__module__)"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["True", "True", f"rnnedge.{name}"]


def test_import_rnnedge_stays_light():
    """Neither torch nor onnx is imported by `import rnnedge` (export and quantize load on first use)."""
    done = _run_without_torch("import rnnedge\nprint(sorted(m for m in ('onnx', 'onnxruntime') if m in sys.modules))")
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr[-2000:]
