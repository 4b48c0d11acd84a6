"""Parity: the checker catches the bugs exporters really make, and never cries wolf on correct exports."""

from __future__ import annotations

import random

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from onnx import helper, numpy_helper

import rnnedge
from rnnedge.checkpoint import save_checkpoint
from rnnedge.cli import cli
from rnnedge.models import ModelConfig, SequenceModel
from rnnedge.parity import compare, generate_cases
from rnnedge.spec import IOSpec, TensorSpec
from rnnedge.testing import assert_parity

# ----------------------------------------------------------------------------- compare() as data


def test_compare_reports_max_mean_rel_and_worst_position():
    ref = {"y": np.zeros((2, 3), np.float32)}
    out = {"y": np.array([[0, 0, 0], [0, 0.5, 0]], np.float32)}
    report = compare(ref, out, atol=1e-4, rtol=0)
    diff = report.cases[0].outputs[0]
    assert not report and diff.max_abs == pytest.approx(0.5) and diff.worst == (1, 1)
    assert diff.mean_abs == pytest.approx(0.5 / 6)
    assert compare(ref, {"y": ref["y"] + 5e-5}, atol=1e-4, rtol=0)


def test_compare_fails_on_nan_shape_and_missing_output():
    ref = {"y": np.ones(3, np.float32), "h": np.ones(2, np.float32)}
    assert not compare(ref, {"y": np.array([1, np.nan, 1], np.float32), "h": ref["h"]})
    assert not compare(ref, {"y": np.ones(4, np.float32), "h": ref["h"]})
    report = compare(ref, {"y": ref["y"]})
    assert not report and "missing" in report.cases[0].outputs[1].note


def test_cases_cover_the_shapes_exports_get_wrong():
    spec = IOSpec([TensorSpec("tokens", "int64", ["batch", "seq"], "tokens", vocab=300),
                   TensorSpec("lengths", "int64", ["batch"], "lengths"),
                   TensorSpec("h0", "float32", [1, "batch", 8], "state")], ["logits", "hn"], axes=["batch", "seq"])
    cases = dict(generate_cases(spec))
    shapes = {feeds["tokens"].shape for feeds in cases.values()}
    assert (1, 1) in shapes and any(t >= 512 for _, t in shapes)
    every = cases["every token id"]["tokens"]
    assert set(np.unique(every)) == set(range(300))
    assert any((f["lengths"] < f["tokens"].shape[1]).any() for f in cases.values())
    assert any(not f["h0"].any() for f in cases.values()) and any(f["h0"].any() for f in cases.values())


# ----------------------------------------------------------------------------- planted bugs


def make_checkpoint(tmp_path, cell, bidirectional, layers=2, seed=0):
    torch.manual_seed(seed)
    model = SequenceModel(ModelConfig(input_size=5, cell=cell, hidden=8, layers=layers, bidirectional=bidirectional, num_outputs=3))
    path = tmp_path / f"{cell}{int(bidirectional)}{layers}.safetensors"
    save_checkpoint(path, model, task="seed")
    return path


def _init(model, name):
    return next(i for i in model.graph.initializer if i.name == name)


def _set(model, name, array):
    _init(model, name).CopyFrom(numpy_helper.from_array(array.astype(np.float32), name))


def _recurrent_nodes(model):
    return [n for n in model.graph.node if n.op_type in ("RNN", "GRU", "LSTM")]


def gate_blocks_swapped(model):
    node = _recurrent_nodes(model)[0]
    w = numpy_helper.to_array(_init(model, node.input[1])).copy()
    hidden = helper.get_attribute_value(next(a for a in node.attribute if a.name == "hidden_size"))
    if w.shape[1] > hidden:  # swap the first two gate blocks
        w[:, :hidden], w[:, hidden : 2 * hidden] = w[:, hidden : 2 * hidden].copy(), w[:, :hidden].copy()
    else:  # RNN: one block, swap two units' input weights
        w[:, [0, 1]] = w[:, [1, 0]]
    _set(model, node.input[1], w)


def bias_dropped(model):
    node = _recurrent_nodes(model)[0]
    _set(model, node.input[3], np.zeros_like(numpy_helper.to_array(_init(model, node.input[3]))))


def directions_swapped(model):
    node = _recurrent_nodes(model)[0]
    for k in (1, 2, 3):
        w = numpy_helper.to_array(_init(model, node.input[k]))
        _set(model, node.input[k], w[::-1].copy())


def linear_before_reset_flipped(model):  # onnxscript#2852: ~0.1 error and no warning
    node = _recurrent_nodes(model)[0]
    next(a for a in node.attribute if a.name == "linear_before_reset").i = 0


def lengths_ignored(model):
    for node in _recurrent_nodes(model):
        node.input[4] = ""


def state_not_carried(model):
    for node in _recurrent_nodes(model):
        node.input[5] = ""


def weight_scaled(model):
    node = _recurrent_nodes(model)[-1]
    _set(model, node.input[2], numpy_helper.to_array(_init(model, node.input[2])) * 1.01)


def scan_weight_scaled(model):
    body = next(n for n in model.graph.node if n.op_type == "Scan").attribute[0].g
    rt = next(i for i in body.initializer if "Rt" in i.name)
    rt.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(rt) * 1.01, rt.name))


def scan_gates_swapped(model):
    wt_name = next(i.name for i in model.graph.initializer if i.name.endswith("/Wt"))
    wt = numpy_helper.to_array(_init(model, wt_name)).copy()
    half = wt.shape[1] // 2
    _set(model, wt_name, np.concatenate([wt[:, half:], wt[:, :half]], axis=1))


def scan_bias_dropped(model):
    name = next(i.name for i in model.graph.initializer if i.name.endswith("/bias_x"))
    _set(model, name, np.zeros_like(numpy_helper.to_array(_init(model, name))))


NATIVE_BUGS = {
    "gate blocks swapped": gate_blocks_swapped,
    "bias dropped": bias_dropped,
    "directions swapped": directions_swapped,
    "linear_before_reset flipped": linear_before_reset_flipped,
    "lengths ignored": lengths_ignored,
    "weight scaled by 1.01": weight_scaled,
}


def _broken_copy(src, dst, bug):
    model = onnx.load(str(src))
    bug(model)
    onnx.save(model, str(dst))


def _verify_exit(ckpt, onnx_path):
    return CliRunner().invoke(cli, ["verify", str(ckpt), str(onnx_path), "--json"]).exit_code


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_planted_bugs_are_caught_native(cell, bidirectional, tmp_path):
    ckpt = make_checkpoint(tmp_path, cell, bidirectional)
    good = tmp_path / "good.onnx"
    rnnedge.export_checkpoint(ckpt, good, lowering="native", verify=False)
    assert _verify_exit(ckpt, good) == 0
    for name, bug in NATIVE_BUGS.items():
        if (name == "directions swapped" and not bidirectional) or (name == "linear_before_reset flipped" and cell != "gru"):
            continue
        broken = tmp_path / "broken.onnx"
        _broken_copy(good, broken, bug)
        assert _verify_exit(ckpt, broken) == 1, f"{name} not caught for {cell} bidirectional={bidirectional}"


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_planted_bugs_are_caught_scan(cell, tmp_path):
    ckpt = make_checkpoint(tmp_path, cell, False)
    good = tmp_path / "good.onnx"
    rnnedge.export_checkpoint(ckpt, good, lowering="scan", verify=False)
    assert _verify_exit(ckpt, good) == 0
    for bug in (scan_weight_scaled, scan_gates_swapped, scan_bias_dropped):
        _broken_copy(good, tmp_path / "broken.onnx", bug)
        assert _verify_exit(ckpt, tmp_path / "broken.onnx") == 1, bug.__name__


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_state_not_carried_is_caught_on_stream_models(cell, tmp_path):
    ckpt = make_checkpoint(tmp_path, cell, False)
    good = tmp_path / "stream.onnx"
    rnnedge.export_checkpoint(ckpt, good, target="stream", lowering="native", verify=False)
    assert _verify_exit(ckpt, good) == 0
    _broken_copy(good, tmp_path / "broken.onnx", state_not_carried)
    assert _verify_exit(ckpt, tmp_path / "broken.onnx") == 1


# ----------------------------------------------------------------------------- no false alarms


def random_config(rng: random.Random) -> dict:
    cell = rng.choice(["rnn", "gru", "lstm"])
    tokens = rng.random() < 0.3
    head = rng.choice(["classify", "tag", "regress"] + ([] if rng.random() < 0.5 else ["lm"]))
    bidirectional = rng.random() < 0.4 and head != "lm"
    target = rng.choice(["dynamic", "stream"]) if not bidirectional else "dynamic"
    return {
        "config": dict(input_kind="tokens" if tokens else "features", input_size=rng.choice([3, 5, 17]) if not tokens else rng.choice([20, 300]),
                       cell=cell, nonlinearity=rng.choice(["tanh", "relu"]) if cell == "rnn" else "tanh", hidden=rng.choice([4, 8, 16, 32]),
                       layers=rng.choice([1, 2, 3]), bidirectional=bidirectional, head=head,
                       num_outputs=rng.choice([1, 3, 10]) if head != "lm" else 0),
        "target": target,
        "lowering": rng.choice(["native", "scan", "auto"]),
    }


def _correct_export_passes(k, tmp_path):
    rng = random.Random(k)
    case = random_config(rng)
    cfg = case["config"]
    if cfg["head"] == "lm":
        if cfg["input_kind"] != "tokens":
            cfg["head"] = "tag"
            cfg["num_outputs"] = 4
        else:
            cfg["num_outputs"] = cfg["input_size"]
    torch.manual_seed(k)
    model = SequenceModel(ModelConfig(**cfg))
    with torch.no_grad():  # trained-looking weights: larger than init, so gates saturate
        for p in model.parameters():
            p.mul_(rng.choice([1.0, 2.0, 3.0]))
    ckpt = tmp_path / f"r{k}.safetensors"
    save_checkpoint(ckpt, model)
    path = tmp_path / f"r{k}.onnx"
    rnnedge.export_checkpoint(ckpt, path, target=case["target"], lowering=case["lowering"], verify=False)
    report = rnnedge.verify(ckpt, path)
    assert report, f"false alarm for {case}: {report.summary()}"
    return report.worst().max_abs


def test_correct_exports_never_fail_sample(tmp_path):
    for k in range(8):
        _correct_export_passes(k, tmp_path)


def test_chaotic_model_widens_tolerance_by_torch_own_error():
    ref = {"y": np.array([1.0, 2.0])}
    out = {"y": np.array([1.003, 2.0])}
    assert not compare(ref, out)  # 3e-3 is far beyond atol
    assert compare(ref, out, noise={"y": 5e-4})  # but within 10x torch's own float32 error


@pytest.mark.slow
def test_correct_exports_never_fail_sweep(tmp_path):
    """>= 200 random correct configurations, 0 false alarms (prints the largest error seen)."""
    worst = max(_correct_export_passes(k, tmp_path) for k in range(200))
    print(f"largest error over 200 correct exports: {worst:.3e}")


def test_assert_parity_for_user_test_suites(tmp_path):
    torch.manual_seed(0)
    module = torch.nn.GRU(5, 8, batch_first=True)
    path = tmp_path / "gru.onnx"
    rnnedge.export(module, (torch.randn(2, 6, 5),), path, input_names=["x"], lowering="native", verify=False)
    assert assert_parity(module, path)
    model = onnx.load(str(path))
    weight_scaled(model)
    onnx.save(model, str(path))
    with pytest.raises(AssertionError, match="parity FAILED"):
        assert_parity(module, path)


def test_verify_cli_bad_input_exit_2(tmp_path, seed_checkpoint):
    ckpt, _ = seed_checkpoint
    (tmp_path / "junk.onnx").write_bytes(b"\x00garbage" * 10)
    result = CliRunner().invoke(cli, ["verify", str(ckpt), str(tmp_path / "junk.onnx")])
    assert result.exit_code == 2
    assert CliRunner().invoke(cli, ["verify", str(ckpt), str(tmp_path / "missing.onnx")]).exit_code == 2
