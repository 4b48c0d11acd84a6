"""Layering holds: the lowerings, `import rnnedge` and rnnedge.runtime work with torch absent; no import cycles;
stages never import a model family; the top level stays small and modules readable."""
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
    "rnnedge, rnnedge.runtime, rnnedge.runtime.providers, rnnedge.spec, rnnedge.errors",
])
def test_imports_without_torch(modules):
    done = _run_without_torch(f"import {modules}\nprint('imported')")
    assert done.returncode == 0 and "imported" in done.stdout, done.stderr[-2000:]


def test_torch_is_really_blocked_in_the_probe():
    """The probe itself can fail: importing the torch side must raise there."""
    done = _run_without_torch("import exporters.ops")
    assert done.returncode != 0 and "torch" in done.stderr


@pytest.mark.parametrize("function, package", [("export", "exporting"), ("quantize", "quantizing"), ("train", "training"),
                                               ("verify", "parity")])
def test_public_function_and_its_stage_package_do_not_shadow_each_other(function, package):
    """`import rnnedge.<package>` in any order leaves `rnnedge.<function>` the function and the package a module."""
    done = subprocess.run([sys.executable, "-c", f"import rnnedge.{package}, rnnedge, types\n"
                           f"print(isinstance(rnnedge.{function}, types.FunctionType), isinstance(rnnedge.{package}, types.ModuleType))\n"
                           f"import rnnedge.{package}\nprint(isinstance(rnnedge.{function}, types.FunctionType))"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["True", "True", "True"]


def test_dir_lists_public_names_only():
    import rnnedge

    names = dir(rnnedge)
    assert {"export", "quantize", "verify", "train", "Seq2SeqModel", "Seq2SeqConfig", "runtime", "exporting"} <= set(names)
    assert not [n for n in names if n.startswith("_") and n != "__version__"]


def test_no_import_cycles_among_the_projects_modules():
    from import_graph import cycles, import_graph

    assert cycles(import_graph()) == []


def test_stages_never_import_a_family():
    """Stages ask rnnedge.families.registry; only the CLI and the families themselves import a family's modules."""
    from import_graph import import_graph

    graph = import_graph()
    bad = {m: sorted(d for d in deps if d.startswith(("rnnedge.families.sequence", "rnnedge.families.seq2seq")))
           for m, deps in graph.items() if not m.startswith(("rnnedge.families", "rnnedge.cli"))}
    assert not {m: d for m, d in bad.items() if d}


def test_the_house_stays_flat_at_the_top_and_modules_stay_readable():
    top = [p.name for p in (ROOT / "rnnedge").glob("*.py")]
    assert len(top) <= 12, sorted(top)
    long = {str(p.relative_to(ROOT)): n for p in [*(ROOT / "rnnedge").rglob("*.py"), *(ROOT / "exporters").rglob("*.py")]
            if (n := len(p.read_text().splitlines())) > 420}
    assert not long


def test_import_rnnedge_stays_light():
    """Neither torch nor onnx is imported by `import rnnedge` (export and quantize load on first use)."""
    done = _run_without_torch("import rnnedge\nprint(sorted(m for m in ('onnx', 'onnxruntime') if m in sys.modules))")
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr[-2000:]


def test_no_module_imports_another_modules_private_names():
    """A name another module needs is public: `from rnnedge.x import _helper` is a hidden interface."""
    import ast

    from import_graph import module_files

    found = []
    for mod, path in module_files().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(("rnnedge", "exporters")):
                found += [f"{mod}: {node.module}.{a.name}" for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
    assert not found
