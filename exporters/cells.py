"""One recurrent step as plain ONNX nodes, shared by the scan and unrolled lowerings.

A standard ONNX `RNN`/`GRU`/`LSTM` node (layout 0, constant weights) is read into a `Recurrence`:
per direction, the input projection `Wt` (I, G*H) and its folded bias, which the lowerings apply
to all steps at once (one big MatMul), and the recurrent part `Rt` (Hout, G*H) applied per step.
`step()` then writes one step with MatMul/Add/Mul/Sub/Sigmoid/Tanh/Relu/Split only, in the
ONNX gate order (LSTM i,o,f,c; GRU z,r,h), with a (B, 1) mask freezing rows past their length.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

from exporters.graph import GraphEditor, recurrent_io
from exporters.names import DOMAIN

GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
DEFAULT_ACTIVATIONS = {"RNN": ["Tanh"], "GRU": ["Sigmoid", "Tanh"], "LSTM": ["Sigmoid", "Tanh", "Tanh"]}


@dataclass
class Direction:
    Wt: np.ndarray  # (I, G*H)  input projection, hoisted out of the loop
    bias_x: np.ndarray  # (G*H,)  every bias that can be added before the loop
    Rt: np.ndarray  # (Hout, G*H)  recurrent weights, per step
    bias_h: np.ndarray | None  # (G*H,)  GRU only: the h-gate recurrent bias (inside r * (.))
    Pt: np.ndarray | None  # (H, Hout)  LSTM projection, or None


@dataclass
class Recurrence:
    op: str  # "RNN" | "GRU" | "LSTM"
    hidden: int
    out_size: int  # hidden, or the projection size
    activation: str  # RNN: "Tanh" | "Relu"
    reverse: list[bool]  # per direction: runs backwards in time
    directions: list[Direction]


def read_recurrence(node: onnx.NodeProto, ed: GraphEditor) -> Recurrence | str:
    """The node's weights and options, or a string saying why it cannot be lowered."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    op = node.op_type
    if op not in GATES or node.domain not in ("", "ai.onnx", DOMAIN):
        return f"{node.domain}.{op} is not a recurrent operator"
    if attrs.get("layout", 0) != 0:
        return "layout=1 is not supported"
    if attrs.get("clip") is not None or attrs.get("input_forget", 0):
        return "clip / input_forget are not supported"
    if op == "GRU" and not attrs.get("linear_before_reset", 0):
        return "GRU with linear_before_reset=0 is not supported"
    direction = attrs.get("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    dirs = 2 if direction == "bidirectional" else 1
    acts = [a.decode() if isinstance(a, bytes) else a for a in attrs.get("activations", [])]
    per_dir = len(DEFAULT_ACTIVATIONS[op])
    for d in range(dirs):
        mine = acts[d * per_dir : (d + 1) * per_dir] if acts else DEFAULT_ACTIVATIONS[op]
        if op != "RNN" and [a.lower() for a in mine] != [a.lower() for a in DEFAULT_ACTIVATIONS[op]]:
            return f"non-default activations {mine}"
        if op == "RNN" and mine[0].lower() not in ("tanh", "relu"):
            return f"RNN activation {mine[0]}"
    activation = (acts[0] if acts else "Tanh").capitalize() if op == "RNN" else "Tanh"
    io = recurrent_io(node)
    if io.peepholes:
        return "peephole weights are not supported"
    W, R = ed.array(io.w), ed.array(io.r)
    B = ed.array(io.b) if io.b else None
    P = ed.array(io.projection) if io.projection else None
    if W is None or R is None or (io.b and B is None) or (io.projection and P is None):
        return "weights are not constant initializers"
    gates, hidden = GATES[op], int(attrs["hidden_size"])
    out_size = P.shape[1] if P is not None else hidden
    result = []
    for d in range(dirs):
        wb, rb = (B[d][: gates * hidden], B[d][gates * hidden :]) if B is not None else (np.zeros(gates * hidden, np.float32),) * 2
        bias_h = None
        if op == "GRU":  # the h-gate's recurrent bias stays inside r * (h Rh + Rbh)
            bias_h = np.concatenate([np.zeros(2 * hidden, np.float32), rb[2 * hidden :]]).astype(np.float32)
            rb = np.concatenate([rb[: 2 * hidden], np.zeros(hidden, np.float32)])
        result.append(
            Direction(
                Wt=np.ascontiguousarray(W[d].T.astype(np.float32)),
                bias_x=(wb + rb).astype(np.float32),
                Rt=np.ascontiguousarray(R[d].T.astype(np.float32)),
                bias_h=bias_h,
                Pt=np.ascontiguousarray(P[d].T.astype(np.float32)) if P is not None else None,
            )
        )
    reverse = [True] if direction == "reverse" else [False, True][:dirs]
    return Recurrence(op, hidden, out_size, activation, reverse, result)


def step(emit, const, rec: Recurrence, d: Direction, xw: str, h: str, c: str | None, mask: str | None):
    """One time step. xw (B, G*H) already projected; h (B, Hout); c (B, H) for LSTM; mask (B, 1).

    `emit(op, inputs, n_outputs=1, **attrs) -> [names]` places a node; `const(hint, array) -> name`
    makes a constant. Returns (h_next, c_next or None, y) where y is zero for masked rows.
    """
    (hr,) = emit("MatMul", [h, const("Rt", d.Rt)])  # (B, G*H)
    if d.bias_h is not None:
        (hr,) = emit("Add", [hr, const("bias_h", d.bias_h)])
    c_new = None
    if rec.op == "RNN":
        (pre,) = emit("Add", [xw, hr])
        (h_new,) = emit(rec.activation, [pre])
    elif rec.op == "GRU":
        sizes = const("split3", np.full(3, rec.hidden, np.int64))
        xz, xr, xn = emit("Split", [xw, sizes], 3, axis=1)
        hz, hr_, hn = emit("Split", [hr, sizes], 3, axis=1)
        (z,) = emit("Sigmoid", [emit("Add", [xz, hz])[0]])
        (r,) = emit("Sigmoid", [emit("Add", [xr, hr_])[0]])
        (n,) = emit("Tanh", [emit("Add", [xn, emit("Mul", [r, hn])[0]])[0]])
        (h_new,) = emit("Add", [n, emit("Mul", [z, emit("Sub", [h, n])[0]])[0]])  # (1-z)*n + z*h
    else:
        (pre,) = emit("Add", [xw, hr])
        i, o, f, g = emit("Split", [pre, const("split4", np.full(4, rec.hidden, np.int64))], 4, axis=1)
        (i,), (o,), (f,), (g,) = emit("Sigmoid", [i]), emit("Sigmoid", [o]), emit("Sigmoid", [f]), emit("Tanh", [g])
        (c_new,) = emit("Add", [emit("Mul", [f, c])[0], emit("Mul", [i, g])[0]])
        (h_new,) = emit("Mul", [o, emit("Tanh", [c_new])[0]])
        if d.Pt is not None:
            (h_new,) = emit("MatMul", [h_new, const("Pt", d.Pt)])
    if mask is None:
        return h_new, c_new, h_new
    keep = lambda new, old: emit("Add", [old, emit("Mul", [mask, emit("Sub", [new, old])[0]])[0]])[0]  # noqa: E731
    (y,) = emit("Mul", [mask, h_new])
    return keep(h_new, h), (keep(c_new, c) if c_new is not None else None), y
