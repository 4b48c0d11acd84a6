"""Unrolled lowering: a fixed-length chunk of plain operators that NNAPI and CoreML take whole.

`lower_to_unrolled(model)` rewrites every standard ONNX `RNN`/`GRU`/`LSTM` node (and rnnedge's
`LSTM` with projection) whose weights are constant and whose time axis is static:

    XW = X @ Wt + bias                    (T, B, G*H): one MatMul over all steps (hoisted)
    xw_0 .. xw_{T-1} = Split(XW, axis 0)  each Reshape -> (B, G*H)
    h_t = cells.step(xw_t, h_{t-1})       T copies of the step, weights shared (one initializer)
    Y = Concat(h_t) -> (T, D, B, Hout);   Y_h, Y_c as the node had them

Why: mobile execution providers take neither the recurrent operators nor control flow nor
dynamic shapes (ORT's mobile checker gives a stock LSTM export 18% of nodes on NNAPI and 12% on
CoreML). Only operators that NNAPI, CoreML MLProgram and CoreML NeuralNetwork all list are used:
MatMul, Add, Sub, Mul, Sigmoid, Tanh, Relu, Split, Reshape, Concat (and Slice/Cast for a given
state or `sequence_lens`). Not Gather (absent from CoreML MLProgram), not Squeeze/Unsqueeze
(Unsqueeze is absent from CoreML NeuralNetwork): Reshape does their work. Batch may stay symbolic
(reshapes use -1, a missing initial state is a (1, size) zero that broadcasts), T may not.

Around the recurrence, `gathers_to_slices` turns a Gather with one constant index (a classifier's
`y[:, -1]`) into Slice (+ Squeeze), which every mobile provider takes; a Gather of data-dependent
ids (an embedding lookup on `tokens`) stays: CoreML MLProgram then leaves that one node on the CPU.

`sequence_lens` (not present in rnnedge's mobile exports, handled anyway) becomes a (T, B, 1)
mask built with Cast/Sub/Relu only: m = Relu(L - t) - Relu(L - t - 1), 1 where t < L.
"""

from __future__ import annotations

import hashlib
import logging

import numpy as np
import onnx

from exporters.cells import Recurrence, read_recurrence, step
from exporters.graph import GraphEditor, drop_unused_initializers, recurrent_io, rewrite_nodes, tidy_opsets
from exporters.names import DOMAIN

log = logging.getLogger(__name__)
FLOAT = onnx.TensorProto.FLOAT
# Every operator the lowering may emit; each is listed for NNAPI and both CoreML formats.
OPS = frozenset({"MatMul", "Add", "Sub", "Mul", "Sigmoid", "Tanh", "Relu", "Split", "Slice", "Reshape", "Concat", "Cast"})
# ... and what gathers_to_slices puts in place of a constant-index Gather (Squeeze: all three list it).
GATHER_OPS = frozenset({"Slice", "Squeeze"})


def lower_to_unrolled(model: onnx.ModelProto) -> list[str]:
    """Rewrite recurrent nodes into unrolled chains, in place. Returns what was left as is and why."""
    graph = model.graph
    skipped = []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)

    def rewrite(node, k):
        if opset < 13:  # Split/Squeeze take their sizes/axes as inputs from opset 13 on
            skipped.append(f"{node.name or node.op_type}: opset {opset} < 13 (upgrade with onnx.version_converter)")
            return None
        ed = GraphEditor(graph, f"unrolled{k}")
        rec = read_recurrence(node, ed)
        # inferred now, on the graph as rewritten so far: a layer after an rnnedge.LSTM gets its T too
        steps = _static_steps(model).get(node.input[0]) if node.input and not isinstance(rec, str) else None
        if isinstance(rec, str) or not steps:
            why = rec if isinstance(rec, str) else "the time axis of X is not static (export with a fixed chunk)"
            skipped.append(f"{node.name or node.op_type}: {why}")
            log.warning("left %s as is: %s", node.name or node.op_type, why)
            return None
        return _lower_node(ed, node, rec, steps)

    rewrite_nodes(graph, lambda n: n.op_type in ("RNN", "GRU", "LSTM") and n.domain in ("", "ai.onnx", DOMAIN), rewrite)
    if opset >= 13:
        gathers_to_slices(model)
    drop_unused_initializers(graph)
    tidy_opsets(model)
    return skipped


def _static_steps(model: onnx.ModelProto) -> dict[str, int]:
    """{value name: T} for every value with a static first dimension (graph inputs, inferred values)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception as exc:  # a graph onnx cannot type (custom domains): fall back to declared shapes
        log.debug("shape inference failed: %s", exc)
        inferred = model
    steps = {}
    g = inferred.graph
    for vi in [*g.input, *g.value_info, *g.output]:
        dims = vi.type.tensor_type.shape.dim
        if len(dims) == 3 and dims[0].HasField("dim_value") and dims[0].dim_value > 0:
            steps[vi.name] = int(dims[0].dim_value)
    return steps


def _lower_node(ed: GraphEditor, node: onnx.NodeProto, rec: Recurrence, steps: int) -> list[onnx.NodeProto]:
    io = recurrent_io(node)
    x, seq_lens, init_h, init_c = io.x, io.sequence_lens, io.initial_h, io.initial_c
    outputs = [io.y, io.y_h, io.y_c]
    nodes: list[onnx.NodeProto] = []
    dirs = len(rec.directions)
    lstm = rec.op == "LSTM"

    def emit(op, ins, n=1, outputs=None, **kw):
        made, outs = ed.node(op, ins, n, outputs, **kw)
        nodes.append(made)
        return outs

    consts: dict[tuple, str] = {}

    def const(hint: str, array: np.ndarray) -> str:
        """One initializer per distinct value: step() asks for Rt at every step."""
        array = np.asarray(array)
        key = (hint, array.dtype.str, array.shape, hashlib.sha1(array.tobytes()).hexdigest())
        if key not in consts:
            consts[key] = ed.constant(hint, array)
        return consts[key]

    def per_step(value: str, width: int) -> list[str]:
        """(T, B, width) -> T values of (B, width)."""
        parts = emit("Split", [value, const("ones", np.ones(steps, np.int64))], steps, axis=0) if steps > 1 else [value]
        shape = const("shape", np.array([-1, width], np.int64))
        return [emit("Reshape", [p, shape])[0] for p in parts]

    def initial(state: str, size: int) -> list[str]:
        """(D, B, size) -> D values of (B, size); none given: a (1, size) zero that broadcasts."""
        if not state:
            return [const("zero", np.zeros((1, size), np.float32))] * dirs
        parts = emit("Split", [state, const("ones", np.ones(dirs, np.int64))], dirs, axis=0) if dirs > 1 else [state]
        shape = const("shape", np.array([-1, size], np.int64))
        return [emit("Reshape", [p, shape])[0] for p in parts]

    masks = _masks(emit, const, seq_lens, steps) if seq_lens else [None] * steps
    hs0 = initial(init_h, rec.out_size)
    cs0 = initial(init_c, rec.hidden) if lstm else [None] * dirs
    ys, hs, cs = [], [], []
    for d, (direction, reverse) in enumerate(zip(rec.directions, rec.reverse)):
        (xw,) = emit("MatMul", [x, const("Wt", direction.Wt)])  # (T, B, G*H)
        (xw,) = emit("Add", [xw, const("bias_x", direction.bias_x)])
        xws = per_step(xw, direction.Rt.shape[1])
        h, c = hs0[d], cs0[d]
        y = [""] * steps
        for t in reversed(range(steps)) if reverse else range(steps):
            h, c, y[t] = step(emit, const, rec, direction, xws[t], h, c, masks[t])
        hs.append(h)
        cs.append(c)
        ys.append(emit("Concat", y, axis=0)[0] if steps > 1 else y[0])  # (T*B, Hout), rows t*B + b

    _stack(emit, const, ys, [steps, 1, -1, rec.out_size], 1, outputs[0])  # Y (T, D, B, Hout)
    _stack(emit, const, hs, [1, -1, rec.out_size], 0, outputs[1])  # Y_h (D, B, Hout)
    if lstm:
        _stack(emit, const, cs, [1, -1, rec.hidden], 0, outputs[2])  # Y_c (D, B, H)
    return nodes


def _stack(emit, const, parts: list[str], shape: list[int], axis: int, out: str) -> None:
    """Reshape each part to `shape` and concatenate them along `axis` into the node output `out` (if wanted)."""
    if not out:
        return
    target = const("shape", np.array(shape, np.int64))
    if len(parts) == 1:
        emit("Reshape", [parts[0], target], outputs=[out])
        return
    ups = [emit("Reshape", [p, target])[0] for p in parts]
    emit("Concat", ups, outputs=[out], axis=axis)


def _masks(emit, const, seq_lens: str, steps: int) -> list[str]:
    """T values of (B, 1) float: 1 where t < sequence_lens[b], from Cast/Reshape/Sub/Relu only."""
    (lens,) = emit("Cast", [seq_lens], to=FLOAT)  # (B,)
    (lens,) = emit("Reshape", [lens, const("shape", np.array([1, -1, 1], np.int64))])  # (1, B, 1)
    t = np.arange(steps, dtype=np.float32).reshape(steps, 1, 1)
    (left,) = emit("Sub", [lens, const("t", t)])  # (T, B, 1): steps left, L - t
    (over,) = emit("Sub", [left, const("one", np.ones(1, np.float32))])
    (mask,) = emit("Sub", [emit("Relu", [left])[0], emit("Relu", [over])[0]])  # min(max(L - t, 0), 1)
    parts = emit("Split", [mask, const("ones", np.ones(steps, np.int64))], steps, axis=0) if steps > 1 else [mask]
    shape = const("shape", np.array([-1, 1], np.int64))
    return [emit("Reshape", [p, shape])[0] for p in parts]


def gathers_to_slices(model: onnx.ModelProto) -> int:
    """Gather(data, constant index i, axis) -> Slice(data, i, i+1, axis) (+ Squeeze for a scalar index), in place.

    CoreML MLProgram lists no Gather, NNAPI wants its indices constant. Returns how many were rewritten.
    """
    graph = model.graph

    def rewrite(node, k):
        ed = GraphEditor(graph, f"gather{k}")
        index = ed.array(node.input[1])
        if index is None or index.size != 1 or index.ndim > 1:
            return None
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        i = int(index.reshape(-1)[0])
        end = i + 1 if i != -1 else np.iinfo(np.int64).max  # -1: up to the end
        squeeze = index.ndim == 0
        made, (out,) = ed.node("Slice", [node.input[0], ed.ints("start", [i]), ed.ints("end", [end]), ed.ints("axis", [axis])],
                               outputs=None if squeeze else [node.output[0]])
        if not squeeze:
            return [made]
        gone, _ = ed.node("Squeeze", [out, ed.ints("axis", [axis])], outputs=[node.output[0]])
        return [made, gone]

    return rewrite_nodes(graph, lambda n: n.op_type == "Gather" and n.domain in ("", "ai.onnx") and len(n.input) == 2, rewrite)
