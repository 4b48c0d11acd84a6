"""`rnnedge evaluate` for seq2seq models: exact match and character accuracy of generated strings on a split.

    evaluate_path("d.safetensors")      # the checkpoint (torch generate)
    evaluate_path("dates/")             # the exported folder (rnnedge.runtime.Seq2SeqSession, no torch)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rnnedge.errors import BadInputError


def generator_for(path: str | os.PathLike, beam: int = 1):
    """(generate(strings) -> strings, task name from metadata) for a folder or a seq2seq checkpoint."""
    path = Path(path)
    if path.is_dir():
        from rnnedge.runtime.seq2seq import Seq2SeqSession

        session = Seq2SeqSession(path)
        task = session.encoder.get_modelmeta().custom_metadata_map.get("rnnedge.task")
        return (lambda strings: session.generate(strings, beam=beam)), task
    from rnnedge.checkpoint import load_checkpoint

    model = load_checkpoint(path)
    return (lambda strings: model.generate(strings, beam=beam)), (model.rnnedge_meta or {}).get("task")


def evaluate_path(model: str | os.PathLike, task_name: str | None = None, split: str = "test", batch_size: int = 256,
                  beam: int = 1) -> dict[str, Any]:
    """{model, task, split, metric, metrics} like rnnedge.evaluate.evaluate_file, for seq2seq models."""
    from rnnedge.tasks import get_task

    generate, stored = generator_for(model, beam=beam)
    task = get_task(task_name or stored or "dates")
    if not getattr(task, "seq2seq", False):
        raise BadInputError(f"{model}: a sequence-to-sequence model, but task {task.name} is not a sequence-to-sequence task")
    metrics = task.evaluate(generate, split=split, batch_size=batch_size)
    return {"model": str(model), "task": task.name, "split": split, "metric": task.metric, "beam": beam, "metrics": metrics}


def compare_folders(float_dir: str | os.PathLike, quant_dir: str | os.PathLike, task_name: str = "dates", split: str = "test",
                    threads: int = 1, batch: int = 64) -> dict[str, Any]:
    """`rnnedge quantize DIR -o DIR8 --eval dates`: exact match of both folders and ms per decoded string (greedy, one thread)."""
    import time

    from rnnedge.runtime.seq2seq import Seq2SeqSession
    from rnnedge.tasks import get_task

    task = get_task(task_name)
    if not getattr(task, "seq2seq", False):
        raise BadInputError(f"--eval {task_name}: a seq2seq folder is scored on a seq2seq task (dates)")
    sessions = [Seq2SeqSession(d, threads=threads) for d in (float_dir, quant_dir)]
    metrics = [task.evaluate(s.generate, split=split, batch_size=batch) for s in sessions]
    strings = [src for src, _ in task.pairs[split][: 4 * batch]]
    ms = [[], []]
    for _ in range(3):  # interleaved repeats, median
        for i, s in enumerate(sessions):
            start = time.perf_counter()
            for j in range(0, len(strings), batch):
                s.generate(strings[j : j + batch])
            ms[i].append(1000 * (time.perf_counter() - start) / len(strings))
    float_ms, quant_ms = (sorted(m)[1] for m in ms)
    return {"task": task.name, "float_metrics": metrics[0], "quant_metrics": metrics[1], "float_ms": float_ms, "quant_ms": quant_ms,
            "latency_ratio": quant_ms / float_ms, "latency": f"ms per decoded string, greedy, batch {batch}, {threads} thread(s)"}
