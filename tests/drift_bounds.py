"""Test-only bounds for quantized files (they live here, not in rnnedge/): int8 where int8 is claimed, and drift
bounded relative to the output's range, never an absolute tolerance that an output ignoring its input would pass.

Drift = max |quantized - float32| / (max - min of the float32 output). Measured on this suite's models (random
weights; tests/test_quantize_forms.py's hidden-128 Head, tests/test_quantize.py's hidden-16 Tiny) and on the trained
seed-task GRU (tests/test_quantize_accuracy.py); each bound is about 1.5-3x the worst measured:

    weights-int8, scan-nbits8 (weights only int8)          <= 0.003       WEIGHT_ONLY_REL 0.01
    scan-int8, lstm-int8, matmul-int8 (int8 activations)   <= 0.22 (GRU scan-int8, hidden 128)   DYNAMIC_REL 0.3
    int8-static, random weights, hidden 16, 64 rows        <= 0.35 (RNN; outputs of range 0.2-0.6)  STATIC_REL 0.6
    int8-static, trained seed GRU, calibrated on the task  0.025                                TRAINED_REL 0.1
    fp16                                                   <= 4e-4                              FP16_REL 3e-3
"""

from __future__ import annotations

import numpy as np

WEIGHT_ONLY_REL = 0.01
DYNAMIC_REL = 0.3
STATIC_REL = 0.6  # random weights: activations' int8 steps are large against a small output range
TRAINED_REL = 0.1
FP16_REL = 3e-3
WEIGHT_ONLY = ("weights-int8", "scan-nbits8")


def form_bound(form: str) -> float:
    """The drift bound of one int8 form (see the table above)."""
    return WEIGHT_ONLY_REL if form in WEIGHT_ONLY else DYNAMIC_REL


def relative_drift(ref, got) -> float:
    """max |got - ref| over the float output's range (max - min)."""
    ref, got = np.asarray(ref, np.float64), np.asarray(got, np.float64)
    assert ref.shape == got.shape, (ref.shape, got.shape)
    span = float(ref.max() - ref.min())
    assert span > 0, "a constant float output proves nothing about drift"
    return float(np.abs(got - ref).max()) / span


def assert_drift(ref, got, bound: float, what="") -> float:
    """0 < drift <= bound: a quantized file that computes exactly the float answer was not quantized."""
    d = relative_drift(ref, got)
    assert 0 < d <= bound, f"{what}: drift {d:.3g} of the output range (bound {bound})"
    return d


def int8_count(path) -> int:
    """How many 8-bit integer weight tensors (int8, or uint8 blocks of MatMulNBits; rank >= 2) the file stores, in any
    graph or subgraph."""
    import onnx

    from rnnedge.quantizing.forms import subgraphs

    model = onnx.load(str(path))
    eight = (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)
    return sum(1 for g in [model.graph, *subgraphs(model.graph)] for t in g.initializer if t.data_type in eight and len(t.dims) >= 2)
