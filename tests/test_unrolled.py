"""exporters.unrolled: the fixed-chunk lowering equals torch eager, chains, and uses only mobile-friendly ops."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from exporters import unrolled
from rnnedge.errors import BadInputError
from rnnedge.exporting.api import build_onnx, export

CHUNK, FEATURES, HIDDEN, CLASSES = 8, 5, 8, 3
# Every op type a mobile export may hold: the lowering's own, native.py's glue, torch's Linear head.
MOBILE_OPS = unrolled.OPS | unrolled.GATHER_OPS | {"Transpose", "Gemm"}


class Streamer(nn.Module):
    """forward(x, h0[, c0]) -> (logits, hn[, cn]): the mobile I/O contract around one recurrent stack."""

    def __init__(self, cell: str, bidirectional: bool = False, layers: int = 1, proj: int = 0, relu: bool = False):
        super().__init__()
        kw = {"proj_size": proj} if proj else ({"nonlinearity": "relu"} if relu else {})
        self.rnn = getattr(nn, cell.upper())(FEATURES, HIDDEN, num_layers=layers, bidirectional=bidirectional,
                                             batch_first=True, **kw)
        self.head = nn.Linear((proj or HIDDEN) * (2 if bidirectional else 1), CLASSES)
        self.lstm = cell == "lstm"

    def forward(self, x, h0, c0=None):
        if self.lstm:
            y, (hn, cn) = self.rnn(x, (h0, c0))
            return self.head(y), hn, cn
        y, hn = self.rnn(x, h0)
        return self.head(y), hn


def make(cell, bidirectional=False, layers=1, proj=0, relu=False, seed=0):
    torch.manual_seed(seed)
    module = Streamer(cell, bidirectional, layers, proj, relu).eval()
    dirs = 2 if bidirectional else 1
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(1, CHUNK, FEATURES, generator=gen)  # (B, chunk, F)
    h0 = torch.randn(layers * dirs, 1, proj or HIDDEN, generator=gen) * 0.5  # (L*D, B, Hout)
    c0 = torch.randn(layers * dirs, 1, HIDDEN, generator=gen) * 0.5
    examples = (x, h0, c0) if cell == "lstm" else (x, h0)
    names = ["x", "h0", "c0"][: len(examples)]
    outputs = ["logits", "hn", "cn"][: len(examples)]
    return module, examples, names, outputs


def export_mobile(tmp_path, cell, **kw):
    module, examples, names, outputs = make(cell, **kw)
    path = tmp_path / f"{cell}.onnx"
    export(module, examples, path, target="mobile", input_names=names, output_names=outputs, verify=False)
    return module, examples, names, path


@pytest.mark.parametrize(
    "cell, bidirectional, layers, extra",
    [
        ("rnn", False, 2, {}),
        ("rnn", True, 1, {"relu": True}),
        ("gru", False, 1, {}),
        ("gru", True, 2, {}),
        ("lstm", False, 2, {}),
        ("lstm", True, 1, {}),
        ("lstm", False, 1, {"proj": 4}),
    ],
)
def test_mobile_export_matches_torch(tmp_path, cell, bidirectional, layers, extra):
    """ORT on the unrolled export equals torch eager (1e-5) for every output, and only plain ops appear."""
    module, examples, names, path = export_mobile(tmp_path, cell, bidirectional=bidirectional, layers=layers, **extra)
    model = onnx.load(str(path))
    ops = {n.op_type for n in model.graph.node}
    assert ops <= MOBILE_OPS, ops - MOBILE_OPS
    for vi in [*model.graph.input, *model.graph.output]:  # fixed shapes: the chunk, not symbols
        assert all(d.HasField("dim_value") for d in vi.type.tensor_type.shape.dim), vi.name
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {n: e.numpy() for n, e in zip(names, examples)})
    with torch.no_grad():
        want = module(*examples)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w.numpy(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("cell, layers", [("lstm", 2), ("gru", 1)])
def test_chunks_with_carried_state_equal_whole_sequence(tmp_path, cell, layers):
    """Three chunks of 8 fed one after another, state carried over == the 24-step sequence in torch."""
    module, examples, names, path = export_mobile(tmp_path, cell, layers=layers)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(7)
    whole = torch.randn(1, 3 * CHUNK, FEATURES, generator=gen)
    states = [s.numpy() for s in examples[1:]]
    pieces = []
    for k in range(3):
        out, *states = session.run(None, {"x": whole[:, k * CHUNK : (k + 1) * CHUNK].numpy(), **dict(zip(names[1:], states))})
        pieces.append(out)
    with torch.no_grad():
        want = module(whole, *examples[1:])
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), want[0].numpy(), atol=1e-5, rtol=0)
    for got, ref in zip(states, want[1:]):
        np.testing.assert_allclose(got, ref.numpy(), atol=1e-5, rtol=0)


class LastStep(nn.Module):
    """A classifier on the last step: `y[:, -1]` exports as Gather with a constant index."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(FEATURES, HIDDEN, batch_first=True)
        self.head = nn.Linear(HIDDEN, CLASSES)

    def forward(self, x, h0):
        y, hn = self.rnn(x, h0)
        return self.head(y[:, -1]), hn


def test_constant_gather_becomes_slice(tmp_path):
    """CoreML MLProgram lists no Gather: y[:, -1] must come out as Slice + Squeeze, with the same values."""
    torch.manual_seed(0)
    module = LastStep().eval()
    x, h0 = torch.randn(1, CHUNK, FEATURES), torch.randn(1, 1, HIDDEN)
    path = tmp_path / "last.onnx"
    export(module, (x, h0), path, target="mobile", input_names=["x", "h0"], output_names=["logits", "hn"], verify=False)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "Gather" not in ops and ops <= MOBILE_OPS
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy(), "h0": h0.numpy()})
    with torch.no_grad():
        want = module(x, h0)
    for g, w in zip(got, want):
        assert g.shape == tuple(w.shape)
        np.testing.assert_allclose(g, w.numpy(), atol=1e-5, rtol=0)


def test_unrolled_needs_target_mobile():
    module, examples, names, outputs = make("gru")
    with pytest.raises(BadInputError):
        build_onnx(module, examples, target="dynamic", lowering="unrolled", input_names=names)


# ------------------------------------------------------------------------------------------
# ONNX-to-ONNX, on a hand-made standard LSTM (not exported by rnnedge): sequence_lens, refusal.
# ------------------------------------------------------------------------------------------


def standard_lstm(steps, batch=3, inputs=4, hidden=5, seq_lens=True):
    """One bidirectional ONNX LSTM: X (T, B, I), sequence_lens int32 (B,) -> Y, Y_h, Y_c."""
    rng = np.random.default_rng(0)
    w = lambda *shape: numpy_helper.from_array((rng.standard_normal(shape) * 0.4).astype(np.float32))  # noqa: E731
    inits = [w(2, 4 * hidden, inputs), w(2, 4 * hidden, hidden), w(2, 8 * hidden)]
    for t, name in zip(inits, "WRB"):
        t.name = name
    graph_inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, [steps, batch, inputs])]
    if seq_lens:
        graph_inputs.append(helper.make_tensor_value_info("L", TensorProto.INT32, [batch]))
    node = helper.make_node("LSTM", ["X", "W", "R", "B", "L" if seq_lens else ""], ["Y", "Y_h", "Y_c"],
                            hidden_size=hidden, direction="bidirectional")
    shapes = {"Y": [steps, 2, batch, hidden], "Y_h": [2, batch, hidden], "Y_c": [2, batch, hidden]}
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n, shape in shapes.items()]
    graph = helper.make_graph([node], "lstm", graph_inputs, outs, initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_sequence_lens_become_masks():
    """Rows shorter than T: zeros past their length, states at their last step, backward pass from there."""
    original = standard_lstm(steps=6)
    lowered = onnx.ModelProto()
    lowered.CopyFrom(original)
    assert unrolled.lower_to_unrolled(lowered) == []
    onnx.checker.check_model(lowered)
    assert {n.op_type for n in lowered.graph.node} <= unrolled.OPS
    feeds = {"X": np.random.default_rng(1).standard_normal((6, 3, 4)).astype(np.float32), "L": np.array([6, 2, 4], np.int32)}
    run = lambda m: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)  # noqa: E731
    for got, want in zip(run(lowered), run(original)):
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_dynamic_time_axis_is_left_with_a_reason():
    model = standard_lstm(steps="T", seq_lens=False)
    left = unrolled.lower_to_unrolled(model)
    assert len(left) == 1 and "not static" in left[0]
    assert [n.op_type for n in model.graph.node] == ["LSTM"]
