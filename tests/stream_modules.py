"""Streaming apps as users write them, for --target stream (tests/test_stream_*.py). Factories seed their weights."""

import torch
import torch.nn.functional as F
from torch import nn


class KeywordSpotter(nn.Module):
    """Keyword spotting: causal Conv1d + ReLU front end over log-mel frames -> 2-layer GRU -> per-frame logits."""

    def __init__(self, mels=40, hidden=48, keywords=6):
        super().__init__()
        self.conv1 = nn.Conv1d(mels, 32, kernel_size=3)
        self.conv2 = nn.Conv1d(32, 32, kernel_size=3, dilation=2)
        self.rnn = nn.GRU(32, hidden, num_layers=2, batch_first=True)
        self.head = nn.Linear(hidden, keywords)

    def forward(self, mel):  # (B, T, 40)
        x = mel.transpose(1, 2)  # (B, 40, T)
        x = F.relu(self.conv1(F.pad(x, (2, 0))))  # causal: k - 1 frames on the left
        x = F.relu(self.conv2(F.pad(x, (4, 0))))  # dilated: (k - 1) * d
        y, _ = self.rnn(x.transpose(1, 2))  # (B, T, H)
        return self.head(y)  # (B, T, keywords)


class VoiceActivity(nn.Module):
    """VAD on frame features: LSTM -> linear -> sigmoid per frame."""

    def __init__(self, features=24, hidden=32):
        super().__init__()
        self.lstm = nn.LSTM(features, hidden, batch_first=True)
        self.out = nn.Linear(hidden, 1)

    def forward(self, feats):  # (B, T, F)
        y, _ = self.lstm(feats)
        return torch.sigmoid(self.out(y)).squeeze(-1)  # (B, T)


class Chomp(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.n = n

    def forward(self, x):
        return x[:, :, : -self.n].contiguous()


class TcnDenoiser(nn.Module):
    """Causal TCN (dilated convs, padding then a chomp, as in Bai et al. 2018) + GRU -> a mask on the noisy spectrum."""

    def __init__(self, bins=32, channels=24, hidden=32):
        super().__init__()
        layers, size = [], bins
        for d in (1, 2, 4):
            layers += [nn.Conv1d(size, channels, 3, padding=2 * d, dilation=d), Chomp(2 * d), nn.PReLU()]
            size = channels
        self.tcn = nn.Sequential(*layers)
        self.gru = nn.GRU(channels, hidden, batch_first=True)
        self.mask = nn.Linear(hidden, bins)

    def forward(self, spec):  # (B, T, bins)
        h = self.tcn(spec.transpose(1, 2)).transpose(1, 2)  # (B, T, C)
        y, _ = self.gru(h)
        return spec * torch.sigmoid(self.mask(y))  # (B, T, bins)


class CrnnTagger(nn.Module):
    """CRNN tagger: Conv2d over (time, frequency), causal in time, pooled over frequency -> GRU -> tags per frame."""

    def __init__(self, bins=16, tags=5, hidden=32):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, kernel_size=(3, 3), padding=(0, 1))
        self.pool = nn.MaxPool2d((1, 2))
        self.gru = nn.GRU(8 * bins // 2, hidden, batch_first=True)
        self.tags = nn.Linear(hidden, tags)

    def forward(self, x):  # (B, T, bins)
        z = F.pad(x.unsqueeze(1), (0, 0, 2, 0))  # (B, 1, T + 2, bins): two frames of left context
        z = self.pool(F.relu(self.conv(z)))  # (B, 8, T, bins / 2)
        z = z.permute(0, 2, 1, 3).flatten(2)  # (B, T, 8 * bins / 2)
        y, _ = self.gru(z)
        return self.tags(y)


class StridedFrontEnd(nn.Module):
    """A strided causal conv (2x fewer frames) and a time pooling (2x again) before an LSTM with projections."""

    def __init__(self, features=20, hidden=32):
        super().__init__()
        self.conv = nn.Conv1d(features, 16, kernel_size=4, stride=2)
        self.pool = nn.AvgPool1d(2)
        self.lstm = nn.LSTM(16, hidden, proj_size=12, batch_first=True)
        self.head = nn.Linear(12, 3)

    def forward(self, x):  # (B, T, F); T a multiple of 4
        z = self.pool(F.relu(self.conv(F.pad(x.transpose(1, 2), (2, 0)))))  # (B, 16, T / 4)
        y, _ = self.lstm(z.transpose(1, 2))
        return self.head(y)  # (B, T / 4, 3)


class CellTagger(nn.Module):
    """Cells through rnnedge.run_cell, two of them stacked, and a parallel GRU branch."""

    def __init__(self, features=10, hidden=16):
        super().__init__()
        from rnnedge import run_cell

        self.run_cell = run_cell
        self.cell1, self.cell2 = nn.LSTMCell(features, hidden), nn.GRUCell(hidden, hidden)
        self.side = nn.GRU(features, hidden, batch_first=True)
        self.head = nn.Linear(2 * hidden, 4)

    def forward(self, x):  # (B, T, F)
        y, _ = self.run_cell(self.cell1, x)
        y, _ = self.run_cell(self.cell2, y)
        s, _ = self.side(x)
        return self.head(torch.cat([y, s], -1))


class LayerNormLSTMCell(nn.Module):
    """A custom cell (layer-normalised gates, as RNN-T encoders write them): run_cell makes it an ONNX Scan."""

    def __init__(self, features, hidden):
        super().__init__()
        self.gates, self.norm, self.out_norm, self.hidden = nn.Linear(features + hidden, 4 * hidden), nn.LayerNorm(4 * hidden), nn.LayerNorm(hidden), hidden

    def forward(self, x, state=None):
        h, c = state if state is not None else (x.new_zeros(x.shape[0], self.hidden),) * 2
        i, f, g, o = self.norm(self.gates(torch.cat([x, h], -1))).chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(self.out_norm(c)), c


class CustomCellKWS(nn.Module):
    """A causal conv, then a custom (h, c) cell through run_cell: its Scan's loop state is carried as stream state."""

    def __init__(self, features=10, hidden=12):
        super().__init__()
        from rnnedge import run_cell

        self.run_cell = run_cell
        self.conv = nn.Conv1d(features, 16, 3)
        self.cell = LayerNormLSTMCell(16, hidden)
        self.head = nn.Linear(hidden, 3)

    def forward(self, x):  # (B, T, F)
        z = F.relu(self.conv(F.pad(x.transpose(1, 2), (2, 0)))).transpose(1, 2)
        y, _ = self.run_cell(self.cell, z)
        return self.head(y)


class LastStepClassifier(nn.Module):
    """A head on the last step: streams as the answer at each chunk's end."""

    def __init__(self, features=12, hidden=24):
        super().__init__()
        self.rnn = nn.RNN(features, hidden, num_layers=2, batch_first=True)
        self.head = nn.Linear(hidden, 3)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.head(y[:, -1])  # (B, 3)


class PackedTagger(nn.Module):
    """A module that packs its own batch (lengths in, enforce_sorted=False) and returns the final state too."""

    def __init__(self, features=20, hidden=32):
        super().__init__()
        self.gru = nn.GRU(features, hidden, num_layers=2, batch_first=True)
        self.out = nn.Linear(hidden, 4)

    def forward(self, x, lengths):
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        y, h = self.gru(packed)
        y, _ = nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=x.shape[1])
        return self.out(y), h


class LearnedStart(nn.Module):
    """A GRU that starts from a learned state (an nn.Parameter repeated over the batch), not zeros."""

    def __init__(self, features=20, hidden=16):
        super().__init__()
        self.gru = nn.GRU(features, hidden, num_layers=2, batch_first=True)
        self.h0 = nn.Parameter(torch.randn(2, 1, hidden))
        self.out = nn.Linear(hidden, 3)

    def forward(self, x):
        y, _ = self.gru(x, self.h0.expand(-1, x.shape[0], -1).contiguous())
        return self.out(y)


class CentredPostNet(nn.Module):
    """A GRU, then a centred conv (padding=1) smoothing its output: streams one frame late (lookahead 1)."""

    def __init__(self, features=16, hidden=24):
        super().__init__()
        self.gru = nn.GRU(features, hidden, batch_first=True)
        self.post = nn.Conv1d(hidden, 4, 3, padding=1)

    def forward(self, x):
        y, _ = self.gru(x)
        return torch.tanh(self.post(y.transpose(1, 2))).transpose(1, 2)  # (B, T, 4)


class CentredConv(nn.Module):
    """A centred conv (padding=1 over time) looks one frame ahead: refused for --target stream."""

    def __init__(self, features=16, hidden=24):
        super().__init__()
        self.conv = nn.Conv1d(features, 16, 3, padding=1)
        self.gru = nn.GRU(16, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 2)

    def forward(self, x):
        y, _ = self.gru(F.relu(self.conv(x.transpose(1, 2))).transpose(1, 2))
        return self.head(y)


class NormOverTime(nn.Module):
    """Normalises every utterance by its own mean over time: refused for --target stream."""

    def __init__(self, features=16, hidden=24):
        super().__init__()
        self.gru = nn.GRU(features, hidden, batch_first=True)

    def forward(self, x):
        y, _ = self.gru(x - x.mean(dim=1, keepdim=True))
        return y


class SelfAttention(nn.Module):
    """GRU then attention over every frame: refused for --target stream."""

    def __init__(self, features=16, hidden=24):
        super().__init__()
        self.gru = nn.GRU(features, hidden, batch_first=True)

    def forward(self, x):
        y, _ = self.gru(x)
        w = torch.softmax(y @ y.transpose(1, 2), dim=-1)  # (B, T, T)
        return w @ y


class OwnStateKws(KeywordSpotter):
    """The hand-written stream of the issue: forward(mel, h0) -> (logits, hn); its conv context must be carried too."""

    def forward(self, mel, h0):  # (B, T, 40), (2, B, H)
        x = mel.transpose(1, 2)
        x = F.relu(self.conv1(F.pad(x, (2, 0))))
        x = F.relu(self.conv2(F.pad(x, (4, 0))))
        y, hn = self.rnn(x.transpose(1, 2), h0)
        return self.head(y), hn


def _seeded(cls, seed=0, **kwargs):
    torch.manual_seed(seed)
    return cls(**kwargs).eval()


def make_kws_retrained():
    """The keyword spotter with other weights: a stream file of make_kws must fail verify against it."""
    return _seeded(KeywordSpotter, seed=1)


def make_packed():
    return _seeded(PackedTagger)


def make_learned_start():
    return _seeded(LearnedStart)


def make_postnet():
    return _seeded(CentredPostNet)


def make_own_state():
    return _seeded(OwnStateKws)


def make_kws():
    return _seeded(KeywordSpotter)


def make_vad():
    return _seeded(VoiceActivity)


def make_denoiser():
    return _seeded(TcnDenoiser)


def make_crnn():
    return _seeded(CrnnTagger)


def make_strided():
    return _seeded(StridedFrontEnd)


def make_cells():
    return _seeded(CellTagger)


def make_custom_cell():
    return _seeded(CustomCellKWS)


def make_last_step():
    return _seeded(LastStepClassifier)


def make_centred():
    return _seeded(CentredConv)


def make_norm():
    return _seeded(NormOverTime)


def make_attention():
    return _seeded(SelfAttention)


# factory -> example input (B, T, F)
STREAMING = {"make_kws": [1, 24, 40], "make_trimmed": [1, 24, 16], "make_vad": [1, 24, 24], "make_denoiser": [1, 24, 32], "make_crnn": [1, 24, 16],
             "make_strided": [1, 24, 20], "make_cells": [1, 24, 10], "make_last_step": [1, 24, 12], "make_custom_cell": [1, 24, 10]}
REFUSED = {"make_centred": ([1, 24, 16], "conv"), "make_norm": ([1, 24, 16], "mean"), "make_attention": ([1, 24, 16], "softmax")}


class TrimmedCausal(nn.Module):
    """Causal convs written as `conv(x)[..., :x.size(-1)]` (padding on both sides, cut back to the input's length)."""

    def __init__(self, features=16, hidden=24):
        super().__init__()
        self.conv1 = nn.Conv1d(features, 16, 3, padding=2)
        self.conv2 = nn.Conv1d(16, 16, 3, padding=4, dilation=2)
        self.gru = nn.GRU(16, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 2)

    def forward(self, x):  # (B, T, F)
        z = x.transpose(1, 2)
        z = torch.relu(self.conv1(z)[..., : z.size(-1)])
        z = torch.relu(self.conv2(z)[..., : z.size(-1)])
        y, _ = self.gru(z.transpose(1, 2))
        return self.head(y)


def make_trimmed():
    return _seeded(TrimmedCausal)


class ChannelsFirstMask(nn.Module):
    """A denoiser in the (B, F, T) layout (time last, as conv code keeps it): a stride-2 causal conv, a GRU and a
    per-frame 1x1 conv giving a (B, F, T / 2) mask."""

    def __init__(self, features=12, hidden=16):
        super().__init__()
        self.down = nn.Conv1d(features, 16, kernel_size=4, stride=2)
        self.gru = nn.GRU(16, hidden, batch_first=True)
        self.out = nn.Conv1d(hidden, features, 1)

    def forward(self, x):  # (B, 12, T); T even
        z = F.relu(self.down(F.pad(x, (2, 0))))  # (B, 16, T / 2)
        y, _ = self.gru(z.transpose(1, 2))
        return torch.sigmoid(self.out(y.transpose(1, 2)))  # (B, 12, T / 2)


def make_channels_first():
    return _seeded(ChannelsFirstMask)


class OwnLstmState(nn.Module):
    """forward(x, (h0, c0)) -> (y, (hn, cn)): an LSTM's state tuple in and out, a dilated causal conv before it."""

    def __init__(self, features=10, hidden=16):
        super().__init__()
        self.conv = nn.Conv1d(features, 12, 5, dilation=2)
        self.lstm = nn.LSTM(12, hidden, num_layers=2, batch_first=True)
        self.head = nn.Linear(hidden, 2)

    def forward(self, x, state):
        z = torch.tanh(self.conv(F.pad(x.transpose(1, 2), (8, 0)))).transpose(1, 2)
        y, (h, c) = self.lstm(z, state)
        return self.head(y), (h, c)


def make_own_lstm_state():
    return _seeded(OwnLstmState)


class Cumulative(nn.Module):
    """x.cumsum over time (a running mean normalisation, `dim=1`) or over features (`dim=2`, per frame) before a GRU."""

    def __init__(self, dim=1, features=8):
        super().__init__()
        self.dim = dim
        self.gru = nn.GRU(features, 8, batch_first=True)

    def forward(self, x):  # (B, T, F)
        n = torch.arange(1, x.size(self.dim) + 1, dtype=x.dtype).view(*[-1 if d == self.dim else 1 for d in range(3)])
        return self.gru(x - x.cumsum(self.dim) / n)[0]


def make_cumulative_over_time():
    return _seeded(Cumulative, dim=1)


def make_cumulative_over_features():
    return _seeded(Cumulative, dim=2)


class GroupNormed(nn.Module):
    """A causal conv, then nn.GroupNorm on (B, C, T) (over time too: `per_frame=False`) or on (B * T, C) (per frame)."""

    def __init__(self, per_frame=False, features=8):
        super().__init__()
        self.per_frame = per_frame
        self.conv = nn.Conv1d(features, 8, 3)
        self.norm = nn.GroupNorm(2, 8)
        self.gru = nn.GRU(8, 8, batch_first=True)

    def forward(self, x):  # (B, T, F)
        z = self.conv(F.pad(x.transpose(1, 2), (2, 0)))  # (B, 8, T)
        if self.per_frame:
            B, C, T = z.shape
            z = self.norm(z.transpose(1, 2).reshape(B * T, C)).reshape(B, T, C).transpose(1, 2)
        else:
            z = self.norm(z)
        return self.gru(z.transpose(1, 2))[0]


def make_groupnorm_over_time():
    return _seeded(GroupNormed, per_frame=False)


def make_groupnorm_per_frame():
    return _seeded(GroupNormed, per_frame=True)


class PaddedBeforeTranspose(nn.Module):
    """A causal conv whose left padding is added on (B, T, F), before the transpose to (B, F, T)."""

    def __init__(self, features=8):
        super().__init__()
        self.conv = nn.Conv1d(features, 8, 3)
        self.gru = nn.GRU(8, 8, batch_first=True)

    def forward(self, x):
        z = F.pad(x, (0, 0, 2, 0)).transpose(1, 2)
        return self.gru(torch.relu(self.conv(z)).transpose(1, 2))[0]


def make_padded_before_transpose():
    return _seeded(PaddedBeforeTranspose)
