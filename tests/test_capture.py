"""rnnedge.exporting capture: what a module returns as it is, and guards on values read from data.

- A parameter returned as an output (a CRF tagger's transition matrix) or an input handed back is exported (an
  Identity node makes the output), with rnnedge's names or the user's: it was refused with "Graph output 'output_1' is
  not an output of any node".
- A guard relating a value read from data (torch's unbacked u0) to a size (`u0 <= s20`, from `y[:, t_offset:]`) holds
  at every size for some value: no bound, so the module exports (it was refused as "seq constrained to u0 <= s20").
"""

from __future__ import annotations

import onnx
import pytest
import torch
from onnx import TensorProto, helper

import rnnedge
from rnnedge.exporting import fixups
from rnnedge.exporting.guard_sizes import _constrains
from tests.capture_modules import CrfTagger, EchoLengths, LeftPaddedForecaster, independent_error, left_mask


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
    for batch, seq in [(1, 1), (3, 7), (2, 300)]:
        assert max(independent_error(module, path, {"x": torch.randn(batch, seq, 3), "mask": left_mask(batch, seq, seq)})) < 1e-4


def test_only_values_from_data_are_read_as_existing():
    assert not _constrains("u0 <= s20", "s20", {})  # some data value fits every size
    assert not _constrains("Eq(u0, s20 - 1)", "s20", {})
    assert _constrains("s23 <= s20", "s20", {})  # a size is no data value: still a relation between sizes
    assert _constrains("s20 <= 100", "s20", {})
