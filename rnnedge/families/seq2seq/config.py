"""Seq2SeqConfig: everything needed to rebuild a Seq2SeqModel (JSON in checkpoints and exported files). No torch."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from rnnedge.errors import BadInputError
from rnnedge.families.configs import config_from_dict

CELLS = ("rnn", "gru", "lstm")
ATTENTIONS = ("luong", "bahdanau")
SPECIAL_IDS = {"pad": 0, "bos": 1, "eos": 2, "unk": 3}


@dataclass(kw_only=True)
class Seq2SeqConfig:
    """Bidirectional GRU encoder -> attention -> one recurrent decoder cell, over one character vocabulary."""

    kind: str = "seq2seq"  # tells checkpoints and exported files apart from a SequenceModel's config
    vocab: list  # token strings; ids 0..3 are <pad>, <bos>, <eos>, <unk>
    embed_dim: int = 32  # character embedding size (shared by encoder and decoder)
    hidden: int = 128  # encoder units per direction (memory is 2*hidden wide)
    decoder_hidden: int = 128  # decoder cell units
    cell: str = "gru"  # decoder cell: "rnn" | "gru" | "lstm" (the encoder is always a bidirectional GRU)
    attention: str = "luong"  # "luong": score = memory . W h; "bahdanau": v . tanh(W1 memory + W2 h)
    attention_dim: int = 128  # bahdanau only: width of the additive score's hidden layer
    dropout: float = 0.0  # on embeddings and the decoder's output features (training only)
    max_source_len: int = 40  # longest source accepted (characters)
    max_target_len: int = 12  # decode steps by default (target characters + EOS)

    def __post_init__(self) -> None:
        self.validate()

    @property
    def memory_dim(self) -> int:
        return 2 * self.hidden

    @property
    def state_dim(self) -> int:
        """Width of the one decoder state tensor: h, or [h, c] side by side for LSTM."""
        return 2 * self.decoder_hidden if self.cell == "lstm" else self.decoder_hidden

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def validate(self) -> None:
        if self.kind != "seq2seq":
            raise BadInputError(f"seq2seq config: kind must be 'seq2seq', got {self.kind!r}")
        if not isinstance(self.vocab, list) or len(self.vocab) < 5 or not all(isinstance(t, str) for t in self.vocab):
            raise BadInputError("seq2seq config: vocab must be a list of at least 5 strings")
        if len(set(self.vocab)) != len(self.vocab):
            raise BadInputError("seq2seq config: vocab has duplicate entries")
        for name in ("embed_dim", "hidden", "decoder_hidden", "attention_dim", "max_source_len", "max_target_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise BadInputError(f"seq2seq config: {name} must be an integer >= 1, got {value!r}")
        if self.cell not in CELLS:
            raise BadInputError(f"seq2seq config: cell must be one of {', '.join(CELLS)}, got {self.cell!r}")
        if self.attention not in ATTENTIONS:
            raise BadInputError(f"seq2seq config: attention must be one of {', '.join(ATTENTIONS)}, got {self.attention!r}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise BadInputError(f"seq2seq config: dropout must be a number in [0, 1), got {self.dropout!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Seq2SeqConfig:
        return config_from_dict(cls, d, "seq2seq config")

    @classmethod
    def for_task(cls, vocab: list, *, cell: str = "gru", hidden: int | None = None, layers: int | None = None,
                 bidirectional: bool | None = None, dropout: float | None = None, **fields: Any) -> Seq2SeqConfig:
        """A task's default config with the training CLI's overrides (`hidden` sets encoder and decoder)."""
        if layers not in (None, 1):
            raise BadInputError("the seq2seq model has one encoder layer and one decoder cell; --layers must be 1")
        if bidirectional is False:
            raise BadInputError("the seq2seq encoder is always bidirectional; drop --unidirectional")
        extra = {k: v for k, v in fields.items() if v is not None}
        if hidden is not None:
            extra.update(hidden=hidden, decoder_hidden=hidden)
        if dropout is not None:
            extra["dropout"] = dropout
        return cls(vocab=list(vocab), cell=cell or "gru", **extra)
