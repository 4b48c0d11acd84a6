"""Seq2SeqModel: a bidirectional GRU encoder, attention and one recurrent decoder cell, split the way it exports.

    encoder(tokens (B, T), lengths (B,)) -> memory (B, T, 2H), memory_mask (B, T) bool, state (B, S)
    decoder(prev (B,), state (B, S), memory, memory_mask) -> logits (B, V), state (B, S), attention (B, T)

S is the decoder cell's width (h), or twice it for LSTM ([h, c] side by side), so one state tensor
fits every cell. The initial state is tanh(W * mean of the memory over each row's real steps).
Attention is computed from the previous state (Bahdanau's order) with a Luong ("general") or
Bahdanau (additive) score, masked past each row's length; the context joins the embedded previous
token as the cell's input, and the output layer reads [new h, context, embedding].

`generate(strings, beam=1, max_len=None)` runs the very search rnnedge.runtime.Seq2SeqSession runs
(numpy, in rnnedge.runtime.seq2seq), with this model's torch modules as the step: a checkpoint and
its exported folder can then only differ where their numbers do.
"""

from __future__ import annotations

import torch
from torch import nn

from rnnedge.families.seq2seq.config import SPECIAL_IDS, Seq2SeqConfig

MASKED = -1e9  # attention score of padded memory positions (finite: a fully padded row stays NaN-free)
_CELLS = {"rnn": nn.RNNCell, "gru": nn.GRUCell, "lstm": nn.LSTMCell}


class Encoder(nn.Module):
    """tokens (B, T) int64, lengths (B,) int64 -> memory (B, T, 2H), memory_mask (B, T) bool, state (B, S)."""

    def __init__(self, c: Seq2SeqConfig):
        super().__init__()
        self.embed = nn.Embedding(c.vocab_size, c.embed_dim, padding_idx=SPECIAL_IDS["pad"])
        self.drop = nn.Dropout(c.dropout)
        self.rnn = nn.GRU(c.embed_dim, c.hidden, batch_first=True, bidirectional=True)
        self.bridge = nn.Linear(c.memory_dim, c.state_dim)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor):
        x = self.drop(self.embed(tokens))  # (B, T, E)
        memory = self._recurrent(x, lengths)  # (B, T, 2H)
        steps = torch.arange(tokens.shape[1], device=tokens.device)  # (T,)
        mask = steps.unsqueeze(0) < lengths.unsqueeze(1)  # (B, T) bool
        keep = mask.unsqueeze(-1).to(memory.dtype)  # (B, T, 1)
        memory = memory * keep  # zeros past each row's length, whatever the recurrent path left there
        pooled = memory.sum(dim=1) / lengths.clamp(min=1).to(memory.dtype).unsqueeze(1)  # (B, 2H)
        state = torch.tanh(self.bridge(pooled))  # (B, S)
        return memory, mask, state

    def _recurrent(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if getattr(self.rnn, "accepts_lengths", False):  # rnnedge's export wrapper takes lengths itself
            return self.rnn(x, None, lengths=lengths)[0]
        T = x.shape[1]
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        y, _ = self.rnn(packed)
        return nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=T)[0]  # (B, T, 2H)


class DecoderStep(nn.Module):
    """One decoding step: prev (B,) int64, state (B, S), memory (B, T, 2H), memory_mask (B, T) bool
    -> logits (B, V), state (B, S), attention (B, T)."""

    def __init__(self, c: Seq2SeqConfig):
        super().__init__()
        self.config = c
        self.embed = nn.Embedding(c.vocab_size, c.embed_dim)
        self.drop = nn.Dropout(c.dropout)
        self.cell = _CELLS[c.cell](c.embed_dim + c.memory_dim, c.decoder_hidden)
        if c.attention == "luong":
            self.query = nn.Linear(c.decoder_hidden, c.memory_dim, bias=False)
        else:
            self.key = nn.Linear(c.memory_dim, c.attention_dim, bias=False)
            self.query = nn.Linear(c.decoder_hidden, c.attention_dim)
            self.energy = nn.Linear(c.attention_dim, 1, bias=False)
        self.proj = nn.Linear(c.decoder_hidden + c.memory_dim + c.embed_dim, c.decoder_hidden)
        self.out = nn.Linear(c.decoder_hidden, c.vocab_size)

    def forward(self, prev: torch.Tensor, state: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor):
        new_state, features, attention = self.advance(prev, state, memory, mask)
        return self.head(features), new_state, attention

    def advance(self, prev, state, memory, mask):
        """(new state (B, S), output features (B, Hd + 2H + E), attention (B, T)): everything but the output layer."""
        hd = self.config.decoder_hidden
        emb = self.drop(self.embed(prev))  # (B, E)
        h = state[:, :hd]  # (B, Hd)
        scores = self._scores(h, memory).masked_fill(~mask, MASKED)  # (B, T)
        attention = torch.softmax(scores, dim=-1)  # (B, T)
        context = torch.bmm(attention.unsqueeze(1), memory).squeeze(1)  # (B, 2H)
        x = torch.cat([emb, context], dim=-1)  # (B, E + 2H)
        if self.config.cell == "lstm":
            h, c = self.cell(x, (h, state[:, hd:]))  # (B, Hd) each
            new_state = torch.cat([h, c], dim=-1)  # (B, 2Hd)
        else:
            h = new_state = self.cell(x, h)  # (B, Hd)
        return new_state, torch.cat([h, context, emb], dim=-1), attention

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """(..., Hd + 2H + E) -> logits (..., V)."""
        return self.out(self.drop(torch.tanh(self.proj(features))))

    def _scores(self, h: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        if self.config.attention == "luong":
            return torch.bmm(memory, self.query(h).unsqueeze(-1)).squeeze(-1)  # (B, T)
        hidden = torch.tanh(self.key(memory) + self.query(h).unsqueeze(1))  # (B, T, A)
        return self.energy(hidden).squeeze(-1)  # (B, T)


class Seq2SeqModel(nn.Module):
    """Encoder + decoder step; `forward` is teacher-forced training, `generate` decodes strings."""

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = DecoderStep(config)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: tokens (B, Ts), lengths (B,), targets (B, Tt) ids (padding any negative) -> logits (B, Tt, V)."""
        memory, mask, state = self.encoder(tokens, lengths)
        prev = torch.full_like(targets[:, 0], SPECIAL_IDS["bos"])  # (B,)
        features = []
        for t in range(targets.shape[1]):
            state, feat, _ = self.decoder.advance(prev, state, memory, mask)
            features.append(feat)
            prev = targets[:, t].clamp(min=0)  # (B,) padding (IGNORE) fed as <pad>; its loss is ignored anyway
        return self.decoder.head(torch.stack(features, dim=1))  # (B, Tt, V)

    def generate(self, strings: list[str], beam: int = 1, max_len: int | None = None, batch_size: int = 256) -> list[str]:
        """Decode `strings` (batches of `batch_size`; greedy for beam=1, beam search otherwise) -> output strings."""
        return self.codec().decode(self.generate_ids(strings, beam=beam, max_len=max_len, batch_size=batch_size))

    def codec(self):
        from rnnedge.runtime.seq2seq import Codec

        return Codec(self.config.vocab, self.config.max_source_len, self.config.max_target_len)

    @torch.no_grad()
    def generate_ids(self, strings: list[str], beam: int = 1, max_len: int | None = None, batch_size: int = 256) -> list[list[int]]:
        """Decoded ids of `strings` (EOS and what follows cut off): the search of rnnedge.runtime.seq2seq, torch steps."""
        from rnnedge.runtime.seq2seq import beam_search, check_batch_size

        codec = self.codec()
        check_batch_size(batch_size)
        steps = codec.max_len(max_len)
        batches = codec.encode_batches(strings, batch_size)  # every string checked before any work
        was_training = self.training
        self.eval()
        out: list[list[int]] = []
        try:
            device = next(self.parameters()).device
            for tokens, lengths in batches:
                memory, mask, state = self.encoder(torch.from_numpy(tokens).to(device), torch.from_numpy(lengths).to(device))
                out += beam_search(_torch_step(self.decoder, device), memory.cpu().numpy(), mask.cpu().numpy(),
                                   state.cpu().numpy(), beam=beam, max_len=steps, bos=codec.bos, eos=codec.eos)
        finally:
            self.train(was_training)
        return out


def _torch_step(decoder: DecoderStep, device):
    """The decoder as the search's numpy step function."""

    def step(prev, state, memory, mask):
        out = decoder(*(torch.from_numpy(a).to(device) for a in (prev, state, memory, mask)))
        return tuple(o.cpu().numpy() for o in out)

    return step
