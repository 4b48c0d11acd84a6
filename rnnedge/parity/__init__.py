"""Parity: does the ONNX model compute what the PyTorch model computes, on shapes never used at export?

    report = rnnedge.verify("model.safetensors", "model.onnx")   # or a module and its example spec
    if not report: print(report.summary())

    runners.py   TorchRunner (float32 and float64), OrtRunner (any provider list): context managers, infer(feeds)
    cases.py     cases from the spec: seq 1 / small / example +-1 / past 256 and 512, ragged lengths,
                 saturated inputs, every token id, zero state, the user's check inputs
    compare.py   compare(ref, out) -> ParityReport (data: to_dict / summary / __bool__) and the tolerance policies as
                 objects: NOISE (noise-scaled, float32 files), fixed(atol, rtol), FP16, INT8_DRIFT; tolerance_for(file metadata)
    verify.py    verify (every case x provider, streaming chunks) and quick_check (what export runs)
"""

from __future__ import annotations

from rnnedge.parity.cases import case_sizes, generate_cases
from rnnedge.parity.compare import (
    EPS32,
    FP16,
    FP16_ATOL,
    FP16_RTOL,
    ILL_CONDITIONED,
    INT8_DRIFT,
    NOISE,
    NOISE_FLOOR,
    NOISE_K,
    CaseResult,
    DriftTolerance,
    OutputDiff,
    ParityReport,
    Tolerance,
    compare,
    tolerance_for,
)
from rnnedge.parity.runners import OrtRunner, Runner, TorchRunner, available_providers, ort_session
from rnnedge.parity.verify import check_streaming, quick_check, spec_of, torch_module_for, verify

__all__ = ["EPS32", "FP16", "FP16_ATOL", "FP16_RTOL", "INT8_DRIFT", "NOISE", "DriftTolerance", "Tolerance", "tolerance_for",
           "ILL_CONDITIONED", "NOISE_FLOOR", "NOISE_K", "CaseResult", "OrtRunner",
           "OutputDiff", "ParityReport", "Runner", "TorchRunner", "available_providers", "case_sizes", "check_streaming", "compare",
           "generate_cases", "ort_session", "quick_check", "spec_of", "torch_module_for", "verify"]
