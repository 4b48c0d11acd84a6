"""ModelConfig and SequenceModel: input -> (embedding) -> dropout -> recurrent stack -> dropout -> head.

One small, declarative config drives the whole model, so a checkpoint (or an exported ONNX file)
can carry it as JSON and rebuild the exact same module:

    >>> cfg = ModelConfig(input_size=5, hidden=8, num_outputs=3)
    >>> model = SequenceModel(cfg)
    >>> logits = model(torch.randn(4, 10, 5))          # (B, num_outputs)

Dropout follows Zaremba et al. 2014 (arXiv:1409.2329): only on the non-recurrent connections,
i.e. on the stack's input and output (`self.drop`) and between layers (the `dropout` argument of
nn.RNN/GRU/LSTM), never on the recurrent state.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnedge.errors import BadInputError
from rnnedge.families.configs import config_from_dict

log = logging.getLogger(__name__)

INPUT_KINDS = ("features", "tokens")
CELLS = ("rnn", "gru", "lstm")
NONLINEARITIES = ("tanh", "relu")
HEADS = ("classify", "tag", "lm", "regress")
SEQUENCE_HEADS = ("tag", "lm")  # heads with one output per step: (B, T, num_outputs)


@dataclass(kw_only=True)
class ModelConfig:
    """Everything needed to rebuild a SequenceModel. Serialised as JSON in checkpoints and ONNX files."""

    input_kind: str = "features"  # "features": float [B, T, F]; "tokens": int64 ids [B, T]
    input_size: int  # number of features, or vocabulary size for token inputs
    embed_dim: int = 0  # token models only: embedding size (0 -> same as hidden)
    cell: str = "gru"  # "rnn" | "gru" | "lstm"
    nonlinearity: str = "tanh"  # rnn cell only: "tanh" | "relu"
    hidden: int  # hidden units per direction and layer
    layers: int = 1  # stacked recurrent layers
    bidirectional: bool = False  # a second pass from the last step back to the first
    dropout: float = 0.0  # on the stack's input/output and between layers (never on the recurrence)
    head: str = "classify"  # "classify" | "regress" (B, num_outputs); "tag" | "lm" (B, T, num_outputs)
    num_outputs: int  # classes, vocabulary size (lm) or regression dimensions

    def __post_init__(self) -> None:
        self.validate()

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def rnn_input_size(self) -> int:
        """Width of what the recurrent stack reads: the features, or the embedding."""
        if self.input_kind == "tokens":
            return self.embed_dim or self.hidden
        return self.input_size

    def validate(self) -> None:
        """Raise BadInputError naming the first field that is out of range."""
        _check_choice("input_kind", self.input_kind, INPUT_KINDS)
        _check_choice("cell", self.cell, CELLS)
        _check_choice("nonlinearity", self.nonlinearity, NONLINEARITIES)
        _check_choice("head", self.head, HEADS)
        for name in ("input_size", "hidden", "layers", "num_outputs"):
            _check_int(name, getattr(self, name), minimum=1)
        _check_int("embed_dim", self.embed_dim, minimum=0)
        if not isinstance(self.bidirectional, bool):
            raise BadInputError(f"model config: bidirectional must be true or false, got {self.bidirectional!r}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise BadInputError(f"model config: dropout must be a number in [0, 1), got {self.dropout!r}")
        if self.input_kind == "features" and self.embed_dim:
            raise BadInputError("model config: embed_dim is only for token inputs (input_kind='tokens')")
        if self.cell != "rnn" and self.nonlinearity != "tanh":
            raise BadInputError(f"model config: nonlinearity={self.nonlinearity!r} only applies to the rnn cell")
        if self.head == "lm" and self.input_kind != "tokens":
            raise BadInputError("model config: the lm head predicts the next token, so it needs input_kind='tokens'")
        if self.head == "lm" and self.bidirectional:
            raise BadInputError("model config: a bidirectional lm would see the token it predicts; use head='tag' instead")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Build from a dict (e.g. parsed JSON); unknown or missing keys and bad values -> BadInputError."""
        return config_from_dict(cls, d, "model config")

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise BadInputError(f"model config: {name} must be one of {', '.join(choices)}, got {value!r}")


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise BadInputError(f"model config: {name} must be an integer >= {minimum}, got {value!r}")


_RNN_TYPES = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


class SequenceModel(nn.Module):
    """Input -> (embedding) -> dropout -> nn.RNN/GRU/LSTM (batch_first) -> dropout -> linear head."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        config.validate()
        self.config = config
        c = config
        self.embed = nn.Embedding(c.input_size, c.rnn_input_size) if c.input_kind == "tokens" else None
        self.drop = nn.Dropout(c.dropout)
        kwargs: dict[str, Any] = dict(
            input_size=c.rnn_input_size,
            hidden_size=c.hidden,
            num_layers=c.layers,
            bidirectional=c.bidirectional,
            batch_first=True,
            dropout=c.dropout if c.layers > 1 else 0.0,  # between layers only
        )
        if c.cell == "rnn":
            kwargs["nonlinearity"] = c.nonlinearity
        self.rnn = _RNN_TYPES[c.cell](**kwargs)
        self.head = nn.Linear(c.directions * c.hidden, c.num_outputs)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None, state=None):
        """x: (B, T, F) float or (B, T) int64; lengths: int64 (B,) or None; state: h or (h, c).

        Returns `out` when state is None, else `(out, new_state)`. `out` is (B, num_outputs) for the
        classify/regress heads (read from the last layer's final hidden state) and (B, T, num_outputs)
        for tag/lm. States are (layers*dirs, B, H).
        """
        c = self.config
        if self.embed is not None:
            x = self.embed(x)  # (B, T, E)
        x = self.drop(x)  # (B, T, I)
        y, new_state = self.run_recurrent(x, lengths, state)  # (B, T, dirs*H), h: (layers*dirs, B, H)
        if c.head in SEQUENCE_HEADS:
            out = self.head(self.drop(y))  # (B, T, num_outputs)
        else:
            h = new_state[0] if c.cell == "lstm" else new_state  # (layers*dirs, B, H)
            if c.bidirectional:
                last = torch.cat([h[-2], h[-1]], dim=-1)  # (B, 2H): forward at the last real step, backward at step 0
            else:
                last = h[-1]  # (B, H)
            out = self.head(self.drop(last))  # (B, num_outputs)
        return out if state is None else (out, new_state)

    def run_recurrent(self, x: torch.Tensor, lengths: torch.Tensor | None, state):
        """The one recurrent call: (B, T, I) -> (y (B, T, dirs*H), h or (h, c)).

        With lengths, sequences are packed so padded steps change nothing. An export wrapper that
        declares `accepts_lengths` (see exporters/ops.py) takes the lengths itself instead.
        """
        if getattr(self.rnn, "accepts_lengths", False):
            return self.rnn(x, state, lengths=lengths)
        if lengths is None:
            return self.rnn(x, state)
        T = x.shape[1]
        lengths = lengths.cpu()
        if lengths.shape != (x.shape[0],) or int(lengths.min()) < 1 or int(lengths.max()) > T:
            raise BadInputError(f"lengths must be {x.shape[0]} integers in [1, {T}], got {lengths.tolist()}")
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        y, new_state = self.rnn(packed, state)
        y, _ = pad_packed_sequence(y, batch_first=True, total_length=T)  # (B, T, dirs*H), zeros past each length
        return y, new_state

    def initial_state(self, batch: int, device=None):
        """Zeros in the shape `forward(..., state=...)` takes: h, or (h, c) for LSTM."""
        c = self.config
        h = torch.zeros(c.layers * c.directions, batch, c.hidden, device=device)  # (layers*dirs, B, H)
        return (h, h.clone()) if c.cell == "lstm" else h


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters (trainable or not)."""
    return sum(p.numel() for p in model.parameters())
