"""Real-architecture modules (tests/coverage_modules.py) export with their own code unchanged and onnxruntime
equals torch at >= 3 shapes never used for export, seq 1 and seq >= 300 among them (independent check)."""

from __future__ import annotations

import json

import onnx
import pytest
import torch
from coverage_check import assert_symbolic, dims, max_error_vs_torch, session
from coverage_modules import REAL

import rnnedge

SHAPES = {  # (batch, seq) per module; seq is output steps for the CRNN, frames for the upsampler
    "pos tagger (packed biLSTM, unsorted)": [(1, 1), (5, 23), (2, 300)],
    "word language model (seq-major, view)": [(1, 1), (4, 37), (2, 320)],
    "crnn for ctc (conv, squeeze, biGRU)": [(1, 1), (3, 25), (1, 300)],
    "speech encoder (int32 lengths, no total_length)": [(1, 1), (6, 31), (2, 400)],
    "upsampler (tied second input, state in forward)": [(1, 5), (3, 19), (1, 304)],
}
EXTRA = {  # the CRNN's width must be >= 4 (one step after pooling by 4): a real lower bound, recorded
    "upsampler (tied second input, state in forward)": {"tied_axes": {"samples": "(frames - 4) * 64"}},
    "crnn for ctc (conv, squeeze, biGRU)": {"allow_bounded": True},
}


@pytest.mark.parametrize("name", list(REAL))
def test_real_module_matches_torch_at_unseen_shapes(name, tmp_path):
    torch.manual_seed(0)
    module, example, names, axes, make = REAL[name]()
    module.eval()
    path = tmp_path / "m.onnx"
    result = rnnedge.export(module, example, path, input_names=names, dynamic_axes=axes, **EXTRA.get(name, {}))
    assert result.parity  # rnnedge's own quick check ran and passed (int32 lengths, ties, state in forward)
    assert_symbolic(path, {n: list(a) for n, a in axes.items()})
    _, outs = dims(path)
    for out, shape in outs.items():
        assert any(isinstance(d, str) and d for d in shape), (out, shape)  # no output frozen to the example's sizes
    sess = session(path)
    for batch, seq in SHAPES[name]:
        err = max_error_vs_torch(module, path, make(batch, seq), sess)
        assert err < 1e-4, (name, batch, seq, err)


def test_int32_lengths_stay_int32_in_file_and_spec(tmp_path):
    module, example, names, axes, _ = REAL["speech encoder (int32 lengths, no total_length)"]()
    rnnedge.export(module, example, tmp_path / "m.onnx", input_names=names, dynamic_axes=axes, verify=False)
    model = onnx.load(str(tmp_path / "m.onnx"))
    lengths = next(i for i in model.graph.input if i.name == "lengths")
    assert lengths.type.tensor_type.elem_type == onnx.TensorProto.INT32
    spec = json.loads(next(p.value for p in model.metadata_props if p.key == "rnnedge.spec"))
    assert next(t for t in spec["inputs"] if t["name"] == "lengths")["dtype"] == "int32"


def test_speech_encoder_time_axis_is_max_length_not_seq(tmp_path):
    """Without total_length torch returns max(lengths) steps: the file says so and does the same."""
    module, example, names, axes, make = REAL["speech encoder (int32 lengths, no total_length)"]()
    rnnedge.export(module.eval(), example, tmp_path / "m.onnx", input_names=names, dynamic_axes=axes, verify=False)
    _, outs = dims(tmp_path / "m.onnx")
    assert list(outs.values())[0][1] == "max_length"
    features, _ = make(3, 40)
    lengths = torch.tensor([7, 19, 3], dtype=torch.int32)  # longest row 19 < 40 padded steps
    with torch.no_grad():
        want = module(features, lengths)[0].shape
    got = session(tmp_path / "m.onnx").run(None, {"features": features.numpy(), "lengths": lengths.numpy()})[0].shape
    assert tuple(want) == got == (3, 19, 24)
