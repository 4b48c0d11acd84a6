"""quantize on published-style recurrent ONNX files (built here: tests/quantize_files.py) and on inputs it must not invent.

What would break each test: inventing input sizes (the VAD's reflect Pad dies on 16 samples), feeding relative
lengths past 1, judging an output that is constant on the judged inputs as "too far", exiting 3 on a valid file,
an int8 file whose recurrent nodes stayed float without a reason, a speech probability moved by 0.1 or more.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from rnnedge.cli import cli
from rnnedge.errors import BadInputError
from rnnedge.quantizing.api import int8_weights, quantize
from rnnedge.quantizing.forms import FLOOR, FP32
from rnnedge.quantizing.select import CANDIDATE_DRIFT, judge
from tests.quantize_files import build_gated, build_odd_size, build_relative_lengths, build_vad, speech_like, stream

RECURRENT = ("RNN", "GRU", "LSTM")


def _recurrent_nodes(path) -> list[str]:
    from exporters.graph import all_nodes

    return [n.name for n in all_nodes(onnx.load(str(path)).graph) if n.op_type in RECURRENT]


def _accounted_for(result, names) -> None:
    """Every recurrent node is int8 (a form other than float32) or listed as kept float32 with its reason."""
    for name in names:
        kept = [line for line in result.stayed_float if f"'{name}'" in line]
        assert result.forms.get(name, FP32) != FP32 or (len(kept) == 1 and ": " in kept[0]), (name, result.forms, result.stayed_float)


@pytest.mark.parametrize("opset", [15, 17])
def test_a_vad_with_an_stft_front_end_and_lstms_in_if_branches_quantizes_to_int8(tmp_path, opset):
    src, out = build_vad(tmp_path / "vad.onnx", opset=opset), tmp_path / "vad.int8.onnx"
    result = quantize(src, out)
    assert result.kept_fp32 is None and result.size_ratio < 0.8  # the DFT Conv (float32 by default) is a third of it
    lstms = _recurrent_nodes(src)
    assert len(lstms) == 4 and all(result.forms[n] == FLOOR for n in lstms), result.forms
    _accounted_for(result, lstms)
    branches = [a.g for n in onnx.load(str(out)).graph.node if n.op_type == "If" for a in n.attribute]
    found = int8_weights(onnx.load(str(out)))
    assert all(len(found.get(g.name, [])) >= 4 for g in branches)  # W and R of both LSTMs, in each branch
    assert "inferred from the graph that run" in result.judged_on and "input=1x256" in result.judged_on  # not 16 samples
    assert set(result.judged_drift) == {"output", "hn", "cn"} and all(v is not None and v < CANDIDATE_DRIFT for v in result.judged_drift.values())
    for rate, chunk in ((16000, 512), (8000, 256)):  # ~2 s of speech-like audio, streamed with the state carried over
        audio = speech_like(2.0, rate)
        want, got = stream(src, audio, chunk, rate), stream(out, audio, chunk, rate)
        assert want.max() - want.min() > 0.05 and np.abs(want - got).max() < 0.1, (rate, np.abs(want - got).max())


def test_a_vad_with_external_data_quantizes_to_one_smaller_file(tmp_path):
    from rnnedge.quantizing.forms import constants_to_initializers

    model = onnx.load(str(build_vad(tmp_path / "inline.onnx")))
    constants_to_initializers(model)  # weights as initializers of the branches: those go to the .data file
    src = tmp_path / "vad.onnx"
    onnx.save_model(model, str(src), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="vad.onnx.data", size_threshold=1024)
    out = tmp_path / "q" / "vad.int8.onnx"
    out.parent.mkdir()
    result = quantize(src, out)
    float_bytes = src.stat().st_size + (tmp_path / "vad.onnx.data").stat().st_size
    assert result.input_bytes == pytest.approx(float_bytes, rel=0.02) and result.output_bytes < float_bytes
    assert list(out.parent.iterdir()) == [out]  # self-contained
    audio = speech_like(1.0)
    assert np.abs(stream(src, audio) - stream(out, audio)).max() < 0.1


def test_cli_quantize_of_a_vad_exits_0_and_takes_a_sample_rate_from_example(tmp_path):
    src = build_vad(tmp_path / "vad.onnx")
    run = CliRunner().invoke(cli, ["quantize", str(src), "-o", str(tmp_path / "q.onnx"), "--json"])
    assert run.exit_code == 0, run.output
    d = json.loads(run.stdout)
    assert d["kept_fp32"] is None and d["size_ratio"] < 0.8 and "sr=16000" in d["judged_on"]
    run = CliRunner().invoke(cli, ["quantize", str(src), "-o", str(tmp_path / "q8.onnx"), "--example", "sr=8000", "--json"])
    assert run.exit_code == 0 and "sr=8000" in json.loads(run.stdout)["judged_on"] and "input=1x128" in json.loads(run.stdout)["judged_on"]
    bad = CliRunner().invoke(cli, ["quantize", str(src), "-o", str(tmp_path / "q9.onnx"), "--example", "rate=8000"])
    assert bad.exit_code == 2 and "not an input" in bad.output


def test_relative_lengths_are_fed_in_0_1(tmp_path):
    """Values past 1 would make sequence_lens > seq: onnxruntime refuses them, and quantize failed."""
    src = build_relative_lengths(tmp_path / "rel.onnx")
    result = quantize(src, tmp_path / "q.onnx")
    assert result.kept_fp32 is None and result.forms["lstm"] != FP32 and "rel_lens=" in result.judged_on
    assert result.judged_drift["logits"] is not None and result.judged_drift["logits"] < CANDIDATE_DRIFT


def test_nothing_runnable_keeps_the_default_form_says_why_and_exits_0(tmp_path):
    src = build_odd_size(tmp_path / "odd.onnx")
    run = CliRunner().invoke(cli, ["quantize", str(src), "-o", str(tmp_path / "q.onnx"), "--json"])
    assert run.exit_code == 0, run.output
    d = json.loads(run.stdout)
    assert d["forms"] == {"lstm": FLOOR} and d["judged_on"] == "" and d["size_ratio"] < 0.5
    why = [w for w in d["warnings"] if "forms not measured" in w]
    assert len(why) == 1 and "no input sizes found" in why[0] and "\n" not in why[0]
    assert int8_weights(onnx.load(str(tmp_path / "q.onnx")))
    given = quantize(src, tmp_path / "q2.onnx", examples={"audio": "float32[777,2]"})  # the user says the size
    assert "audio=777x2" in given.judged_on and given.judged_drift["h"] is not None


def test_an_output_constant_on_the_judged_inputs_is_unjudged_not_too_far(tmp_path):
    src = build_gated(tmp_path / "gated.onnx")
    result = quantize(src, tmp_path / "q.onnx")
    assert result.kept_fp32 is None and result.forms["lstm"] != FP32 and not result.float_reasons
    assert result.judged_drift["speech"] is None and result.judged_drift["h"] is not None


def test_judge_reads_drift_against_a_range_that_exists():
    ref = [[np.zeros((4, 1)), np.linspace(0, 1, 8)]]
    why, worst = judge(ref, [[np.full((4, 1), 0.0015), np.linspace(0, 1, 8) + 0.01]], ["prob", "h"])
    assert why == "" and worst == {"prob": None, "h": pytest.approx(0.01)}
    why, worst = judge(ref, [[np.zeros((4, 1)), np.linspace(0, 1, 8) + 0.2]], ["prob", "h"])
    assert "'h' drifts" in why and worst["h"] == pytest.approx(0.2)


# -- quantize --provider: forms timed on the provider the file will run on, never one it cannot run -----------------


@pytest.fixture
def fake_cuda(monkeypatch):
    """A CUDA provider that 'exists' (only CPU does here): names resolve to it, sessions open on CPU."""
    from rnnedge.quantizing import select
    from rnnedge.runtime import providers

    real_entries, real_open = providers.provider_entries, select.open_session

    def entries(requested, available=None):
        names = [requested] if isinstance(requested, (str, tuple)) else list(requested or [])
        if any("cuda" in str(n).lower() for n in names):
            return [("CUDAExecutionProvider", {}), ("CPUExecutionProvider", {})]
        return real_entries(requested, available)

    monkeypatch.setattr(providers, "provider_entries", entries)
    monkeypatch.setattr(select, "open_session", lambda model, **kw: real_open(model, **{**kw, "providers": "cpu"}))
    monkeypatch.setattr(select, "_probe", lambda model, entry: "")  # every standard node runs there


def test_runs_on_refuses_a_cpu_only_operator_for_another_provider(fake_cuda, tmp_path):
    from rnnedge.quantizing.forms import build, find_units, name_nodes
    from rnnedge.quantizing.select import runs_on

    model = onnx.load(str(build_gated(tmp_path / "gated.onnx")))
    name_nodes(model)
    lstm = build(model, {u.name: "lstm-int8" for u in find_units(model) if u.op == "LSTM"})
    assert "DynamicQuantizeLSTM runs on the CPU provider only, not on CUDAExecutionProvider" in runs_on(lstm, "cuda")
    assert runs_on(lstm, "cpu") == "" and runs_on(model, "cuda") == ""


def test_runs_on_asks_the_provider_and_trusts_the_table_where_the_float_model_falls_back_too(fake_cuda, tmp_path, monkeypatch):
    from rnnedge.quantizing import select

    model = onnx.load(str(build_gated(tmp_path / "gated.onnx")))
    monkeypatch.setattr(select, "_probe", lambda m, entry: "" if m is model else "no kernel for MatMulInteger")
    candidate = onnx.ModelProto()
    candidate.CopyFrom(model)
    assert "cannot run every node of this form (no kernel for MatMulInteger)" in select.runs_on(candidate, "cuda", reference=model)
    monkeypatch.setattr(select, "_probe", lambda m, entry: "Shape falls back to CPU")  # the float model cannot either
    assert select.runs_on(candidate, "cuda", reference=model) == ""


def test_quantize_for_a_provider_never_picks_a_form_it_cannot_run(fake_cuda, tmp_path):
    src = build_gated(tmp_path / "gated.onnx")
    on_cpu = quantize(src, tmp_path / "cpu.onnx", deploy="batch=16,seq=32")
    assert "lstm-int8" in on_cpu.measured["lstm"]  # a candidate on CPU
    on_cuda = quantize(src, tmp_path / "cuda.onnx", deploy="batch=16,seq=32", providers="cuda")
    assert on_cuda.forms["lstm"] != "lstm-int8" and "lstm-int8" not in on_cuda.measured["lstm"]
    assert any("runs on the CPU provider only" in n for n in on_cuda.notes)
    with pytest.raises(BadInputError, match="CPU provider only"):
        quantize(src, tmp_path / "forced.onnx", forms="lstm-int8", providers="cuda")


# -- rnnedge's own checkpoints: judged on the task's data, not on random steps -------------------------------------


@pytest.fixture(scope="module")
def digits_lstm(tmp_path_factory):
    """A digits LSTM (8 steps of pixel rows) trained briefly and exported: its file carries rnnedge.task."""
    from rnnedge.checkpoint import save_checkpoint
    from rnnedge.exporting.api import export_checkpoint
    from rnnedge.tasks import get_task
    from rnnedge.training.loop import train

    task = get_task("digits")
    trained = train(task.default_config("lstm"), task, epochs=4, seed=0, progress=False)
    folder = tmp_path_factory.mktemp("digits")
    save_checkpoint(folder / "d.safetensors", trained.model, task=task.name, labels=task.labels, metrics=trained.metrics)
    export_checkpoint(folder / "d.safetensors", folder / "d.onnx", verify=False)
    return folder / "d.onnx"


def test_a_checkpoint_export_is_judged_on_its_own_task_and_its_lstm_goes_int8(digits_lstm, tmp_path):
    """It was kept float32 because 4 x 256 random steps moved its outputs by 8 of 16, with two contradicting reasons."""
    from rnnedge.quantizing.drift import compare_models

    out = tmp_path / "d.int8.onnx"
    result = quantize(digits_lstm, out, deploy="batch=64,seq=8")
    assert "task digits" in result.judged_on and "the file's own task" in result.judged_on
    lstm = [n for n in _recurrent_nodes(digits_lstm)]
    assert len(lstm) == 1 and result.forms[lstm[0]] != FP32 and result.kept_fp32 is None and result.stayed_float == []
    assert result.size_ratio < 0.35 and result.judged_drift["logits"] < CANDIDATE_DRIFT
    cmp = compare_models(digits_lstm, out, task="digits")
    assert cmp["quant_metrics"]["accuracy"] >= cmp["float_metrics"]["accuracy"] - 0.01
    given = quantize(digits_lstm, tmp_path / "e.onnx", forms=FLOOR, data="digits")  # forced: nothing judged, nothing said
    assert given.judged_on == "" and given.forms[lstm[0]] == FLOOR


def test_max_drift_without_eval_runs_a_foreign_vad_on_sizes_that_run(tmp_path):
    """--max-drift alone judged random 16-sample inputs, which the VAD's reflect Pad refuses (exit 3 before)."""
    src = build_vad(tmp_path / "vad.onnx")
    run = CliRunner().invoke(cli, ["quantize", str(src), "-o", str(tmp_path / "q.onnx"), "--max-drift", "0.05", "--json"])
    assert run.exit_code == 0, run.output
    d = json.loads(run.stdout)
    assert d["drift_ok"] and d["drift"]["rows"] >= 8 and (tmp_path / "q.onnx").exists()


def test_a_drifting_int8_conv_is_blamed_not_the_lstms(tmp_path):
    """With --quantize-conv, the int8 DFT Conv moves the VAD's output past 5%: the LSTMs alone do not. Every int8
    weight belongs to a unit that can keep float32 alone (the LSTMs were blamed, and kept float32, before)."""
    src = build_vad(tmp_path / "vad.onnx")
    result = quantize(src, tmp_path / "q.onnx", quantize_conv=True)
    lstms = _recurrent_nodes(src)
    assert all(result.forms[n] == FLOOR for n in lstms) and result.forms["(other weights)"] == FP32, result.forms
    convs = [line for line in result.stayed_float if line.startswith("Conv node")]
    assert len(convs) == 4 and all("move the outputs too far" in line for line in convs)
    assert not any("LSTM node" in line for line in result.stayed_float) and result.size_ratio < 0.8


def test_int8_static_without_calibration_data_runs_a_foreign_vad_on_sizes_that_run(tmp_path):
    """It calibrated on random (batch 32, 16-sample) inputs, which the VAD's reflect Pad refuses."""
    src = build_vad(tmp_path / "vad.onnx")
    result = quantize(src, tmp_path / "q.onnx", mode="int8-static")
    assert any("random inputs" in w for w in result.warnings) and result.size_ratio < 1
    audio = speech_like(1.0)
    assert np.abs(stream(src, audio) - stream(tmp_path / "q.onnx", audio)).max() < 0.1


def test_int8_static_without_calibration_data_uses_the_checkpoints_own_task(digits_lstm, tmp_path):
    result = quantize(digits_lstm, tmp_path / "q.onnx", mode="int8-static")
    assert any("the file's own task (digits" in w for w in result.warnings) and not any("random" in w for w in result.warnings)


def test_eval_inputs_without_the_state_judge_a_vad_on_the_users_audio(tmp_path):
    """The user's .npz holds the audio and the rate; the state starts at zeros (it was refused: inputs do not match)."""
    src = build_vad(tmp_path / "vad.onnx")
    audio = speech_like(2.0)
    np.savez(tmp_path / "mine.npz", input=audio[: 20 * 512].reshape(20, 512), sr=np.array(16000))
    args = ["quantize", str(src), "-o", str(tmp_path / "q.onnx"), "--eval", str(tmp_path / "mine.npz"), "--max-drift", "0.05", "--json"]
    run = CliRunner().invoke(cli, args)
    assert run.exit_code == 0, run.output
    d = json.loads(run.stdout)
    assert d["judged_on"] == f"inputs {tmp_path / 'mine.npz'}" and d["deploy"] == {"batch": 1, "seq": 512} and d["drift_ok"]
    assert d["drift"]["rows"] == 20 and all(v is not None for v in d["judged_drift"].values())


def test_relative_lengths_a_spec_calls_features_are_still_fed_in_0_1(tmp_path):
    """A user module's spec declares its relative lengths as plain float features [batch]: random normal values (past 1,
    below 0) make sequence_lens invalid; they are read by name as relative lengths."""
    from rnnedge.spec import IOSpec, TensorSpec

    model = onnx.load(str(build_relative_lengths(tmp_path / "rel.onnx")))
    spec = IOSpec([TensorSpec("x", "float32", ["seq", "batch", 8]), TensorSpec("rel_lens", "float32", ["batch"])], ["logits"],
                  axes=["seq", "batch"])
    onnx.helper.set_model_props(model, {"rnnedge.spec": spec.to_json()})
    onnx.save(model, str(tmp_path / "spec.onnx"))
    result = quantize(tmp_path / "spec.onnx", tmp_path / "q.onnx")
    assert "the spec's inputs" in result.judged_on and result.judged_drift["logits"] is not None, result.warnings


def test_a_mobile_chunk_its_task_does_not_fit_is_judged_on_its_spec(digits_lstm, tmp_path):
    """A --target mobile chunk fixes batch 1 x 4 steps: the task's 64 x 8 rows do not run (it fell back to unmeasured)."""
    from rnnedge.exporting.api import export_checkpoint

    mobile = tmp_path / "m.onnx"
    export_checkpoint(digits_lstm.with_suffix(".safetensors"), mobile, target="mobile", chunk=4, verify=False)
    result = quantize(mobile, tmp_path / "q.onnx")
    assert result.judged_on.startswith("the spec's inputs (x=1x4x8") and not any("not measured" in w for w in result.warnings)
    assert result.judged_drift and result.kept_fp32 is None
