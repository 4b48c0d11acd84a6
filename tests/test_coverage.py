"""Issue 11 patterns, each with a module written the way user code is written and an independent check
(tests/coverage_check.py): packed batches (every option of pack/pad), integer dtypes kept, state built in
forward, views of a recurrent output, tied axes and check inputs, torch.onnx quirks repaired, pinned dims."""

from __future__ import annotations

import inspect
import itertools
import json
import logging
import random

import numpy as np
import onnx
import pytest
import torch
from coverage_check import assert_symbolic, dims, max_error_vs_torch, seed_of, session
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnedge
from rnnedge.errors import BadInputError, ExportError
from rnnedge.spec import IOSpec, TensorSpec, parse_tie

# --- 1. modules that pack their own batch -----------------------------------------------------------------------


class SelfPacking(nn.Module):
    def __init__(self, cell, batch_first, enforce_sorted, total_length, with_h0):
        super().__init__()
        self.rnn = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell](4, 6, num_layers=2, bidirectional=True, batch_first=batch_first)
        self.cell, self.batch_first, self.enforce_sorted = cell, batch_first, enforce_sorted
        self.total_length, self.with_h0 = total_length, with_h0

    def forward(self, x, lengths, *state):
        packed = pack_padded_sequence(x, lengths, batch_first=self.batch_first, enforce_sorted=self.enforce_sorted)
        hx = (tuple(state) if self.cell == "lstm" else state[0]) if self.with_h0 else None
        out, hn = self.rnn(packed, hx)
        total = x.size(1 if self.batch_first else 0) if self.total_length else None
        out, out_lengths = pad_packed_sequence(out, batch_first=self.batch_first, total_length=total)
        return (out, out_lengths, *(hn if self.cell == "lstm" else (hn,)))


PACKED = list(itertools.product(["lstm", "gru", "rnn"], [True, False], [True, False], [True, False], [True, False], ["int32", "int64"]))
PACKED_SAMPLE = sorted(random.Random(seed_of("packed-options")).sample(PACKED, 6))


def _packed_inputs(params, batch, seq, longest):
    cell, batch_first, enforce_sorted, _, with_h0, dtype = params
    gen = torch.Generator().manual_seed(seed_of(f"{batch}-{seq}-{longest}"))
    lengths = torch.randint(1, longest + 1, (batch,), generator=gen)
    lengths[batch // 2] = longest
    if enforce_sorted:
        lengths = lengths.sort(descending=True).values
    x = torch.randn(batch, seq, 4, generator=gen) if batch_first else torch.randn(seq, batch, 4, generator=gen)
    args = [x, lengths.to(getattr(torch, dtype))]
    if with_h0:
        args += [torch.randn(4, batch, 6, generator=gen) for _ in range(2 if cell == "lstm" else 1)]
    return tuple(args)


def _check_packed(params, tmp_path, shapes):
    torch.manual_seed(seed_of(str(params)))
    cell, batch_first, enforce_sorted, total_length, with_h0, dtype = params
    module = SelfPacking(cell, batch_first, enforce_sorted, total_length, with_h0).eval()
    names = ["x", "lengths"] + (["h0", "c0"][: 2 if cell == "lstm" else 1] if with_h0 else [])
    x_axes = {0: "batch", 1: "seq"} if batch_first else {0: "seq", 1: "batch"}
    axes = {"x": x_axes, "lengths": {0: "batch"}, "h0": {1: "batch"}, "c0": {1: "batch"}}
    path = tmp_path / "p.onnx"
    result = rnnedge.export(module, _packed_inputs(params, 3, 8, 8), path, input_names=names, dynamic_axes={n: axes[n] for n in names})
    assert result.parity  # rnnedge's own quick check, in the lengths' own dtype
    assert result.spec.input("lengths").descending == enforce_sorted  # its checks feed sorted lengths where torch needs them
    assert_symbolic(path, {n: list(axes[n]) for n in names}, {0: [0, 1], 1: [0]})
    sess = session(path)
    for batch, seq, longest in shapes:
        assert max_error_vs_torch(module, path, _packed_inputs(params, batch, seq, longest), sess) < 1e-4, (params, batch, seq)


def _pid(p):
    return "-".join(str(v) if not isinstance(v, bool) else str(int(v)) for v in p)


@pytest.mark.parametrize("params", PACKED_SAMPLE, ids=_pid)
def test_module_packing_its_own_batch_matches_torch(params, tmp_path):
    _check_packed(params, tmp_path, [(1, 1, 1), (5, 17, 11), (2, 300, 300)])


@pytest.mark.slow
@pytest.mark.parametrize("params", PACKED, ids=_pid)
def test_module_packing_its_own_batch_matches_torch_all_options(params, tmp_path):
    _check_packed(params, tmp_path, [(1, 1, 1), (5, 17, 11), (4, 9, 9), (2, 300, 300)])


def test_packed_sample_covers_every_option():
    for i in range(len(PACKED[0])):
        assert {p[i] for p in PACKED_SAMPLE} == {p[i] for p in PACKED}


def test_packing_patch_is_gone_after_export(tmp_path):
    """Eager pack/pad behave as torch's own again once the export is over (also after a failed one)."""
    module = SelfPacking("gru", True, False, True, False).eval()
    rnnedge.export(module, _packed_inputs(("gru", True, False, True, False, "int64"), 3, 6, 6), tmp_path / "a.onnx",
                   input_names=["x", "lengths"], verify=False)
    packed = pack_padded_sequence(torch.randn(2, 5, 4), torch.tensor([5, 2]), batch_first=True)
    assert packed.data.shape == (7, 4) and packed.batch_sizes.tolist() == [2, 2, 1, 1, 1]


def test_hand_made_packed_sequence_is_refused_by_rnnedge_not_blamed_on_torch(tmp_path):
    class HandPacked(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.GRU(4, 6)

        def forward(self, data, batch_sizes):
            out, _ = self.rnn(nn.utils.rnn.PackedSequence(data, batch_sizes))
            return out.data

    with pytest.raises(ExportError) as info:
        rnnedge.export(HandPacked(), (torch.randn(5, 4), torch.tensor([2, 2, 1])), tmp_path / "h.onnx", verify=False)
    assert "torch.onnx could not export" not in str(info.value)
    assert "PackedSequence" in str(info.value)


# --- 3. state built inside forward, 4. views of the recurrent output ---------------------------------------------


class StateInForward(nn.Module):
    def __init__(self, how):
        super().__init__()
        self.how, self.layers, self.hidden = how, 2, 8
        self.lstm = nn.LSTM(5, 8, num_layers=2, batch_first=how != "ones-seq-major")
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        if self.how == "torch.zeros":
            h0 = torch.zeros(self.layers, x.size(0), self.hidden)
            c0 = torch.zeros(self.layers, x.size(0), self.hidden)
        elif self.how == "new_zeros":
            h0 = x.new_zeros(self.layers, x.shape[0], self.hidden)
            c0 = x.new_zeros((self.layers, x.shape[0], self.hidden))
        else:  # sequence-major input: batch is axis 1
            h0 = torch.ones(self.layers, x.size(1), self.hidden) * 0.1
            c0 = torch.ones(self.layers, x.size(1), self.hidden, dtype=x.dtype)
        y, (hn, _) = self.lstm(x, (h0, c0))
        return self.head(y), hn[-1]


@pytest.mark.parametrize("how", ["torch.zeros", "new_zeros", "ones-seq-major"])
def test_state_built_in_forward_keeps_batch_symbolic(how, tmp_path):
    torch.manual_seed(0)
    module = StateInForward(how).eval()
    bf = how != "ones-seq-major"
    make = (lambda b, t: torch.randn(b, t, 5)) if bf else (lambda b, t: torch.randn(t, b, 5))
    axes = {"x": {0: "batch", 1: "seq"} if bf else {0: "seq", 1: "batch"}}
    result = rnnedge.export(module, (make(2, 6),), tmp_path / "s.onnx", input_names=["x"], dynamic_axes=axes)
    assert result.parity
    assert_symbolic(tmp_path / "s.onnx", {"x": [0, 1]}, {0: [0, 1], 1: [0]})
    for b, t in [(1, 1), (4, 13), (3, 300)]:
        assert max_error_vs_torch(module, tmp_path / "s.onnx", (make(b, t),)) < 1e-4


class ViewAfterLayer(nn.Module):
    def __init__(self, how):
        super().__init__()
        self.how = how
        self.rnn = nn.GRU(5, 8, num_layers=2)  # sequence-major, like most older code
        self.out = nn.Linear(8, 4)

    def forward(self, x):
        y, _ = self.rnn(x)  # (T, B, 8)
        if self.how == "view":
            flat = y.view(-1, 8)
        elif self.how == "view-sizes":
            flat = y.view(y.size(0) * y.size(1), y.size(2))
        elif self.how == "reshape":
            flat = y.reshape(-1, y.shape[-1])
        else:
            flat = y.flatten(0, 1)
        return self.out(flat).view(y.size(0), y.size(1), -1)


@pytest.mark.parametrize("how", ["view", "view-sizes", "reshape", "flatten"])
def test_view_of_sequence_major_output(how, tmp_path):
    torch.manual_seed(1)
    module = ViewAfterLayer(how).eval()
    path = tmp_path / "v.onnx"
    rnnedge.export(module, (torch.randn(7, 3, 5),), path, input_names=["x"], dynamic_axes={"x": {0: "seq", 1: "batch"}})
    assert_symbolic(path, {"x": [0, 1]}, {0: [0, 1]})
    for b, t in [(1, 1), (5, 9), (2, 310)]:
        assert max_error_vs_torch(module, path, (torch.randn(t, b, 5),)) < 1e-4


# --- 5. tied axes, check inputs ------------------------------------------------------------------------------------


class Vocoder(nn.Module):
    """mel [B, T, 16] and samples [B, (T - 4) * 32] tied to it."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(16, 8, kernel_size=5)
        self.rnn = nn.GRU(8, 8, batch_first=True)
        self.up = nn.Linear(8, 32)

    def forward(self, mel, samples):
        z = self.conv(mel.transpose(1, 2)).transpose(1, 2)  # (B, T-4, 8)
        y, _ = self.rnn(z)
        return self.up(y).flatten(1) + samples  # (B, (T-4)*32)


def _vocoder_inputs(b, t):
    return torch.randn(b, t, 16), torch.randn(b, (t - 4) * 32)


VOC_AXES = {"mel": {0: "batch", 1: "frames"}, "samples": {0: "batch", 1: "samples"}}


def test_tied_axes_export_record_the_tie_and_check_at_valid_sizes(tmp_path, caplog):
    torch.manual_seed(2)
    module = Vocoder().eval()
    path = tmp_path / "voc.onnx"
    result = rnnedge.export(module, _vocoder_inputs(2, 9), path, input_names=["mel", "samples"], dynamic_axes=VOC_AXES,
                            tied_axes={"samples": "(frames - 4) * 32"})
    assert result.parity
    assert result.spec.ties == {"samples": {"of": "frames", "scale": 32, "offset": -128}}
    assert_symbolic(path, {"mel": [0, 1], "samples": [0, 1]}, {0: [0, 1]})
    stored = IOSpec.from_json(next(p.value for p in onnx.load(str(path)).metadata_props if p.key == "rnnedge.spec"))
    sizes = stored.sizes_for(3, 20)
    assert sizes == {"batch": 3, "frames": 20, "samples": 512} and stored.valid(sizes)
    assert stored.sizes_for(1, 1)["samples"] >= 1  # the root is raised until the tie gives a real size
    feeds = stored.make_inputs(stored.sizes_for(2, 11))
    assert feeds["samples"].shape == (2, 224)
    for b, t in [(1, 5), (4, 17), (2, 304)]:
        assert max_error_vs_torch(module, path, _vocoder_inputs(b, t)) < 1e-4


def test_check_inputs_are_what_the_quick_check_runs(tmp_path):
    module = Vocoder().eval()
    checks = [_vocoder_inputs(1, 6), _vocoder_inputs(3, 40)]
    result = rnnedge.export(module, _vocoder_inputs(2, 9), tmp_path / "voc.onnx", input_names=["mel", "samples"],
                            dynamic_axes=VOC_AXES, tied_axes={"samples": "(frames - 4) * 32"}, check_inputs=checks)
    assert result.spec.checks == [{"batch": 1, "frames": 6, "samples": 64}, {"batch": 3, "frames": 40, "samples": 1152}]
    cases = [c.case for c in result.parity.cases]
    assert len(cases) == 2 and "frames 6" in cases[0] and "frames 40" in cases[1]  # exactly the check inputs, named by their shapes


def test_check_inputs_of_the_wrong_rank_are_refused_naming_the_shapes(tmp_path):
    with pytest.raises(BadInputError, match=r"check input 0, 'mel'.*rank 2"):
        rnnedge.export(Vocoder(), _vocoder_inputs(2, 9), tmp_path / "v.onnx", input_names=["mel", "samples"], dynamic_axes=VOC_AXES,
                       check_inputs=[(torch.randn(6, 16), torch.randn(1, 64))])


@pytest.mark.parametrize("text, tie", [
    ("(frames - 4) * 256", {"of": "frames", "scale": 256, "offset": -1024}),
    ("2*seq + 1", {"of": "seq", "scale": 2, "offset": 1}),
    ("frames", {"of": "frames", "scale": 1, "offset": 0}),
    ([40, 10, 20], {"sizes": [10, 20, 40]}),
])
def test_parse_tie(text, tie):
    assert parse_tie("x", text) == tie


@pytest.mark.parametrize("bad", ["frames * seq", "frames / 2", "__import__('os')", "x + 1", "7", []])
def test_parse_tie_refuses_what_is_not_an_affine_tie(bad):
    with pytest.raises(ValueError):
        parse_tie("x", bad)


def test_spec_written_before_ties_still_loads_and_sizes_for_works():
    old = ('{"atol": 0.0001, "axes": ["batch", "seq"], "inputs": [{"dtype": "float32", "name": "x", "role": "features", '
           '"shape": ["batch", "seq", 5], "vocab": null}, {"dtype": "int64", "name": "lengths", "role": "lengths", '
           '"shape": ["batch"], "vocab": null}], "outputs": ["logits"], "rtol": 0.0001}')
    spec = IOSpec.from_json(old)
    assert spec.ties == {} and spec.fixed == {} and spec.time_axis == "seq"
    feeds = spec.make_inputs(spec.sizes_for(3, 7))
    assert feeds["x"].shape == (3, 7, 5) and feeds["lengths"].dtype == np.int64 and feeds["lengths"].max() <= 7


def test_listed_sizes_snap_to_a_valid_one():
    spec = IOSpec([TensorSpec("x", "float32", ["batch", "frames", 4])], [], axes=["batch", "frames"],
                  ties={"frames": {"sizes": [8, 16, 32]}})
    assert spec.sizes_for(2, 13) == {"batch": 2, "frames": 16} and not spec.valid({"batch": 2, "frames": 13})


# --- 6. torch.onnx quirks that are no-ops in torch -----------------------------------------------------------------


class SqueezeNoOp(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(16, 8, batch_first=True)

    def forward(self, x):  # (B, 16, T): squeeze(1) changes nothing in torch
        y, _ = self.rnn(x.squeeze(1).transpose(1, 2))
        return y


def test_squeeze_of_a_non_1_axis_is_repaired_and_logged(tmp_path, caplog):
    torch.manual_seed(3)
    module = SqueezeNoOp().eval()
    path = tmp_path / "sq.onnx"
    with caplog.at_level(logging.INFO, logger="rnnedge.exporting.fixups"):
        rnnedge.export(module, (torch.randn(2, 16, 7),), path, input_names=["x"], dynamic_axes={"x": {0: "batch", 2: "seq"}})
    assert any("Squeeze" in r.getMessage() and "no-op" in r.getMessage() for r in caplog.records)
    assert "Squeeze" not in {n.op_type for n in onnx.load(str(path)).graph.node}
    for b, t in [(1, 1), (3, 21), (2, 300)]:
        assert max_error_vs_torch(module, path, (torch.randn(b, 16, t),)) < 1e-4


class SqueezeOfTime(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(4, 6, batch_first=True)

    def forward(self, x):
        y, _ = self.rnn(x)
        return y.squeeze(1)  # drops the time axis only when seq == 1


def test_squeeze_of_a_dynamic_axis_is_refused_naming_it(tmp_path):
    with pytest.raises(ExportError, match=r"squeeze\(\) of the dynamic axis 'seq'") as info:
        rnnedge.export(SqueezeOfTime(), (torch.randn(2, 5, 4),), tmp_path / "t.onnx", input_names=["x"], dynamic_axes={"x": {0: "batch", 1: "seq"}})
    assert "torch.onnx could not export" not in str(info.value)


# --- 7. pinned dims -----------------------------------------------------------------------------------------------


def test_fix_dims_pins_an_axis_in_the_file_the_metadata_and_the_spec(tmp_path):
    torch.manual_seed(4)
    module = StateInForward("torch.zeros").eval()
    path = tmp_path / "b1.onnx"
    result = rnnedge.export(module, (torch.randn(3, 6, 5),), path, input_names=["x"], dynamic_axes={"x": {0: "batch", 1: "seq"}},
                            fix_dims={"batch": 1})
    ins, outs = dims(path)
    assert ins["x"] == [1, "seq", 5] and all(shape[0] == 1 for shape in outs.values())
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(meta["rnnedge.fixed_dims"]) == {"batch": 1} and result.spec.fixed == {"batch": 1}
    for t in (1, 40, 300):
        assert max_error_vs_torch(module, path, (torch.randn(1, t, 5),)) < 1e-4


def test_fix_dims_naming_an_unknown_axis_is_bad_input(tmp_path):
    with pytest.raises(BadInputError, match="no input has"):
        rnnedge.export(StateInForward("torch.zeros"), (torch.randn(3, 6, 5),), tmp_path / "x.onnx", input_names=["x"],
                       dynamic_axes={"x": {0: "batch", 1: "seq"}}, fix_dims={"time": 1})


def test_cli_export_takes_ties_check_inputs_and_pinned_dims(runner, tmp_path):
    from rnnedge.cli import cli

    source = tmp_path / "voc.py"
    source.write_text("import torch\nfrom torch import nn\n\n\n" + inspect.getsource(Vocoder)
                      + "\n\ndef make():\n    torch.manual_seed(0)\n    return Vocoder()\n")  # the same weights on every load
    mel, samples = _vocoder_inputs(1, 12)
    np.savez(tmp_path / "check.npz", mel=mel.numpy(), samples=samples.numpy())
    out = tmp_path / "voc.onnx"
    result = runner.invoke(cli, ["export", f"{source}:make", "--example", "float32[2,9,16]", "--example", "float32[2,160]",
                                 "--input-name", "mel", "--input-name", "samples", "--tie", "samples=(frames - 4) * 32",
                                 "-o", str(out), "--json"])
    assert result.exit_code == 2 and "'samples'" in result.output  # a tie must name axis labels the module has
    axes = ["--axis", "mel:0=batch", "--axis", "mel:1=frames", "--axis", "samples:0=batch", "--axis", "samples:1=samples"]
    result = runner.invoke(cli, ["export", f"{source}:make", "--example", "float32[2,9,16]", "--example", "float32[2,160]",
                                 "--input-name", "mel", "--input-name", "samples", *axes, "--tie", "samples=(frames - 4) * 32",
                                 "--check-input", str(tmp_path / "check.npz"), "--fix-dim", "batch=1", "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["parity"]["cases"] == 1 and "frames 12" in data["parity"]["results"][0]["case"]
    ins, _ = dims(out)
    assert ins["mel"][0] == 1 and ins["samples"][0] == 1
    assert max_error_vs_torch(_load_factory(source), out, _vocoder_inputs(1, 30)) < 1e-4


def _load_factory(source):
    from rnnedge.exporting.usermodule import load_factory

    return load_factory(f"{source}:make").eval()


@pytest.mark.parametrize("training", [False, True])
def test_nested_inputs_leave_the_module_in_its_mode(training, tmp_path):
    module = nn.Sequential(nn.LSTM(4, 6, num_layers=2, dropout=0.2)).train(training)[0]  # a bare layer called as lstm(x, (h0, c0))
    args = (torch.randn(5, 3, 4), (torch.randn(2, 3, 6), torch.randn(2, 3, 6)))
    rnnedge.export(module, args, tmp_path / "n.onnx", input_names=["x", "h0", "c0"], verify=False)
    assert module.training == training
    module.eval()
    assert max_error_vs_torch(module, tmp_path / "n.onnx", (torch.randn(9, 2, 4), (torch.randn(2, 2, 6), torch.randn(2, 2, 6)))) < 1e-4
    assert rnnedge.verify(module, tmp_path / "n.onnx")  # verify feeds the flat inputs to the user's nested call


def test_float64_module_is_refused_up_front_with_what_to_do(tmp_path):
    module = nn.LSTM(4, 8, batch_first=True, bidirectional=True).double()
    with pytest.raises(ExportError, match=r"float64.*module.float\(\)"):
        rnnedge.export(module, (torch.randn(2, 9, 4, dtype=torch.float64),), tmp_path / "d.onnx", verify=False)
