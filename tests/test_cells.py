"""Cells and hand-written recurrences export through the same path as nn.RNN/GRU/LSTM.

Step modules (x_t, state -> state, with or without a head) export with a symbolic batch and match torch
at batch 1, 4 and 16; `rnnedge.run_cell` keeps a dynamic time axis (standard cells become the standard
ONNX operator, other cells an ONNX Scan); the files quantize and run in rnnedge.runtime.Session.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from drift_bounds import WEIGHT_ONLY_REL, assert_drift, int8_count
from torch import nn

import rnnedge
from rnnedge import run_cell
from rnnedge.errors import ExportError

H = 8


class CellStep(nn.Module):
    """One step of a standard cell with a head: (x_t, h[, c]) -> (logits, h[, c])."""

    def __init__(self, kind):
        super().__init__()
        self.cell = getattr(nn, kind)(5, H)
        self.head = nn.Linear(H, 3)

    def forward(self, x, h, c=None):
        if c is not None:
            h, c = self.cell(x, (h, c))
            return self.head(h), h, c
        h = self.cell(x, h)
        return self.head(h), h


class LayerNormLSTMStep(nn.Module):
    """A hand-written layer-normalised LSTM step (Ba et al. 2016), called as cell(x_t, (h, c)) -> (h, c)."""

    def __init__(self, inputs=5, hidden=H):
        super().__init__()
        self.ih, self.hh = nn.Linear(inputs, 4 * hidden), nn.Linear(hidden, 4 * hidden, bias=False)
        self.ln_gates, self.ln_cell = nn.LayerNorm(4 * hidden), nn.LayerNorm(hidden)

    def forward(self, x, state):
        h, c = state  # (B, H) each
        i, f, g, o = self.ln_gates(self.ih(x) + self.hh(h)).chunk(4, 1)  # 4 x (B, H)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(self.ln_cell(c)), c


class LightGRUStep(nn.Module):
    """A light GRU step (Ravanelli et al. 2018: no reset gate, ReLU candidate), cell(x_t, h=None) -> h."""

    def __init__(self, inputs=5, hidden=H):
        super().__init__()
        self.w, self.u, self.hidden = nn.Linear(inputs, 2 * hidden), nn.Linear(hidden, 2 * hidden, bias=False), hidden

    def forward(self, x, h=None):
        if h is None:
            h = x.new_zeros(x.shape[0], self.hidden)
        z, a = (self.w(x) + self.u(h)).chunk(2, 1)  # (B, H) each
        z = torch.sigmoid(z)
        return z * h + (1 - z) * torch.relu(a)


class FlatLNLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.cell = LayerNormLSTMStep()

    def forward(self, x, h, c):
        return self.cell(x, (h, c))


class Stepped(nn.Module):
    """A cell over a whole sequence with run_cell, then a head: (B, T, 5) -> (B, T, 3)."""

    def __init__(self, cell):
        super().__init__()
        self.cell, self.head = cell, nn.Linear(H, 3)

    def forward(self, x):
        y, _ = run_cell(self.cell, x)  # (B, T, H)
        return self.head(y)


class AttentionDecoderStep(nn.Module):
    """The seq2seq decoder's one step: previous token, state, encoder memory, mask -> logits, new state."""

    def __init__(self, vocab=12, embed=6):
        super().__init__()
        self.embed, self.cell, self.out = nn.Embedding(vocab, embed), nn.GRUCell(embed + H, H), nn.Linear(2 * H, vocab)

    def forward(self, token, h, memory, mask):  # (B,), (B, H), (B, S, H), (B, S)
        scores = (memory @ h.unsqueeze(2)).squeeze(2).masked_fill(mask == 0, -1e9)  # (B, S)
        context = (torch.softmax(scores, -1).unsqueeze(1) @ memory).squeeze(1)  # (B, H)
        h = self.cell(torch.cat([self.embed(token), context], -1), h)
        return self.out(torch.cat([h, context], -1)), h


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _ort(path, feeds):
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {k: v.numpy() for k, v in feeds.items()})


def _max_error(module, path, feeds):
    with torch.no_grad():
        want = module(*feeds.values())
    want = want if isinstance(want, tuple) else (want,)
    got = _ort(path, feeds)
    assert len(got) == len(want)
    return max(float(np.abs(g - w.numpy()).max()) for g, w in zip(got, want))


def _dims(path):
    model = onnx.load(str(path))
    return {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in [*model.graph.input, *model.graph.output]}


@pytest.mark.parametrize("kind", ["RNNCell", "GRUCell", "LSTMCell"])
def test_standard_cell_step_modules_match_torch_at_batch_1_4_16(tmp_path, kind):
    module = CellStep(kind).eval()
    names = ["x", "h", "c"] if kind == "LSTMCell" else ["x", "h"]
    example = tuple(_rand(2, 5 if n == "x" else H, seed=i) for i, n in enumerate(names))
    path = tmp_path / "step.onnx"
    result = rnnedge.export(module, example, path, input_names=names)
    assert result.parity  # the export's own check passed
    dims = _dims(path)
    assert all(dims[n][0] == "batch" for n in names)
    for batch in (1, 4, 16):
        feeds = {n: _rand(batch, 5 if n == "x" else H, seed=batch + i) for i, n in enumerate(names)}
        assert _max_error(module, path, feeds) < 1e-5


@pytest.mark.parametrize("module, names", [(FlatLNLSTM(), ["x", "h", "c"]), (LightGRUStep(), ["x", "h"])], ids=["layernorm-lstm", "light-gru"])
def test_hand_written_step_modules_export(tmp_path, module, names):
    module.eval()
    path = tmp_path / "step.onnx"
    rnnedge.export(module, tuple(_rand(3, 5 if n == "x" else H, seed=i) for i, n in enumerate(names)), path, input_names=names)
    for batch in (1, 4, 16):
        feeds = {n: _rand(batch, 5 if n == "x" else H, seed=10 * batch + i) for i, n in enumerate(names)}
        assert _max_error(module, path, feeds) < 1e-5


def test_run_cell_in_eager_torch_is_the_python_loop():
    cell = nn.LSTMCell(5, H)
    x, h, c = _rand(3, 6, 5), _rand(3, H, seed=1), _rand(3, H, seed=2)
    y, (hn, cn) = run_cell(cell, x, (h, c))
    state = (h, c)
    for t in range(6):
        state = cell(x[:, t], state)
        assert torch.equal(y[:, t], state[0])
    assert torch.equal(hn, state[0]) and torch.equal(cn, state[1])
    y_tm, _ = run_cell(cell, x.transpose(0, 1), (h, c), batch_first=False)
    assert torch.equal(y_tm.transpose(0, 1), y)


@pytest.mark.parametrize("cell, op", [(nn.LSTMCell(5, H), "LSTM"), (nn.GRUCell(5, H), "GRU"), (nn.RNNCell(5, H, nonlinearity="relu"), "RNN")],
                         ids=["lstm", "gru", "rnn-relu"])
def test_run_cell_keeps_a_dynamic_time_axis_with_the_standard_operator(tmp_path, cell, op):
    module = Stepped(cell).eval()
    path = tmp_path / "seq.onnx"
    rnnedge.export(module, _rand(2, 10, 5), path, input_names=["x"], lowering="native")
    assert _dims(path)["x"][:2] == ["batch", "seq"]
    assert op in {n.op_type for n in onnx.load(str(path)).graph.node}
    for batch, steps in ((1, 1), (4, 9), (16, 40)):
        assert _max_error(module, path, {"x": _rand(batch, steps, 5, seed=steps)}) < 1e-5


def test_run_cell_with_a_hand_written_cell_exports_a_scan(tmp_path):
    module = Stepped(LightGRUStep()).eval()
    path = tmp_path / "seq.onnx"
    rnnedge.export(module, _rand(2, 10, 5), path, input_names=["x"])
    assert _dims(path)["x"][:2] == ["batch", "seq"]
    assert "Scan" in {n.op_type for n in onnx.load(str(path)).graph.node}
    for batch, steps in ((1, 1), (4, 9), (3, 70)):
        assert _max_error(module, path, {"x": _rand(batch, steps, 5, seed=steps)}) < 1e-5


class SharedStart(nn.Module):
    """run_cell from a start the code builds: one tensor for both h and c, or a non-contiguous view of the input
    (torch's scan refused both: 'might be aliasing', 'init and carry ... differ in stride')."""

    def __init__(self, view: bool):
        super().__init__()
        self.cell, self.head, self.view = LayerNormLSTMStep(), nn.Linear(H, 3), view

    def forward(self, x):
        start = x[:, 0, :1].expand(-1, H) if self.view else x.new_full((x.shape[0], H), 0.5)
        y, _ = run_cell(self.cell, x, (start, start))
        return self.head(y)


@pytest.mark.parametrize("view", [False, True])
def test_run_cell_from_a_shared_or_strided_start_exports(tmp_path, view):
    module, path = SharedStart(view).eval(), tmp_path / "seq.onnx"
    rnnedge.export(module, _rand(2, 10, 5), path, input_names=["x"])
    for batch, steps in ((1, 1), (3, 70)):
        assert _max_error(module, path, {"x": _rand(batch, steps, 5, seed=steps)}) < 1e-5


def test_attention_decoder_step_exports_with_memory_length_dynamic(tmp_path):
    module = AttentionDecoderStep().eval()
    names = ["token", "h", "memory", "mask"]
    example = (torch.tensor([1, 5, 7]), _rand(3, H), _rand(3, 7, H, seed=1), torch.ones(3, 7))
    path = tmp_path / "decoder.onnx"
    rnnedge.export(module, example, path, input_names=names)
    dims = _dims(path)
    assert dims["memory"][:2] == ["batch", "seq"] and dims["mask"] == ["batch", "seq"] and dims["token"] == ["batch"]
    for batch, src in ((1, 1), (4, 11), (16, 30)):
        mask = torch.ones(batch, src)
        mask[0, src // 2:] = 0 if src > 1 else 1
        feeds = {"token": torch.arange(batch) % 12, "h": _rand(batch, H, seed=src), "memory": _rand(batch, src, H, seed=batch), "mask": mask}
        assert _max_error(module, path, feeds) < 1e-5


def test_a_step_file_quantizes_and_runs_in_the_runtime_session(tmp_path):
    from rnnedge.runtime import Session

    module = CellStep("LSTMCell").eval()
    names = ["x", "h", "c"]
    path, int8 = tmp_path / "step.onnx", tmp_path / "step.int8.onnx"
    rnnedge.export(module, tuple(_rand(2, 5 if n == "x" else H, seed=i) for i, n in enumerate(names)), path, input_names=names)
    result = rnnedge.quantize(path, int8, mode="int8", forms="weights-int8")  # measured, hidden 8 keeps float32: forced
    assert result.kept_fp32 is None and int8_count(int8) > 0
    feeds = {n: _rand(4, 5 if n == "x" else H, seed=20 + i) for i, n in enumerate(names)}
    with torch.no_grad():
        want = module(*feeds.values())
    got = Session(path).run_all({k: v.numpy() for k, v in feeds.items()})
    assert len(got) == 3 and max(float(np.abs(g - w.numpy()).max()) for g, w in zip(got.values(), want)) < 1e-5
    got = Session(int8).run_all({k: v.numpy() for k, v in feeds.items()})
    for g, w in zip(got.values(), want):
        assert_drift(w.numpy(), g, WEIGHT_ONLY_REL, "int8 step file, weights-int8")


def test_a_step_modules_state_follows_the_batch_declared_on_x_only(tmp_path):
    path = tmp_path / "step.onnx"
    example = (_rand(2, 5), _rand(2, H, seed=1), _rand(2, H, seed=2))
    rnnedge.export(CellStep("LSTMCell").eval(), example, path, input_names=["x", "h", "c"], dynamic_axes={"x": {0: "batch"}})
    assert {n: d[0] for n, d in _dims(path).items() if n in ("x", "h", "c")} == {"x": "batch", "h": "batch", "c": "batch"}


def test_stream_target_is_refused_for_modules_without_recurrent_layers(tmp_path):
    with pytest.raises(ExportError, match="step module"):
        rnnedge.export(CellStep("GRUCell").eval(), (_rand(2, 5), _rand(2, H)), tmp_path / "m.onnx", target="stream")
