"""Recurrent modules written the way published code writes them, for the capture tests (tests/test_capture.py).

Each is what its docstring says a project in that domain does; `independent_error` (below) checks an exported file
against torch without rnnedge's own check code: onnxruntime at the sizes given, max abs error per output.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class CrfTagger(nn.Module):
    """A biLSTM-CRF tagger with character embeddings: (words, chars) -> (emissions, transition matrix). The CRF's
    transition matrix is a parameter returned as it is (decoders run Viterbi over both outside the network)."""

    def __init__(self, words=50, chars=30, tags=5):
        super().__init__()
        self.word_emb = nn.Embedding(words, 12)
        self.char_emb = nn.Embedding(chars, 4)
        self.char_rnn = nn.LSTM(4, 4, batch_first=True, bidirectional=True)
        self.rnn = nn.LSTM(12 + 8, 10, batch_first=True, bidirectional=True)
        self.emit = nn.Linear(20, tags)
        self.transitions = nn.Parameter(torch.randn(tags, tags))

    def forward(self, words, chars):  # words (B, T), chars (B, T, L)
        b, t, length = chars.shape
        _, (h, _) = self.char_rnn(self.char_emb(chars.reshape(b * t, length)))  # h (2, B*T, 4)
        char_feats = h.transpose(0, 1).reshape(b, t, 8)  # (B, T, 8)
        y, _ = self.rnn(torch.cat([self.word_emb(words), char_feats], -1))  # (B, T, 20)
        return self.emit(y), self.transitions  # (B, T, tags), (tags, tags)


class EchoLengths(nn.Module):
    """A padded-batch encoder that hands its lengths input back with the states (as collate-friendly encoders do)."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(5, 8, batch_first=True)

    def forward(self, x, lengths):
        y, _ = self.rnn(x)
        return y, lengths


class LeftPaddedForecaster(nn.Module):
    """A forecaster fed left-padded histories: the real steps are the last max(lengths) ones, found from a mask with
    `.item()`, and the head reads `y[:, t_offset:]` with t_offset = T - max(lengths)."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(3, 8, batch_first=True)
        self.head = nn.Linear(8, 1)

    def forward(self, x, mask):  # x (B, T, 3), mask (B, T) int64, 1 on real steps (right-aligned)
        y, _ = self.rnn(x)
        t_offset = int(x.size(1) - mask.sum(1).max().item())
        return self.head(y[:, t_offset:])  # (B, max(lengths), 1)


def left_mask(batch: int, seq: int, seed: int = 0) -> torch.Tensor:
    """(B, T) int64 mask with each row's real steps at its end (at least one)."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, seq + 1, (batch,), generator=gen)
    return (torch.arange(seq).unsqueeze(0) >= (seq - lengths).unsqueeze(1)).long()


def independent_error(module, path, feeds: dict) -> list[float]:
    """max |onnxruntime - torch| per output, onnxruntime's CPU provider fed `feeds` ({name: tensor}) in file order."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ref = module(*feeds.values())
    ref = ref if isinstance(ref, (tuple, list)) else (ref,)
    out = session.run(None, {name: t.numpy() for name, t in feeds.items()})
    assert [o.shape for o in out] == [tuple(r.shape) for r in ref]
    return [float(np.abs(r.detach().numpy() - o).max()) if o.size else 0.0 for r, o in zip(ref, out)]


class EpisodeStartPolicy(nn.Module):
    """A recurrent RL policy that branches on its episode-start mask's values (`if episode_starts.sum() == 0`)."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(4, 8, batch_first=True)
        self.head = nn.Linear(8, 2)

    def forward(self, obs, episode_starts):  # (B, T, 4), (B, T) float
        if episode_starts.sum() == 0:
            y, _ = self.rnn(obs)
        else:
            y, _ = self.rnn(obs * (1 - episode_starts).unsqueeze(-1))
        return self.head(y)


class HorizonForecaster(nn.Module):
    """An autoregressive forecaster whose step count comes from a tensor (`range(int(horizon.item()))`)."""

    def __init__(self):
        super().__init__()
        self.enc = nn.GRU(3, 8, batch_first=True)
        self.cell = nn.GRUCell(1, 8)
        self.head = nn.Linear(8, 1)

    def forward(self, history, horizon):  # (B, T, 3), () int64
        _, h = self.enc(history)
        h = h[0]
        step, outs = self.head(h), []
        for _ in range(int(horizon.item())):
            h = self.cell(step, h)
            step = self.head(h)
            outs.append(step)
        return torch.stack(outs, 1)  # (B, horizon, 1)


class HopDenoiser(nn.Module):
    """A waveform denoiser that counts its frames through a tensor (`int(length / hop)`), then runs an LSTM on them."""

    def __init__(self, hop=4):
        super().__init__()
        self.hop = hop
        self.rnn = nn.LSTM(hop, 8, batch_first=True)
        self.out = nn.Linear(8, hop)

    def forward(self, wav):  # (B, S)
        length = torch.tensor(wav.shape[-1])
        frames = int(length / self.hop)
        x = wav[:, : frames * self.hop].reshape(wav.shape[0], frames, self.hop)  # (B, frames, hop)
        y, _ = self.rnn(x)
        return self.out(y).reshape(wav.shape[0], -1)  # (B, frames * hop)


class CachedStatePolicy(nn.Module):
    """A recurrent RL policy keeping its state between calls, sized lazily from the first batch it sees."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(4, 8, batch_first=True)
        self.head = nn.Linear(8, 2)
        self.hidden = None

    def forward(self, obs, episode_starts):  # (B, T, 4), (B, T) float
        if self.hidden is None:
            self.hidden = obs.new_zeros(1, obs.shape[0], 8)
        y, _ = self.rnn(obs * (1 - episode_starts).unsqueeze(-1), self.hidden)
        return self.head(y)


class PositionTable(nn.Module):
    """A time-constant table made at construction for 10 steps, added to every step."""

    def __init__(self, max_len=10):
        super().__init__()
        self.pos = nn.Parameter(torch.randn(1, max_len, 4) * 0.1)
        self.rnn = nn.LSTM(4, 8, batch_first=True)

    def forward(self, x):
        y, _ = self.rnn(x + self.pos)
        return y


class SpectralDenoiser(nn.Module):
    """A denoiser on a complex spectrum: stft, a frame of context padded on both sides of the complex tensor, the real
    view into a GRU, a mask per bin (the published pattern stops at the complex pad without rnnedge's translation)."""

    def __init__(self, n_fft=16, hop=4):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        bins = n_fft // 2 + 1
        self.rnn = nn.GRU(2 * bins, 16, batch_first=True)
        self.mask = nn.Linear(16, 2 * bins)
        self.register_buffer("window", torch.hann_window(n_fft))

    def forward(self, wav):  # (B, S)
        spec = torch.stft(wav, self.n_fft, self.hop, window=self.window, return_complex=True)  # (B, bins, frames)
        spec = torch.nn.functional.pad(spec, (1, 1))  # (B, bins, frames + 2), complex
        feats = torch.view_as_real(spec).permute(0, 2, 1, 3).flatten(2)  # (B, frames + 2, 2 * bins)
        y, _ = self.rnn(feats)
        return torch.sigmoid(self.mask(y)) * feats


class ClampedTagger(nn.Module):
    """Clamps with tensor bounds as taggers and forecasters write them: learned floors and ceilings, a bound from the
    input, index clamps by lengths (the issue saw 'Cannot find a compatible OpOverload for aten.clamp')."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(5, 8, batch_first=True)
        self.floor = nn.Parameter(torch.full((8,), -0.2))
        self.ceiling = nn.Parameter(torch.tensor(0.3))

    def forward(self, x, lengths):  # (B, T, 5), (B,) int64
        y, _ = self.rnn(x)  # (B, T, 8)
        a = torch.clamp(y, self.floor, self.ceiling)
        b = y.clamp(min=self.floor) + y.clamp(max=x.abs().mean(-1, keepdim=True))
        c = torch.clamp_min(y, y.mean(1, keepdim=True)) - torch.clamp_max(y, self.ceiling)
        steps = torch.arange(x.shape[1]).unsqueeze(0).clamp(max=(lengths - 1).unsqueeze(1))  # (B, T) int64
        last = y.gather(1, steps.unsqueeze(-1).expand(-1, -1, 8))
        return a + b + c + last
