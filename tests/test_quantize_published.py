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
