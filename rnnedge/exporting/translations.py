"""Small translations torchlib lacks, registered next to rnnedge's recurrent op (rnnedge.exporting.capture.registry).

torch.onnx carries a complex tensor as its real view, a trailing axis of 2 (real, imaginary). A spectral denoiser
that pads its complex spectrum (`F.pad(torch.stft(...), (1, 1))`) stopped the export with "Error when translating
node aten.pad.default": torchlib has no complex pad. `complex_pad` pads the real view: the same pads on the same
axes, none on the trailing one. A nonzero constant would pad the real part only: refused.

A clamp with tensor bounds (`torch.clamp(y, lo, hi)`, `x.clamp(max=lengths - 1)`) needs nothing here on torch 2.13:
torchlib translates aten.clamp.Tensor to Max/Min (the forms of tests/capture_modules.ClampedTagger: learned floor
and ceiling, a bound from the input, clamp_min/clamp_max, an index clamp by lengths).
"""

from __future__ import annotations


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
