"""Parity assertions for your own test suite (pytest or unittest).

    from rnnedge.testing import assert_parity

    def test_my_export(tmp_path):
        model = MyModel().eval()
        rnnedge.export(model, (torch.randn(2, 10, 5),), tmp_path / "m.onnx", input_names=["x"])
        assert_parity(model, tmp_path / "m.onnx")          # or a checkpoint path instead of a module

The cases come from the spec stored in the file (shapes never used at export: batch 1 / odd /
larger, sequence 1 / short / 512, ragged lengths, saturated inputs, every token id, given and
zero initial state, chunked streaming), and every available execution provider is tried.
"""

from __future__ import annotations

from .parity import ParityReport, verify


def assert_parity(module_or_checkpoint, onnx_path, *, atol: float | None = None, rtol: float | None = None,
                  cases: int = 0, providers: list[str] | None = None) -> ParityReport:
    """Raise AssertionError (with a line per failing case and output) unless the ONNX file matches; return the report."""
    report = verify(module_or_checkpoint, onnx_path, atol=atol, rtol=rtol, cases=cases, providers=providers)
    if not report:
        raise AssertionError(report.summary())
    return report
