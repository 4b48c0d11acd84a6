"""A recurrent test matrix modelled on an exporter's own suite (PyTorch's ONNX tests: _lstm_test, _gru_test,
_elman_rnn_test), written here from scratch: cell x layers (1, 3) x bidirectional x initial state x
packed_sequence (0: the bare layer; 1: packed seq-major through a wrapper whose forward is `(input, *args)` with
the lengths LAST; 2: packed batch-first through with/without-state wrappers), dropout > 0 in eval for 3 layers,
int32 lengths sorted descending, pad_packed_sequence WITHOUT total_length (torch returns max(lengths) steps).

Each configuration is exported once (batch 7, seq 11) and checked by hand (tests/coverage_check.py) at three
shapes never used for export: seq 1, a batch whose longest row is shorter than the padding, and seq 300;
every input's batch/seq axes and every output's batch/time axes must be symbolic (dim_param).
The default run takes a crc32-seeded slice; `-m slow` runs all of them.
"""

from __future__ import annotations

import itertools
import random

import pytest
import torch
from coverage_check import assert_symbolic, dims, max_error_vs_torch, seed_of, session
from torch import nn
from torch.nn.utils import rnn as rnn_utils

import rnnedge

INPUT, HIDDEN, BATCH, SEQ = 5, 3, 7, 11
CELLS = ("lstm", "gru", "rnn_tanh", "rnn_relu")


class PackedWrapper(nn.Module):
    """forward(input, *args): args[:-1] go to the layer, args[-1] are the lengths (packed, not sorted here)."""

    def __init__(self, model, batch_first):
        super().__init__()
        self.model, self.batch_first = model, batch_first

    def forward(self, input, *args):
        args, seq_lengths = args[:-1], args[-1]
        input = rnn_utils.pack_padded_sequence(input, seq_lengths, self.batch_first)
        rets = self.model(input, *args)
        ret, rets = rets[0], rets[1:]
        ret, _ = rnn_utils.pad_packed_sequence(ret, self.batch_first)
        return tuple([ret] + list(rets))


class PackedWithState(nn.Module):
    def __init__(self, model, batch_first):
        super().__init__()
        self.model, self.batch_first = model, batch_first

    def forward(self, input, hx, seq_lengths):
        packed = rnn_utils.pack_padded_sequence(input, seq_lengths, self.batch_first)
        out, state = self.model(packed, hx)
        out, _ = rnn_utils.pad_packed_sequence(out, self.batch_first)
        return [out, state]


class PackedWithoutState(nn.Module):
    def __init__(self, model, batch_first):
        super().__init__()
        self.model, self.batch_first = model, batch_first

    def forward(self, input, seq_lengths):
        packed = rnn_utils.pack_padded_sequence(input, seq_lengths, self.batch_first)
        out, state = self.model(packed)
        out, _ = rnn_utils.pad_packed_sequence(out, self.batch_first)
        return [out, state]


def build(cell, layers, bidirectional, initial_state, packed):
    """(module, make(batch, seq, longest) -> (args, names), dynamic_axes) for one configuration."""
    torch.manual_seed(seed_of(f"{cell}-{layers}-{bidirectional}-{initial_state}-{packed}"))
    batch_first = packed == 2
    dropout = 0.3 if layers > 1 else 0.0
    kw = dict(num_layers=layers, bidirectional=bidirectional, dropout=dropout, batch_first=batch_first)
    if cell.startswith("rnn"):
        layer = nn.RNN(INPUT, HIDDEN, nonlinearity=cell[4:], **kw)
    else:
        layer = {"lstm": nn.LSTM, "gru": nn.GRU}[cell](INPUT, HIDDEN, **kw)
    if packed == 0:
        module = layer
    elif packed == 1:
        module = PackedWrapper(layer, batch_first)
    else:
        module = (PackedWithState if initial_state else PackedWithoutState)(layer, batch_first)
    module.eval()
    dirs = 2 if bidirectional else 1

    def make(batch, seq, longest=None):
        gen = random.Random(seed_of(f"inputs-{batch}-{seq}"))
        longest = longest or seq
        lengths = sorted([longest] + [gen.randint(1, longest) for _ in range(batch - 1)], reverse=True)
        rows = [torch.randn(n, INPUT) for n in lengths]
        x = rnn_utils.pad_sequence(rows, batch_first=batch_first)  # padded to `longest`
        if seq > longest:  # extra padding past every row's end
            pad = torch.zeros(batch, seq - longest, INPUT) if batch_first else torch.zeros(seq - longest, batch, INPUT)
            x = torch.cat([x, pad], dim=1 if batch_first else 0)
        args, names = [x], ["input"]
        if initial_state:
            h0 = torch.randn(layers * dirs, batch, HIDDEN)
            if cell == "lstm":
                args.append((h0, torch.randn(layers * dirs, batch, HIDDEN)))
                names += ["h0", "c0"]
            else:
                args.append(h0)
                names.append("h0")
        if packed:
            args.append(torch.tensor(lengths, dtype=torch.int32))  # torch.IntTensor, as such suites pass them
            names.append("seq_lengths")
        return args, names

    x_axes = {0: "batch", 1: "seq"} if batch_first else {0: "seq", 1: "batch"}
    axes = {"input": x_axes, "h0": {1: "batch"}, "c0": {1: "batch"}, "seq_lengths": {0: "batch"}}
    return module, make, axes, batch_first


def run_config(params, tmp_path, shapes) -> float:
    module, make, axes, batch_first = build(*params)
    args, names = make(BATCH, SEQ)
    path = tmp_path / "m.onnx"
    result = rnnedge.export(module, tuple(args), path, input_names=names, dynamic_axes={n: axes[n] for n in names})
    assert result.parity  # rnnedge's own quick check passes too (int32 lengths, nested state)
    time_axis = 1 if batch_first else 0
    assert_symbolic(path, {n: list(axes[n]) for n in names}, {0: [0, 1], 1: [1]})
    x_dims = dims(path)[0]["input"]  # the labels sit on the layout's own axes: (batch, seq) or (seq, batch)
    assert x_dims[time_axis] == "seq" and x_dims[1 - time_axis] == "batch", (batch_first, x_dims)
    sess = session(path)
    worst = 0.0
    for batch, seq, longest in shapes:
        args, _ = make(batch, seq, longest)
        err = max_error_vs_torch(module, path, args, sess)
        assert err < 1e-4, (params, batch, seq, err)
        worst = max(worst, err)
    return worst


MATRIX = list(itertools.product(CELLS, [1, 3], [False, True], [False, True], [0, 1, 2]))
SAMPLE = sorted(random.Random(seed_of("coverage-matrix")).sample(MATRIX, 8))
SHAPES = [(1, 1, None), (3, 17, 12), (2, 300, None)]  # seq 1; longest row (12) shorter than the padding (17); seq 300


def _id(p):
    cell, layers, bi, init, packed = p
    return f"{cell}-L{layers}-{'bi' if bi else 'uni'}-{'h0' if init else 'noh0'}-packed{packed}"


@pytest.mark.parametrize("params", SAMPLE, ids=_id)
def test_matrix_sample(params, tmp_path):
    run_config(params, tmp_path, SHAPES)


@pytest.mark.slow
@pytest.mark.parametrize("params", MATRIX, ids=_id)
def test_matrix_full(params, tmp_path):
    run_config(params, tmp_path, SHAPES + [(5, 40, 40)])
