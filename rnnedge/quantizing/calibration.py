"""Calibration data for `quantize --mode int8-static`: an .npz/.npy of inputs, a task name, or random inputs.

    reader = calibration_reader("cal.npz", model, meta, warns)     # an onnxruntime CalibrationDataReader
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from rnnedge.errors import BadInputError
from rnnedge.files import load_arrays
from rnnedge.quantizing.inputs import graph_inputs

log = logging.getLogger(__name__)

CALIBRATION_BATCH = 32  # rows per calibration batch
CALIBRATION_ROWS = 256  # at most this many rows of a task or file are used to calibrate


def calibration_reader(calibration, model, meta: dict, warns: list[str]):
    from onnxruntime.quantization import CalibrationDataReader

    inputs = graph_inputs(model)
    if calibration is None:
        batches = _default_batches(inputs, meta, model, warns)
    elif isinstance(calibration, str) and not calibration.endswith((".npz", ".npy")) and not Path(calibration).exists():
        if os.sep in calibration or "/" in calibration or Path(calibration).suffix:  # meant as a file
            raise BadInputError(f"{calibration}: no such calibration file (expected an .npz/.npy file or a task name)")
        batches = _task_batches(calibration, inputs)
    else:
        arrays = calibration if isinstance(calibration, Mapping) else load_arrays(calibration)
        batches = _array_batches(dict(arrays), inputs, str(calibration) if not isinstance(calibration, Mapping) else "calibration")

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(batches)

        def get_next(self):
            return next(self._it, None)

    return Reader()


def check_user_arrays(arrays: dict, where: str) -> None:
    """The user's own arrays (calibration, --eval inputs), one BadInputError line for what onnxruntime would choke on or
    silently take: a non-numeric dtype, an empty axis, NaN/Inf, lengths that are not integers in 1..seq."""
    first = next((np.shape(a) for n, a in arrays.items() if n != "lengths" and np.ndim(a) >= 2), None)
    rows = np.size(arrays["lengths"]) if "lengths" in arrays else None  # time-major (T, B, F) where B == len(lengths) != T
    seq = None if first is None else first[0] if rows is not None and first[0] != rows and first[1] == rows else first[1]
    for name, arr in arrays.items():
        arr = np.asarray(arr)
        if arr.dtype.kind not in "fiub":
            raise BadInputError(f"{where}: '{name}' is {arr.dtype}; expected numbers (float or integer)")
        if arr.ndim and 0 in arr.shape:
            raise BadInputError(f"{where}: '{name}' has an empty axis, shape {list(arr.shape)}")
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise BadInputError(f"{where}: '{name}' holds NaN or Inf")
    if "lengths" in arrays:
        lengths = np.asarray(arrays["lengths"])
        if lengths.dtype.kind not in "iu":
            raise BadInputError(f"{where}: 'lengths' is {lengths.dtype}; expected integers")
        if (lengths < 1).any() or (seq is not None and (lengths > seq).any()):
            raise BadInputError(f"{where}: 'lengths' must be in 1..{seq if seq is not None else 'seq'}, got {lengths.min()}..{lengths.max()}")


def _array_batches(arrays: dict, inputs: dict, where: str) -> list[dict]:
    import onnx

    unknown = sorted(set(arrays) - set(inputs))
    missing = sorted(set(inputs) - set(arrays) - {"lengths"})
    if unknown or missing:
        raise BadInputError(f"{where}: calibration arrays {sorted(arrays)} do not match the model inputs {sorted(inputs)}")
    check_user_arrays(arrays, where)
    from rnnedge.quantizing.roles import batch_axis

    ax = {name: batch_axis(inputs[name][1]) for name in inputs}  # 1 in a time-major ("seq", "batch", F) file
    rows = None
    for name, arr in arrays.items():
        elem, shape = inputs[name]
        want = onnx.helper.tensor_dtype_to_np_dtype(elem)
        arr = np.asarray(arr)
        if arr.ndim != len(shape) or any(isinstance(s, int) and s != a for s, a in zip(shape, arr.shape)):
            raise BadInputError(f"{where}: '{name}' has shape {list(arr.shape)}, the model takes {[s if isinstance(s, int) else '?' for s in shape]}")
        if arr.dtype.kind != np.dtype(want).kind:
            raise BadInputError(f"{where}: '{name}' is {arr.dtype}, the model takes {np.dtype(want)}")
        if rows is not None and arr.shape[ax[name]] != rows:
            raise BadInputError(f"{where}: arrays have different numbers of rows ({rows} and {arr.shape[ax[name]]})")
        rows = arr.shape[ax[name]]
        arrays[name] = arr.astype(want)
    if not rows:
        raise BadInputError(f"{where}: calibration arrays are empty")
    if "lengths" in inputs and "lengths" not in arrays:  # full lengths
        name, first = next((k, a) for k, a in arrays.items() if a.ndim >= 2)
        arrays["lengths"] = np.full(rows, first.shape[1 - min(ax[name], 1)], np.int64)
    rows = min(rows, CALIBRATION_ROWS)
    return [{k: np.take(v, np.arange(s, min(s + CALIBRATION_BATCH, rows)), axis=ax[k]) for k, v in arrays.items()}
            for s in range(0, rows, CALIBRATION_BATCH)]


def _task_batches(name: str, inputs: dict) -> list[dict]:
    from rnnedge.tasks import get_task

    data = get_task(name).split("val")
    arrays = {}
    for feed in inputs:
        if feed == "lengths":
            if data.lengths is not None:
                arrays[feed] = data.lengths
        else:
            arrays[feed] = data.inputs
    return _array_batches(arrays, inputs, f"task {name}")


def _default_batches(inputs: dict, meta: dict, model, warns: list[str]) -> list[dict]:
    """No calibration data: the file's own task (a checkpoint export), else random inputs of its spec or of sizes that run."""
    task = meta.get("rnnedge.task")
    if task:
        try:
            batches = _task_batches(task, inputs)
            warns.append(f"no calibration data: calibrating on the file's own task ({task}, val split)")
            return batches
        except BadInputError as exc:  # a stream/mobile file the task's rows do not fit: random inputs
            log.info("task %s does not fit the file's inputs: %s", task, exc)
    warns.append("no calibration data: calibrating on random inputs, which gives poor int8-static accuracy "
                 "(pass --calibration FILE.npz or a task name)")
    return _random_batches(inputs, meta, model)


def _random_batches(inputs: dict, meta: dict, model) -> list[dict]:
    if "rnnedge.spec" in meta:
        from rnnedge.spec import IOSpec

        spec = IOSpec.from_json(meta["rnnedge.spec"])
        fixed = {t.name: t.shape for t in spec.inputs}
        seq = next((s for shape in fixed.values() for s in shape[1:2] if isinstance(s, int)), 16)
        return [spec.make_inputs({"batch": CALIBRATION_BATCH, "seq": seq}, seed=k) for k in range(4)]
    from rnnedge.quantizing.inputs import find_inputs  # a foreign file: sizes inferred from its graph that run
    from rnnedge.runtime.providers import open_session

    session = open_session(model.SerializeToString(), providers="cpu", fallback=False)
    found = find_inputs(model, {}, {"batch": CALIBRATION_BATCH, "seq": 16}, run=lambda feeds: session.run(None, feeds))
    if found.timing is None:
        raise BadInputError(f"int8-static needs calibration data for this model ({found.why}): pass --calibration FILE.npz")
    return found.judged
