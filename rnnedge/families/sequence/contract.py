"""The exported-model I/O contract for rnnedge's own models (DESIGN.md, "Exported model I/O").

`contract(model, target, chunk, batch)` wraps a SequenceModel in a module whose forward has
exactly the contract's inputs and outputs, and returns it with example inputs, names and
dynamic axes, ready for `rnnedge.exporting.api`. `verify` builds the same wrapper again from the
checkpoint and the file's metadata, so both sides always agree on what is compared.

    dynamic   x|tokens [batch, seq(, F)], lengths [batch]                -> logits|y
    stream    x|tokens, lengths, h0 [L*D, batch, H] (, c0)                -> logits|y, hn (, cn)
    mobile    x|tokens [B, chunk(, F)] fixed, h0 (, c0) fixed             -> logits|y, hn (, cn)

`lengths` is there only when asked (`lengths=True`); `export_checkpoint` asks for it when the task's
sequences vary (`task_has_lengths`), so an app on plain onnxruntime feeds fixed-length tasks x alone.
The wrappers take it optionally (an integer tensor right after x), so verify rebuilds the same module
from the checkpoint whichever way the file was exported.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from rnnedge.errors import BadInputError, first_line
from rnnedge.families.sequence.model import SequenceModel

log = logging.getLogger(__name__)


def _split_lengths(rest: tuple):
    """(lengths or None, states): lengths, when the file has them, is the integer tensor right after x."""
    if rest and not rest[0].is_floating_point():
        return rest[0], rest[1:]
    return None, rest


class Dynamic(nn.Module):
    def __init__(self, model: SequenceModel):
        super().__init__()
        self.model = model

    def forward(self, x, lengths=None):
        return self.model(x, lengths)


class Stream(nn.Module):
    rnnedge_contract = True  # takes and returns its state already (export adds none)
    def __init__(self, model: SequenceModel):
        super().__init__()
        self.model = model
        self.lstm = model.config.cell == "lstm"

    def forward(self, x, *rest):  # x, [lengths], h0[, c0]
        lengths, (h0, *c0) = _split_lengths(rest)
        out, state = self.model(x, lengths, state=(h0, c0[0]) if self.lstm else h0)
        return (out, *state) if self.lstm else (out, state)


class Chunk(nn.Module):
    """Mobile: fixed-size chunks, no lengths (every row is a full chunk)."""

    def __init__(self, model: SequenceModel):
        super().__init__()
        self.model = model
        self.lstm = model.config.cell == "lstm"

    def forward(self, x, h0, c0=None):
        out, state = self.model(x, None, state=(h0, c0) if self.lstm else h0)
        return (out, *state) if self.lstm else (out, state)


@dataclass
class Contract:
    module: nn.Module
    examples: tuple
    input_names: list[str]
    output_names: list[str]
    dynamic_axes: dict | None


def task_has_lengths(task: str | None) -> bool:
    """Whether a built-in task's sequences vary in length (then exports take `lengths`); unknown tasks: True."""
    if not task:
        return True
    from rnnedge.tasks import get_task

    try:
        return get_task(task).split("val").lengths is not None
    except Exception as exc:  # a task this version does not know: keep the general form
        log.debug("task %r: lengths assumed (%s)", task, first_line(exc))
        return True


def contract(model: SequenceModel, target: str = "dynamic", chunk: int = 16, batch: int = 1, lengths: bool = True) -> Contract:
    c = model.config
    if target in ("stream", "mobile") and c.bidirectional:
        raise BadInputError(f"a bidirectional model cannot stream (--target {target}): its backward pass needs the whole sequence")
    if target == "mobile" and (chunk < 1 or batch < 1):
        raise BadInputError("--chunk and the batch size must be at least 1")
    tokens = c.input_kind == "tokens"
    first = "tokens" if tokens else "x"
    main_out = "y" if c.head == "regress" else "logits"
    steps, rows = (chunk, batch) if target == "mobile" else (7, 2)
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, c.input_size, (rows, steps), generator=gen) if tokens else torch.randn(rows, steps, c.input_size, generator=gen)
    lengths_example = torch.tensor([steps] + [max(1, steps // 2)] * (rows - 1), dtype=torch.int64)
    state = torch.zeros(c.layers * c.directions, rows, c.hidden)  # (L*D, B, H)
    states = [state, state.clone()] if c.cell == "lstm" else [state]
    state_names = ["h0", "c0"][: len(states)]
    out_states = ["hn", "cn"][: len(states)]
    seq_axes = {0: "batch", 1: "seq"}
    out_axes = {main_out: seq_axes if c.head in ("tag", "lm") else {0: "batch"}}
    feed, feed_names = ((lengths_example,), ["lengths"]) if lengths else ((), [])
    if target == "dynamic":
        axes = {first: seq_axes, **{n: {0: "batch"} for n in feed_names}, **out_axes}
        return Contract(Dynamic(model), (x, *feed), [first, *feed_names], [main_out], axes)
    if target == "stream":
        axes = {first: seq_axes, **{n: {0: "batch"} for n in feed_names}, **out_axes}
        axes.update({n: {1: "batch"} for n in state_names + out_states})
        return Contract(Stream(model), (x, *feed, *states), [first, *feed_names, *state_names], [main_out, *out_states], axes)
    if target == "mobile":
        return Contract(Chunk(model), (x, *states), [first, *state_names], [main_out, *out_states], None)
    raise BadInputError(f"unknown target '{target}': expected dynamic, stream or mobile")
