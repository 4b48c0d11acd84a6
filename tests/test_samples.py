"""Every sample answers `python samples/X.py --help` with its usage, runs nothing, and needs nothing from outside
the repository (no path above it, no shared tools)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = sorted(p for p in (ROOT / "samples").rglob("*.py") if "node_modules" not in p.parts)


def test_every_sample_answers_help_without_running(tmp_path):
    """All at once (each imports torch or onnxruntime before argparse answers): exit 0, a usage line, no output files."""
    assert len(SAMPLES) >= 8
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    running = {p: subprocess.Popen([sys.executable, str(p), "--help"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True) for p in SAMPLES}
    failed = []
    for path, proc in running.items():
        out, err = proc.communicate(timeout=600)
        if proc.returncode != 0 or not out.startswith("usage:"):
            failed.append(f"{path.relative_to(ROOT)}: exit {proc.returncode}, {(out + err).strip()[-300:]!r}")
    assert not failed, "\n".join(failed)
    assert list(tmp_path.iterdir()) == []  # --help wrote nothing: it ran nothing


def test_samples_need_nothing_outside_the_repository():
    """No sample reads the shared measuring tools or a path above the repository (they ran on files made elsewhere)."""
    outside = re.compile(r"shared/tools|\.\./|edge_peers")
    hits = [f"{p.relative_to(ROOT)}:{n}" for p in SAMPLES for n, line in enumerate(p.read_text().splitlines(), 1)
            if outside.search(line)]
    assert not hits, hits
