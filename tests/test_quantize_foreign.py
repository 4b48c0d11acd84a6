"""`rnnedge quantize` (then inspect and onnxruntime) on foreign recurrent files made as published ones are
(tests/foreign_files.py: torch.onnx.export at opsets 7-18, onnx.helper for what torch never writes).

Each file must come out int8 (every recurrent node int8 or listed as kept float32 with its reason), smaller, runnable,
with its outputs within CANDIDATE_DRIFT of their range, or be refused in one line with exit 2 / written unchanged with
the reason; never exit 3. The planted bug each test catches is named in its docstring. The whole opset x cell matrix
is `-m slow`; a sample runs by default.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner

import tests.foreign_files as F
from rnnedge.cli import cli
from rnnedge.quantizing.api import int8_weights, quantize
from rnnedge.quantizing.forms import FLOOR, FP32
from rnnedge.quantizing.inputs import infer_feeds
from rnnedge.quantizing.select import CANDIDATE_DRIFT, judge

RECURRENT = ("RNN", "GRU", "LSTM")


def _feeds(path, batch=2, seq=6, seed=1) -> dict:
    """Inputs the file allows at batch x seq: lengths full, states zero, ids inside the vocabulary."""
    model = onnx.load(str(path))
    inits = {t.name for t in model.graph.initializer}
    rng = np.random.default_rng(seed)
    feeds = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        t = vi.type.tensor_type
        dtype = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type)
        shape = []
        for i, d in enumerate(t.shape.dim):
            name = d.dim_param.lower()
            shape.append(d.dim_value if d.HasField("dim_value") else
                         batch if "batch" in name or name in ("b", "n") else seq if name in ("seq", "time", "t", "frames", "time steps") or i else batch)
        if dtype.kind == "i":
            feeds[vi.name] = np.full(shape, seq, dtype) if len(shape) == 1 else rng.integers(0, F.VOCAB, shape).astype(dtype)
        elif vi.name in ("h0", "c0", "h", "c") and len(shape) == 3:
            feeds[vi.name] = np.zeros(shape, dtype)
        else:
            feeds[vi.name] = rng.standard_normal(shape).astype(dtype)
    return feeds


def _drift(src, out, seeds=(1, 2, 3, 4)) -> float:
    """Worst |int8 - float32| over the float output's range on inputs of several seeds (a file fixed at batch 1 has a
    handful of values per run); integer outputs: the fraction that changed."""
    a = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    runs = [(a.run(None, f), b.run(None, f)) for f in (_feeds(src, seed=s) for s in seeds)]
    worst = 0.0
    for k in range(len(runs[0][0])):
        want = [w[k] for w, _ in runs]
        got = [g[k] for _, g in runs]
        if want[0].dtype.kind != "f":
            worst = max(worst, max(float(np.mean(w != g)) for w, g in zip(want, got)))
            continue
        span = max(float(w.max()) for w in want) - min(float(w.min()) for w in want)
        if span > 1e-6:
            worst = max(worst, max(float(np.abs(w.astype(np.float64) - g).max()) for w, g in zip(want, got)) / span)
    return worst


def _quantized(tmp_path, src, *extra) -> dict:
    """CLI quantize (exit 0, its JSON) and CLI inspect of the int8 file (exit 0)."""
    out = tmp_path / "q.onnx"
    run = CliRunner().invoke(cli, ["quantize", str(src), "-o", str(out), "--json", *extra])
    assert run.exit_code == 0, run.output
    assert CliRunner().invoke(cli, ["inspect", str(out)]).exit_code == 0
    return json.loads(run.stdout)


def _int8_ok(tmp_path, src, max_ratio=0.6) -> dict:
    """Every recurrent node (subgraphs too) int8 or kept float32 with a reason; int8 weights really int8; smaller;
    runs at a size the file allows with its outputs within CANDIDATE_DRIFT of their range."""
    from exporters.graph import all_nodes

    d = _quantized(tmp_path, src)
    out = tmp_path / "q.onnx"
    names = [n.name for n in all_nodes(onnx.load(str(src)).graph) if n.op_type in RECURRENT]
    assert d["kept_fp32"] is None and d["size_ratio"] < max_ratio, d
    for name in names:  # torch names every node; onnx.helper files here name theirs
        assert d["forms"].get(name, FP32) != FP32 or any(f"'{name}'" in s and ": " in s for s in d["stayed_float"]), (name, d)
    assert sum(len(v) for v in int8_weights(onnx.load(str(out))).values()) >= 2 * len(names)
    drift = _drift(src, out)
    assert drift < CANDIDATE_DRIFT, (drift, d["judged_drift"])
    return d


# -- TorchScript and dynamo exports: opset x cell (a sample by default, all under -m slow) --------------------------

MATRIX = [(cell, opset) for cell in ("LSTM", "GRU", "RNN") for opset in (9, 11, 13, 14, 17)]
SAMPLE = {("LSTM", 9), ("GRU", 13), ("RNN", 17)}


@pytest.mark.parametrize("cell,opset", [pytest.param(c, o, marks=() if (c, o) in SAMPLE else pytest.mark.slow) for c, o in MATRIX])
def test_torchscript_exports_at_each_opset_quantize_to_int8(tmp_path, cell, opset):
    """Catches: an opset < 10 file written with DequantizeLinear it cannot hold, a torch-named node left unaccounted."""
    _int8_ok(tmp_path, F.torch_rnn(tmp_path / "m.onnx", cell, opset))


@pytest.mark.parametrize("case", [
    pytest.param(dict(cell="LSTM", opset=11, layers=2, bidirectional=True, state_inputs=True), id="lstm-bi2-h0c0-o11"),
    pytest.param(dict(cell="GRU", opset=14, layers=3, batch_first=False), id="gru-3layers-time-first-o14"),
    pytest.param(dict(cell="RNN", opset=13, layers=2, nonlinearity="relu"), id="rnn-relu-2layers-o13", marks=pytest.mark.slow),
    pytest.param(dict(cell="GRU", opset=11, layers=2, bidirectional=True, state_inputs=True), id="gru-bi2-h0-o11", marks=pytest.mark.slow),
    pytest.param(dict(cell="GRU", opset=18, bidirectional=True, dynamo=True), id="gru-bi-dynamo-o18", marks=pytest.mark.slow),
])
def test_torch_exports_with_layers_directions_and_states_quantize_to_int8(tmp_path, case):
    _int8_ok(tmp_path, F.torch_rnn(tmp_path / "m.onnx", **case))


@pytest.mark.parametrize("case", [
    pytest.param(dict(cell="LSTM", peepholes=True), id="lstm-peepholes"),
    pytest.param(dict(cell="LSTM", input_forget=1), id="lstm-input-forget"),
    pytest.param(dict(cell="LSTM", clip=2.0), id="lstm-clip"),
    pytest.param(dict(cell="GRU", linear_before_reset=0), id="gru-linear-before-reset-0"),
    pytest.param(dict(cell="GRU", direction="reverse"), id="gru-reverse"),
    pytest.param(dict(cell="RNN", activations=["Relu"]), id="rnn-relu"),
    pytest.param(dict(cell="LSTM", opset=7), id="lstm-opset7"),
])
def test_recurrent_attributes_torch_never_writes_quantize_to_int8(tmp_path, case):
    """Catches: a form that drops P / input_forget / clip / linear_before_reset (drift), an opset-7 file left at 7."""
    _int8_ok(tmp_path, F.helper_cell(tmp_path / "m.onnx", **case))


@pytest.mark.parametrize("build", [F.step_model, F.two_paths, F.shared_dims, F.odd_names, F.scan_lstm],
                         ids=["step-rank2", "two-hidden-sizes", "shared-dim-params", "spaces-and-slashes", "lstm-in-scan"])
def test_odd_shaped_files_quantize_to_int8(tmp_path, build):
    _int8_ok(tmp_path, build(tmp_path / "m.onnx"))


# -- what broke, fixed ------------------------------------------------------------------------------------------------


def test_an_lstm_in_a_loop_reading_outer_scope_weights_goes_int8(tmp_path):
    """Catches: weights a Loop body reads from the enclosing graph left float32 and unreported (was: 'int8 does not
    pay', size 1.0, the LSTM in no stayed-float line)."""
    d = _int8_ok(tmp_path, F.loop_lstm(tmp_path / "m.onnx"), max_ratio=0.4)
    assert d["forms"]["body_lstm"] == FLOOR
    top = int8_weights(onnx.load(str(tmp_path / "q.onnx")))["loop"]
    assert {"W_int8", "R_int8"} <= set(top)


def test_an_lstm_in_a_loop_kept_float_is_reported(tmp_path):
    """Catches: stayed_float looking only at a node's own graph (a body's LSTM with outer weights never listed)."""
    src = F.loop_lstm(tmp_path / "m.onnx")
    result = quantize(src, tmp_path / "q.onnx", forms={"body_lstm": FP32})
    assert any("'body_lstm' stays float32" in line for line in result.stayed_float), result.stayed_float


def test_integer_and_bool_outputs_are_judged_by_the_share_that_changes(tmp_path):
    """Catches: an ArgMax / bool output judged against its range (was: 'output positive drifts 1 of its range 1',
    every unit kept float32, size 1.0)."""
    d = _int8_ok(tmp_path, F.odd_outputs(tmp_path / "m.onnx"))
    assert set(d["judged_drift"]) == {"logits", "label", "positive"} and all(v < CANDIDATE_DRIFT for v in d["judged_drift"].values())
    labels = [[np.arange(100)]]
    why, worst = judge(labels, [[np.r_[np.arange(99), 0]]], ["label"])
    assert why == "" and worst["label"] == pytest.approx(0.01)
    why, worst = judge(labels, [[np.zeros(100, np.int64)]], ["label"])
    assert "changes 99.0% of its values" in why


def test_a_file_fixed_at_batch_1_is_judged_against_the_range_over_all_judged_inputs(tmp_path):
    """Catches: the range taken per judged batch (a [1, 1, 2] output: 2 values, range 0.005; was: 'drifts 0.0103 of
    its range 0.00507', float32 kept)."""
    d = _int8_ok(tmp_path, F.fixed_sizes(tmp_path / "m.onnx"))
    assert d["judged_drift"]["out"] < CANDIDATE_DRIFT
    want = [[np.array([0.300, 0.301])], [np.array([-1.0, 1.0])]]
    why, worst = judge(want, [[np.array([0.310, 0.301])], [np.array([-1.0, 1.0])]], ["out"])
    assert why == "" and worst["out"] == pytest.approx(0.005)


def test_integer_inputs_get_values_their_role_in_the_graph_allows(tmp_path):
    """Catches: integer inputs fed 0/1 whatever they are (sequence lengths of 0; ids covering 2 of 50 embedding rows)."""
    deploy = {"batch": 1, "seq": 16}
    model = onnx.load(str(F.lengths_cell(tmp_path / "lens.onnx", lengths_name="n_frames")))
    found = infer_feeds(model, deploy, None, lambda feeds: None)
    lens = np.concatenate([f["n_frames"] for f in found.judged])
    assert lens.min() >= 1 and lens.max() == 16 and len(set(lens.tolist())) > 2
    model = onnx.load(str(F.tagger(tmp_path / "tagger.onnx")))
    found = infer_feeds(model, deploy, None, lambda feeds: None)
    ids = np.concatenate([f["tokens"].ravel() for f in found.judged])
    assert ids.min() >= 0 and ids.max() < F.VOCAB and len(set(ids.tolist())) > 10


def test_a_tagger_with_an_embedding_quantizes_to_int8(tmp_path):
    d = _int8_ok(tmp_path, F.tagger(tmp_path / "m.onnx"))
    assert "tokens=1x16" in d["judged_on"]


def _ort_dynamic(tmp_path):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src = F.helper_cell(tmp_path / "f.onnx", "LSTM", hidden=64)
    quantize_dynamic(str(src), str(tmp_path / "m.onnx"), weight_type=QuantType.QInt8)
    return tmp_path / "m.onnx"


def _own_int8(tmp_path):
    src = F.torch_rnn(tmp_path / "f.onnx", "LSTM", 17, hidden=64)
    quantize(src, tmp_path / "m.onnx", forms="weights-int8")
    return tmp_path / "m.onnx"


def _fp16(tmp_path):
    from onnxruntime.transformers.float16 import convert_float_to_float16

    src = F.helper_cell(tmp_path / "f.onnx", "LSTM", hidden=64)
    onnx.save(convert_float_to_float16(onnx.load(str(src)), keep_io_types=False), str(tmp_path / "m.onnx"))
    return tmp_path / "m.onnx"


@pytest.mark.parametrize("make,why", [(_ort_dynamic, "already int8 (DynamicQuantizeLSTM, MatMulInteger)"),
                                      (_own_int8, "already int8"), (_fp16, "its weights are float16")],
                         ids=["onnxruntime-dynamic", "rnnedge-weights-int8", "float16"])
def test_a_file_already_int8_or_float16_is_written_unchanged_with_its_reason(tmp_path, make, why):
    """Catches: an onnxruntime int8 file said to 'move the outputs too far' (no units: all() of nothing), an rnnedge
    int8 file dequantized by folding and quantized again (size 0.998, twice the rounding), float16 said 'does not pay'."""
    src = make(tmp_path)
    d = _quantized(tmp_path, src)
    assert why in d["kept_fp32"] and d["size_ratio"] <= 1.0 and d["stayed_float"] == [] and d["forms"] == {}
    assert _drift(src, tmp_path / "q.onnx") == 0.0


def test_external_data_in_a_subfolder_quantizes_to_one_file_and_outside_the_folder_is_refused(tmp_path):
    src = F.helper_cell(tmp_path / "f.onnx", "GRU", hidden=64)
    (tmp_path / "data").mkdir()
    onnx.save_model(onnx.load(str(src)), str(tmp_path / "m.onnx"), save_as_external_data=True, location="data/m.bin", size_threshold=256)
    d = _int8_ok(tmp_path, tmp_path / "m.onnx", max_ratio=0.4)
    assert d["input_bytes"] > 30_000 and not list(tmp_path.glob("q.onnx*.data"))
    leak = F.external_outside(tmp_path / "leak.onnx")
    run = CliRunner().invoke(cli, ["quantize", str(leak), "-o", str(tmp_path / "leak.q.onnx")])
    assert run.exit_code == 2 and "outside the model's folder" in run.output and len(run.output.strip().splitlines()) == 1


def test_form_float32_keeps_float32_weights_and_says_why(tmp_path):
    """Catches: a forced float32 form (a listed FORM) silently replaced by weights-int8 (was: --form float32 wrote
    int8 weights, size 0.29, no stayed-float line)."""
    src = F.helper_cell(tmp_path / "m.onnx", "LSTM", hidden=64)
    result = quantize(src, tmp_path / "q.onnx", forms={"rnn": FP32})
    assert result.forms["rnn"] == FP32 and result.forms["(outside loops)"] == FLOOR
    assert result.stayed_float == ["LSTM node 'rnn' stays float32: float32 as asked (--form) (weight W [1, 256, 8])"]
    run = CliRunner().invoke(cli, ["quantize", str(src), "-o", str(tmp_path / "q2.onnx"), "--form", "float32", "--json"])
    assert run.exit_code == 0 and json.loads(run.stdout)["size_ratio"] == 1.0 and not int8_weights(onnx.load(str(tmp_path / "q2.onnx")))


def test_run_feeds_a_time_major_foreign_file_its_lengths_one_per_row(tmp_path):
    """Catches: `rnnedge run` taking the batch from axis 0 of a ("T", "B", F) input whose lengths are ["B"] (was:
    exit 2 'lengths has shape (2,); expected (6,), one per row' on a valid input)."""
    src = F.lengths_cell(tmp_path / "m.onnx", "GRU", lengths_name="lengths")
    feeds = {"x": np.random.default_rng(0).standard_normal((6, 2, 8)).astype(np.float32), "lengths": np.array([6, 3], np.int32)}
    np.savez(tmp_path / "in.npz", **feeds)
    run = CliRunner().invoke(cli, ["run", str(src), "--input", str(tmp_path / "in.npz"), "-o", str(tmp_path / "out.npz")])
    assert run.exit_code == 0, run.output
    want = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    np.testing.assert_array_equal(np.load(tmp_path / "out.npz")["out"], want)


@pytest.mark.parametrize("build", [F.init_inputs, F.tied_lm, F.seq_output],
                         ids=["initializers-as-inputs-o9", "tied-embedding-shared-lstm-weights", "sequence-output"])
def test_older_exporter_habits_quantize_to_int8(tmp_path, build):
    src = build(tmp_path / "m.onnx")
    if build is F.seq_output:  # a sequence output: judged, the int8 file runs; the tensor output within the limit
        d = _quantized(tmp_path, src)
        assert d["kept_fp32"] is None and d["size_ratio"] < 0.6 and d["judged_drift"]["Y"] < CANDIDATE_DRIFT
        feeds = {"x": np.random.default_rng(0).standard_normal((6, 2, 8)).astype(np.float32)}
        out = ort.InferenceSession(str(tmp_path / "q.onnx"), providers=["CPUExecutionProvider"]).run(None, feeds)
        assert isinstance(out[1], list) and out[1][0].shape == (1, 2, 32)
    else:
        _int8_ok(tmp_path, src)


def test_an_input_declared_without_a_shape_is_fed_as_its_recurrent_node_reads_it(tmp_path):
    """Catches: a shapeless input taken for a scalar (was: every size failed, 'Unable to handle object of type
    numpy.float32', forms unmeasured and drift unjudged)."""
    d = _quantized(tmp_path, F.shapeless(tmp_path / "m.onnx"))
    assert "x=16x1x8" in d["judged_on"] and d["judged_drift"]["out"] < CANDIDATE_DRIFT


def test_a_float_scalar_input_is_fed_as_an_array(tmp_path):
    """Catches: a float32 scalar input fed as a numpy scalar, which onnxruntime refuses (was: nothing ran, unjudged)."""
    d = _quantized(tmp_path, F.scalar_gain(tmp_path / "m.onnx"))
    assert "gain=" in d["judged_on"] and d["judged_drift"]["out"] < CANDIDATE_DRIFT


def test_string_labels_are_judged_by_the_share_that_changes(tmp_path):
    """Catches: a string output (ai.onnx.ml LabelEncoder) left unjudged or judged as a range."""
    d = _quantized(tmp_path, F.string_labels(tmp_path / "m.onnx"))
    assert d["kept_fp32"] is None and d["judged_drift"]["label"] is not None and d["judged_drift"]["label"] < CANDIDATE_DRIFT


def test_a_float64_file_is_written_unchanged_with_its_reason(tmp_path):
    d = _quantized(tmp_path, F.double_lstm(tmp_path / "m.onnx"))
    assert "its weights are float64" in d["kept_fp32"] and d["forms"] == {} and d["stayed_float"] == []


def _twin_outputs(tmp_path, build, *args) -> tuple:
    """The int8 outputs of an old-opset file and of its opset-17 twin (same weights), both quantized with `args`."""
    outs = []
    for opset in (build.old, 17):
        src = build(tmp_path / f"m{opset}.onnx", opset)
        out = tmp_path / f"q{opset}.onnx"
        run = CliRunner().invoke(cli, ["quantize", str(src), "-o", str(out), "--json", *args])
        assert run.exit_code == 0, run.output
        feeds = _feeds(src)
        outs.append(ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, feeds)[0])
    return outs


def _lstm_o9(path, opset):
    return F.torch_rnn(path, "LSTM", opset)


def _gru_o9(path, opset):
    return F.torch_rnn(path, "GRU", opset)


def _lstm_o7(path, opset):
    return F.helper_cell(path, "LSTM", opset=opset)


_lstm_o9.old = _gru_o9.old = 9
_lstm_o7.old = 7


@pytest.mark.parametrize("form", ["scan-int8", "scan-nbits8"])
def test_a_scan_form_of_an_opset_9_file_is_a_file_that_loads(tmp_path, form):
    """Catches: the Scan lowering writing opset-15 nodes (Shape start/end, Split with an input) into an opset-9 file
    (was: exit 0, 'Bad node spec for node ... Split' when onnxruntime loads the int8 file). Its outputs are those of
    the same form on the opset-17 twin."""
    old, new = _twin_outputs(tmp_path, _lstm_o9, "--form", form)
    np.testing.assert_allclose(old, new, atol=1e-5)


@pytest.mark.parametrize("build", [_gru_o9, _lstm_o7], ids=["gru-o9", "lstm-o7"])
def test_int8_static_of_an_old_opset_file_exits_0(tmp_path, build):
    """Catches: int8-static re-lowering an opset < 15 file to an invalid graph (was: exit 2 'cannot load model ...
    INVALID_GRAPH' on a valid file). Its outputs are those of the opset-17 twin's int8-static file."""
    old, new = _twin_outputs(tmp_path, build, "--mode", "int8-static")
    np.testing.assert_allclose(old, new, atol=1e-5)


def test_int8_static_says_why_an_lstm_in_a_loop_body_stays_float(tmp_path):
    """Catches: the body's LSTM reported as 'this LSTM could not be quantized' (int8-static re-lowers and calibrates
    the top level only; --mode int8 makes it int8)."""
    result = quantize(F.loop_lstm(tmp_path / "m.onnx"), tmp_path / "q.onnx", mode="int8-static")
    assert any("'body_lstm' stays float32: int8-static re-lowers top-level recurrent nodes only" in line
               for line in result.stayed_float), result.stayed_float


def test_inspect_says_a_shape_is_unknown_and_a_sequence_is_a_sequence(tmp_path):
    """Catches: a shapeless input shown as a scalar (shape []) and a sequence output as a tensor of dtype '?'."""
    run = CliRunner().invoke(cli, ["inspect", str(F.shapeless(tmp_path / "a.onnx")), "--json"])
    assert run.exit_code == 0 and json.loads(run.stdout)["inputs"] == [{"name": "x", "dtype": "float32", "shape": None}]
    run = CliRunner().invoke(cli, ["inspect", str(F.seq_output(tmp_path / "b.onnx")), "--json"])
    assert run.exit_code == 0 and json.loads(run.stdout)["outputs"][1] == {"name": "states", "dtype": "sequence", "shape": None}


def test_a_time_major_file_is_judged_and_timed_on_the_users_rows_along_its_batch_axis(tmp_path):
    """Catches: the user's arrays split along axis 0 of a ("seq", "batch", F) file (was: lengths [2] against x
    [6, 2, 8] refused 'arrays must share their first (batch) axis'; a [100, 3, 8] x timed as 1 step x 3 rows and
    judged on 64-step cuts, 'forms chosen for batch 1 x 3 steps')."""
    rng = np.random.default_rng(0)
    src = F.lengths_cell(tmp_path / "lens.onnx", "GRU", lengths_name="lengths")
    np.savez(tmp_path / "a.npz", x=rng.standard_normal((6, 2, 8)).astype(np.float32), lengths=np.array([6, 3], np.int32))
    d = _quantized(tmp_path, src, "--eval", str(tmp_path / "a.npz"))
    assert d["deploy"] == {"batch": 1, "seq": 6} and d["judged_drift"]["out"] < CANDIDATE_DRIFT
    src = F.torch_rnn(tmp_path / "tf.onnx", "LSTM", 14, batch_first=False)
    np.savez(tmp_path / "b.npz", x=rng.standard_normal((100, 3, 8)).astype(np.float32))
    d = _quantized(tmp_path, src, "--eval", str(tmp_path / "b.npz"))
    assert d["deploy"] == {"batch": 1, "seq": 100} and all(v < CANDIDATE_DRIFT for v in d["judged_drift"].values())


def test_int8_static_calibrates_a_time_major_file_along_its_batch_axis_and_gives_one_reason(tmp_path):
    """Catches: calibration arrays of a ("T", "B", F) file split along time (was: lengths [2] with x [6, 2, 8]
    refused 'arrays have different numbers of rows (6 and 2)'), and two reasons for one float GRU ('left as is:
    linear_before_reset=0' and 'onnxruntime's quantizer has no int8 GRU')."""
    rng = np.random.default_rng(0)
    src = F.lengths_cell(tmp_path / "lens.onnx", "GRU", lengths_name="lengths")
    np.savez(tmp_path / "a.npz", x=rng.standard_normal((6, 2, 8)).astype(np.float32), lengths=np.array([6, 3], np.int32))
    d = _quantized(tmp_path, src, "--mode", "int8-static", "--calibration", str(tmp_path / "a.npz"))
    gru = [w for w in d["warnings"] if "'rnn'" in w]
    assert gru == ["GRU node 'rnn' stays float32: int8-static could not re-lower it to Scan (GRU with linear_before_reset=0 "
                   "is not supported) (weight W [1, 96, 8])"], d["warnings"]
    src = F.torch_rnn(tmp_path / "tf.onnx", "LSTM", 14, batch_first=False)
    np.savez(tmp_path / "b.npz", x=rng.standard_normal((100, 3, 8)).astype(np.float32))
    d = _quantized(tmp_path, src, "--mode", "int8-static", "--calibration", str(tmp_path / "b.npz"))
    assert d["relowered"] and d["size_ratio"] < 0.5
