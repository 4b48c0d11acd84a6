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

The same for `F.unfold` (`nn.Unfold`, im2col) with a kernel as wide as a dynamic axis (FullSubNet's sub-band
unfold: `F.unfold(x, (2 * N + 1, num_frames))` over (B, 1, F, T)): torch's im2col reads the kernel as Python ints, so
torch.export specialised the time axis ("specialised to 24"). With one window along that axis (kernel = its size, no
padding or dilation on it) the blocks are the windows along the other axis (`Tensor.unfold`), the whole axis
carried along: the same values in im2col's order (channel, kernel row, kernel column; blocks along the other axis).
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


def _whole_axis(kernel, size) -> bool:
    import torch

    return isinstance(kernel, torch.SymInt) and isinstance(size, torch.SymInt) and kernel.node.expr == size.node.expr


def im2col(input, kernel_size, dilation, padding, stride):
    """torch's im2col (F.unfold), a kernel spanning a whole dynamic axis captured with that axis symbolic (see above)."""
    import torch.nn.functional as F

    (kh, kw), (dh, dw), (ph, pw), (sh, _) = kernel_size, dilation, padding, stride
    batch, channels, height, width = input.shape
    if _whole_axis(kw, width) and pw == 0 and dw == 1 and dh == 1:  # one window along the width
        blocks = F.pad(input, (0, 0, ph, ph)).unfold(2, kh, sh)  # (B, C, rows, W, kh)
        return blocks.permute(0, 1, 4, 3, 2).reshape(batch, channels * kh * width, -1)
    if _whole_axis(kh, height) and ph == 0 and dh == 1 and dw == 1:  # one window along the height
        blocks = F.pad(input, (pw, pw)).unfold(3, kw, stride[1])  # (B, C, H, cols, kw)
        return blocks.permute(0, 1, 2, 4, 3).reshape(batch, channels * height * kw, -1)
    return _saved_im2col(input, kernel_size, dilation, padding, stride)


_saved_im2col = None


@contextlib.contextmanager
def unfold_kept_dynamic():
    """torch's im2col as `im2col` above while torch.export captures (F.unfold and nn.Unfold call it)."""
    import torch

    global _saved_im2col
    _saved_im2col = saved = torch._C._nn.im2col
    torch._C._nn.im2col = im2col
    try:
        yield
    finally:
        torch._C._nn.im2col = saved


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
