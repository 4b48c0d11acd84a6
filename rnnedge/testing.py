"""Parity assertions for your own test suite (pytest or unittest).

    from rnnedge.testing import assert_parity

    def test_my_export(tmp_path):
        model = MyModel().eval()
        rnnedge.export(model, (torch.randn(2, 10, 5),), tmp_path / "m.onnx", input_names=["x"])
        assert_parity(model, tmp_path / "m.onnx")          # or a checkpoint path instead of a module

The cases come from the spec stored in the file (shapes never used at export: batch 1 / odd /
larger, sequence 1 / short / past 256 and 512, ragged lengths, saturated inputs, every token id, given
and zero initial state, chunked streaming), every available execution provider is tried, and each
output must stay within 16x torch's own float32 noise (measured against a float64 copy of the model).
Outputs float32 cannot verify (ill-conditioned) fail unless `allow_ill_conditioned=True`.
"""

from __future__ import annotations

from rnnedge.parity import ParityReport, verify


def assert_parity(module_or_checkpoint, onnx_path, *, atol: float | None = None, rtol: float | None = None,
                  cases: int = 0, providers: list[str] | None = None, allow_ill_conditioned: bool = False) -> ParityReport:
    """Raise AssertionError (with a line per failing case and output) unless the ONNX file matches; return the report."""
    report = verify(module_or_checkpoint, onnx_path, atol=atol, rtol=rtol, cases=cases, providers=providers,
                    allow_ill_conditioned=allow_ill_conditioned)
    if not report:
        raise AssertionError(report.summary())
    return report
