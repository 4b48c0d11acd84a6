"""Parity: the checker catches the bugs exporters really make, and never cries wolf on correct exports."""

from __future__ import annotations

import json
import random
import zlib

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from onnx import helper
from parity_plants import largest_recurrent_weight_nudged

import rnnedge
from rnnedge.checkpoint import save_checkpoint
from rnnedge.cli import cli
from rnnedge.families.sequence.model import ModelConfig, SequenceModel
from rnnedge.parity import NOISE_K, OrtRunner, TorchRunner, compare, generate_cases, spec_of, torch_module_for
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


def _correct_export_passes(k, tmp_path, check: bool = True):
    """Export random config k correctly and verify it: no failure on any well-conditioned output.

    Returns (largest noise ratio, number of ill-conditioned outputs): those fail `rnnedge verify` unless
    --allow-ill-conditioned, by design; they are counted, not hidden.
    """
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
    if not check:
        return ckpt, path
    report = rnnedge.verify(ckpt, path, allow_ill_conditioned=True)
    assert report, f"false alarm for {case}: {report.summary()}"
    return report.worst_ratio() or 0.0, len(report.ill_conditioned)


def test_ill_conditioned_outputs_exit_1_unless_allowed_cli(tmp_path):
    ckpt, path = _correct_export_passes(4, tmp_path, check=False)  # an exploding relu RNN of the sweep (ill past 256 steps)
    result = CliRunner().invoke(cli, ["verify", str(ckpt), str(path), "--json"])
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert result.exit_code == 1 and data["ill_conditioned"] and data["failed"] != 0
    assert all(r["ok"] for r in data["results"] if not any(o["ill_conditioned"] for o in r["outputs"]))
    allowed = CliRunner().invoke(cli, ["verify", str(ckpt), str(path), "--allow-ill-conditioned"])
    assert allowed.exit_code == 0 and "ill-conditioned" in allowed.stdout


SWEEP = range(200)
SWEEP_SAMPLE = [k for k in SWEEP if zlib.crc32(f"sweep-{k}".encode()) % 25 == 0]  # ~8 configurations, stable


def test_correct_exports_never_fail_sample(tmp_path):
    assert 4 <= len(SWEEP_SAMPLE) <= 16
    for k in SWEEP_SAMPLE:
        _correct_export_passes(k, tmp_path)


@pytest.mark.slow
def test_correct_exports_never_fail_sweep(tmp_path):
    """200 random correct configurations, 0 false alarms (prints the largest noise ratio and the ill-conditioned count)."""
    results = [_correct_export_passes(k, tmp_path) for k in SWEEP]
    ill = sum(1 for _, n in results if n)
    print(f"200 correct exports: largest error {max(r for r, _ in results):.1f}x noise (limit {NOISE_K:g}x); "
          f"{ill} configurations with ill-conditioned outputs")


def _large_or_long(cell, hidden, bidirectional, seq, tmp_path) -> tuple[float, int]:
    """A large (hidden 512-1024) or long (T 1000+) model: verify's cases plus one case of `seq` steps."""
    torch.manual_seed(zlib.crc32(f"{cell}-{hidden}-{bidirectional}-{seq}".encode()))
    model = SequenceModel(ModelConfig(input_size=5, cell=cell, hidden=hidden, layers=1, bidirectional=bidirectional, num_outputs=3))
    ckpt = tmp_path / "big.safetensors"
    save_checkpoint(ckpt, model)
    path = tmp_path / "big.onnx"
    rnnedge.export_checkpoint(ckpt, path, lowering="auto", verify=False)
    report = rnnedge.verify(ckpt, path, allow_ill_conditioned=True, providers=["CPUExecutionProvider"])
    spec, meta = spec_of(path)
    feeds = spec.make_inputs(spec.sizes_for(1, seq), seed=1)
    with TorchRunner(torch_module_for(ckpt, meta), spec) as t, OrtRunner(path) as o:
        ref = t.infer(feeds)
        report.extend(compare(ref, o.infer(feeds), case=f"seq {seq}", ref64=t.infer_float64(feeds), allow_ill_conditioned=True))
    assert report, f"false alarm for {cell} hidden {hidden} bi={bidirectional} seq {seq}: {report.summary()}"
    return report.worst_ratio() or 0.0, len(report.ill_conditioned)


LARGE_LONG = [(cell, hidden, bi, seq) for cell in ("rnn", "gru", "lstm") for hidden, seq in ((512, 1200), (1024, 300), (64, 3000))
              for bi in (False, True)]


def test_large_or_long_model_sample(tmp_path):
    _large_or_long("gru", 512, False, 1000, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("case", LARGE_LONG, ids=lambda c: "-".join(map(str, c)))
def test_large_and_long_models_never_fail(case, tmp_path):
    ratio, ill = _large_or_long(*case, tmp_path)
    print(f"{case}: largest error {ratio:.1f}x noise, {ill} ill-conditioned outputs")


def test_noise_policy_scales_with_torch_own_error():
    ref = {"y": np.array([1.0, 2.0])}
    out = {"y": np.array([1.003, 2.0])}
    assert not compare(ref, out)  # 3e-3 is far beyond a few float32 roundings of 2.0
    assert not compare(ref, {"y": ref["y"] + 2e-4})  # the old fixed 1e-4 + 1e-4|y| passed this; float32 noise here is ~1e-7
    assert compare(ref, {"y": ref["y"] + 4e-7})  # a few roundings of the scale
    report = compare(ref, out, noise={"y": 5e-4})  # within NOISE_K x torch's own float32 error
    assert report and report.cases[0].outputs[0].noise_ratio == pytest.approx(3e-3 / 5e-4)
    ref64 = {"y": np.array([1.0 + 3e-7, 2.0])}
    diff = compare(ref, {"y": ref["y"]}, ref64=ref64).cases[0].outputs[0]
    assert diff.torch_error == pytest.approx(3e-7) and diff.ok


class ConvGruDetector(torch.nn.Module):
    """A voice-activity detector's shape: conv front end, GRU, a per-frame probability that is ~1e-3 on silence."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Sequential(torch.nn.Conv1d(40, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv1d(64, 64, 3, padding=1), torch.nn.ReLU())
        self.gru = torch.nn.GRU(64, 64, num_layers=2, batch_first=True)
        self.head = torch.nn.Linear(64, 1)
        with torch.no_grad():
            self.head.bias.fill_(-7.0)  # a confident "no speech": sigmoid(-7) = 9e-4

    def forward(self, x):
        y, _ = self.gru(self.conv(x.transpose(1, 2)).transpose(1, 2))
        return torch.sigmoid(self.head(y)).squeeze(-1)


def test_small_probabilities_after_onnxruntime_sigmoid_are_no_false_alarm(tmp_path):
    """onnxruntime's Sigmoid is an approximation with an absolute error (~1e-7): on a probability of ~1e-3 that is
    tens of times torch's own float32 error there. A correct file must pass its own check (it failed before)."""
    torch.manual_seed(3)
    module = ConvGruDetector().eval()
    result = rnnedge.export(module, (torch.randn(2, 50, 40),), tmp_path / "vad.onnx")  # quick check included
    assert result.parity
    report = rnnedge.verify(module, tmp_path / "vad.onnx", providers=["CPUExecutionProvider"])
    assert report, report.summary()
    assert report.worst_ratio() < NOISE_K / 4
    model = onnx.load(str(tmp_path / "vad.onnx"))  # ... and a bug in the same file is still caught: the head's bias 1% off
    bias = next(t for t in model.graph.initializer if t.name == "head.bias")
    bias.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(bias) * np.float32(1.01), bias.name))
    onnx.save(model, str(tmp_path / "broken.onnx"))
    assert not rnnedge.verify(module, tmp_path / "broken.onnx", providers=["CPUExecutionProvider"])


def test_ill_conditioned_outputs_are_listed_and_fail_unless_allowed():
    ref, ref64 = {"y": np.array([1.0, 2.0]), "h": np.ones(2)}, {"y": np.array([1.5, 2.0]), "h": np.ones(2)}
    report = compare(ref, {"y": ref["y"], "h": ref["h"]}, ref64=ref64, case="long")
    assert not report and report.ill_conditioned == [("long", "", "y")]
    assert "ill-conditioned" in report.summary() and report.to_dict()["ill_conditioned"][0]["output"] == "y"
    allowed = compare(ref, {"y": ref["y"], "h": ref["h"]}, ref64=ref64, allow_ill_conditioned=True)
    assert allowed and "ill-conditioned" in allowed.summary()


def test_assert_parity_for_user_test_suites(tmp_path):
    torch.manual_seed(0)
    module = torch.nn.GRU(5, 8, batch_first=True)
    path = tmp_path / "gru.onnx"
    rnnedge.export(module, (torch.randn(2, 6, 5),), path, input_names=["x"], lowering="native", verify=False)
    assert assert_parity(module, path)
    model = onnx.load(str(path))
    largest_recurrent_weight_nudged(model)
    onnx.save(model, str(path))
    with pytest.raises(AssertionError, match="parity FAILED"):
        assert_parity(module, path)


def test_verify_cli_bad_input_exit_2(tmp_path, seed_checkpoint):
    ckpt, _ = seed_checkpoint
    (tmp_path / "junk.onnx").write_bytes(b"\x00garbage" * 10)
    result = CliRunner().invoke(cli, ["verify", str(ckpt), str(tmp_path / "junk.onnx")])
    assert result.exit_code == 2
    assert CliRunner().invoke(cli, ["verify", str(ckpt), str(tmp_path / "missing.onnx")]).exit_code == 2


# ----------------------------------------------------------------------------- outputs by name, providers, float64


def _stream_file(tmp_path):
    torch.manual_seed(0)
    model = SequenceModel(ModelConfig(input_size=5, cell="gru", hidden=8, num_outputs=3))
    ckpt = tmp_path / "s.safetensors"
    save_checkpoint(ckpt, model, task="seed")
    path = tmp_path / "s.onnx"
    rnnedge.export_checkpoint(ckpt, path, target="stream", lowering="native", verify=False)
    return ckpt, path


def test_extra_or_missing_output_fails_naming_both_sides(tmp_path):
    ckpt, good = _stream_file(tmp_path)
    assert CliRunner().invoke(cli, ["verify", str(ckpt), str(good)]).exit_code == 0
    extra, missing = onnx.load(str(good)), onnx.load(str(good))
    extra.graph.node.append(helper.make_node("Identity", ["hn"], ["hn_copy"]))
    extra.graph.output.append(helper.make_tensor_value_info("hn_copy", onnx.TensorProto.FLOAT, None))
    missing.graph.output.remove(next(o for o in missing.graph.output if o.name == "hn"))
    for model, word in ((extra, "extra ['hn_copy']"), (missing, "missing ['hn']")):
        path = tmp_path / "changed.onnx"
        onnx.save(model, str(path))
        result = CliRunner().invoke(cli, ["verify", str(ckpt), str(path), "--json"])
        assert result.exit_code == 1, result.output
        report = rnnedge.verify(ckpt, path)
        assert not report and word in report.summary() and "declared ['logits', 'hn']" in report.summary()


def test_a_provider_that_cannot_open_is_a_row_and_the_others_run(seed_checkpoint, seed_onnx):
    report = rnnedge.verify(seed_checkpoint[0], seed_onnx, providers=["NoSuchExecutionProvider", "CPUExecutionProvider"])
    rows = {c.provider for c in report.cases}
    assert not report and "NoSuchExecutionProvider" in rows and "CPUExecutionProvider" in rows
    assert all(c.ok for c in report.cases if c.provider == "CPUExecutionProvider")
    assert [c.case for c in report.failures] == ["open session"]


class StateInForward(torch.nn.Module):
    """Builds its initial state inside forward, as many published modules do."""

    def __init__(self, cast_input: bool = False):
        super().__init__()
        self.rnn, self.cast_input = torch.nn.GRU(5, 8, batch_first=True), cast_input

    def forward(self, x):
        if self.cast_input:  # pins float32: a float64 copy of this module cannot run
            x = x.float()
        h0 = torch.zeros(1, x.size(0), 8) + x.new_zeros(1, 1, 1)
        return self.rnn(x, h0)[0]


def test_state_built_in_forward_runs_the_float64_reference(tmp_path):
    module = StateInForward().eval()
    path = tmp_path / "m.onnx"
    result = rnnedge.export(module, (torch.randn(2, 6, 5),), path, input_names=["x"])  # quick check included
    assert result.parity and not result.parity.notes
    report = rnnedge.verify(module, path)
    assert report and not report.notes


def test_float64_failure_falls_back_to_a_float32_noise_floor_with_a_note(tmp_path):
    module = StateInForward(cast_input=True).eval()
    path = tmp_path / "m.onnx"
    rnnedge.export(module, (torch.randn(2, 6, 5),), path, input_names=["x"], verify=False)
    report = rnnedge.verify(module, path)
    assert report and any("float64 reference unavailable" in n for n in report.notes)


def test_quick_check_probes_past_256_and_the_example_length(seed_checkpoint, seed_onnx):
    from rnnedge.parity import quick_check

    spec, meta = spec_of(seed_onnx)
    report = quick_check(torch_module_for(seed_checkpoint[0], meta), seed_onnx, spec, examples=(torch.zeros(1, 10, 5),))
    names = [c.case for c in report.cases]
    assert any("seq 1" in n for n in names) and any("seq 9" in n for n in names) and any("seq 11" in n for n in names)
    assert any(int(n.rsplit("seq ", 1)[1].split(",")[0]) > 256 for n in names if "seq " in n)
    shapes = [f["x"].shape[1] for _, f in generate_cases(spec)]
    assert max(shapes) > 512 and any(256 < t <= 512 for t in shapes)


class BranchPast100(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(5, 8, batch_first=True)

    def forward(self, x):
        if x.shape[1] > 100:
            return self.lstm(x * 0.5)[0]
        return self.lstm(x)[0]


def test_verify_probes_inside_a_recorded_range_and_expects_refusal_just_past_it(tmp_path):
    module, path = BranchPast100().eval(), tmp_path / "m.onnx"
    rnnedge.export(module, (torch.randn(2, 10, 5),), path, input_names=["x"], allow_bounded=True)
    report = rnnedge.verify(module, path)
    assert report, report.summary()
    assert max(int(c.case.rsplit("seq ", 1)[1].split(",")[0]) for c in report.cases if "seq " in c.case and "outside" not in c.case) == 100
    assert [c.case for c in report.cases if "outside" in c.case] == ["outside the recorded range: seq 101 (valid 1..100)"]


def test_integer_inputs_keep_their_declared_dtype_in_every_case():
    spec = IOSpec([TensorSpec("x", "float32", ["batch", "seq", 5]), TensorSpec("lengths", "int32", ["batch"], "lengths")],
                  ["y"], axes=["batch", "seq"])
    for name, feeds in generate_cases(spec):
        assert feeds["lengths"].dtype == np.int32, name
        assert (feeds["lengths"] >= 1).all() and (feeds["lengths"] <= feeds["x"].shape[1]).all(), name


class Refuses(torch.nn.Module):
    def __init__(self, inner, up_to: int):
        super().__init__()
        self.inner, self.up_to = inner, up_to

    def forward(self, *args):
        if args[0].shape[1] <= self.up_to:
            raise RuntimeError(f"this module needs more than {self.up_to} steps")
        return self.inner(*args)


def test_a_shape_torch_itself_refuses_is_listed_not_compared_and_all_refused_is_a_parity_error(seed_checkpoint, seed_onnx):
    from rnnedge.errors import ParityError
    from rnnedge.parity import quick_check

    spec, meta = spec_of(seed_onnx)
    inner = torch_module_for(seed_checkpoint[0], meta)
    report = quick_check(Refuses(inner, 1), seed_onnx, spec)  # a module with a minimum length: seq 1 is its own limit
    assert report and [c.case for c in report.cases if c.skipped] == ["batch 1, seq 1"]
    assert "torch itself refuses" in report.summary() and report.to_dict()["results"][0]["skipped"]
    with pytest.raises(ParityError, match="every case") as err:
        quick_check(Refuses(inner, 10_000), seed_onnx, spec)
    assert err.value.report is not None and not err.value.report


def test_verify_streams_sequence_first_files_along_their_time_axis(tmp_path):
    """A (seq, batch, F) model with its state: verify's streaming check chunks axis 0 (it sliced the batch, and on a
    mobile file reported a false failure), for a dynamic and a mobile export."""

    from user_modules import SeqFirstWithState

    torch.manual_seed(0)
    module = SeqFirstWithState().eval()
    for target, example in (("dynamic", torch.randn(6, 2, 5)), ("mobile", torch.randn(8, 2, 5))):
        path = tmp_path / f"{target}.onnx"
        axes = {"x": {0: "seq", 1: "batch"}, "h0": {1: "batch"}} if target == "dynamic" else None
        rnnedge.export(module, (example, torch.zeros(1, 2, 12)), path, input_names=["x", "h0"], output_names=["y", "hn"],
                       dynamic_axes=axes, target=target)
        report = rnnedge.verify(module, path, providers=["CPUExecutionProvider"])
        assert report and any(c.case.startswith("stream:") for c in report.cases), report.summary()


def test_tolerance_policy_follows_the_files_quantization_and_explicit_tolerances():
    """The fp16 file quantize writes (rnnedge.quantization = "fp16") gets FP16; explicit atol/rtol win; else noise."""
    from rnnedge.parity import FP16, NOISE, tolerance_for

    assert tolerance_for({"rnnedge.quantization": "fp16"}) is FP16 and FP16.atol == 2e-2
    assert tolerance_for({}) is NOISE and NOISE.noise_scaled
    assert tolerance_for({"rnnedge.quantization": "int8"}) is NOISE  # int8 files are judged by drift, not here
    explicit = tolerance_for({"rnnedge.quantization": "fp16"}, atol=1e-3)
    assert (explicit.name, explicit.atol, explicit.rtol) == ("fixed", 1e-3, 0.0)
