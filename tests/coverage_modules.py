"""Recurrent modules written the way real projects write them (not copies of any one project), for the
coverage tests. Each `*_case()` returns (module, example_args, input_names, dynamic_axes, make(batch, seq)).
`make` builds a fresh argument tuple (possibly nested, like the module's own forward takes it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


def _lengths(batch, seq, dtype=torch.int64, full_row=True):
    lengths = torch.randint(1, seq + 1, (batch,), dtype=dtype)
    if full_row:
        lengths[torch.randint(0, batch, ())] = seq  # the longest row anywhere in the batch, not first
    return lengths


class PosTagger(nn.Module):
    """Sequence labelling: embedding -> packed 2-layer biLSTM (unsorted batch) -> linear, padded to the input length."""

    def __init__(self, vocab=120, dim=32, hidden=24, tags=17):
        super().__init__()
        self.embedding = nn.Embedding(vocab, dim, padding_idx=0)
        self.lstm = nn.LSTM(dim, hidden, num_layers=2, bidirectional=True, batch_first=True, dropout=0.25)
        self.dropout = nn.Dropout(0.25)
        self.hidden2tag = nn.Linear(2 * hidden, tags)

    def forward(self, tokens, lengths):
        embedded = self.dropout(self.embedding(tokens))  # (B, T, E)
        packed = pack_padded_sequence(embedded, lengths.cpu(), batch_first=True, enforce_sorted=False)
        packed_out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=tokens.size(1))  # (B, T, 2H)
        return self.hidden2tag(self.dropout(out))  # (B, T, tags)


def pos_tagger_case():
    module = PosTagger()
    make = lambda b, t: (torch.randint(1, 120, (b, t)), _lengths(b, t))  # noqa: E731
    return module, make(4, 9), ["tokens", "lengths"], {"tokens": {0: "batch", 1: "seq"}, "lengths": {0: "batch"}}, make


class WordLanguageModel(nn.Module):
    """The classic word-level LM: sequence-major tokens, state passed in from init_hidden, `output.view(-1, nhid)`."""

    def __init__(self, ntoken=200, ninp=32, nhid=32, nlayers=2, dropout=0.2):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = nn.LSTM(ninp, nhid, nlayers, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)
        self.decoder.weight = self.encoder.weight  # tied weights (ninp == nhid)
        self.ntoken, self.nhid, self.nlayers = ntoken, nhid, nlayers

    def forward(self, input, hidden):
        emb = self.drop(self.encoder(input))  # (T, B, E)
        output, hidden = self.rnn(emb, hidden)
        output = self.drop(output)
        decoded = self.decoder(output.view(-1, self.nhid))  # (T*B, V): needs a contiguous output
        return F.log_softmax(decoded, dim=1), hidden

    def init_hidden(self, bsz):
        weight = next(self.parameters())
        return (weight.new_zeros(self.nlayers, bsz, self.nhid), weight.new_zeros(self.nlayers, bsz, self.nhid))


def word_lm_case():
    module = WordLanguageModel()
    make = lambda b, t: (torch.randint(0, 200, (t, b)), tuple(torch.randn(2, b, 32) * 0.5 for _ in range(2)))  # noqa: E731
    axes = {"input": {0: "seq", 1: "batch"}, "h0": {1: "batch"}, "c0": {1: "batch"}}
    return module, make(3, 8), ["input", "h0", "c0"], axes, make


class CRNN(nn.Module):
    """Text-line recognition for CTC: conv front end -> squeeze the height -> biGRU (seq-major) -> linear -> log_softmax."""

    def __init__(self, classes=37, hidden=32):
        super().__init__()
        self.cnn = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2, 2),  # H 16 -> 8, W/2
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d((2, 2), (2, 2)),  # H 8 -> 4, W/4
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d((4, 1), (4, 1)),  # H 4 -> 1
        )
        self.rnn = nn.GRU(32, hidden, bidirectional=True)
        self.fc = nn.Linear(2 * hidden, classes)

    def forward(self, images):  # (B, 1, 16, W)
        conv = self.cnn(images)  # (B, C, 1, W/4)
        conv = conv.squeeze(2).permute(2, 0, 1)  # (W/4, B, C)
        recurrent, _ = self.rnn(conv)  # (W/4, B, 2H)
        steps, batch, width = recurrent.size()
        logits = self.fc(recurrent.view(steps * batch, width)).view(steps, batch, -1)
        return logits.log_softmax(2)  # (W/4, B, classes), as CTC loss takes it


def crnn_case():
    module = CRNN()
    module.cnn[1].running_mean.uniform_(-0.1, 0.1)
    module.cnn[1].running_var.uniform_(0.5, 1.5)
    make = lambda b, t: (torch.rand(b, 1, 16, 4 * t),)  # noqa: E731  (t = output steps)
    return module, make(2, 10), ["images"], {"images": {0: "batch", 3: "width"}}, make


class SpeechEncoder(nn.Module):
    """Acoustic encoder: features + int32 lengths -> 3-layer biLSTM over the packed batch -> projection.
    Returns the encodings (max(lengths) steps, as pad_packed_sequence gives without total_length) and the lengths."""

    def __init__(self, feats=40, hidden=32, layers=3, out=24):
        super().__init__()
        self.norm = nn.LayerNorm(feats)
        self.lstm = nn.LSTM(feats, hidden, num_layers=layers, bidirectional=True, batch_first=True, dropout=0.1)
        self.proj = nn.Linear(2 * hidden, out)

    def forward(self, features, lengths):
        x = self.norm(features)  # (B, T, F)
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        packed, (hn, cn) = self.lstm(packed)
        enc, enc_lengths = pad_packed_sequence(packed, batch_first=True)  # (B, max(lengths), 2H)
        summary = torch.cat([hn[-2], hn[-1]], dim=-1)  # each row's own last step (forward) and first step (backward)
        return self.proj(enc), enc_lengths, summary


def speech_encoder_case():
    module = SpeechEncoder()
    make = lambda b, t: (torch.randn(b, t, 40), _lengths(b, t, torch.int32))  # noqa: E731
    return module, make(3, 12), ["features", "lengths"], {"features": {0: "batch", 1: "seq"}, "lengths": {0: "batch"}}, make


class Upsampler(nn.Module):
    """Vocoder-ish: mel frames [B, T, 80] and a noise signal [B, (T - 4) * 64] tied to them -> waveform.
    A valid conv eats 4 frames; the GRU's state is built inside forward."""

    def __init__(self, mels=80, hidden=32, hop=64):
        super().__init__()
        self.hop, self.hidden = hop, hidden
        self.pre = nn.Conv1d(mels, hidden, kernel_size=5)  # T -> T - 4
        self.rnn = nn.GRU(hidden, hidden, batch_first=True)
        self.up = nn.Linear(hidden, hop)

    def forward(self, mel, noise):
        z = self.pre(mel.transpose(1, 2)).transpose(1, 2)  # (B, T-4, H)
        h0 = torch.zeros(1, mel.size(0), self.hidden)  # state built in forward, batch from the input
        y, _ = self.rnn(z, h0)  # (B, T-4, H)
        frames = self.up(y)  # (B, T-4, hop)
        wave = frames.reshape(mel.size(0), -1)  # (B, (T-4)*hop)
        return torch.tanh(wave + 0.05 * noise)


def upsampler_case():
    module = Upsampler()
    make = lambda b, t: (torch.randn(b, t, 80), torch.randn(b, (t - 4) * 64))  # noqa: E731
    axes = {"mel": {0: "batch", 1: "frames"}, "noise": {0: "batch", 1: "samples"}}
    return module, make(2, 10), ["mel", "noise"], axes, make


REAL = {
    "pos tagger (packed biLSTM, unsorted)": pos_tagger_case,
    "word language model (seq-major, view)": word_lm_case,
    "crnn for ctc (conv, squeeze, biGRU)": crnn_case,
    "speech encoder (int32 lengths, no total_length)": speech_encoder_case,
    "upsampler (tied second input, state in forward)": upsampler_case,
}
