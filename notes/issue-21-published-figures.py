"""Figures of the published-style red team (issues 21 / 19): every case of tests/published_modules.py exported with
default options (`rnnedge.export(module, example, path, dynamic_axes=...)`), then checked independently: a plain
onnxruntime CPU session against torch at the case's unseen (batch, seq) probes (seq 1 where torch runs, >= 300,
both sides of its branches); the streamable ones also exported with target="stream" and fed to StreamingSession at
chunks 1, 7 and 50 over 211 frames against torch on the whole sequence. One JSON line per case and stream.

    python notes/issue-21-published-figures.py [NAME ...]      (each case in a subprocess of its own: ~5 min in all)
"""

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def one(name: str, stream: bool) -> dict:
    import numpy as np
    import torch

    import rnnedge
    from tests import published_modules as pm
    from tests.test_published_style import independent_error, streamed_error, torch_runs

    case = pm.CASES[name]
    module = case.factory()
    path = Path(tempfile.mkdtemp()) / f"{name}.onnx"
    rec = {"name": name, "domain": case.domain, "target": "stream" if stream else "dynamic"}
    start = time.perf_counter()
    try:
        if stream:
            result = rnnedge.export(module, pm.inputs(name, 1, 24), path, target="stream")
        else:
            result = rnnedge.export(module, pm.inputs(name, *case.example), path, dynamic_axes=case.dynamic_axes,
                                    **case.export_options)
    except rnnedge.errors.RnnEdgeError as exc:
        return {**rec, "result": "refused", "why": str(exc)[:300], "seconds": round(time.perf_counter() - start, 1)}
    rec.update(result="exports", strategy=result.strategy, seconds=round(time.perf_counter() - start, 1),
               weights=sum(p.numel() for p in module.parameters()), bytes=result.size_bytes,
               ranges=dict(result.spec.ranges), pieces=result.spec.pieces or [])
    if stream:
        x = pm.inputs(name, 1, 211, seed=5)[0]
        rec["max_error"] = {chunk: streamed_error(module, path, x, chunk) for chunk in (1, 7, 50)}
        rec["states"] = [s["input"] for s in result.spec.states]
        return rec
    errors = {}
    for batch, seq in case.probes:
        args = pm.inputs(name, batch, seq, seed=7)
        errors[f"{batch}x{seq}"] = independent_error(module, path, args) if torch_runs(module, args) else "torch fails"
    rec["max_error"] = errors
    del np, torch
    return rec


def main(names):
    from tests import published_modules as pm

    for name in names or list(pm.CASES):
        for stream in (False, True) if pm.CASES[name].stream else (False,):
            out = subprocess.run([sys.executable, __file__, "--one", name, str(int(stream))], capture_output=True, text=True,
                                 cwd=ROOT, timeout=600)
            print(out.stdout.strip().splitlines()[-1] if out.stdout.strip() else json.dumps({"name": name, "crash": out.stderr[-500:]}),
                  flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one"]:
        print(json.dumps(one(sys.argv[2], sys.argv[3] == "1"), default=str))
    else:
        main(sys.argv[1:])
