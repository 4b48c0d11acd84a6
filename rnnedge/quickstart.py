"""The main job in one call: train -> export -> verify -> quantize (int8) -> bench, all into one folder.

    result = quickstart("digits", cell="gru", out_dir="runs/quickstart")
    result["parity"]["ok"], result["accuracy"], result["latency"]["ratios"]

Files written into `out_dir`: model.safetensors (checkpoint), model.onnx (fp32, dynamic axes),
model-int8.onnx (int8 dynamic), parity.json (the full verify report) and summary.json (what
`quickstart` returns). Each is written atomically by the step that makes it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rnnedge.errors import BadInputError

log = logging.getLogger(__name__)

DEFAULT_TASK = "digits"  # a GRU on digits trains, exports and benches in about a minute on 2 cores
DEFAULT_CELL = "gru"
# quickstart's epochs where fewer than the task's default suffice: digits' GRU peaked on val at
# epoch 12 of 30 (97.4% test), so 15 keeps the whole job under 3 minutes on 2 cores
QUICK_EPOCHS = {"digits": 15}


def quickstart(task: str = DEFAULT_TASK, *, cell: str = DEFAULT_CELL, out_dir="runs/quickstart", epochs: int | None = None,
               hidden: int | None = None, seed: int = 0, threads: int = 1, repeats: int = 50, progress: Any = False,
               on_stage: Callable[[str], None] | None = None) -> dict:
    """Run the whole job and return the summary (also saved as summary.json). Never raises on a parity failure:
    check `summary["parity"]["ok"]`."""
    from rnnedge.bench.latency import TASK_SEQ, bench_many
    from rnnedge.checkpoint import save_checkpoint
    from rnnedge.exporting.api import export_checkpoint
    from rnnedge.files import write_bytes_atomic
    from rnnedge.parity import verify
    from rnnedge.quantizing.api import compare_models, quantize
    from rnnedge.tasks import get_task
    from rnnedge.training.loop import train

    stage = on_stage or (lambda name: log.info("quickstart: %s", name))
    folder = Path(out_dir)
    if folder.exists() and not folder.is_dir():
        raise BadInputError(f"{folder}: exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    t = get_task(task)
    ckpt, fp32, int8 = folder / "model.safetensors", folder / "model.onnx", folder / "model-int8.onnx"
    seconds: dict[str, float] = {}

    def timed(name: str, fn):
        stage(name)
        start = time.perf_counter()
        value = fn()
        seconds[name] = round(time.perf_counter() - start, 2)
        return value

    config = t.default_config(cell, hidden=hidden)
    epochs = epochs or QUICK_EPOCHS.get(t.name)
    trained = timed("train", lambda: train(config, t, epochs=epochs, seed=seed, device="cpu", progress=progress))
    save_checkpoint(ckpt, trained.model, task=t.name, labels=t.labels, metrics=trained.metrics)
    exported = timed("export", lambda: export_checkpoint(ckpt, fp32))
    report = timed("verify", lambda: verify(ckpt, fp32))
    write_bytes_atomic(folder / "parity.json", json.dumps(report.to_dict(), indent=1).encode())
    quant = timed("quantize", lambda: quantize(fp32, int8, mode="int8"))
    cmp = timed("evaluate", lambda: compare_models(fp32, int8, task=t.name, threads=threads))
    latency = timed("bench", lambda: bench_many({"onnx fp32": fp32, "onnx int8": int8}, against=ckpt, threads=threads,
                                                seq=TASK_SEQ.get(t.name, 50), repeats=repeats))
    worst = report.worst()
    summary = {
        "task": t.name, "cell": cell, "metric": t.metric, "out_dir": str(folder),
        "files": {"checkpoint": str(ckpt), "onnx": str(fp32), "int8": str(int8),
                  "parity": str(folder / "parity.json"), "summary": str(folder / "summary.json")},
        "accuracy": {"torch": trained.metrics[t.metric], "onnx fp32": cmp["float_metrics"][t.metric],
                     "onnx int8": cmp["quant_metrics"][t.metric]},
        "bytes": {"checkpoint": ckpt.stat().st_size, "onnx fp32": exported.size_bytes, "onnx int8": quant.output_bytes},
        "lowering": exported.lowering,
        "parity": {"ok": bool(report), "cases": len(report.cases), "failed": len(report.failures),
                   "max_abs": worst.max_abs if worst else None, "atol": report.atol, "summary": report.summary()},
        "int8_max_abs_diff": cmp["max_abs_diff"],
        "latency": latency,
        "seconds": seconds,
    }
    summary["seconds"]["total"] = round(sum(seconds.values()), 2)
    write_bytes_atomic(folder / "summary.json", json.dumps(summary, indent=1).encode())
    return summary
