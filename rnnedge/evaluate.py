"""`rnnedge evaluate` as a library call: score a checkpoint or an .onnx/.ort file on a built-in task's split."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from rnnedge.errors import BadInputError

ONNX_SUFFIXES = (".onnx", ".ort")


def is_onnx_path(path: str | Path) -> bool:
    """An ONNX or ORT model file (by its suffix), as opposed to a checkpoint."""
    return Path(path).suffix.lower() in ONNX_SUFFIXES


def load_predictor(path: Path) -> Callable:
    """`predict(inputs, lengths) -> outputs` for a model file: an ONNX/ORT file or an rnnedge checkpoint."""
    if is_onnx_path(path):
        from rnnedge.runtime import Session

        session = Session(str(path))
        return lambda inputs, lengths: session.run(inputs, lengths)
    from rnnedge.checkpoint import load_checkpoint
    from rnnedge.training.loop import torch_predictor

    return torch_predictor(load_checkpoint(path))


def model_task(path: Path) -> str | None:
    """The task name a model file was trained on, from its metadata (None when unknown)."""
    if not is_onnx_path(path):
        from rnnedge.checkpoint import read_checkpoint

        return read_checkpoint(path)[2]["task"]
    from rnnedge.files import load_onnx, refuse_pickle

    if path.suffix.lower() == ".ort":  # a flatbuffer: only onnxruntime reads it
        from rnnedge.runtime.providers import open_session

        refuse_pickle(path)
        meta = dict(open_session(path, providers="cpu", fallback=False).get_modelmeta().custom_metadata_map)
    else:  # a missing, corrupt or unsafe file gets its one-line error here
        meta = {p.key: p.value for p in load_onnx(path, load_weights=False).metadata_props}
    return meta.get("rnnedge.task") or None


def evaluate_file(model: str | Path, task_name: str | None = None, split: str = "test", batch_size: int = 256) -> dict[str, Any]:
    """Score `model` on `task_name` (default: the task in its metadata): {model, task, split, metric, metrics}."""
    from rnnedge.tasks import get_task

    model = Path(model)
    if not model.exists():
        raise BadInputError(f"{model}: no such file")
    family = _family_of(model)
    if family is not None and family.evaluate_path is not None:  # a seq2seq checkpoint or folder: exact match of strings
        return family.evaluate_path(model, task_name, split=split, batch_size=batch_size)
    task_name = task_name or model_task(model)
    if not task_name:
        raise BadInputError(f"{model}: no task in its metadata; pass --task")
    task = get_task(task_name)
    if not is_onnx_path(model):
        from rnnedge.checkpoint import read_checkpoint

        task.check_config(read_checkpoint(model)[0])
    metrics = task.evaluate(load_predictor(model), split=split, batch_size=batch_size)
    return {"model": str(model), "task": task.name, "split": split, "metric": task.metric, "metrics": metrics}


def _family_of(model: Path):
    """The family that evaluates `model` itself: the owner of an exported folder, or a checkpoint's config family."""
    from rnnedge.families.registry import family_for_config, family_for_path

    owner = family_for_path(model)
    if owner is not None or is_onnx_path(model) or not model.is_file():
        return owner
    from rnnedge.checkpoint import read_checkpoint

    return family_for_config(read_checkpoint(model)[0])
