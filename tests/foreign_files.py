"""Foreign recurrent ONNX files made the way published ones are (no downloads): torch.onnx.export (TorchScript and
dynamo) at several opsets, and onnx.helper for what torch never writes. Each builder writes `path` and returns it.

    torch_rnn(path, cell="LSTM", opset=13, ...)  nn.LSTM/GRU/RNN (+ Linear head) by torch.onnx.export(dynamo=False)
    tagger(path, opset=13)          int64 token ids -> Embedding (Gather) -> LSTM -> Linear: ids must stay < vocab
    helper_cell(path, cell, **attrs) one ONNX LSTM/GRU/RNN node with attributes torch never writes (peepholes,
                                    input_forget, clip, linear_before_reset=0, activations)
    step_model(path)                a streaming step: x[B, F], h[B, H] -> y, h' (rank-2 inputs, GRU of one step)
    two_paths(path)                 two LSTMs of different hidden sizes on one input, outputs concatenated
    loop_lstm(path)                 a Loop whose body holds an LSTM (weights in the outer graph)
    odd_outputs(path)               an LSTM with an int64 ArgMax output and a bool output, ai.onnx.ml domain imported
    fixed_sizes(path)               every input dim fixed (1 x 5 x 8)
    odd_names(path)                 inputs, nodes and weights named with spaces and slashes
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto as TP
from onnx import helper as H
from onnx import numpy_helper as NH

VOCAB = 50


def torch_rnn(path, cell="LSTM", opset=13, hidden=32, features=8, layers=1, bidirectional=False, batch_first=True,
              state_inputs=False, nonlinearity="tanh", seed=0, dynamo=False):
    """nn.{cell} + Linear, exported by TorchScript (or dynamo) with batch and seq dynamic; `state_inputs` adds h0 (c0)."""
    import torch

    torch.manual_seed(seed)
    kw = {"nonlinearity": nonlinearity} if cell == "RNN" else {}
    rnn = getattr(torch.nn, cell)(features, hidden, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first, **kw)
    head = torch.nn.Linear(hidden * (2 if bidirectional else 1), 3)
    dirs = layers * (2 if bidirectional else 1)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn, self.head = rnn, head

        def forward(self, x, *state):
            if state:
                y, hn = self.rnn(x, state if cell == "LSTM" else state[0])
            else:
                y, hn = self.rnn(x)
            return self.head(y), (hn[0] if cell == "LSTM" else hn)

    x = torch.randn(2, 5, features) if batch_first else torch.randn(5, 2, features)
    args = [x]
    names = ["x"]
    if state_inputs:
        args += [torch.zeros(dirs, 2, hidden)] * (2 if cell == "LSTM" else 1)
        names += ["h0", "c0"][: len(args) - 1]
    seq_axes = {0: "batch", 1: "seq"} if batch_first else {0: "seq", 1: "batch"}
    axes = {"x": seq_axes, "y": {0: "batch", 1: "seq"} if batch_first else {0: "seq", 1: "batch"}, "hn": {1: "batch"}}
    axes.update({n: {1: "batch"} for n in names[1:]})
    net = Net().eval()
    if dynamo:
        torch.onnx.export(net, tuple(args), str(path), input_names=names, output_names=["y", "hn"], dynamic_axes=axes,
                          opset_version=opset, dynamo=True, verbose=False, external_data=False)
    else:
        torch.onnx.export(net, tuple(args), str(path), input_names=names, output_names=["y", "hn"], dynamic_axes=axes,
                          opset_version=opset, dynamo=False)
    return path


def tagger(path, opset=13, vocab=VOCAB, hidden=32, dynamo=False):
    """Token ids (int64 [batch, seq]) -> Embedding -> LSTM -> Linear: a tagger. Ids >= vocab make Gather fail."""
    import torch

    torch.manual_seed(0)

    class Tagger(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.lstm = torch.nn.Embedding(vocab, 16), torch.nn.LSTM(16, hidden, batch_first=True)
            self.head = torch.nn.Linear(hidden, 5)

        def forward(self, tokens):
            return self.head(self.lstm(self.emb(tokens))[0])

    ids = torch.randint(0, vocab, (2, 7))
    torch.onnx.export(Tagger().eval(), (ids,), str(path), input_names=["tokens"], output_names=["tags"],
                      dynamic_axes={"tokens": {0: "batch", 1: "seq"}, "tags": {0: "batch", 1: "seq"}},
                      opset_version=opset, dynamo=dynamo)
    return path


def _w(rng, *shape, scale=None):
    scale = scale if scale is not None else 1.0 / np.sqrt(shape[-1])
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def helper_cell(path, cell="LSTM", hidden=32, features=8, opset=14, peepholes=False, seed=0, **attrs):
    """One ONNX recurrent node [seq, batch, features] -> Y_h with attributes TorchScript never writes."""
    rng = np.random.default_rng(seed)
    gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[cell]
    inits = [NH.from_array(_w(rng, 1, gates * hidden, features), "W"), NH.from_array(_w(rng, 1, gates * hidden, hidden), "R"),
             NH.from_array(_w(rng, 1, 2 * gates * hidden, scale=0.1), "B"),
             NH.from_array(_w(rng, hidden, 3), "head")]
    ins = ["x", "W", "R", "B"]
    if peepholes:
        inits.append(NH.from_array(_w(rng, 1, 3 * hidden, scale=0.1), "P"))
        ins += ["", "", "", "P"]
    nodes = [H.make_node(cell, ins, ["Y", "Yh"], hidden_size=hidden, name="rnn", **attrs),
             H.make_node("MatMul", ["Yh", "head"], ["out"], name="head")]
    graph = H.make_graph(nodes, "cell", [H.make_tensor_value_info("x", TP.FLOAT, ["seq", "batch", features])],
                         [H.make_tensor_value_info("out", TP.FLOAT, [1, "batch", 3])], inits)
    model = H.make_model(graph, opset_imports=[H.make_opsetid("", opset)])
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def step_model(path, hidden=48, features=12, seed=0):
    """A streaming step: x[batch, F], h[batch, H] -> (y[batch, 3], h'[batch, H]) through a one-step GRU."""
    rng = np.random.default_rng(seed)
    inits = [NH.from_array(_w(rng, 1, 3 * hidden, features), "W"), NH.from_array(_w(rng, 1, 3 * hidden, hidden), "R"),
             NH.from_array(_w(rng, hidden, 3), "head"), NH.from_array(np.array([0], np.int64), "ax0")]
    nodes = [H.make_node("Unsqueeze", ["x", "ax0"], ["x3"]), H.make_node("Unsqueeze", ["h", "ax0"], ["h3"]),
             H.make_node("GRU", ["x3", "W", "R", "", "", "h3"], ["", "hn3"], hidden_size=hidden, linear_before_reset=1, name="gru"),
             H.make_node("Squeeze", ["hn3", "ax0"], ["h_out"]), H.make_node("MatMul", ["h_out", "head"], ["y"], name="head")]
    graph = H.make_graph(nodes, "step", [H.make_tensor_value_info("x", TP.FLOAT, ["batch", features]),
                                         H.make_tensor_value_info("h", TP.FLOAT, ["batch", hidden])],
                         [H.make_tensor_value_info("y", TP.FLOAT, ["batch", 3]), H.make_tensor_value_info("h_out", TP.FLOAT, ["batch", hidden])],
                         inits)
    onnx.save(H.make_model(graph, opset_imports=[H.make_opsetid("", 14)]), str(path))
    return path


def two_paths(path, features=8, seed=0):
    """Two LSTMs (hidden 32 and 80) on the same input; their last states concatenated."""
    rng = np.random.default_rng(seed)
    inits, nodes, outs = [], [], []
    for k, hid in enumerate((32, 80)):
        inits += [NH.from_array(_w(rng, 1, 4 * hid, features), f"W{k}"), NH.from_array(_w(rng, 1, 4 * hid, hid), f"R{k}")]
        nodes.append(H.make_node("LSTM", ["x", f"W{k}", f"R{k}"], ["", f"h{k}"], hidden_size=hid, name=f"lstm{k}"))
        outs.append(f"h{k}")
    inits.append(NH.from_array(_w(rng, 112, 4), "head"))
    nodes += [H.make_node("Concat", outs, ["hh"], axis=2), H.make_node("MatMul", ["hh", "head"], ["out"], name="head")]
    graph = H.make_graph(nodes, "two", [H.make_tensor_value_info("x", TP.FLOAT, ["seq", "batch", features])],
                         [H.make_tensor_value_info("out", TP.FLOAT, [1, "batch", 4])], inits)
    onnx.save(H.make_model(graph, opset_imports=[H.make_opsetid("", 17)]), str(path))
    return path


def loop_lstm(path, hidden=40, features=8, seed=0):
    """A Loop running an LSTM over the input `trips` times, its state carried (weights in the outer graph)."""
    rng = np.random.default_rng(seed)
    inits = [NH.from_array(_w(rng, 1, 4 * hidden, features), "W"), NH.from_array(_w(rng, 1, 4 * hidden, hidden), "R"),
             NH.from_array(np.array(3, np.int64), "trips"), NH.from_array(np.array(True), "cond"),
             NH.from_array(_w(rng, hidden, 2), "head")]
    body = H.make_graph(
        [H.make_node("LSTM", ["x", "W", "R", "", "", "h_in"], ["", "h_out"], hidden_size=hidden, name="body_lstm"),
         H.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body", [H.make_tensor_value_info("i", TP.INT64, []), H.make_tensor_value_info("cond_in", TP.BOOL, []),
                 H.make_tensor_value_info("h_in", TP.FLOAT, [1, "batch", hidden])],
        [H.make_tensor_value_info("cond_out", TP.BOOL, []), H.make_tensor_value_info("h_out", TP.FLOAT, [1, "batch", hidden])])
    nodes = [H.make_node("Shape", ["x"], ["xs"]), H.make_node("Gather", ["xs", "one"], ["b"], axis=0),
             H.make_node("Concat", ["one", "b", "hid"], ["hshape"], axis=0),
             H.make_node("ConstantOfShape", ["hshape"], ["h0"], value=NH.from_array(np.array([0], np.float32))),
             H.make_node("Loop", ["trips", "cond", "h0"], ["hl"], body=body, name="loop"),
             H.make_node("MatMul", ["hl", "head"], ["out"], name="head")]
    inits += [NH.from_array(np.array([1], np.int64), "one"), NH.from_array(np.array([hidden], np.int64), "hid")]
    graph = H.make_graph(nodes, "loop", [H.make_tensor_value_info("x", TP.FLOAT, ["seq", "batch", features])],
                         [H.make_tensor_value_info("out", TP.FLOAT, [1, "batch", 2])], inits)
    model = H.make_model(graph, opset_imports=[H.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


def odd_outputs(path, hidden=32, features=8, seed=0):
    """LSTM -> logits, plus an int64 ArgMax and a bool (logit > 0) output; imports the ai.onnx.ml domain."""
    rng = np.random.default_rng(seed)
    inits = [NH.from_array(_w(rng, 1, 4 * hidden, features), "W"), NH.from_array(_w(rng, 1, 4 * hidden, hidden), "R"),
             NH.from_array(_w(rng, hidden, 4), "head"), NH.from_array(np.array(0, np.float32), "zero")]
    nodes = [H.make_node("LSTM", ["x", "W", "R"], ["Y", ""], hidden_size=hidden, name="lstm"),
             H.make_node("MatMul", ["Y", "head"], ["logits"], name="head"),
             H.make_node("ArgMax", ["logits"], ["label"], axis=-1, keepdims=0),
             H.make_node("Greater", ["logits", "zero"], ["positive"])]
    graph = H.make_graph(nodes, "odd", [H.make_tensor_value_info("x", TP.FLOAT, ["seq", "batch", features])],
                         [H.make_tensor_value_info("logits", TP.FLOAT, ["seq", 1, "batch", 4]),
                          H.make_tensor_value_info("label", TP.INT64, ["seq", 1, "batch"]),
                          H.make_tensor_value_info("positive", TP.BOOL, ["seq", 1, "batch", 4])], inits)
    model = H.make_model(graph, opset_imports=[H.make_opsetid("", 17), H.make_opsetid("ai.onnx.ml", 3)])
    onnx.save(model, str(path))
    return path


def fixed_sizes(path, hidden=32, features=8, seed=0):
    """An LSTM whose input is fixed at [5, 1, 8] (no symbolic dim at all)."""
    rng = np.random.default_rng(seed)
    inits = [NH.from_array(_w(rng, 1, 4 * hidden, features), "W"), NH.from_array(_w(rng, 1, 4 * hidden, hidden), "R"),
             NH.from_array(_w(rng, hidden, 2), "head")]
    nodes = [H.make_node("LSTM", ["x", "W", "R"], ["", "h"], hidden_size=hidden, name="lstm"),
             H.make_node("MatMul", ["h", "head"], ["out"], name="head")]
    graph = H.make_graph(nodes, "fixed", [H.make_tensor_value_info("x", TP.FLOAT, [5, 1, features])],
                         [H.make_tensor_value_info("out", TP.FLOAT, [1, 1, 2])], inits)
    onnx.save(H.make_model(graph, opset_imports=[H.make_opsetid("", 17)]), str(path))
    return path


def odd_names(path, hidden=32, features=8, seed=0):
    """Names with spaces and slashes everywhere (inputs, nodes, weights, outputs)."""
    rng = np.random.default_rng(seed)
    inits = [NH.from_array(_w(rng, 1, 4 * hidden, features), "enc/lstm W"), NH.from_array(_w(rng, 1, 4 * hidden, hidden), "enc/lstm R"),
             NH.from_array(_w(rng, hidden, 2), "dec/head:0")]
    nodes = [H.make_node("LSTM", ["input x/0", "enc/lstm W", "enc/lstm R"], ["", "enc/h n"], hidden_size=hidden, name="enc/lstm 0"),
             H.make_node("MatMul", ["enc/h n", "dec/head:0"], ["out put/0"], name="dec/head")]
    graph = H.make_graph(nodes, "odd names", [H.make_tensor_value_info("input x/0", TP.FLOAT, ["time steps", "batch size", features])],
                         [H.make_tensor_value_info("out put/0", TP.FLOAT, [1, "batch size", 2])], inits)
    onnx.save(H.make_model(graph, opset_imports=[H.make_opsetid("", 17)]), str(path))
    return path


def lengths_cell(path, cell="LSTM", hidden=32, features=8, lengths_name="n_frames", seed=0):
    """A recurrent node whose sequence_lens is a graph input (int32 [batch]) named `lengths_name` (not always like a length)."""
    rng = np.random.default_rng(seed)
    gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[cell]
    inits = [NH.from_array(_w(rng, 1, gates * hidden, features), "W"), NH.from_array(_w(rng, 1, gates * hidden, hidden), "R"),
             NH.from_array(_w(rng, hidden, 3), "head")]
    nodes = [H.make_node(cell, ["x", "W", "R", "", lengths_name], ["", "Yh"], hidden_size=hidden, name="rnn"),
             H.make_node("MatMul", ["Yh", "head"], ["out"], name="head")]
    graph = H.make_graph(nodes, "lens", [H.make_tensor_value_info("x", TP.FLOAT, ["T", "B", features]),
                                         H.make_tensor_value_info(lengths_name, TP.INT32, ["B"])],
                         [H.make_tensor_value_info("out", TP.FLOAT, [1, "B", 3])], inits)
    onnx.save(H.make_model(graph, opset_imports=[H.make_opsetid("", 14)]), str(path))
    return path


def shared_dims(path, hidden=32, seed=0):
    """Two inputs tied by one dim_param each (`frames` on both, `batch` on both): audio features and a frame mask."""
    rng = np.random.default_rng(seed)
    inits = [NH.from_array(_w(rng, 1, 4 * hidden, 8), "W"), NH.from_array(_w(rng, 1, 4 * hidden, hidden), "R"),
             NH.from_array(_w(rng, hidden, 2), "head"), NH.from_array(np.array([2], np.int64), "ax2")]
    nodes = [H.make_node("Unsqueeze", ["mask", "ax2"], ["m3"]), H.make_node("Mul", ["feats", "m3"], ["xm"]),
             H.make_node("LSTM", ["xm", "W", "R"], ["Y", ""], hidden_size=hidden, name="lstm"),
             H.make_node("MatMul", ["Y", "head"], ["out"], name="head")]
    graph = H.make_graph(nodes, "tied", [H.make_tensor_value_info("feats", TP.FLOAT, ["frames", "batch", 8]),
                                         H.make_tensor_value_info("mask", TP.FLOAT, ["frames", "batch"])],
                         [H.make_tensor_value_info("out", TP.FLOAT, ["frames", 1, "batch", 2])], inits)
    onnx.save(H.make_model(graph, opset_imports=[H.make_opsetid("", 17)]), str(path))
    return path


def scan_lstm(path, hidden=32, features=8, seed=0):
    """A Scan over chunks ([chunks, T, B, F]) whose body runs an LSTM on each chunk with the state carried."""
    rng = np.random.default_rng(seed)
    W, R = NH.from_array(_w(rng, 1, 4 * hidden, features), "W"), NH.from_array(_w(rng, 1, 4 * hidden, hidden), "R")
    body = H.make_graph(
        [H.make_node("LSTM", ["chunk", "W", "R", "", "", "h_in", "c_in"], ["", "h_out", "c_out"], hidden_size=hidden, name="scan_lstm"),
         H.make_node("Identity", ["h_out"], ["h_each"])],
        "scan_body", [H.make_tensor_value_info("h_in", TP.FLOAT, [1, "B", hidden]), H.make_tensor_value_info("c_in", TP.FLOAT, [1, "B", hidden]),
                      H.make_tensor_value_info("chunk", TP.FLOAT, ["T", "B", features])],
        [H.make_tensor_value_info("h_out", TP.FLOAT, [1, "B", hidden]), H.make_tensor_value_info("c_out", TP.FLOAT, [1, "B", hidden]),
         H.make_tensor_value_info("h_each", TP.FLOAT, [1, "B", hidden])], [W, R])
    head = NH.from_array(_w(rng, hidden, 2), "head")
    nodes = [H.make_node("Scan", ["h0", "c0", "chunks"], ["hT", "cT", "hs"], body=body, num_scan_inputs=1, name="scan"),
             H.make_node("MatMul", ["hs", "head"], ["out"], name="head")]
    graph = H.make_graph(nodes, "scan", [H.make_tensor_value_info("h0", TP.FLOAT, [1, "batch", hidden]),
                                         H.make_tensor_value_info("c0", TP.FLOAT, [1, "batch", hidden]),
                                         H.make_tensor_value_info("chunks", TP.FLOAT, ["n", "time", "batch", features])],
                         [H.make_tensor_value_info("out", TP.FLOAT, ["n", 1, "batch", 2])], [head])
    onnx.save(H.make_model(graph, opset_imports=[H.make_opsetid("", 17)]), str(path))
    return path


def external_outside(path, folder_name="model"):
    """An LSTM whose weights live in '../weights.bin' (outside the model's folder): a file that must be refused."""
    sub = path.parent / folder_name
    sub.mkdir(exist_ok=True)
    inner = helper_cell(sub / "tmp.onnx", "LSTM", hidden=64)
    model = onnx.load(str(inner))
    onnx.save_model(model, str(sub / "x.onnx"), save_as_external_data=True, location="weights.bin", size_threshold=256)
    (sub / "weights.bin").replace(path.parent / "weights.bin")
    model = onnx.load(str(sub / "x.onnx"), load_external_data=False)
    for t in model.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = "../weights.bin"
    onnx.save(model, str(sub / path.name))
    return sub / path.name


def init_inputs(path, opset=9):
    """A TorchScript LSTM saved with keep_initializers_as_inputs=True (older exporters did so): every weight is also
    a graph input, which a user may override."""
    import torch

    torch.manual_seed(0)
    net = torch.nn.LSTM(8, 48, batch_first=True).eval()
    torch.onnx.export(net, (torch.randn(2, 5, 8),), str(path), input_names=["x"], output_names=["y", "h", "c"],
                      dynamic_axes={"x": {0: "batch", 1: "seq"}}, opset_version=opset, dynamo=False,
                      keep_initializers_as_inputs=True)
    return path


def shapeless(path, hidden=32, features=8, seed=0):
    """An LSTM whose input carries a dtype and no shape at all (converters that lose shapes write such files)."""
    rng = np.random.default_rng(seed)
    inits = [NH.from_array(_w(rng, 1, 4 * hidden, features), "W"), NH.from_array(_w(rng, 1, 4 * hidden, hidden), "R"),
             NH.from_array(_w(rng, hidden, 2), "head")]
    nodes = [H.make_node("LSTM", ["x", "W", "R"], ["", "h"], hidden_size=hidden, name="lstm"),
             H.make_node("MatMul", ["h", "head"], ["out"], name="head")]
    graph = H.make_graph(nodes, "shapeless", [H.make_tensor_value_info("x", TP.FLOAT, None)],
                         [H.make_tensor_value_info("out", TP.FLOAT, None)], inits)
    onnx.save(H.make_model(graph, opset_imports=[H.make_opsetid("", 17)]), str(path))
    return path


def tied_lm(path, vocab=VOCAB, hidden=32, seed=0):
    """A language model with tied embeddings: one table feeds the Gather and (transposed) the output MatMul; and one
    LSTM weight pair shared by two LSTM nodes (the same layer applied twice)."""
    rng = np.random.default_rng(seed)
    inits = [NH.from_array(_w(rng, vocab, hidden, scale=0.5), "emb"), NH.from_array(_w(rng, 1, 4 * hidden, hidden), "W"),
             NH.from_array(_w(rng, 1, 4 * hidden, hidden), "R")]
    nodes = [H.make_node("Gather", ["emb", "ids"], ["e"], name="embed"),  # (T, B, H)
             H.make_node("LSTM", ["e", "W", "R"], ["Y1", ""], hidden_size=hidden, name="lstm_a"),
             H.make_node("Squeeze", ["Y1", "one"], ["y1"]),
             H.make_node("LSTM", ["y1", "W", "R"], ["Y2", ""], hidden_size=hidden, name="lstm_b"),
             H.make_node("Squeeze", ["Y2", "one"], ["y2"]),
             H.make_node("Transpose", ["emb"], ["embT"], perm=[1, 0]),
             H.make_node("MatMul", ["y2", "embT"], ["logits"], name="tied_head")]
    inits.append(NH.from_array(np.array([1], np.int64), "one"))
    graph = H.make_graph(nodes, "tied", [H.make_tensor_value_info("ids", TP.INT64, ["seq", "batch"])],
                         [H.make_tensor_value_info("logits", TP.FLOAT, ["seq", "batch", vocab])], inits)
    onnx.save(H.make_model(graph, opset_imports=[H.make_opsetid("", 17)]), str(path))
    return path


def seq_output(path, hidden=32, features=8, seed=0):
    """An LSTM with a sequence-typed output (SequenceConstruct of Y_h and Y_c) next to a tensor one."""
    rng = np.random.default_rng(seed)
    inits = [NH.from_array(_w(rng, 1, 4 * hidden, features), "W"), NH.from_array(_w(rng, 1, 4 * hidden, hidden), "R")]
    nodes = [H.make_node("LSTM", ["x", "W", "R"], ["Y", "h", "c"], hidden_size=hidden, name="lstm"),
             H.make_node("SequenceConstruct", ["h", "c"], ["states"])]
    seq_type = H.make_sequence_type_proto(H.make_tensor_type_proto(TP.FLOAT, None))
    graph = H.make_graph(nodes, "seqout", [H.make_tensor_value_info("x", TP.FLOAT, ["seq", "batch", features])],
                         [H.make_tensor_value_info("Y", TP.FLOAT, ["seq", 1, "batch", hidden]), H.make_value_info("states", seq_type)], inits)
    onnx.save(H.make_model(graph, opset_imports=[H.make_opsetid("", 17)]), str(path))
    return path


def string_labels(path, hidden=32, features=8, seed=0):
    """LSTM -> ArgMax -> ai.onnx.ml LabelEncoder: string labels out (a tagger as sklearn-onnx style pipelines end)."""
    rng = np.random.default_rng(seed)
    inits = [NH.from_array(_w(rng, 1, 4 * hidden, features), "W"), NH.from_array(_w(rng, 1, 4 * hidden, hidden), "R"),
             NH.from_array(_w(rng, hidden, 3), "head")]
    nodes = [H.make_node("LSTM", ["x", "W", "R"], ["", "h"], hidden_size=hidden, name="lstm"),
             H.make_node("MatMul", ["h", "head"], ["scores"], name="head"),
             H.make_node("ArgMax", ["scores"], ["k"], axis=-1, keepdims=0),
             H.make_node("LabelEncoder", ["k"], ["label"], domain="ai.onnx.ml", keys_int64s=[0, 1, 2],
                         values_strings=["noise", "speech", "music"], default_string="?")]
    graph = H.make_graph(nodes, "labels", [H.make_tensor_value_info("x", TP.FLOAT, ["seq", "batch", features])],
                         [H.make_tensor_value_info("scores", TP.FLOAT, [1, "batch", 3]), H.make_tensor_value_info("label", TP.STRING, [1, "batch"])],
                         inits)
    onnx.save(H.make_model(graph, opset_imports=[H.make_opsetid("", 17), H.make_opsetid("ai.onnx.ml", 2)]), str(path))
    return path


def double_lstm(path, opset=14):
    """A float64 (double) GRU exported by TorchScript."""
    import torch

    torch.manual_seed(0)
    net = torch.nn.GRU(8, 48, batch_first=True).double().eval()
    torch.onnx.export(net, (torch.randn(2, 5, 8, dtype=torch.float64),), str(path), input_names=["x"], output_names=["y", "h"],
                      dynamic_axes={"x": {0: "batch", 1: "seq"}}, opset_version=opset, dynamo=False)
    return path


def scalar_gain(path, hidden=32, features=8, seed=0):
    """An LSTM whose output is scaled by a float32 scalar input `gain` (a volume / temperature knob)."""
    rng = np.random.default_rng(seed)
    inits = [NH.from_array(_w(rng, 1, 4 * hidden, features), "W"), NH.from_array(_w(rng, 1, 4 * hidden, hidden), "R")]
    nodes = [H.make_node("LSTM", ["x", "W", "R"], ["", "h"], hidden_size=hidden, name="lstm"), H.make_node("Mul", ["h", "gain"], ["out"])]
    graph = H.make_graph(nodes, "gain", [H.make_tensor_value_info("x", TP.FLOAT, ["seq", "batch", features]),
                                         H.make_tensor_value_info("gain", TP.FLOAT, []), H.make_tensor_value_info("step", TP.INT64, [])],
                         [H.make_tensor_value_info("out", TP.FLOAT, [1, "batch", hidden])], inits)
    onnx.save(H.make_model(graph, opset_imports=[H.make_opsetid("", 17)]), str(path))
    return path
