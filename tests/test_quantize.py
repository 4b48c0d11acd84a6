"""rnnedge.quantizing.api: every mode on every cell and direction, every int8 form, int8 really int8, outputs close, bad input refused.

Bounds (tests/drift_bounds.py): int8 files store int8 weights and drift from float32 by more than 0 and at most
the bound of its form (weight-only, int8 activations, static) of the output's range, fp16 at most FP16_REL. Models are
exported here from tiny nn.Modules (hidden 16).
"""

from __future__ import annotations

import logging

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from drift_bounds import DYNAMIC_REL, FP16_REL, STATIC_REL, assert_drift, form_bound, int8_count
from onnx import TensorProto, helper, numpy_helper

from rnnedge.errors import BadInputError
from rnnedge.quantizing.api import compare_models, int8_weights, quantize
from rnnedge.quantizing.forms import FLOOR

torch = pytest.importorskip("torch")
nn = torch.nn

CELLS = ("rnn", "gru", "lstm")
MODES = ("int8", "int8-static", "fp16")
# int8 in the mode matrix: one forced form per cell (no measuring: fast); test_forms covers every form on every cell.
# scan-int8 does not pay at hidden 16 (float32 is kept, drift 0): test_int8_recurrent_weights_are_int8 runs it at hidden 64
FORCED = {"rnn": FLOOR, "gru": FLOOR, "lstm": "lstm-int8"}


class Tiny(nn.Module):
    """nn.RNN/GRU/LSTM + Linear head on the last state, lengths as rnnedge's models take them."""

    def __init__(self, cell: str, bidirectional: bool, features=4, hidden=16, classes=3):
        super().__init__()
        kind = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[cell]
        self.rnn = kind(features, hidden, batch_first=True, bidirectional=bidirectional)
        self.head = nn.Linear(hidden * (2 if bidirectional else 1), classes)

    def forward(self, x, lengths):
        if getattr(self.rnn, "accepts_lengths", False):
            _, h = self.rnn(x, None, lengths=lengths)
        else:
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            _, h = self.rnn(packed)
        h = h[0] if isinstance(h, tuple) else h  # (D, B, H)
        return self.head(torch.cat(list(h), dim=-1))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """{(cell, bidirectional): path of a native-lowered export} built once for the module."""
    from rnnedge.exporting.api import export

    folder = tmp_path_factory.mktemp("quantize")
    torch.manual_seed(0)
    paths = {}
    for cell in CELLS:
        for bi in (False, True):
            path = folder / f"{cell}_{'bi' if bi else 'uni'}.onnx"
            x, lengths = torch.randn(3, 6, 4), torch.tensor([6, 4, 2])
            export(Tiny(cell, bi), (x, lengths), path, input_names=["x", "lengths"], lowering="native", verify=False)
            paths[(cell, bi)] = path
    return paths


def _run(path, x, lengths):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x, "lengths": lengths})[0]


def _ops(graph, found=None):
    found = set() if found is None else found
    for node in graph.node:
        found.add(node.op_type)
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                _ops(attr.g, found)
    return found


def _inputs(rows=5, steps=7, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((rows, steps, 4)).astype(np.float32), np.array([7, 5, 3, 1, 7][:rows], np.int64)


@pytest.mark.parametrize("bi", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("mode", MODES)
def test_each_mode_each_cell_runs_close_to_float(exported, tmp_path, mode, cell, bi):
    src, out = exported[(cell, bi)], tmp_path / "q.onnx"
    x, lengths = _inputs()
    rng = np.random.default_rng(7)  # int8-static: calibrated on 64 rows like x
    np.savez(tmp_path / "cal.npz", x=rng.standard_normal((64, 7, 4)).astype(np.float32), lengths=rng.integers(1, 8, 64))
    result = quantize(src, out, mode=mode, forms=FORCED[cell] if mode == "int8" else None,
                      calibration=tmp_path / "cal.npz" if mode == "int8-static" else None)
    ref, got = _run(src, x, lengths), _run(out, x, lengths)
    assert got.dtype == np.float32 and got.shape == ref.shape
    assert result.kept_fp32 is None and (int8_count(out) > 0) == (mode != "fp16"), result.kept_fp32  # int8 claimed: int8 stored
    bound = {"fp16": FP16_REL, "int8-static": STATIC_REL}.get(mode) or form_bound(FORCED[cell])
    assert_drift(ref, got, bound, f"{mode} {cell} {'bi' if bi else 'uni'}")
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["rnnedge.quantization"] == mode and "rnnedge.spec" in meta and "rnnedge.target" in meta
    assert result.output_bytes == out.stat().st_size and result.to_dict()["mode"] == mode
    if mode != "fp16" and result.kept_fp32:  # hidden 16 is all graph overhead: float32 kept, every weight node says so
        assert not int8_weights(onnx.load(str(out))) and len(result.stayed_float) >= 2
        assert all("int8 does not pay" in line for line in result.stayed_float)
    elif mode != "fp16":  # every weight matrix int8, the recurrent ones included (Scan bodies too)
        assert result.stayed_float == [] and int8_weights(onnx.load(str(out)))  # (sizes: see test_sizes_at_a_real_width)


@pytest.fixture(scope="module")
def wide_bi(tmp_path_factory):
    """Per cell, a bidirectional hidden-64 export: enough weights for int8 to pay (hidden 16 keeps float32)."""
    from rnnedge.exporting.api import export

    folder = tmp_path_factory.mktemp("wide_bi")
    paths = {}
    for cell in CELLS:
        paths[cell] = folder / f"{cell}.onnx"
        export(Tiny(cell, True, hidden=64), (torch.randn(3, 6, 4), torch.tensor([6, 4, 2])), paths[cell],
               input_names=["x", "lengths"], lowering="native", verify=False)
    return paths


@pytest.mark.parametrize("cell", CELLS)
def test_int8_recurrent_weights_are_int8(wide_bi, tmp_path, cell):
    out = tmp_path / "q.onnx"
    result = quantize(wide_bi[cell], out, forms="lstm-int8" if cell == "lstm" else "scan-int8")
    model = onnx.load(str(out))
    found, ops = int8_weights(model), _ops(model.graph)
    if cell == "lstm":  # the standard op, quantized by onnxruntime: W and R int8
        assert not result.relowered and "DynamicQuantizeLSTM" in ops
        assert any("R_quantized" in n for names in found.values() for n in names)
    else:  # re-lowered: the per-step MatMul h @ Rt inside each direction's Scan body is int8
        assert result.relowered and "MatMulInteger" in ops and not ops & {"RNN", "GRU"}
        bodies = [g for g in found if g != model.graph.name]
        assert len(bodies) == 2 and all(any("Rt" in n for n in found[g]) for g in bodies)
        assert {p.key: p.value for p in model.metadata_props}["rnnedge.lowering"] == "scan"


def test_int8_static_uses_calibration_file_and_task_names(exported, tmp_path):
    src = exported[("gru", False)]
    x, lengths = _inputs(rows=5)
    np.savez(tmp_path / "cal.npz", x=x, lengths=lengths)
    for method in ("minmax", "entropy"):
        result = quantize(src, tmp_path / f"{method}.onnx", mode="int8-static", calibration=tmp_path / "cal.npz",
                          calibration_method=method)
        assert "DequantizeLinear" in _ops(onnx.load(str(tmp_path / f"{method}.onnx")).graph)
        assert not any("random" in w for w in result.warnings)


def test_int8_static_without_calibration_warns(exported, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="rnnedge.quantizing.api"):
        quantize(exported[("rnn", False)], tmp_path / "q.onnx", mode="int8-static")
    assert "random inputs" in caplog.text


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """Per cell, a hidden-128 export: big enough that weights, not graph structure, make the file size."""
    from rnnedge.exporting.api import export

    folder = tmp_path_factory.mktemp("wide")
    paths = {}
    for cell in CELLS:
        paths[cell] = folder / f"{cell}.onnx"
        export(Tiny(cell, False, hidden=128), (torch.randn(3, 6, 4), torch.tensor([6, 4, 2])), paths[cell],
               input_names=["x", "lengths"], lowering="native", verify=False)
    return paths


@pytest.mark.parametrize("cell", CELLS)
def test_sizes_at_a_real_width(wide, tmp_path, cell):
    assert quantize(wide[cell], tmp_path / "q.onnx", forms=FLOOR).size_ratio < 0.30
    assert quantize(wide[cell], tmp_path / "h.onnx", mode="fp16").size_ratio < 0.6


def test_fp16_keeps_float32_io_and_halves_weights(wide, tmp_path):
    out = tmp_path / "h.onnx"
    result = quantize(wide["lstm"], out, mode="fp16")
    model = onnx.load(str(out))
    assert all(i.type.tensor_type.elem_type == TensorProto.FLOAT for i in model.graph.input if i.name == "x")
    assert all(o.type.tensor_type.elem_type == TensorProto.FLOAT for o in model.graph.output)
    assert any(t.data_type == TensorProto.FLOAT16 for t in model.graph.initializer)
    assert result.size_ratio < 0.6


def test_scan_lowered_export_quantizes_without_relowering(tmp_path):
    from rnnedge.exporting.api import export

    src = tmp_path / "scan.onnx"
    export(Tiny("gru", False), (torch.randn(3, 6, 4), torch.tensor([6, 4, 2])), src, input_names=["x", "lengths"],
           lowering="scan", verify=False)
    result = quantize(src, tmp_path / "q.onnx", forms="scan-int8")
    assert not result.relowered and result.stayed_float == []
    x, lengths = _inputs()
    assert_drift(_run(src, x, lengths), _run(tmp_path / "q.onnx", x, lengths), DYNAMIC_REL, "scan-int8")
    # fp16 of a Scan model: the case onnxruntime 1.32 crashed on before Transpose was kept float32
    quantize(src, tmp_path / "h.onnx", mode="fp16")
    assert_drift(_run(src, x, lengths), _run(tmp_path / "h.onnx", x, lengths), FP16_REL, "fp16 of scan")


def _third_party_gru(path, linear_before_reset=1, hidden=32):
    """A plain ONNX GRU (seq-major X (T, B, 4)), no rnnedge metadata."""
    rng = np.random.default_rng(0)
    W, R, B = (rng.standard_normal(s).astype(np.float32) * 0.3 for s in ((1, 3 * hidden, 4), (1, 3 * hidden, hidden), (1, 6 * hidden)))
    node = helper.make_node("GRU", ["X", "W", "R", "B"], ["Y", "Y_h"], name="my_gru", hidden_size=hidden,
                            linear_before_reset=linear_before_reset)
    graph = helper.make_graph([node], "third_party", [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["T", "N", 4])],
                              [helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, [1, "N", hidden])],
                              [numpy_helper.from_array(a, n) for a, n in ((W, "W"), (R, "R"), (B, "B"))])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_third_party_gru_is_relowered_with_a_warning(tmp_path, caplog):
    src, out = tmp_path / "gru.onnx", tmp_path / "q.onnx"
    _third_party_gru(src)
    with caplog.at_level(logging.WARNING, logger="rnnedge.quantizing.api"):
        result = quantize(src, out, forms="scan-int8")
    assert result.relowered and "not an rnnedge export" in caplog.text
    assert any(k != "third_party" for k in int8_weights(onnx.load(str(out))))
    x = np.random.default_rng(2).standard_normal((5, 3, 4)).astype(np.float32)
    run = lambda p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"X": x})[0]  # noqa: E731
    assert_drift(run(src), run(out), DYNAMIC_REL, "third-party GRU, scan-int8")


def test_third_party_gru_that_cannot_be_relowered_keeps_its_operator_with_int8_weights(tmp_path):
    src, out = tmp_path / "gru.onnx", tmp_path / "q.onnx"
    _third_party_gru(src, linear_before_reset=0)
    result = quantize(src, out, deploy="batch=2,seq=3")  # measured: the Scan forms cannot be built for this GRU
    assert not result.relowered and result.forms == {"my_gru": FLOOR} and result.stayed_float == []
    assert any("not usable" in n and "linear_before_reset=0" in n for n in result.notes)
    assert "GRU" in _ops(onnx.load(str(out)).graph) and int8_weights(onnx.load(str(out)))


def test_compare_models_reports_ratios(wide, tmp_path):
    src, out = wide["rnn"], tmp_path / "q.onnx"
    quantize(src, out, forms=FLOOR)
    report = compare_models(src, out, batch=8, repeats=3, seq=6)
    assert 0 < report["size_ratio"] < 0.6 and report["latency_ratio"] > 0 and 0 < report["max_abs_diff"] < 0.1


def test_bad_inputs_raise_bad_input_error(exported, tmp_path):
    src = exported[("gru", False)]
    with pytest.raises(BadInputError, match="no such"):
        quantize(tmp_path / "missing.onnx", tmp_path / "q.onnx")
    (tmp_path / "corrupt.onnx").write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(BadInputError):
        quantize(tmp_path / "corrupt.onnx", tmp_path / "q.onnx")
    with pytest.raises(BadInputError, match="unknown quantization mode"):
        quantize(src, tmp_path / "q.onnx", mode="int4")
    with pytest.raises(BadInputError, match="calibration method"):
        quantize(src, tmp_path / "q.onnx", mode="int8-static", calibration_method="magic")
    np.savez(tmp_path / "names.npz", wrong=np.zeros((2, 6, 4), np.float32))
    with pytest.raises(BadInputError, match="do not match the model inputs"):
        quantize(src, tmp_path / "q.onnx", mode="int8-static", calibration=tmp_path / "names.npz")
    np.savez(tmp_path / "shape.npz", x=np.zeros((2, 6, 5), np.float32))
    with pytest.raises(BadInputError, match="has shape"):
        quantize(src, tmp_path / "q.onnx", mode="int8-static", calibration=tmp_path / "shape.npz")
    assert not (tmp_path / "q.onnx").exists()
