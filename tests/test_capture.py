"""rnnedge.exporting capture: strategies tried in turn, what a module returns as it is, guards on values from data.

- Capture strategies (rnnedge.exporting.strategies): torch.export, torch.export strict, TorchScript, in turn; the
  result says which made the file and why the others did not. A module that computes a size or a branch from a
  tensor's values (planted: an RL policy's episode-start branch, a forecaster's horizon, a denoiser's frame count)
  is never written with that value frozen: refused by TorchScript's tracer warnings, and by the quick check.
- Batch or seq specialised by a cache, a table made in advance: a lazily sized cache no longer freezes the batch
  (export leaves the module as given), a state of another batch is refused as a specialisation, a table's refusal
  names the way out and fix_dims takes it.

- A parameter returned as an output (a CRF tagger's transition matrix) or an input handed back is exported (an
  Identity node makes the output), with rnnedge's names or the user's: it was refused with "Graph output 'output_1' is
  not an output of any node".
- A guard relating a value read from data (torch's unbacked u0) to a size (`u0 <= s20`, from `y[:, t_offset:]`) holds
  at every size for some value: no bound, so the module exports (it was refused as "seq constrained to u0 <= s20").
"""

from __future__ import annotations

import json

import onnx
import pytest
import torch
from onnx import TensorProto, helper

import rnnedge
from rnnedge.errors import BadInputError, ExportError, ParityError
from rnnedge.exporting import fixups, strategies
from rnnedge.exporting.guard_sizes import constrains
from tests.capture_modules import (
    CachedStatePolicy,
    ClampedTagger,
    CrfTagger,
    EchoLengths,
    EpisodeStartPolicy,
    HopDenoiser,
    HorizonForecaster,
    LeftPaddedForecaster,
    PositionTable,
    SpectralDenoiser,
    independent_error,
    left_mask,
)


@pytest.mark.parametrize("output_names", [None, ["emissions", "transitions"]])
def test_a_returned_parameter_exports_under_its_name(tmp_path, output_names):
    torch.manual_seed(0)
    module = CrfTagger().eval()
    words, chars = torch.randint(0, 50, (2, 7)), torch.randint(0, 30, (2, 7, 5))
    path = tmp_path / "crf.onnx"
    result = rnnedge.export(module, (words, chars), path, input_names=["words", "chars"], output_names=output_names,
                            dynamic_axes={"words": {0: "batch", 1: "seq"}, "chars": {0: "batch", 1: "seq", 2: "word_len"}})
    assert result.outputs == (output_names or ["output_0", "output_1"])
    for batch, seq, length in [(1, 1, 1), (3, 301, 4)]:
        feeds = {"words": torch.randint(0, 50, (batch, seq)), "chars": torch.randint(0, 30, (batch, seq, length))}
        errors = independent_error(module, path, feeds)
        assert errors[0] < 1e-4 and errors[1] == 0.0  # the transition matrix comes back exactly


def test_an_input_handed_back_keeps_its_input_name(tmp_path):
    module = EchoLengths().eval()
    path = tmp_path / "echo.onnx"
    rnnedge.export(module, (torch.randn(2, 6, 5), torch.tensor([6, 3])), path, input_names=["x", "lengths"])
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ["x", "lengths"]
    errors = independent_error(module, path, {"x": torch.randn(3, 300, 5), "lengths": torch.tensor([300, 7, 1])})
    assert errors[0] < 1e-4 and errors[1] == 0


def test_outputs_from_nodes_gives_initializer_and_input_outputs_a_node():
    """The repair alone: an initializer output keeps its name (the value moves), an input output gets its own name."""
    init = helper.make_tensor("w", TensorProto.FLOAT, [2], [1.0, 2.0])
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2]) for n in ("y", "w", "x")], [init])
    notes = fixups.outputs_from_nodes(graph)
    assert len(notes) == 2
    assert [o.name for o in graph.output] == ["y", "w", "x_out"]
    assert graph.initializer[0].name == "w_value" and list(graph.node[0].input) == ["x", "w_value"]
    onnx.checker.check_model(helper.make_model(graph))


def test_a_slice_start_read_from_data_is_no_bound(tmp_path):
    torch.manual_seed(0)
    module = LeftPaddedForecaster().eval()
    path = tmp_path / "left.onnx"
    result = rnnedge.export(module, (torch.randn(2, 10, 3), left_mask(2, 10)), path, input_names=["x", "mask"],
                            dynamic_axes={"x": {0: "batch", 1: "seq"}, "mask": {0: "batch", 1: "seq"}})
    assert not result.spec.ranges
    # non-strict torch.export cannot take int() of `T - u0`; dynamo (strict) can: the second strategy makes the file
    assert result.strategy == "torch.export strict" and "specialized integer" in result.attempts[0].reason
    for batch, seq in [(1, 1), (3, 7), (2, 300)]:
        assert max(independent_error(module, path, {"x": torch.randn(batch, seq, 3), "mask": left_mask(batch, seq, seq)})) < 1e-4


def test_only_values_from_data_are_read_as_existing():
    assert not constrains("u0 <= s20", "s20", {})  # some data value fits every size
    assert not constrains("Eq(u0, s20 - 1)", "s20", {})
    assert constrains("s23 <= s20", "s20", {})  # a size is no data value: still a relation between sizes
    assert constrains("s20 <= 100", "s20", {})


# ------------------------------------------------------------------------------------------- capture strategies

PLANTED = {  # module, example inputs, input names, dynamic axes: each computes a size or a branch from a tensor's values
    "episode-start policy": (EpisodeStartPolicy, lambda: (torch.randn(2, 6, 4), torch.zeros(2, 6)), ["obs", "episode_starts"],
                             {"obs": {0: "batch", 1: "seq"}, "episode_starts": {0: "batch", 1: "seq"}}),
    "horizon forecaster": (HorizonForecaster, lambda: (torch.randn(2, 6, 3), torch.tensor(4)), ["history", "horizon"],
                           {"history": {0: "batch", 1: "seq"}}),
    "hop denoiser": (HopDenoiser, lambda: (torch.randn(2, 40),), ["wav"], {"wav": {0: "batch", 1: "samples"}}),
}


def _export_planted(name, path):
    make, examples, names, axes = PLANTED[name]
    torch.manual_seed(0)
    return rnnedge.export(make().eval(), examples(), path, input_names=names, dynamic_axes=axes)


@pytest.mark.parametrize("name", PLANTED)
def test_a_value_read_from_data_is_never_frozen_into_a_file(tmp_path, name):
    """Every strategy is tried and says why not; TorchScript's tracer froze the value at the user's line: refused."""
    path = tmp_path / "planted.onnx"
    with pytest.raises(ExportError) as refused:
        _export_planted(name, path)
    said = str(refused.value)
    assert "torch.export strict:" in said and "torchscript: the tracer froze a value computed from a tensor at" in said
    assert "capture_modules.py:" in said  # the user's line
    assert not path.exists()


def test_a_frozen_value_fails_the_quick_check_too(tmp_path, monkeypatch):
    """The second line of defence: with the tracer's warnings ignored, TorchScript's frozen frame count (10 frames of
    the 40-sample example) makes a candidate the quick check rejects at other sizes: no file."""
    monkeypatch.setattr(strategies, "frozen_values", lambda caught: [])
    monkeypatch.setattr(strategies, "STRATEGIES", (strategies.TorchScript(),))
    path = tmp_path / "frozen.onnx"
    with pytest.raises(ParityError) as failed:
        _export_planted("hop denoiser", path)
    assert "torchscript: its file failed the quick check" in str(failed.value) or "differs from torch" in str(failed.value)
    assert not path.exists()


class _Fails(strategies.Strategy):
    name = "planted failure"

    def capture(self, job):
        raise strategies.CaptureFailed("planted: torch.export cannot take this module")


def test_the_next_strategy_makes_the_file_and_says_why(tmp_path, monkeypatch):
    """When torch.export fails, TorchScript's standard recurrent operators get rnnedge's lowering, names, metadata and
    check: a biLSTM-CRF tagger with character embeddings comes out right at unseen sizes, seq 1 and 300."""
    monkeypatch.setattr(strategies, "STRATEGIES", (_Fails(), strategies.TorchScript()))
    torch.manual_seed(0)
    module = CrfTagger().eval()
    path = tmp_path / "ts.onnx"
    result = rnnedge.export(module, (torch.randint(0, 50, (2, 7)), torch.randint(0, 30, (2, 7, 5))), path,
                            input_names=["words", "chars"], output_names=["emissions", "transitions"],
                            dynamic_axes={"words": {0: "batch", 1: "seq"}, "chars": {0: "batch", 1: "seq", 2: "word_len"}})
    assert result.strategy == "torchscript"
    assert [a.strategy for a in result.attempts] == ["planted failure", "torchscript"]
    assert "planted" in result.attempts[0].reason and result.to_dict()["strategy"] == "torchscript"
    model = onnx.load(str(path))
    assert {p.key for p in model.metadata_props} >= {"rnnedge.spec", "rnnedge.lowering"}
    assert [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim] == ["batch", "seq"]
    for batch, seq, length in [(1, 1, 1), (3, 300, 4)]:
        feeds = {"words": torch.randint(0, 50, (batch, seq)), "chars": torch.randint(0, 30, (batch, seq, length))}
        errors = independent_error(module, path, feeds)
        assert errors[0] < 1e-4 and errors[1] == 0.0


def test_torchscript_files_take_rnnedges_scan_lowering(tmp_path, monkeypatch):
    """A sequence-major two-layer bidirectional GRU through TorchScript, lowered to Scan as asked."""
    from tests.user_modules import SeqMajorTagger

    monkeypatch.setattr(strategies, "STRATEGIES", (_Fails(), strategies.TorchScript()))
    torch.manual_seed(0)
    module = SeqMajorTagger(cell=torch.nn.GRU).eval()
    path = tmp_path / "scan.onnx"
    result = rnnedge.export(module, (torch.randn(7, 2, 6),), path, input_names=["x"], lowering="scan",
                            dynamic_axes={"x": {0: "seq", 1: "batch"}})
    assert result.strategy == "torchscript" and result.lowering == "scan"
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "Scan" in ops and "GRU" not in ops
    for seq, batch in [(1, 1), (300, 3)]:
        assert max(independent_error(module, path, {"x": torch.randn(seq, batch, 6)})) < 1e-4


def test_the_cli_says_which_strategy_made_the_file(tmp_path):
    from click.testing import CliRunner

    from rnnedge.cli import cli

    source = tmp_path / "m.py"
    source.write_text("import torch\n\n\ndef make():\n    return torch.nn.GRU(5, 8, batch_first=True)\n")
    done = CliRunner().invoke(cli, ["export", f"{source}:make", "--example", "float32[2,6,5]", "-o", str(tmp_path / "m.onnx"), "--json"])
    assert done.exit_code == 0, done.output
    data = json.loads(done.output[done.output.index("{"):])
    assert data["strategy"] == "torch.export" and data["attempts"][0].startswith("torch.export: ok")


# ------------------------------------------------------------------------------------------- specialised batch / seq

POLICY_AXES = {"obs": {0: "batch", 1: "seq"}, "episode_starts": {0: "batch", 1: "seq"}}


def test_a_lazily_sized_cache_is_left_empty_and_the_batch_stays_dynamic(tmp_path):
    """export's own calls (the eager run, the traces, the checks) used to leave the cache filled at the example's
    batch, which froze it; now the module comes back as given and the file is right at other batches."""
    torch.manual_seed(0)
    module = CachedStatePolicy().eval()
    path = tmp_path / "policy.onnx"
    rnnedge.export(module, (torch.randn(2, 10, 4), torch.zeros(2, 10)), path, dynamic_axes=POLICY_AXES)
    assert module.hidden is None
    for batch, seq in [(1, 1), (3, 300)]:
        module.hidden = None
        feeds = {"obs": torch.randn(batch, seq, 4), "episode_starts": (torch.rand(batch, seq) < 0.1).float()}
        assert max(independent_error(module, path, feeds)) < 1e-4


def test_a_state_of_another_batch_is_a_specialisation(tmp_path):
    """A cache filled before export holds batch 2: the recurrent op ties the batch to it, and the refusal names the line
    and the ways out (the file had batch symbolic and a constant state of batch 2: onnxruntime failed at batch 1)."""
    module = CachedStatePolicy().eval()
    module.hidden = torch.zeros(1, 2, 8)
    path = tmp_path / "filled.onnx"
    with pytest.raises(ExportError) as refused:
        rnnedge.export(module, (torch.randn(2, 10, 4), torch.zeros(2, 10)), path, dynamic_axes=POLICY_AXES)
    said = str(refused.value)
    assert "('batch')" in said and "specialised to 2" in said and "self.rnn(" in said and "--fix-dim" in said
    assert not path.exists()


def test_a_table_made_in_advance_names_the_way_out_and_fix_dim_takes_it(tmp_path):
    torch.manual_seed(0)
    module = PositionTable().eval()
    with pytest.raises(ExportError, match=r"specialised to 10.*positional table.*--fix-dim"):
        rnnedge.export(module, (torch.randn(2, 10, 4),), tmp_path / "table.onnx")
    path = tmp_path / "fixed.onnx"
    result = rnnedge.export(module, (torch.randn(2, 10, 4),), path, fix_dims={"seq": 10})
    assert result.spec.fixed == {"seq": 10}
    assert max(independent_error(module, path, {result.inputs[0]: torch.randn(3, 10, 4)})) < 1e-4


def test_a_padded_complex_spectrum_exports(tmp_path):
    """aten.pad of a complex tensor (torchlib has no translation) pads the real view; stft's own lower bound
    (samples >= 9 for n_fft 16: torch.stft fails below) is recorded by default and enforced by rnnedge.runtime."""
    from rnnedge.runtime import Session

    torch.manual_seed(0)
    module = SpectralDenoiser().eval()
    path = tmp_path / "spectral.onnx"
    result = rnnedge.export(module, (torch.randn(2, 64),), path, input_names=["wav"], dynamic_axes={"wav": {0: "batch", 1: "samples"}})
    assert result.strategy == "torch.export" and result.spec.ranges == {"samples": [9, None]}
    for batch, samples in [(1, 9), (3, 1203)]:
        assert max(independent_error(module, path, {"wav": torch.randn(batch, samples)})) < 1e-4
    with pytest.raises(BadInputError, match="only valid for samples in 9.."):
        Session(path).run(torch.randn(1, 8).numpy())


def test_clamps_with_tensor_bounds_translate(tmp_path):
    torch.manual_seed(0)
    module = ClampedTagger().eval()
    path = tmp_path / "clamped.onnx"
    result = rnnedge.export(module, (torch.randn(2, 6, 5), torch.tensor([6, 4])), path, input_names=["x", "lengths"])
    assert result.strategy == "torch.export"
    for batch, seq in [(1, 1), (3, 300)]:
        feeds = {"x": torch.randn(batch, seq, 5), "lengths": torch.randint(1, seq + 1, (batch,))}
        assert max(independent_error(module, path, feeds)) < 1e-4
