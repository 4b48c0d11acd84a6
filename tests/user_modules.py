"""Recurrent modules of the kinds users write, for the export and parity tests.

Each factory returns (module, example_inputs, input_names, dynamic_axes, make_inputs) where
make_inputs(batch, seq) gives inputs at other sizes (numpy-free: torch tensors).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class BatchMajorClassifier(nn.Module):
    def __init__(self, cell=nn.GRU, **kw):
        super().__init__()
        self.rnn = cell(5, 16, batch_first=True, **kw)
        self.head = nn.Linear(16 * (2 if kw.get("bidirectional") else 1), 3)

    def forward(self, x):
        h0 = x.new_zeros(self.rnn.num_layers * (2 if self.rnn.bidirectional else 1), x.shape[0], self.rnn.hidden_size)
        y, _ = self.rnn(x, h0)
        return self.head(y[:, -1])


class SeqMajorTagger(nn.Module):
    """(T, B, F) in, (T, B, C) out; two layers, both directions."""

    def __init__(self, cell=nn.LSTM):
        super().__init__()
        self.rnn = cell(6, 12, num_layers=2, bidirectional=True, dropout=0.2)
        self.out = nn.Linear(24, 4)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.out(y)


class ReluNoBias(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.RNN(4, 10, num_layers=2, nonlinearity="relu", bias=False, batch_first=True)

    def forward(self, x):
        return self.rnn(x)  # (y, h)


class ProjectedLSTM(nn.Module):
    def __init__(self, bidirectional=False):
        super().__init__()
        self.rnn = nn.LSTM(5, 16, num_layers=2, proj_size=6, batch_first=True, bidirectional=bidirectional)

    def forward(self, x, h0, c0):
        y, (h, c) = self.rnn(x, (h0, c0))
        return y, h, c


class TiedLanguageModel(nn.Module):
    """Tokens + state in, logits + state out; decoder weight tied to the embedding."""

    def __init__(self, vocab=40, dim=16):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.drop = nn.Dropout(0.1)
        self.rnn = nn.LSTM(dim, dim, num_layers=2, batch_first=True, dropout=0.1)
        self.decoder = nn.Linear(dim, vocab)
        self.decoder.weight = self.embed.weight

    def forward(self, tokens, h0, c0):
        y, (h, c) = self.rnn(self.drop(self.embed(tokens)), (h0, c0))
        return self.decoder(self.drop(y)), h, c


class ConvFrontEnd(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(3, 8, kernel_size=3, padding=1)
        self.rnn = nn.GRU(8, 12, batch_first=True, bidirectional=True)
        self.head = nn.Linear(24, 2)

    def forward(self, x):  # (B, T, 3)
        self.rnn.flatten_parameters()  # as much user code does
        z = torch.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)  # (B, T, 8)
        y, h = self.rnn(z)
        return self.head(torch.cat([h[0], h[1]], dim=-1))


class PackedLengths(nn.Module):
    """Calls the layer with lengths the rnnedge way (pack_padded_sequence in eager mode)."""

    def __init__(self, cell=nn.LSTM, **kw):
        super().__init__()
        self.rnn = cell(5, 8, batch_first=True, **kw)

    def forward(self, x, lengths):
        if getattr(self.rnn, "accepts_lengths", False):
            return self.rnn(x, lengths=lengths)
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        y, h = self.rnn(packed)
        y, _ = pad_packed_sequence(y, batch_first=True, total_length=x.shape[1])
        return y, h


class SeqFirstWithState(nn.Module):
    """A sequence-first GRU tagger taking and returning its state: x (seq, batch, 5), h0 (1, batch, 12) -> y, hn."""

    def __init__(self):
        super().__init__()
        self.gru, self.head = nn.GRU(5, 12), nn.Linear(12, 4)

    def forward(self, x, h0):
        y, h = self.gru(x, h0)
        return self.head(y), h


def _feat(b, t, f):
    return torch.randn(b, t, f)


def cases():
    """name -> (module, example_inputs, input_names, dynamic_axes, make(b, t) -> inputs)."""
    bm = {0: "batch", 1: "seq"}
    state_axes = {1: "batch"}
    return {
        "batch-major gru": lambda: (BatchMajorClassifier(nn.GRU), (_feat(1, 10, 5),), ["x"], {"x": bm},
                                    lambda b, t: (_feat(b, t, 5),)),
        "batch-major bidirectional rnn": lambda: (BatchMajorClassifier(nn.RNN, bidirectional=True), (_feat(2, 9, 5),), ["x"], {"x": bm},
                                                  lambda b, t: (_feat(b, t, 5),)),
        "sequence-major lstm tagger": lambda: (SeqMajorTagger(), (_feat(10, 2, 6),), ["x"], {"x": {0: "seq", 1: "batch"}},
                                               lambda b, t: (_feat(t, b, 6),)),
        "relu rnn without bias": lambda: (ReluNoBias(), (_feat(3, 8, 4),), ["x"], {"x": bm}, lambda b, t: (_feat(b, t, 4),)),
        "lstm with projections": lambda: (ProjectedLSTM(), (_feat(2, 7, 5), torch.zeros(2, 2, 6), torch.zeros(2, 2, 16)),
                                          ["x", "h0", "c0"], {"x": bm, "h0": state_axes, "c0": state_axes},
                                          lambda b, t: (_feat(b, t, 5), torch.randn(2, b, 6), torch.randn(2, b, 16))),
        "tied language model with state": lambda: (TiedLanguageModel(), (torch.randint(0, 40, (2, 12)), torch.zeros(2, 2, 16), torch.zeros(2, 2, 16)),
                                                   ["tokens", "h0", "c0"], {"tokens": bm, "h0": state_axes, "c0": state_axes},
                                                   lambda b, t: (torch.randint(0, 40, (b, t)), torch.randn(2, b, 16), torch.randn(2, b, 16))),
        "conv front end": lambda: (ConvFrontEnd(), (_feat(2, 11, 3),), ["x"], {"x": bm}, lambda b, t: (_feat(b, t, 3),)),
    }
