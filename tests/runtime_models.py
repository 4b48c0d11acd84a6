"""Small ONNX models for the runtime tests, built with onnx.helper (no torch).

Each builder returns an ``onnx.ModelProto`` following rnnedge's I/O contract: batch-first
``x`` (or ``tokens``), optional ``lengths``, optional ``h0``/``c0`` -> ``hn``/``cn``, and
``logits`` from a MatMul on the recurrent output. ``lstm_reference`` is a numpy LSTM for
checking the builders themselves.
"""
from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
F32, I64 = TensorProto.FLOAT, TensorProto.INT64


def _meta(model: onnx.ModelProto, config: dict, target: str, labels=None) -> None:
    props = {"rnnedge.config": json.dumps(config), "rnnedge.version": "0.1.0",
             "rnnedge.task": "test", "rnnedge.lowering": "native", "rnnedge.target": target}
    if labels is not None:
        props["rnnedge.labels"] = json.dumps(labels)
    helper.set_model_props(model, props)


def rnn_model(cell: str = "lstm", features: int = 5, hidden: int = 8, classes: int = 3,
              layers: int = 1, head: str = "tag", stream: bool = False, lengths: bool = True,
              fixed: tuple[int, int] | None = None, vocab: int | None = None,
              metadata: bool = True, seed: int = 0) -> onnx.ModelProto:
    """A stack of ONNX LSTM/GRU ops with a linear head.

    ``head``: "tag" (logits (B, T, C)) or "classify" (logits (B, C) from the last state).
    ``stream`` adds h0/c0 -> hn/cn. ``fixed`` = (batch, chunk) makes a mobile-style model.
    ``vocab`` makes a token model (``tokens`` int64 (B, T) -> Gather embedding of ``features``).
    """
    rng = np.random.default_rng(seed)
    gates = {"lstm": 4, "gru": 3}[cell]
    B, T = fixed if fixed else ("batch", "seq")
    inits, nodes = [], []

    def const(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def node(op, ins, outs, **kw):
        nodes.append(helper.make_node(op, ins, outs, **kw))
        return outs[0]

    if vocab:
        inputs = [helper.make_tensor_value_info("tokens", I64, [B, T])]
        emb = const("emb", rng.normal(0, 1, (vocab, features)).astype(np.float32))
        x = node("Gather", [emb, "tokens"], ["embedded"])  # (B, T, F)
    else:
        inputs = [helper.make_tensor_value_info("x", F32, [B, T, features])]
        x = "x"
    seq_lens = ""
    if lengths:
        inputs.append(helper.make_tensor_value_info("lengths", I64, [B]))
        seq_lens = node("Cast", ["lengths"], ["seq_lens"], to=TensorProto.INT32)
    state_names = ["h0", "c0"] if cell == "lstm" else ["h0"]
    if stream:
        inputs += [helper.make_tensor_value_info(n, F32, [layers, B, hidden]) for n in state_names]
    h = node("Transpose", [x], ["xt"], perm=[1, 0, 2])  # (T, B, F)
    finals = {n: [] for n in state_names}
    for i in range(layers):
        fin = features if i == 0 else hidden
        scale = 1 / np.sqrt(hidden)
        W = const(f"W{i}", rng.uniform(-scale, scale, (1, gates * hidden, fin)).astype(np.float32))
        R = const(f"R{i}", rng.uniform(-scale, scale, (1, gates * hidden, hidden)).astype(np.float32))
        Bb = const(f"B{i}", rng.uniform(-scale, scale, (1, 2 * gates * hidden)).astype(np.float32))
        init = []
        for n in state_names:
            if stream:
                st = (const(f"st{i}_{n}", np.array([i], np.int64)),
                      const(f"en{i}_{n}", np.array([i + 1], np.int64)))
                init.append(node("Slice", [n, st[0], st[1], const(f"ax{i}_{n}", np.array([0], np.int64))],
                                 [f"{n}_{i}"]))
            else:
                init.append("")
        outs = [f"Y{i}", f"Yh{i}"] + ([f"Yc{i}"] if cell == "lstm" else [])
        if cell == "lstm":
            node("LSTM", [h, W, R, Bb, seq_lens, init[0], init[1]], outs, hidden_size=hidden)
        else:
            node("GRU", [h, W, R, Bb, seq_lens, init[0]], outs, hidden_size=hidden, linear_before_reset=1)
        for n, o in zip(state_names, outs[1:]):
            finals[n].append(o)
        h = node("Squeeze", [f"Y{i}", const(f"sq{i}", np.array([1], np.int64))], [f"H{i}"])  # (T, B, H)
    Wo = const("Wout", rng.normal(0, 1, (hidden, classes)).astype(np.float32))
    bo = const("bout", rng.normal(0, 1, (classes,)).astype(np.float32))
    if head == "tag":
        hb = node("Transpose", [h], ["hb"], perm=[1, 0, 2])  # (B, T, H)
        out_shape = [B, T, classes]
    else:
        hb = node("Squeeze", [finals["h0"][-1], const("sq_last", np.array([0], np.int64))], ["hb"])  # (B, H)
        out_shape = [B, classes]
    node("Add", [node("MatMul", [hb, Wo], ["mm"]), bo], ["logits"])
    outputs = [helper.make_tensor_value_info("logits", F32, out_shape)]
    if stream:
        for n, out in zip(state_names, ["hn", "cn"]):
            if layers == 1:
                node("Identity", finals[n], [out])
            else:
                node("Concat", finals[n], [out], axis=0)
            outputs.append(helper.make_tensor_value_info(out, F32, [layers, B, hidden]))
    graph = helper.make_graph(nodes, f"{cell}_{head}", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    if metadata:
        config = {"input_kind": "tokens" if vocab else "features",
                  "input_size": vocab if vocab else features, "cell": cell, "hidden": hidden,
                  "layers": layers, "bidirectional": False, "head": head, "num_outputs": classes}
        target = "mobile" if fixed else "stream" if stream else "dynamic"
        _meta(model, config, target, labels=[f"c{i}" for i in range(classes)])
    onnx.checker.check_model(model)
    return model


def identity_model(features: int | str = 4, name_in: str = "input", name_out: str = "output",
                   dtype=F32) -> onnx.ModelProto:
    """A third-party-style model without rnnedge metadata: (B, T, F) -> Identity."""
    shape = ["n", "t", features]
    graph = helper.make_graph([helper.make_node("Identity", [name_in], [name_out])], "identity",
                              [helper.make_tensor_value_info(name_in, dtype, shape)],
                              [helper.make_tensor_value_info(name_out, dtype, shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    return model


def external_data_model(location: str) -> onnx.ModelProto:
    """x + w where w claims to live in an external file at ``location``."""
    w = numpy_helper.from_array(np.ones((3,), np.float32), "w")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "12")):
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "ext",
                              [helper.make_tensor_value_info("x", F32, ["batch", "seq", 3])],
                              [helper.make_tensor_value_info("y", F32, ["batch", "seq", 3])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    return model


def weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """The model's initializers by name."""
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def lstm_reference(x, W, R, B, h0=None, c0=None, lengths=None):
    """Numpy ONNX-LSTM (gates i, o, f, c; one direction). x: (B, T, F) -> (Y (B, T, H), h, c)."""
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    W, R, B = W[0].astype(np.float64), R[0].astype(np.float64), B[0].astype(np.float64)
    H = R.shape[1]
    nb, nt, _ = x.shape
    h = np.zeros((nb, H)) if h0 is None else h0[0].astype(np.float64)
    c = np.zeros((nb, H)) if c0 is None else c0[0].astype(np.float64)
    lengths = np.full(nb, nt) if lengths is None else np.asarray(lengths)
    Y = np.zeros((nb, nt, H))
    for t in range(nt):
        g = x[:, t] @ W.T + h @ R.T + B[: 4 * H] + B[4 * H:]  # (B, 4H)
        i, o, f, cc = np.split(g, 4, axis=1)
        c_new = sig(f) * c + sig(i) * np.tanh(cc)
        h_new = sig(o) * np.tanh(c_new)
        live = (t < lengths)[:, None]
        c, h = np.where(live, c_new, c), np.where(live, h_new, h)
        Y[:, t] = np.where(live, h_new, 0)
    return Y, h, c
