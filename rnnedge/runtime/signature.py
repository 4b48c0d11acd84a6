"""What a loaded model takes and returns: each tensor's name, dtype and shape, and the role of each input.

Roles come from the model's declared spec (``rnnedge.spec`` metadata, read through ``rnnedge.spec``)
where the file has one; otherwise from the input/output names alone (``x``/``tokens``, ``lengths``,
``h0``/``c0``), so third-party models work too. numpy only.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from rnnedge.errors import BadInputError

__all__ = ["TensorInfo", "Roles", "StatePair", "tensor_info", "find_roles", "json_metadata", "state_pairs", "STATE_OUT"]

log = logging.getLogger(__name__)

STATE_OUT = {"h0": "hn", "c0": "cn"}  # state input -> the output that carries it to the next call
_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64,
               "tensor(float16)": np.float16, "tensor(int64)": np.int64,
               "tensor(int32)": np.int32, "tensor(int8)": np.int8, "tensor(uint8)": np.uint8,
               "tensor(bool)": np.bool_}


@dataclass(frozen=True)
class TensorInfo:
    """One model input or output as onnxruntime reports it: name, numpy dtype (or onnxruntime's
    type string where numpy has none), shape (ints, symbolic names, or None).

    Not to be confused with ``rnnedge.spec.IOSpec``, the declared spec of a whole model."""

    name: str
    dtype: Any
    shape: tuple


@dataclass(frozen=True)
class StatePair:
    """A state a stream carries: fed as ``input``, returned as ``output`` for the next call (the spec's state pairs)."""

    input: str
    output: str
    batch_axis: int = 1  # where the streams are stacked
    init: float | list = 0.0  # every element's value at a stream's start, or the start without its batch axis


@dataclass(frozen=True)
class Roles:
    """Which input carries the data, which outputs matter, and how state flows."""

    main: TensorInfo  # the data input: features or token ids
    output_name: str  # the main output: logits, y, or a third-party name
    state_names: tuple  # state inputs with a known output ("h0", "c0"), in that order
    pairs: tuple = ()  # StatePair per state input, in the same order
    lengths_name: str | None = None  # the input of role lengths (the spec's, e.g. a module's `lens`, else "lengths")


def tensor_info(arg) -> TensorInfo:
    """onnxruntime's NodeArg -> TensorInfo."""
    shape = tuple(d if isinstance(d, (int, str)) or d is None else str(d) for d in (arg.shape or ()))
    known = _ORT_DTYPES.get(arg.type)
    return TensorInfo(arg.name, np.dtype(known) if known else arg.type, shape)


def json_metadata(metadata: dict, key: str, kind: type, where: str = ""):
    """A JSON metadata value of type ``kind``, or None (missing or malformed: logged, not raised)."""
    raw = metadata.get(key)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:  # malformed JSON: treat like a missing key, but say so
        value = None
    if not isinstance(value, kind):
        log.warning("ignoring malformed metadata %s in %s", key, where)
        return None
    return value


def _declared(metadata: dict, where: str):
    """The file's declared spec (rnnedge.spec), or None (absent or malformed: logged)."""
    raw = metadata.get("rnnedge.spec")
    if not raw:
        return None
    from rnnedge.spec import IOSpec  # numpy only

    try:
        return IOSpec.from_json(raw)
    except (ValueError, TypeError, KeyError, AttributeError):
        log.warning("ignoring malformed metadata rnnedge.spec in %s", where)
        return None


def _init(value):
    """A declared start: a number, or nested lists (the state without its batch axis; a tuple keeps StatePair hashable)."""
    return tuple(_init(v) for v in value) if isinstance(value, (list, tuple)) else float(value)


def state_pairs(spec, names: list[str], outs: list[str]) -> tuple:
    """The state pairs a stream carries: the spec's (any names, any rank), else h0 -> hn, c0 -> cn by name."""
    declared = getattr(spec, "states", None) or []
    if declared:
        return tuple(StatePair(s["input"], s["output"], int(s.get("batch_axis", 1)), _init(s.get("init", 0.0)))
                     for s in declared if s["input"] in names and s["output"] in outs)
    return tuple(StatePair(i, o) for i, o in STATE_OUT.items() if i in names)


def find_roles(inputs: tuple, outputs: tuple, metadata: dict, where: str = "") -> Roles:
    """The data input (declared spec first, then the names ``x``/``tokens``, then the first other
    input), the main output (``logits``, ``y``, else the first non-state output) and the state inputs."""
    names = [s.name for s in inputs]
    if not outputs:
        raise BadInputError(f"{where}: the model has no outputs")
    spec = _declared(metadata, where)
    declared = next((t.name for t in spec.inputs if t.role in ("features", "tokens") and t.name in names), None) if spec else None
    outs = [s.name for s in outputs]
    pairs = state_pairs(spec, names, outs)
    carried_in, carried_out = {p.input for p in pairs}, {p.output for p in pairs}
    lengths = next((t.name for t in spec.inputs if t.role == "lengths" and t.name in names), None) if spec else None
    lengths = lengths or ("lengths" if "lengths" in names else None)
    others = [s for s in inputs if s.name not in ("lengths", lengths, *STATE_OUT, *carried_in)]
    main = [s for s in inputs if s.name == declared] or [s for s in others if s.name in ("x", "tokens")] or others
    if not main:
        raise BadInputError(f"{where}: no data input found among inputs {names}")
    output_name = next((n for n in ("logits", "y") if n in outs),
                       next((n for n in outs if n not in (*STATE_OUT.values(), *carried_out)), outs[0]))
    return Roles(main[0], output_name, tuple(p.input for p in pairs), pairs, lengths)
