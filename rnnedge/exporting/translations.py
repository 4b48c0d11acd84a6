"""Small translations torchlib lacks, registered next to rnnedge's recurrent op (rnnedge.exporting.capture.registry).

torch.onnx carries a complex tensor as its real view, a trailing axis of 2 (real, imaginary). A spectral denoiser
that pads its complex spectrum (`F.pad(torch.stft(...), (1, 1))`) stopped the export with "Error when translating
node aten.pad.default": torchlib has no complex pad. `complex_pad` pads the real view: the same pads on the same
axes, none on the trailing one. A nonzero constant would pad the real part only: refused.

A clamp with tensor bounds (`torch.clamp(y, lo, hi)`, `x.clamp(max=lengths - 1)`) needs nothing here on torch 2.13:
torchlib translates aten.clamp.Tensor to Max/Min (the forms of tests/capture_modules.ClampedTagger: learned floor
and ceiling, a bound from the input, clamp_min/clamp_max, an index clamp by lengths).

One rewrite at torch's level, for the duration of a torch.export capture (`max_pool1d_kept_dynamic`): torch 2.13's
`torch.max_pool1d` (under `nn.MaxPool1d` and `F.max_pool1d` without indices) runs a composite kernel that reads
the input's length as a Python int, so torch.export specialises the time axis of every model that pools over it
(pyannote's SincNet front end, Tacotron's CBHG: "specialised to 2000"). It is captured as the same window through
`max_pool1d_with_indices` (one ONNX MaxPool, length symbolic, the indices unused); a window that is the whole axis
(`F.max_pool1d(x, x.size(2))`, a char CNN's max over the word) is `amax` over it.
"""

from __future__ import annotations

import contextlib


def complex_pad(self, pad, mode: str = "constant", value=None):
    """aten.pad on a complex tensor (self: its real view, (..., 2)): torch's pads, then none on the trailing axis."""
    from onnxscript.function_libs.torch_lib.ops.nn import aten_pad

    from rnnedge.errors import ExportError

    if value not in (None, 0, 0.0):
        raise ExportError(f"pad of a complex tensor with the value {value}: ONNX pads its real and imaginary parts alike; "
                          "pad with 0 (the default), or pad the real view (torch.view_as_real) yourself")
    return aten_pad(self, [0, 0, *pad], mode=mode, value=None)  # torch's pad list starts at the last axis: the trailing 2


def complex_table() -> dict:
    """{torch op: translation} for complex inputs (registered with is_complex=True)."""
    import torch

    return {torch.ops.aten.pad.default: complex_pad}


def _single(value):
    return value[0] if isinstance(value, (list, tuple)) and len(value) == 1 else value


def max_pool1d(input, kernel_size, stride=(), padding=0, dilation=1, ceil_mode=False):
    """torch.max_pool1d's result, captured without reading the length as an int (see the module docstring)."""
    import torch

    k, s, p, d = (_single(v) for v in (kernel_size, stride, padding, dilation))
    s = k if s in ((), [], None) else s
    length = input.shape[-1]
    if isinstance(k, torch.SymInt) and isinstance(length, torch.SymInt) and k.node.expr == length.node.expr \
            and s is k and p == 0 and d == 1:
        return input.amax(-1, keepdim=True)  # one window over the whole axis
    return torch.max_pool1d_with_indices(input, k, s, p, d, ceil_mode)[0]  # the same window, its indices unused


@contextlib.contextmanager
def max_pool1d_kept_dynamic():
    """torch.max_pool1d as `max_pool1d` above while torch.export captures (nn.MaxPool1d and F.max_pool1d call it)."""
    import torch

    saved = torch.max_pool1d
    torch.max_pool1d = max_pool1d
    try:
        yield
    finally:
        torch.max_pool1d = saved
