"""rnnedge.exporting.guards: no file claims a dynamic axis it does not have.

A module that branches on the sequence length, unrolls a loop over time or reshapes to a constant is
refused with the axis, what torch inferred and the user's line; with allow_bounded the range is written
to the file and enforced by rnnedge.runtime; TorchScript modules get a message saying what to do.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

import rnnedge
from rnnedge.errors import BadInputError, ExportError, ParityError
from rnnedge.exporting import guards


class BranchOnLength(nn.Module):
    """The issue's two-line reproduction: wrong by 0.45 at T = 150 when exported as if seq were free."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(5, 8, batch_first=True)

    def forward(self, x):  # x: (B, T, 5)
        if x.shape[1] > 100:
            return self.lstm(x * 0.5)[0]
        return self.lstm(x)[0]  # (B, T, 8)


class LoopOverTime(nn.Module):
    """A cell stepped over time in a Python loop: torch.export unrolls it and freezes T."""

    def __init__(self):
        super().__init__()
        self.cell = nn.LSTMCell(5, 8)

    def forward(self, x):
        h = c = x.new_zeros(x.shape[0], 8)
        outs = []
        for t in range(x.shape[1]):
            h, c = self.cell(x[:, t], (h, c))
            outs.append(h)
        return torch.stack(outs, 1)


class ReshapeToConstant(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(5, 8, batch_first=True)

    def forward(self, x):
        return self.lstm(x)[0].reshape(2, 80)


def _x(batch=2, seq=10, features=5):
    return torch.randn(batch, seq, features, generator=torch.Generator().manual_seed(batch * 100 + seq))


class PositionalTable(nn.Module):
    """A table of 200 positions sliced to the input: torch itself cannot run past 200 steps (a real bound)."""

    def __init__(self):
        super().__init__()
        self.pos = nn.Parameter(torch.randn(1, 200, 5))
        self.lstm = nn.LSTM(5, 8, batch_first=True)

    def forward(self, x):
        return self.lstm(x + self.pos[:, : x.shape[1]])[0]


def test_a_real_bound_exports_with_its_range_recorded_and_enforced(tmp_path, caplog):
    """Past the guard torch itself fails (every size tried): no piece there; one file valid for 1..200, the range
    recorded (metadata, spec) and enforced by rnnedge.runtime, right at both ends of it."""
    from rnnedge.runtime import Session

    module, path = PositionalTable().eval(), tmp_path / "m.onnx"
    with caplog.at_level("WARNING", logger="rnnedge.exporting"):
        result = rnnedge.export(module, _x(), path, input_names=["x"])
    assert result.spec.ranges == {"seq": [1, 200]} and not result.spec.pieces
    meta = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert meta["rnnedge.range.seq"] == "1..200"
    assert any("seq 201..: the module itself fails there" in r.getMessage() for r in caplog.records)
    assert any("torch guard on axis 1 ('seq')" in r.getMessage() and "200" in r.getMessage() for r in caplog.records)
    session = Session(path)
    for batch, seq in [(1, 1), (3, 7), (2, 199), (1, 200)]:
        x = _x(batch, seq).numpy()
        with torch.no_grad():
            want = module(torch.from_numpy(x)).numpy()
        assert np.abs(session.run(x) - want).max() < 1e-4
    with pytest.raises(BadInputError, match="only valid for seq in 1..200"):
        session.run(_x(1, 201).numpy())


class FailsInTheMiddle(nn.Module):
    """Undefined for 10..20 steps only: runs below and above, so no range can be recorded. From an example of 30
    steps torch guards `seq > 20` alone (the chained comparison stops there): the piece 1..20 fails at its middle
    size, so rnnedge exports it at a size that runs, whose guard (`seq < 10`) splits it again."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(5, 8, batch_first=True)

    def forward(self, x):
        if 10 <= x.shape[1] <= 20:
            raise ValueError("no window fits")
        return self.lstm(x)[0]


def test_a_size_range_where_torch_fails_between_two_it_runs_is_refused(tmp_path):
    with pytest.raises(ExportError) as err:
        rnnedge.export(FailsInTheMiddle().eval(), _x(seq=30), tmp_path / "m.onnx", input_names=["x"])
    assert "the module itself fails at seq 10..20" in str(err.value) and "runs on both sides" in str(err.value)
    assert not (tmp_path / "m.onnx").exists()


class FailsPastTheBoundButOnce(PositionalTable):
    """Past 200 steps torch fails, except at 402 steps (a second path): the range past 200 is not undefined."""

    def forward(self, x):
        if x.shape[1] == 402:
            return self.lstm(x)[0]
        return super().forward(x)


def test_a_range_is_left_out_only_where_torch_fails_at_every_size_tried():
    from rnnedge.exporting import piecewise
    from rnnedge.exporting.api import prepare

    def undefined(module):
        job = prepare(module.eval(), (_x(),), input_names=["x"])
        try:
            assert piecewise._size_that_runs(job, job.spec, {"seq": [201, None]}, RuntimeError("too long")) == 402
        except piecewise._Undefined:
            return True
        return False

    assert undefined(PositionalTable())
    assert not undefined(FailsPastTheBoundButOnce())  # 402 = 2 * 201 is among the sizes tried


def test_allow_bounded_records_the_range_and_the_runtime_enforces_it(tmp_path):
    from rnnedge.inspect import describe_onnx
    from rnnedge.runtime import Session

    path = tmp_path / "m.onnx"
    module = BranchOnLength().eval()
    result = rnnedge.export(module, _x(), path, input_names=["x"], allow_bounded=True)
    meta = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert meta["rnnedge.range.seq"] == "1..100"
    assert json.loads(meta["rnnedge.spec"])["ranges"] == {"seq": [1, 100]}
    assert result.spec.ranges == {"seq": [1, 100]}
    info = describe_onnx(path)
    assert "1..100" in json.dumps(info)
    session = Session(path)
    x = _x(3, 100).numpy()
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    assert np.abs(session.run(x) - want).max() < 1e-4  # inside the range: right
    with pytest.raises(BadInputError, match="only valid for seq in 1..100"):
        session.run(_x(3, 150).numpy())  # past it: refused, never a wrong answer


def test_a_python_loop_over_time_is_refused_as_specialised_with_the_way_out(tmp_path):
    with pytest.raises(ExportError) as err:
        rnnedge.export(LoopOverTime().eval(), _x(), tmp_path / "m.onnx", input_names=["x"])
    msg = str(err.value)
    assert "axis 1 ('seq') of input 'x' was specialised to" in msg
    assert "for t in range(x.shape[1]):" in msg
    assert "run_cell" in msg and "nn.LSTM" in msg


def test_a_reshape_to_a_constant_is_refused(tmp_path):
    with pytest.raises(ExportError) as err:
        rnnedge.export(ReshapeToConstant().eval(), _x(), tmp_path / "m.onnx", input_names=["x"])
    msg = str(err.value)
    assert "constrained" in msg and "reshape(2, 80)" in msg and "('batch')" in msg


@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchscript_modules_are_refused_with_what_to_do(tmp_path, how):
    module = nn.Sequential(nn.Linear(5, 3)).eval()
    scripted = torch.jit.script(module) if how == "script" else torch.jit.trace(module, torch.randn(2, 5))
    with pytest.raises(ExportError) as err:
        rnnedge.export(scripted, torch.randn(2, 5), tmp_path / "m.onnx")
    msg = str(err.value)
    assert "TorchScript" in msg and "original nn.Module" in msg and "no nn.RNN" not in msg


def _graph_with_input_dims(dims):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)
    return helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y]))


def test_check_frozen_refuses_a_declared_axis_with_a_fixed_size():
    guards.check_frozen(_graph_with_input_dims(["batch", "seq", 5]), {"x": {0: "batch", 1: "seq"}})
    with pytest.raises(ExportError, match=r"axis 1 \('seq'\) of 'x' is fixed to 10"):
        guards.check_frozen(_graph_with_input_dims(["batch", 10, 5]), {"x": {0: "batch", 1: "seq"}})
    with pytest.raises(ExportError, match=r"of 'y' is fixed to 10"):  # an output the user labelled
        guards.check_frozen(_graph_with_input_dims(["batch", 10, 5]), {}, {"y": {1: "seq"}})


@pytest.mark.parametrize("expr, constrains", [
    ("Eq(s1, s2)", False), ("Ne(s1, 1)", False), ("s1 <= 100", False),
    ("Eq(8*s27*s77, 160)", True), ("Eq(Mod(s27, 2), 0)", True), ("s27 > s77", True), ("Eq(s27, 10)", True),
])
def test_relation_guards(expr, constrains):
    assert guards.is_relation(expr) is constrains


def test_range_metadata_round_trip():
    meta = guards.range_metadata({"seq": [1, 100], "frames": [5, None]})
    assert meta == {"rnnedge.range.frames": "5..", "rnnedge.range.seq": "1..100"}
    assert guards.parse_span(meta["rnnedge.range.seq"]) == [1, 100]
    assert guards.parse_span("5..") == [5, None]


@pytest.mark.parametrize("expr, symbol, constrains", [
    ("20*s27*(s77 - 1) + 20*Min(5, s27) <= 20*s27*(s77 - 1) + 20*s27", "s77", False),  # torch's own slice bound check
    ("s0*(s26 - 4) >= 0", "s0", False),  # frames >= 4 (a convolution): not a constraint on the batch
    ("s0*(s26 - 4) >= 0", "s26", True),
    ("Eq(8*s27*s77, 160)", "s77", True), ("Eq(8*s27*s77, 16*s77*((s27//2)))", "s27", True), ("s27 > s77", "s77", True),
    ("Eq(TruncToInt(0.5*ToFloat(s27)), 5)", "s27", True), ("Eq(Mod(s27, 2), 0)", "s27", True),
])
def test_a_guard_constrains_an_axis_only_if_it_fails_at_some_size_of_it(expr, symbol, constrains):
    hints = {"s27": 10, "s77": 2, "s0": 2, "s26": 9}  # the export example's sizes
    assert guards.constrains(expr, symbol, hints) is constrains


FACTORY = '''
from torch import nn


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(5, 8, batch_first=True)

    def forward(self, x):
        if x.shape[1] > 100:
            return self.lstm(x * 0.5)[0]
        return self.lstm(x)[0]


def make():
    return Branchy()
'''


def test_cli_joins_a_branch_by_default_and_records_a_range_with_allow_bounded_and_inspect_shows_it(tmp_path):
    from click.testing import CliRunner

    from rnnedge.cli import cli

    (tmp_path / "branchy.py").write_text(FACTORY)
    ref, out = f"{tmp_path / 'branchy.py'}:make", tmp_path / "m.onnx"
    joined = CliRunner().invoke(cli, ["export", ref, "--example", "float32[2,10,5]", "-o", str(out)])  # by default: pieces
    assert joined.exit_code == 0 and "rnnedge.range" not in json.dumps(json.loads(CliRunner().invoke(
        cli, ["inspect", str(out), "--json"]).output)), joined.output
    done = CliRunner().invoke(cli, ["export", ref, "--example", "float32[2,10,5]", "-o", str(out), "--allow-bounded", "--json"])
    assert done.exit_code == 0, done.output
    shown = CliRunner().invoke(cli, ["inspect", str(out), "--json"])
    assert shown.exit_code == 0 and '"rnnedge.range.seq": "1..100"' in shown.output


def test_torch_warnings_about_guards_pass_through_and_the_noise_does_not(caplog):
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.warn("Dim 'seq' was specialized to 10 by a guard", stacklevel=1)
        warnings.warn("torchvision is not installed", stacklevel=1)
    with caplog.at_level("WARNING", logger="rnnedge.exporting.guards"):
        guards.pass_guard_warnings(caught)
    said = [r.getMessage() for r in caplog.records]
    assert any("specialized to 10" in m for m in said) and not any("torchvision" in m for m in said)


class BranchOnValues(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(5, 8, batch_first=True)

    def forward(self, x):
        if x.sum() > 0:  # data-dependent: torch.export cannot trace it
            return self.lstm(x)[0]
        return self.lstm(-x)[0]


def test_a_torch_export_failure_names_the_users_line(tmp_path):
    with pytest.raises(ExportError, match="data-dependent") as err:
        rnnedge.export(BranchOnValues().eval(), _x(), tmp_path / "m.onnx", input_names=["x"])
    assert "test_guards.py" in str(err.value) and "if x.sum() > 0:" in str(err.value)


def test_one_size_guards_that_are_plain_bounds_are_read_as_ranges():
    from rnnedge.exporting.guards import as_bound

    assert as_bound("Eq(s27, Min(200, s27))", "s27") == [1, 200]  # x[:, :200] on a longer table: s27 <= 200
    assert as_bound("s27 <= 100", "s27") == [1, 100] and as_bound("s27 > 5", "s27") == [6, None]
    assert as_bound("Eq(Mod(s27, 2), 0)", "s27") is None  # a pattern, not a range
    assert as_bound("Eq(s27, 10)", "s27") == [10, 10] and as_bound("(s27 < 3) | (s27 > 9)", "s27") is None
    assert as_bound("s27 <= s30", "s27") is None  # two sizes: a relation


class PadToMultiple(nn.Module):
    """Pads the time axis to a multiple of 16 only when needed: torch.export keeps `Ne(Mod(T, 16), 0)`."""

    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(4, 8, batch_first=True, bidirectional=True)

    def forward(self, x):
        if x.size(1) % 16 != 0:
            x = nn.functional.pad(x, (0, 0, 0, 16 - x.size(1) % 16))
        return self.gru(x)[0].mean(1)


class FastPathAt64(nn.Module):
    """A different path at exactly one length: torch.export keeps `Ne(T, 64)`."""

    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(4, 8, batch_first=True)

    def forward(self, x):
        if x.size(1) == 64:
            return self.gru(x.flip(1))[0]
        return self.gru(x)[0]


def test_a_branch_excluding_many_sizes_is_refused(tmp_path):
    """The file would be wrong at every multiple of 16 (it was written, 'parity ok', wrong at T = 16, 32, 320)."""
    with pytest.raises(ExportError, match=r"Ne\(Mod\(s\d+, 16\), 0\)") as err:
        rnnedge.export(PadToMultiple().eval(), (torch.randn(2, 20, 4),), tmp_path / "m.onnx", input_names=["x"],
                       dynamic_axes={"x": {0: "batch", 1: "time"}})
    assert "x.size(1) % 16" in str(err.value) and not (tmp_path / "m.onnx").exists()


def test_a_branch_at_one_size_is_probed_there(tmp_path):
    """The quick check runs at the excluded size (64), even with verify=False, so the wrong file is never written."""
    with pytest.raises(ParityError, match="time 64"):
        rnnedge.export(FastPathAt64().eval(), (torch.randn(2, 20, 4),), tmp_path / "m.onnx", input_names=["x"],
                       dynamic_axes={"x": {0: "batch", 1: "time"}}, verify=False)
    assert not (tmp_path / "m.onnx").exists()


class AttentionStep(nn.Module):
    """An attention decoder's step: bmm over memory whose length and batch two inputs share (one label each)."""

    def __init__(self):
        super().__init__()
        self.cell = nn.GRUCell(8, 8)

    def forward(self, w, memory, h):
        return self.cell(torch.bmm(w.unsqueeze(1), memory).squeeze(1), h)


def test_sizes_shared_through_one_conjunction_guard_export(tmp_path):
    """torch logs `Eq(a, b) & Eq(c, d)` for a bmm's two shared sizes: what the shared labels declared (refused before)."""
    ex = (torch.softmax(torch.randn(2, 9), 1), torch.randn(2, 9, 8), torch.randn(2, 8))
    axes = {"w": {0: "batch", 1: "mem"}, "memory": {0: "batch", 1: "mem"}, "h": {0: "batch"}}
    module = AttentionStep().eval()
    rnnedge.export(module, ex, tmp_path / "m.onnx", input_names=["w", "memory", "h"], output_names=["hn"], dynamic_axes=axes)
    import onnxruntime as ort

    w, memory, h = torch.softmax(torch.randn(3, 31), 1), torch.randn(3, 31, 8), torch.randn(3, 8)
    got = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"w": w.numpy(), "memory": memory.numpy(), "h": h.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, module(w, memory, h).numpy(), rtol=0, atol=1e-5)


class Framing(nn.Module):
    """Audio framing with Tensor.unfold (frames of 64 samples, hop 32), a Linear, then a GRU."""

    def __init__(self):
        super().__init__()
        self.proj, self.gru = nn.Linear(64, 16), nn.GRU(16, 8, batch_first=True)

    def forward(self, x):  # x (B, samples)
        return self.gru(torch.relu(self.proj(x.unfold(1, 64, 32))))[0]


def test_guards_that_are_one_range_together_are_read_as_one(tmp_path):
    """unfold's guards (T >= 32; T not in 32..63; frames != 1) are no range alone, one together: with allow_bounded
    the range is recorded and the file matches torch inside it (refused outright before)."""
    import onnxruntime as ort

    module = Framing().eval()
    result = rnnedge.export(module, (torch.randn(2, 640),), tmp_path / "m.onnx", input_names=["x"],
                            dynamic_axes={"x": {0: "batch", 1: "samples"}}, allow_bounded=True)
    lo, hi = result.spec.ranges["samples"]
    assert 64 <= lo <= 96 and hi is None
    x = torch.randn(3, 1001)
    with torch.no_grad():
        np.testing.assert_allclose(ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"x": x.numpy()})[0], module(x).numpy(),
                                   rtol=0, atol=1e-5)


def test_framing_exports_by_default_valid_from_one_frame(tmp_path):
    """unfold fails under 64 samples (torch itself): that range is left out; 64..95 (one frame: torch's guards make it
    a piece of its own) and 96.. are joined; valid from 64 samples, right on both sides of the split."""
    import onnxruntime as ort

    module, path = Framing().eval(), tmp_path / "m.onnx"
    result = rnnedge.export(module, (torch.randn(2, 640),), path, input_names=["x"], dynamic_axes={"x": {0: "batch", 1: "samples"}})
    assert result.spec.ranges == {"samples": [64, None]}
    session = ort.InferenceSession(str(path))
    for samples in (64, 95, 96, 97, 1001):
        x = torch.randn(2, samples)
        with torch.no_grad():
            np.testing.assert_allclose(session.run(None, {"x": x.numpy()})[0], module(x).numpy(), rtol=0, atol=1e-5)
