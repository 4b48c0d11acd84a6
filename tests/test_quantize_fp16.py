"""float16 files verify: `rnnedge verify` gives a file quantize wrote with --mode fp16 the documented fixed tolerances
(parity.compare.FP16_ATOL / FP16_RTOL, 2e-2), one file per cell; a broken float16 file still fails.

(verify looked for "float16" in rnnedge.quantization while quantize writes "fp16": every correct fp16 file failed.)
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import rnnedge
from rnnedge.parity.compare import FP16_ATOL, FP16_RTOL
from rnnedge.quantizing.api import quantize

torch = pytest.importorskip("torch")
nn = torch.nn


class Tagger(nn.Module):
    def __init__(self, cell: str):
        super().__init__()
        self.rnn = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[cell](6, 32, batch_first=True)
        self.head = nn.Linear(32, 4)

    def forward(self, x):
        return self.head(self.rnn(x)[0])


def _fp16_file(cell: str, folder):
    torch.manual_seed(0)
    module = Tagger(cell).eval()
    src, out = folder / f"{cell}.onnx", folder / f"{cell}.fp16.onnx"
    rnnedge.export(module, (torch.randn(2, 7, 6),), src, input_names=["x"], dynamic_axes={"x": {0: "batch", 1: "seq"}}, verify=False)
    result = quantize(src, out, mode="fp16")
    assert result.mode == "fp16" and result.size_ratio < 0.75  # weights really float16
    return module, out


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_an_fp16_file_verifies_with_the_fp16_tolerance(tmp_path, cell):
    module, path = _fp16_file(cell, tmp_path)
    assert {p.key: p.value for p in onnx.load(str(path)).metadata_props}["rnnedge.quantization"] == "fp16"
    report = rnnedge.verify(module, path, providers=["CPUExecutionProvider"], stream=False)
    assert report, report.summary()
    assert (report.atol, report.rtol) == (FP16_ATOL, FP16_RTOL) == (2e-2, 2e-2)


def test_a_broken_fp16_file_still_fails(tmp_path):
    module, path = _fp16_file("gru", tmp_path)
    model = onnx.load(str(path))
    for t in model.graph.initializer:  # the recurrent weights, 30% off: far past 2e-2
        if t.data_type == onnx.TensorProto.FLOAT16 and len(t.dims) == 3:
            t.CopyFrom(numpy_helper.from_array((numpy_helper.to_array(t) * np.float16(1.3)).astype(np.float16), t.name))
    broken = tmp_path / "broken.fp16.onnx"
    onnx.save(model, str(broken))
    report = rnnedge.verify(module, broken, providers=["CPUExecutionProvider"], stream=False)
    assert not report and (report.atol, report.rtol) == (FP16_ATOL, FP16_RTOL)
