"""Recurrent layers as torch custom ops, so that torch.onnx's dynamo path keeps both axes symbolic.

`torch.export` unrolls `nn.RNN` and freezes the sequence length; for GRU/LSTM it stamps the
example's length into output shapes. Here each `nn.RNN`/`nn.GRU`/`nn.LSTM` is swapped, for the
duration of an export, by `RecurrentExport`, a wrapper that shares the layer's parameters and
calls one opaque custom op, `rnnedge::recurrent`. Its fake kernel keeps batch and time symbolic;
its ONNX translation (`translate_recurrent`) emits one `rnnedge.TorchRecurrent` node that carries
the layer's options and its weights in PyTorch layout. `exporters.native` then turns that node
into the standard ONNX `RNN`/`GRU`/`LSTM` operators (and `exporters.scan`/`exporters.unrolled`
into loops), with the weight layout converted in numpy, exactly.

The custom op always sees batch-major tensors: the wrapper transposes sequence-major input.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import onnx
import torch
from onnx.defs import OpSchema
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from exporters.names import DOMAIN, NODE  # torch-free: shared with the lowerings

RECURRENT_TYPES = (nn.RNN, nn.GRU, nn.LSTM)


def recurrent_mode(layer: nn.RNNBase) -> str:
    """'rnn_tanh' | 'rnn_relu' | 'gru' | 'lstm' (the cell, as ONNX attribute and eager dispatch key)."""
    if isinstance(layer, nn.LSTM):
        return "lstm"
    if isinstance(layer, nn.GRU):
        return "gru"
    return "rnn_relu" if layer.nonlinearity == "relu" else "rnn_tanh"


# ---------------------------------------------------------------------------------------------
# The custom op: an eager kernel (torch's own fused RNN functions) and a fake kernel for export.
# ---------------------------------------------------------------------------------------------


@torch.library.custom_op("rnnedge::recurrent", mutates_args=())
def recurrent(
    x: torch.Tensor,
    h0: torch.Tensor | None,
    c0: torch.Tensor | None,
    lengths: torch.Tensor | None,
    weights: list[torch.Tensor],
    mode: str,
    hidden_size: int,
    num_layers: int,
    bidirectional: bool,
    proj_size: int,
    has_bias: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run a recurrent stack on batch-major x (B, T, I). Returns y (B, T, D*Hout), hn, cn.

    hn is (L*D, B, Hout) with Hout = proj_size or hidden_size; cn is (L*D, B, H) for LSTM and an
    empty tensor otherwise. With `lengths`, positions past a row's length are zero in y and the
    states are those at each row's last real step (pack_padded_sequence semantics).
    """
    dirs = 2 if bidirectional else 1
    out_size = proj_size or hidden_size
    batch = x.shape[0]
    if h0 is None:
        h0 = x.new_zeros(num_layers * dirs, batch, out_size)
    if mode == "lstm" and c0 is None:
        c0 = x.new_zeros(num_layers * dirs, batch, hidden_size)
    hx = (h0, c0) if mode == "lstm" else h0
    fn = {"lstm": torch._VF.lstm, "gru": torch._VF.gru, "rnn_tanh": torch._VF.rnn_tanh, "rnn_relu": torch._VF.rnn_relu}[mode]
    if lengths is None:
        y, *states = fn(x, hx, weights, has_bias, num_layers, 0.0, False, bidirectional, True)
    else:
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        order, unorder = packed.sorted_indices, packed.unsorted_indices
        hx_sorted = tuple(s.index_select(1, order) for s in hx) if mode == "lstm" else hx.index_select(1, order)
        y, *states = fn(packed.data, packed.batch_sizes, hx_sorted, weights, has_bias, num_layers, 0.0, False, bidirectional)
        y, _ = nn.utils.rnn.pad_packed_sequence(
            PackedSequence(y, packed.batch_sizes, order, unorder), batch_first=True, total_length=x.shape[1]
        )
        states = [s.index_select(1, unorder) for s in states]
    hn = states[0]
    cn = states[1] if mode == "lstm" else x.new_zeros(0)
    return y.contiguous(), hn.contiguous(), cn.contiguous()


@recurrent.register_fake
def _recurrent_fake(x, h0, c0, lengths, weights, mode, hidden_size, num_layers, bidirectional, proj_size, has_bias):
    dirs = 2 if bidirectional else 1
    out_size = proj_size or hidden_size
    batch, steps = x.shape[0], x.shape[1]
    for state in (h0, c0):  # as torch's kernel checks it: a state of another batch (a cache sized by an earlier call)
        if state is not None:  # ties the batch to the state's size, so torch.export reports the specialisation
            torch._check(state.shape[1] == batch, lambda: "the recurrent state's batch differs from the input's")
    y = x.new_empty(batch, steps, dirs * out_size)  # (B, T, D*Hout)
    hn = x.new_empty(num_layers * dirs, batch, out_size)  # (L*D, B, Hout)
    cn = x.new_empty(num_layers * dirs, batch, hidden_size) if mode == "lstm" else x.new_empty(0)
    return y, hn, cn


# ---------------------------------------------------------------------------------------------
# ONNX side: one schema-registered placeholder node, lowered later by exporters.native.
# ---------------------------------------------------------------------------------------------


def _register_schema() -> None:
    if onnx.defs.has(NODE, DOMAIN):
        return
    variadic = OpSchema.FormalParameterOption.Variadic
    attr = OpSchema.Attribute
    schema = OpSchema(
        NODE,
        DOMAIN,
        1,
        doc="A PyTorch recurrent stack, weights in PyTorch layout; lowered by exporters.native.",
        inputs=[OpSchema.FormalParameter("inputs", "T", param_option=variadic, is_homogeneous=False)],
        outputs=[OpSchema.FormalParameter(name, "T") for name in ("Y", "Y_h", "Y_c")],
        type_constraints=[("T", ["tensor(float)", "tensor(double)", "tensor(float16)", "tensor(int64)"], "")],
        attributes=[
            attr("mode", OpSchema.AttrType.STRING, "rnn_tanh | rnn_relu | gru | lstm"),
            *(
                attr(name, OpSchema.AttrType.INT, name)
                for name in ("hidden_size", "num_layers", "bidirectional", "proj_size", "has_bias", "has_h0", "has_c0", "has_lengths")
            ),
        ],
    )
    onnx.defs.register_schema(schema)


def translate_recurrent(x, h0, c0, lengths, weights, mode, hidden_size, num_layers, bidirectional, proj_size, has_bias):
    """custom_translation_table entry: emit one rnnedge.TorchRecurrent node (inputs: x, [h0], [c0], [lengths], weights...)."""
    from onnxscript import values

    _register_schema()
    rn = values.Opset(DOMAIN, 1)
    present = [t for t in (h0, c0, lengths) if t is not None]
    outputs = rn.TorchRecurrent(
        x,
        *present,
        *weights,
        mode=mode,
        hidden_size=hidden_size,
        num_layers=num_layers,
        bidirectional=int(bidirectional),
        proj_size=proj_size,
        has_bias=int(has_bias),
        has_h0=int(h0 is not None),
        has_c0=int(c0 is not None),
        has_lengths=int(lengths is not None),
    )
    for out in outputs:  # the exporter knows the shapes (fake kernel) but not the element type
        out.dtype = x.dtype
    return outputs


def translation_table() -> dict:
    """The custom_translation_table for torch.onnx.export(dynamo=True)."""
    _register_schema()
    return {torch.ops.rnnedge.recurrent.default: translate_recurrent}


# ---------------------------------------------------------------------------------------------
# The module swap.
# ---------------------------------------------------------------------------------------------


class RecurrentExport(nn.Module):
    """Stands in for one nn.RNN/GRU/LSTM during export; holds the very same Parameter objects.

    Called like the layer it replaces (`y, h = rnn(x, h0)`, `y, (h, c) = lstm(x, (h0, c0))`, or on a
    PackedSequence the module packed itself), plus an optional `lengths` keyword (int64 [B]) that
    rnnedge models pass instead of packing.
    """

    accepts_lengths = True

    def __init__(self, layer: nn.RNNBase):
        super().__init__()
        self.mode = recurrent_mode(layer)
        self._stands_in_for = type(layer)
        # the layer's public attributes, for forward() code that reads them (self.rnn.hidden_size, ...)
        self.input_size = layer.input_size
        self.bias = layer.bias
        self.dropout = layer.dropout
        self.nonlinearity = getattr(layer, "nonlinearity", "tanh")
        self.hidden_size = layer.hidden_size
        self.num_layers = layer.num_layers
        self.bidirectional = layer.bidirectional
        self.batch_first = layer.batch_first
        self.proj_size = getattr(layer, "proj_size", 0)
        self.has_bias = layer.bias
        self._weight_names = list(layer._flat_weights_names)
        for name, extra in [*layer.named_parameters(recurse=False), *layer.named_buffers(recurse=False)]:
            if name not in self._weight_names:  # AWD-LSTM's weight_hh_l0_raw: read by the wrapper that sets the weight
                (self.register_parameter if isinstance(extra, nn.Parameter) else self.register_buffer)(name, extra)
        for name in self._weight_names:
            value = getattr(layer, name, None)
            if isinstance(value, nn.Parameter):
                self.register_parameter(name, value)
            else:  # a computed weight (parametrizations.weight_norm, AWD-LSTM's WeightDrop): its value now, settable
                self.register_buffer(name, None if value is None else value.detach(), persistent=False)

    @property
    def __class__(self):  # noqa: D105
        """The class of the layer it stands in for: `isinstance(self.rnn, nn.LSTM)` in the user's forward (OpenNMT-style
        bridges) still holds during export (type(self) stays RecurrentExport for torch's own machinery)."""
        return self._stands_in_for

    def flatten_parameters(self) -> None:
        """No-op: user code often calls rnn.flatten_parameters() (a cuDNN memory layout hint) in forward."""

    def forward(self, input, hx=None, lengths=None):
        if isinstance(input, PackedSequence):
            return self._forward_packed(input, hx)
        unbatched = input.dim() == 2
        x = input.unsqueeze(1 if not self.batch_first else 0) if unbatched else input
        if not self.batch_first:
            x = x.transpose(0, 1)  # (B, T, I)
        h0, c0 = self._split_state(hx, unbatched)
        y, hn, cn = self._run(x, h0, c0, lengths)
        if not self.batch_first:
            y = y.transpose(0, 1).contiguous()  # (T, B, D*H), contiguous as torch's own layers return it (`.view` after it)
        if unbatched:
            y = y.squeeze(1 if not self.batch_first else 0)
            hn, cn = hn.squeeze(1), (cn.squeeze(1) if self.mode == "lstm" else cn)
        return y, ((hn, cn) if self.mode == "lstm" else hn)

    def _split_state(self, hx, unbatched=False):
        if hx is None:
            return None, None
        h0, c0 = hx if self.mode == "lstm" else (hx, None)
        if unbatched:
            h0 = h0.unsqueeze(1)
            c0 = c0.unsqueeze(1) if c0 is not None else None
        return h0, c0

    def _run(self, x, h0, c0, lengths):
        weights = [getattr(self, name) for name in self._weight_names]
        return recurrent(
            x, h0, c0, lengths, weights, self.mode, self.hidden_size, self.num_layers, self.bidirectional, self.proj_size, self.has_bias
        )

    def _forward_packed(self, packed: PackedSequence, hx):
        """A sequence the module packed itself (under `packing_as_lengths`): padded data + lengths, as nn.RNNBase does it."""
        data, marker, sorted_indices, unsorted_indices = packed
        lengths = packed_lengths(marker)  # (B,) in the packed (sorted) order
        if sorted_indices is None:  # pack_padded_sequence(enforce_sorted=True): torch refuses unsorted lengths
            _SORTED_REQUIRED.append(True)
        h0, c0 = self._split_state(hx)
        if sorted_indices is not None:  # the caller's state is in the caller's order (nn.RNNBase.permute_hidden)
            h0 = h0.index_select(1, sorted_indices) if h0 is not None else None
            c0 = c0.index_select(1, sorted_indices) if c0 is not None else None
        y, hn, cn = self._run(data, h0, c0, lengths)  # data is (B, T, I) batch-major, see _export_pack
        if unsorted_indices is not None:
            hn = hn.index_select(1, unsorted_indices)
            cn = cn.index_select(1, unsorted_indices) if self.mode == "lstm" else cn
        out = PackedSequence(y, marker, sorted_indices, unsorted_indices)
        return out, ((hn, cn) if self.mode == "lstm" else hn)


def find_recurrent(module: nn.Module) -> list[tuple[str, nn.RNNBase]]:
    """Every nn.RNN/GRU/LSTM in the tree, with its dotted name."""
    return [(name, m) for name, m in module.named_modules() if isinstance(m, RECURRENT_TYPES)]


@contextlib.contextmanager
def swapped_recurrent(module: nn.Module) -> Iterator[list[str]]:
    """Swap every recurrent layer for a RecurrentExport (same parameters); put them back on exit."""
    swaps: list[tuple[nn.Module, str, nn.Module]] = []
    for name, layer in find_recurrent(module):
        parent_name, _, child = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        swaps.append((parent, child, layer))
    try:
        for parent, child, layer in swaps:
            setattr(parent, child, RecurrentExport(layer))
        yield [f"{p.__class__.__name__}.{c}" for p, c, _ in swaps]
    finally:
        for parent, child, layer in swaps:
            setattr(parent, child, layer)


# ---------------------------------------------------------------------------------------------
# Sequences a module packs itself: pack_padded_sequence -> layer -> pad_packed_sequence.
# ---------------------------------------------------------------------------------------------
# torch.export cannot trace a real PackedSequence (its data's length is the sum of the lengths, a
# value). torch's own pack/pad functions look the low-level kernels up in torch._VF at call time, so
# for the duration of an export these are replaced: "packing" keeps the padded tensor, batch-major,
# and an empty `batch_sizes` marker that names the lengths; RecurrentExport passes those lengths to the
# custom op; "padding" masks past each row's length and returns torch's number of steps. Sorting,
# index_select and the state permutations stay torch's own code, traced as they are.

_PACKED: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # id(marker) -> (marker, lengths)
_SORTED_REQUIRED: list[bool] = []  # a layer saw lengths packed with enforce_sorted=True during this export


def packed_lengths(marker: torch.Tensor) -> torch.Tensor:
    """The lengths (int64 [B], packed order) behind a batch_sizes marker made by `_export_pack`."""
    entry = _PACKED.get(id(marker))
    if entry is None or entry[0] is not marker:
        from rnnedge.errors import ExportError

        raise ExportError("a PackedSequence not made by pack_padded_sequence/pack_sequence in forward cannot be exported: "
                          "pack inside forward from a padded tensor and its lengths")
    return entry[1]


def _export_pack(input: torch.Tensor, lengths: torch.Tensor, batch_first: bool):
    """Stand-in for _VF._pack_padded_sequence: (data (B, T, *) batch-major, empty marker of the lengths)."""
    data = input if batch_first else input.transpose(0, 1)  # (B, T, *)
    marker = lengths.new_empty(0)
    _PACKED[id(marker)] = (marker, lengths)
    return data, marker


def _export_pad(data: torch.Tensor, marker: torch.Tensor, batch_first: bool, padding_value: float, total_length):
    """Stand-in for _VF._pad_packed_sequence. `total_length` is 0 when the caller gave none (the marker's size):
    torch then returns max(lengths) steps, a value-dependent size, reproduced with a dynamic slice."""
    lengths = packed_lengths(marker)
    steps = data.shape[1]
    if total_length == 0:
        longest = lengths.max().item()
        torch._check(longest >= 0)  # a bound on the value only: relating it to T would read as a bounded time axis
        data = data.index_select(1, torch.arange(longest, device=data.device))  # (B, max(lengths), *)
    elif total_length is not steps and total_length != steps:
        extra = total_length - steps
        if extra > 0:
            data = torch.cat([data, data.new_zeros(data.shape[0], extra, *data.shape[2:])], dim=1)
        else:
            data = data.narrow(1, 0, total_length)
    t = torch.arange(data.shape[1], device=data.device)  # (T',)
    keep = (t.unsqueeze(0) < lengths.unsqueeze(1)).reshape(*lengths.shape, data.shape[1], *([1] * (data.dim() - 2)))
    out = torch.where(keep, data, torch.full((), padding_value, dtype=data.dtype, device=data.device))  # (B, T', *)
    return (out if batch_first else out.transpose(0, 1)), lengths


class PackingSeen:
    """What the export saw of packing: `lengths_descending` when the module packs with enforce_sorted=True."""

    lengths_descending = False


@contextlib.contextmanager
def packing_as_lengths() -> Iterator[PackingSeen]:
    """For the duration of an export: torch's pack/pad functions carry padded tensors + lengths (see above)."""
    from torch import _VF

    seen = PackingSeen()
    _SORTED_REQUIRED.clear()

    saved = {name: vars(_VF).get(name) for name in ("_pack_padded_sequence", "_pad_packed_sequence")}
    _VF._pack_padded_sequence = _export_pack
    _VF._pad_packed_sequence = _export_pad
    try:
        yield seen
    finally:
        for name, value in saved.items():
            if value is None:
                delattr(_VF, name)  # back to VFModule.__getattr__ (torch's kernel)
            else:
                setattr(_VF, name, value)
        _PACKED.clear()
        seen.lengths_descending = bool(_SORTED_REQUIRED)
        _SORTED_REQUIRED.clear()
