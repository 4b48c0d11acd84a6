"""Cells and hand-written recurrences: `run_cell`, and what export assumes of a module without nn.RNN/GRU/LSTM.

    from rnnedge import run_cell

    class Tagger(nn.Module):
        def __init__(self):
            super().__init__()
            self.cell, self.head = nn.LSTMCell(5, 8), nn.Linear(8, 3)

        def forward(self, x):                       # x: (B, T, 5)
            y, (h, c) = run_cell(self.cell, x)      # instead of `for t in range(x.shape[1]): h, c = self.cell(x[:, t], (h, c))`
            return self.head(y)                     # (B, T, 3)

In eager torch `run_cell` *is* that Python loop (the cell called once per step, same results). While
torch.export traces it (rnnedge.exporting.api), a standard cell (nn.RNNCell, nn.GRUCell, nn.LSTMCell) becomes one
`rnnedge::recurrent` op with the cell's own weights (an nn.LSTMCell's weights are a 1-layer nn.LSTM's), so
the file keeps a dynamic time axis and gets the standard ONNX RNN/GRU/LSTM operator. A Python loop over
time written by hand is unrolled by torch.export and freezes the time axis: rnnedge refuses such a file
(rnnedge.exporting.guards) and names this helper as the way out. Any other cell (a hand-written LSTM/GRU step module
called as `cell(x_t, state) -> state`) goes through torch's `scan` control-flow operator at export, which
torch.onnx 2.13 lowers to an ONNX Scan: the time axis stays symbolic too.

A step module (`x_t, h[, c] -> h[, c]`, any cell, a hand-written LSTM/GRU step, an attention decoder's one
step) needs nothing: it exports with a symbolic batch (see `default_axes`).
"""

from __future__ import annotations

import logging

from rnnedge.errors import BadInputError

log = logging.getLogger(__name__)

CELL_NAMES = ("RNNCell", "GRUCell", "LSTMCell")


def run_cell(cell, x, hx=None, *, batch_first: bool = True):
    """Step `cell` over the time axis of `x`. Returns (outputs, last state), like nn.LSTM/GRU/RNN do.

    x: (B, T, I) if batch_first else (T, B, I). hx: the cell's state, h (B, H) or (h, c) for an LSTMCell;
    zeros when None. outputs: (B, T, H) (or (T, B, H)), the h of every step.
    """
    import torch

    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        raise BadInputError(f"run_cell expects x of rank 3 ({'(B, T, I)' if batch_first else '(T, B, I)'}), got {getattr(x, 'shape', type(x))}")
    if _exporting() and _standard(cell):
        return _as_recurrent_op(cell, x, hx, batch_first)
    if _exporting() and _scan() is not None:
        return _as_scan(cell, x, hx, batch_first)
    steps = x.unbind(1 if batch_first else 0)  # T tensors of (B, I)
    state, outs = hx, []
    for x_t in steps:
        state = cell(x_t, state) if state is not None else cell(x_t)
        outs.append(state[0] if isinstance(state, tuple) else state)  # (B, H)
    if not outs:
        raise BadInputError("run_cell got a sequence of length 0")
    return torch.stack(outs, 1 if batch_first else 0), state


def _standard(cell) -> bool:
    from torch import nn

    return type(cell) in (nn.RNNCell, nn.GRUCell, nn.LSTMCell)


def _exporting() -> bool:
    import torch

    try:
        return bool(torch.compiler.is_exporting())
    except AttributeError:  # older torch
        return False


def _as_recurrent_op(cell, x, hx, batch_first):
    """One rnnedge::recurrent op (a 1-layer stack) with the cell's own weights; the time axis stays symbolic."""
    from torch import nn

    from exporters import ops

    lstm = isinstance(cell, nn.LSTMCell)
    mode = "lstm" if lstm else "gru" if isinstance(cell, nn.GRUCell) else f"rnn_{cell.nonlinearity}"
    xb = x if batch_first else x.transpose(0, 1)  # (B, T, I)
    h0 = c0 = None
    if hx is not None:
        h0, c0 = hx if lstm else (hx, None)
        h0 = h0.unsqueeze(0)  # (1, B, H)
        c0 = c0.unsqueeze(0) if c0 is not None else None
    weights = [cell.weight_ih, cell.weight_hh] + ([cell.bias_ih, cell.bias_hh] if cell.bias else [])
    y, hn, cn = ops.recurrent(xb, h0, c0, None, weights, mode, cell.hidden_size, 1, False, 0, bool(cell.bias))
    y = y if batch_first else y.transpose(0, 1)
    return y, ((hn[0], cn[0]) if lstm else hn[0])


def _scan():
    try:
        from torch._higher_order_ops.scan import scan
    except ImportError:  # torch without the scan operator: the Python loop, refused at export as a frozen axis
        return None
    return scan


def _as_scan(cell, x, hx, batch_first):
    """Any other cell: torch's `scan` control-flow operator (an ONNX Scan), so the time axis stays symbolic.

    Without a state, the cell's own default is taken to be zeros (as for torch's cells): one call learns the state's
    structure, the loop starts from zeros of it. A cell with another default differs, and the export's parity check says so.
    """
    import torch
    from torch.utils._pytree import tree_map

    xs = x.transpose(0, 1) if batch_first else x  # (T, B, I)
    if hx is None:
        hx = tree_map(torch.zeros_like, cell(xs[0]))
    # torch's scan wants its start laid out as each step's (cloned) state, and no two state leaves one tensor ((h, h))
    hx = tree_map(lambda t: t.clone(memory_format=torch.contiguous_format), hx)

    def step(state, x_t):
        new = cell(x_t, state)
        return tree_map(torch.clone, new), _out_of(new).clone()

    state, ys = _scan()(step, hx, xs)  # ys: (T, B, H)
    return (ys.transpose(0, 1) if batch_first else ys), state


def _out_of(state):
    return state[0] if isinstance(state, (tuple, list)) else state


# ------------------------------------------------------------------------------------ export of modules without layers


def default_axes(names: list[str], examples) -> dict[str, dict[int, str]]:
    """Dynamic axes of a module without nn.RNN/GRU/LSTM when the user declared none.

    Axis 0 of every input as big as the first input's axis 0 is the batch (step modules: x_t (B, I),
    h (B, H), token (B,)). Axis 1 of a rank-3 input is "seq" (a whole sequence, or an attention memory);
    axis 1 of a rank-2 input as long as that sequence (a mask, token ids) is "seq" too.
    """
    first = examples[0]
    if first.dim() == 0:
        return {}
    batch = int(first.shape[0])
    seq = next((int(ex.shape[1]) for ex in examples if ex.dim() == 3 and int(ex.shape[0]) == batch), None)
    axes: dict[str, dict[int, str]] = {}
    for name, ex in zip(names, examples):
        spec = {0: "batch"} if ex.dim() >= 1 and int(ex.shape[0]) == batch else {}
        if spec and ex.dim() == 3 or (spec and ex.dim() == 2 and seq is not None and int(ex.shape[1]) == seq):
            spec[1] = "seq"
        if spec:
            axes[name] = spec
    return axes


def complete_axes(axes: dict, names: list[str], examples) -> dict:
    """Inputs the user left out of dynamic_axes whose axis 0 is as big as a declared axis 0 follow that label
    (a step module's h and c, declared only on x_t): left fixed, they would freeze the batch for the whole module."""
    by_size = {int(examples[names.index(n)].shape[0]): spec[0] for n, spec in axes.items() if n in names and 0 in spec}
    for name, ex in zip(names, examples):
        if name not in axes and ex.dim() >= 1 and int(ex.shape[0]) in by_size:
            axes[name] = {0: by_size[int(ex.shape[0])]}
            log.info("input '%s' follows axis 0 '%s' (same size as a declared axis)", name, axes[name][0])
    return axes


def choose_lowering(lowering: str, target: str) -> str:
    """Without nn.RNN/GRU/LSTM there is little to lower (run_cell's ops only): standard operators unless asked."""
    if target == "mobile":
        return "unrolled"
    if lowering == "unrolled":
        raise BadInputError("the unrolled lowering needs fixed shapes: use --target mobile --chunk N")
    return "native" if lowering == "auto" else lowering


def adjust_spec(spec, module) -> None:
    """Step modules take a previous token (B,) int: ids from the embedding's vocabulary, not lengths."""
    from torch import nn

    vocab = min((m.num_embeddings for m in module.modules() if isinstance(m, nn.Embedding)), default=None)
    for t in spec.inputs:
        if t.role == "lengths" and vocab and "len" not in t.name.lower():
            t.role, t.vocab = "tokens", vocab
