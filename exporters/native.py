"""Lowering to the standard ONNX `RNN`/`GRU`/`LSTM` operators.

`lower_torch_recurrent(model)` replaces every `rnnedge.TorchRecurrent` placeholder (PyTorch
layout, batch-major) by one standard operator per layer, in sequence-major layout 0:

    x (B, T, I) -Transpose-> (T, B, I) -LSTM-> Y (T, D, B, H) -Transpose/Reshape-> (T, B, D*H) -> next layer
    last layer: Y -Transpose-> (B, T, D, H) -Reshape-> (B, T, D*H);  hn = Concat(Y_h per layer)

Weights are converted in numpy, exactly: gate blocks reordered (PyTorch LSTM i,f,g,o -> ONNX
i,o,f,c; GRU r,z,n -> z,r,h), input and recurrent biases concatenated (`B = [Wb, Rb]`), GRU
with `linear_before_reset=1` (PyTorch applies the reset gate after the recurrent product), RNN
with `Relu` activations where `nonlinearity="relu"`. `lengths` becomes `sequence_lens` (int32),
which gives pack_padded_sequence semantics: zeros past each row's length, and the backward
direction starting at each row's own last step.

LSTM projections (`proj_size`) have no standard operator: they become an `rnnedge.LSTM` node
(the ONNX LSTM signature plus a ninth input P of shape (D, Hout, H)), which `exporters.scan`
or `exporters.unrolled` must lower before the model can run.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from exporters.graph import GraphEditor, drop_unused_initializers, rewrite_nodes, tidy_opsets
from exporters.names import DOMAIN, NODE

# PyTorch gate block -> ONNX gate block order, per cell.
GATE_ORDER = {"lstm": [0, 3, 1, 2], "gru": [1, 0, 2], "rnn_tanh": [0], "rnn_relu": [0]}
ONNX_OP = {"lstm": "LSTM", "gru": "GRU", "rnn_tanh": "RNN", "rnn_relu": "RNN"}


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _reorder(w: np.ndarray, mode: str, hidden: int) -> np.ndarray:
    """Reorder gate blocks along axis 0 (blocks of `hidden` rows)."""
    blocks = [w[g * hidden : (g + 1) * hidden] for g in GATE_ORDER[mode]]
    return np.concatenate(blocks, axis=0)


def convert_weights(weights: list[np.ndarray], mode: str, hidden: int, has_bias: bool, proj: int, dirs: int):
    """One layer's PyTorch weights (per direction: w_ih, w_hh, [b_ih, b_hh], [w_hr]) -> ONNX W, R, B, P."""
    per_dir = 2 + 2 * has_bias + (1 if proj else 0)
    W, R, B, P = [], [], [], []
    for d in range(dirs):
        chunk = weights[d * per_dir : (d + 1) * per_dir]
        W.append(_reorder(chunk[0], mode, hidden))  # (G*H, I)
        R.append(_reorder(chunk[1], mode, hidden))  # (G*H, Hout)
        if has_bias:
            B.append(np.concatenate([_reorder(chunk[2], mode, hidden), _reorder(chunk[3], mode, hidden)]))  # (2*G*H,)
        if proj:
            P.append(chunk[-1])  # (Hout, H)
    stack = lambda xs: np.stack(xs).astype(np.float32) if xs else None  # noqa: E731
    return stack(W), stack(R), stack(B), stack(P)


def lower_torch_recurrent(model: onnx.ModelProto) -> onnx.ModelProto:
    """Replace every rnnedge.TorchRecurrent node by standard ONNX recurrent operators (in place)."""
    graph = model.graph
    used = {o.name for o in graph.output} | {i for n in graph.node for i in n.input}
    lowered = rewrite_nodes(
        graph, lambda n: n.domain == DOMAIN and n.op_type == NODE, lambda n, k: _lower_one(GraphEditor(graph, f"rnn{k}"), n, used)
    )
    if lowered:
        drop_unused_initializers(graph)
        tidy_opsets(model)
        if any(n.domain == DOMAIN for n in graph.node) and not any(o.domain == DOMAIN for o in model.opset_import):
            model.opset_import.append(helper.make_opsetid(DOMAIN, 1))
    return model


def _lower_one(ed: GraphEditor, node: onnx.NodeProto, used: set[str]) -> list[onnx.NodeProto]:
    a = _attrs(node)
    mode = a["mode"].decode() if isinstance(a["mode"], bytes) else a["mode"]
    hidden, layers, dirs, proj = a["hidden_size"], a["num_layers"], 2 if a["bidirectional"] else 1, a["proj_size"]
    inputs = list(node.input)
    x = inputs.pop(0)
    h0 = inputs.pop(0) if a["has_h0"] else ""
    c0 = inputs.pop(0) if a["has_c0"] else ""
    lengths = inputs.pop(0) if a["has_lengths"] else ""
    arrays = [ed.array(name) for name in inputs]
    if any(w is None for w in arrays):
        raise ValueError("recurrent weights must be constant initializers to be lowered")
    per_layer = len(arrays) // layers
    y_out, hn_out, cn_out = node.output
    nodes: list[onnx.NodeProto] = []

    def emit(op, ins, n=1, outputs=None, **kw):
        made, outs = ed.node(op, ins, n, outputs, **kw)
        nodes.append(made)
        return outs

    (seq,) = emit("Transpose", [x], perm=[1, 0, 2])  # (T, B, I)
    seq_lens = emit("Cast", [lengths], to=onnx.TensorProto.INT32)[0] if lengths else ""
    flat = ed.ints("flatten_dirs", [0, 0, -1])
    y_h, y_c = [], []
    for layer in range(layers):
        W, R, B, P = convert_weights(arrays[layer * per_layer : (layer + 1) * per_layer], mode, hidden, a["has_bias"], proj, dirs)
        state_slice = lambda s, layer=layer: emit("Slice", [s, ed.ints("start", [layer * dirs]), ed.ints("end", [(layer + 1) * dirs]), ed.ints("axis", [0])])[0]  # noqa: E731
        init_h = (state_slice(h0) if layers > 1 else h0) if h0 else ""
        init_c = (state_slice(c0) if layers > 1 else c0) if c0 else ""
        ins = [seq, ed.constant("W", W), ed.constant("R", R), ed.constant("B", B) if B is not None else "", seq_lens, init_h]
        if mode == "lstm":
            ins += [init_c, "", ed.constant("P", P)] if proj else [init_c]
        while ins and ins[-1] == "":
            ins.pop()
        kw = {"hidden_size": hidden, "direction": "bidirectional" if dirs == 2 else "forward"}
        if mode == "gru":
            kw["linear_before_reset"] = 1
        if mode == "rnn_relu":
            kw["activations"] = ["Relu"] * dirs
        op, domain = ("LSTM", DOMAIN) if proj else (ONNX_OP[mode], "")
        y, yh, *yc = emit(op, ins, 3 if mode == "lstm" else 2, domain=domain, **kw)  # Y (T, D, B, Hout)
        y_h.append(yh)
        y_c.extend(yc)
        last = layer == layers - 1
        if last:
            (yt,) = emit("Transpose", [y], perm=[2, 0, 1, 3])  # (B, T, D, Hout)
            emit("Reshape", [yt, flat], outputs=[y_out])  # (B, T, D*Hout)
        else:
            (yt,) = emit("Transpose", [y], perm=[0, 2, 1, 3])  # (T, B, D, Hout)
            (seq,) = emit("Reshape", [yt, flat])  # (T, B, D*Hout)
    emit("Concat", y_h, outputs=[hn_out], axis=0) if layers > 1 else _rename(nodes, y_h[0], hn_out)
    if mode == "lstm":
        emit("Concat", y_c, outputs=[cn_out], axis=0) if layers > 1 else _rename(nodes, y_c[0], cn_out)
    elif cn_out and cn_out in used:
        emit("Constant", [], outputs=[cn_out], value=helper.make_tensor("empty", onnx.TensorProto.FLOAT, [0], []))
    return nodes


def _rename(nodes: list[onnx.NodeProto], old: str, new: str) -> None:
    """Make the node that produces `old` produce `new` instead (saves an Identity)."""
    for node in nodes:
        for i, out in enumerate(node.output):
            if out == old:
                node.output[i] = new
