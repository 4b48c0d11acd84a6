"""Scan lowering: the input projection hoisted out of the loop, only the recurrence inside a Scan.

`lower_to_scan(model)` rewrites every standard ONNX `RNN`/`GRU`/`LSTM` node (and rnnedge's
`LSTM` with projection) whose weights are constant, in any model (rnnedge's or not):

    XW = X @ Wt + bias                       (T, B, G*H): one MatMul over all steps
    Scan(h0[, c0], XW[, mask]) per direction: h' = act(XW_t + h @ Rt) ...   (only this loops)
    Y = stack of the directions' outputs     (T, D, B, Hout), Y_h, Y_c as the node had them

Why: onnxruntime's own RNN kernel was slower than torch eager on CPU, while the hoisted form
does one large GEMM and a small one per step; and every weight becomes a MatMul initializer,
which `quantize_dynamic(..., EnableSubgraph=True)` turns into int8 for RNN and GRU too (the
standard `RNN`/`GRU` operators stay float32 under ORT's quantizer).

`sequence_lens` becomes a (T, B, 1) mask: rows past their length keep their state (a Where in
the body) and output zeros (one Mul after the loop); a reverse Scan therefore starts each row at its own last step, as the ONNX ops do.
Recurrent weights live inside the Scan body as its own initializers. A model below opset MIN_OPSET (15) is
converted up to it first (onnx.version_converter): the Scan form's nodes do not exist at older opsets.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx
from onnx import helper, numpy_helper

from exporters.cells import Recurrence, read_recurrence, step
from exporters.graph import GraphEditor, drop_unused_initializers, recurrent_io, rewrite_nodes, tidy_opsets
from exporters.names import DOMAIN

log = logging.getLogger(__name__)
FLOAT = onnx.TensorProto.FLOAT


def lower_to_scan(model: onnx.ModelProto, ops: tuple[str, ...] = ("RNN", "GRU", "LSTM"), names: set[str] | None = None) -> list[str]:
    """Rewrite recurrent nodes of the given op types (and, with `names`, only those nodes) into hoisted-projection Scans, in place.

    Returns what was left as is and why. (rnnedge's LSTM with projection has no standard form:
    it is always rewritten, whatever `ops` says.)
    """
    why = _at_least_min_opset(model)
    if why:
        todo = [n for n in model.graph.node if n.op_type in ("RNN", "GRU", "LSTM") and (names is None or n.name in names)]
        return [f"{n.name or n.op_type}: {why}" for n in todo]
    graph = model.graph
    skipped = []

    def rewrite(node, k):
        ed = GraphEditor(graph, f"scan{k}")
        rec = read_recurrence(node, ed)
        if isinstance(rec, str):
            skipped.append(f"{node.name or node.op_type}: {rec}")
            log.warning("left %s as is: %s", node.name or node.op_type, rec)
            return None
        return _lower_node(ed, node, rec)

    def chosen(n) -> bool:
        if names is not None and n.name not in names:
            return False
        return n.op_type in ("RNN", "GRU", "LSTM") and (n.op_type in ops or n.domain == DOMAIN)

    rewrite_nodes(graph, chosen, rewrite)
    drop_unused_initializers(graph)
    tidy_opsets(model)
    return skipped


MIN_OPSET = 15  # the Scan form's nodes: Shape with start/end (15), Split/Squeeze/Unsqueeze taking inputs (13)


def _at_least_min_opset(model: onnx.ModelProto) -> str:
    """Bring a model below MIN_OPSET up to it, in place (onnx.version_converter: a published opset-9 file); '' when
    done or not needed, else why not (the Scan nodes would make an invalid model at the file's opset)."""
    version = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), MIN_OPSET)
    if version >= MIN_OPSET:
        return ""
    from onnx import version_converter

    try:
        converted = version_converter.convert_version(model, MIN_OPSET)
    except Exception as exc:  # the converter's own errors (an op it has no adapter for): the nodes are left as is
        log.debug("opset %d -> %d failed", version, MIN_OPSET, exc_info=True)
        return f"the Scan form needs opset {MIN_OPSET} and converting this opset-{version} file failed ({type(exc).__name__}: {str(exc)[:120]})"
    model.CopyFrom(converted)
    return ""


def _lower_node(ed: GraphEditor, node: onnx.NodeProto, rec: Recurrence) -> list[onnx.NodeProto]:
    io = recurrent_io(node)
    x, seq_lens, init_h, init_c = io.x, io.sequence_lens, io.initial_h, io.initial_c
    outputs = [io.y, io.y_h, io.y_c]
    nodes: list[onnx.NodeProto] = []

    def emit(op, ins, n=1, outputs=None, **kw):
        made, outs = ed.node(op, ins, n, outputs, **kw)
        nodes.append(made)
        return outs

    valid, mask = _mask(emit, ed, x, seq_lens) if seq_lens else (None, None)  # (T, B, 1) bool and float
    zeros = {}

    def initial(state: str, size: int, d: int) -> str:
        if state:  # (D, B, size) -> (B, size)
            return emit("Gather", [state, ed.ints("dir", d)], axis=0)[0]
        if size not in zeros:
            (batch,) = emit("Shape", [x], start=1, end=2)
            (shape,) = emit("Concat", [batch, ed.ints("size", [size])], axis=0)
            zeros[size] = emit("ConstantOfShape", [shape], value=helper.make_tensor("zero", FLOAT, [1], [0.0]))[0]
        return zeros[size]

    ys, hs, cs = [], [], []
    lstm = rec.op == "LSTM"
    for d, (direction, reverse) in enumerate(zip(rec.directions, rec.reverse)):
        (xw,) = emit("MatMul", [x, ed.constant("Wt", direction.Wt)])  # (T, B, G*H)
        (xw,) = emit("Add", [xw, ed.constant("bias_x", direction.bias_x)])
        states = [initial(init_h, rec.out_size, d)] + ([initial(init_c, rec.hidden, d)] if lstm else [])
        scans = [xw] + ([valid] if valid else [])
        body = _body(rec, direction, lstm, valid is not None, f"{ed.prefix}_d{d}")
        flag = [1 if reverse else 0]
        outs = emit("Scan", states + scans, len(states) + 1, body=body, num_scan_inputs=len(scans),
                    scan_input_directions=flag * len(scans), scan_output_directions=flag)
        hs.append(outs[0])
        cs.append(outs[1] if lstm else None)
        ys.append(emit("Mul", [outs[-1], mask])[0] if mask else outs[-1])  # (T, B, Hout), zero past each length

    def stack(parts, axis, out):
        if not out:
            return
        if len(parts) == 1:
            emit("Unsqueeze", [parts[0], ed.ints("axis", [axis])], outputs=[out])
            return
        ups = [emit("Unsqueeze", [p, ed.ints("axis", [axis])])[0] for p in parts]
        emit("Concat", ups, outputs=[out], axis=axis)

    stack(ys, 1, outputs[0])  # Y (T, D, B, Hout)
    stack(hs, 0, outputs[1])  # Y_h (D, B, Hout)
    if lstm:
        stack(cs, 0, outputs[2])  # Y_c (D, B, H)
    return nodes


def _mask(emit, ed: GraphEditor, x: str, seq_lens: str) -> tuple[str, str]:
    """(T, B, 1) bool and float: t < sequence_lens[b]."""
    (steps,) = emit("Shape", [x], start=0, end=1)
    (steps,) = emit("Squeeze", [steps, ed.ints("axis", [0])])
    (t,) = emit("Range", [ed.ints("zero", 0), steps, ed.ints("one", 1)])  # (T,)
    (t,) = emit("Unsqueeze", [t, ed.ints("axis", [1])])  # (T, 1)
    (lens,) = emit("Cast", [seq_lens], to=onnx.TensorProto.INT64)
    (valid,) = emit("Less", [t, lens])  # (T, B)
    (valid,) = emit("Unsqueeze", [valid, ed.ints("axis", [2])])  # (T, B, 1)
    return valid, emit("Cast", [valid], to=FLOAT)[0]


def _body(rec: Recurrence, direction, lstm: bool, masked: bool, prefix: str) -> onnx.GraphProto:
    """The Scan body: states h[, c], scan inputs xw_t[, m_t] -> states h', c', scan output y_t.

    With a mask, rows past their length keep their state (one Where per state); their outputs are
    zeroed after the loop, with one Mul over all steps, which keeps the per-step work minimal.
    """
    nodes, inits, counter = [], [], [0]

    def fresh(hint):
        counter[0] += 1
        return f"{prefix}/{hint}{counter[0]}"

    def emit(op, ins, n=1, **kw):
        outs = [fresh(op.lower()) for _ in range(n)]
        nodes.append(helper.make_node(op, ins, outs, name=fresh(op), **kw))
        return outs

    def const(hint, array):
        name = fresh(hint)
        inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    h, c, xw, m = f"{prefix}/h", f"{prefix}/c", f"{prefix}/xw", f"{prefix}/m"
    h_new, c_new, y = step(emit, const, rec, direction, xw, h, c if lstm else None, None)
    if masked:
        (h_new,) = emit("Where", [m, y, h])
        c_new = emit("Where", [m, c_new, c])[0] if lstm else None
    else:
        (y,) = emit("Identity", [h_new])
    gate_width = direction.Rt.shape[1]
    vi = lambda name, width: helper.make_tensor_value_info(name, FLOAT, ["batch", width])  # noqa: E731
    mask_vi = helper.make_tensor_value_info(m, onnx.TensorProto.BOOL, ["batch", 1])
    ins = [vi(h, rec.out_size)] + ([vi(c, rec.hidden)] if lstm else []) + [vi(xw, gate_width)] + ([mask_vi] if masked else [])
    outs = [vi(h_new, rec.out_size)] + ([vi(c_new, rec.hidden)] if lstm else []) + [vi(y, rec.out_size)]
    return helper.make_graph(nodes, f"{prefix}_body", ins, outs, initializer=inits)
