"""`rnnedge export FILE.py:FACTORY`: the user's code failing (raising, SyntaxError, a missing import, SystemExit),
examples the module cannot take, and sizes that do not fit in memory are the user's errors: exit 2 and one line."""

from __future__ import annotations

import textwrap

import pytest

from rnnedge.cli import cli

MODULE = """
import torch


class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = torch.nn.GRU(5, 8, batch_first=True)
        self.fc = torch.nn.Linear(8, 3)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.fc(y[:, -1])


def make_model():
    return M()


def boom():
    raise RuntimeError("boom")


def needs(size):
    return M()


def leave():
    raise SystemExit(0)
"""


def _one_error_line(result, *parts: str) -> str:
    """stderr is exactly one 'error:' line containing `parts`, and nothing reached stdout."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.output + result.stderr, result.stderr
    assert "internal error" not in lines[0] and not result.stdout.strip()
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


def _write(folder, name: str, text: str) -> str:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def _export(runner, ref: str, out, example: str = "float32[1,10,5]"):
    return runner.invoke(cli, ["export", ref, "--example", example, "-o", str(out)])


@pytest.mark.parametrize("factory, said", [
    ("boom", "boom() raised RuntimeError: boom"),
    ("needs", "needs() raised TypeError: needs() missing 1 required positional argument: 'size'"),
    ("leave", "leave() raised SystemExit(0)"),
])
def test_factory_failures_are_the_users(runner, tmp_path, factory, said):
    file = _write(tmp_path, "m.py", MODULE)
    out = tmp_path / "out.onnx"
    result = _export(runner, f"{file}:{factory}", out)
    assert result.exit_code == 2, result.output
    _one_error_line(result, file, said)
    assert not out.exists()


@pytest.mark.parametrize("source, said", [
    ("def make_model(:\n", "importing it raised SyntaxError"),
    ("import nonexistent_pkg\n\ndef make_model():\n    pass\n", "importing it raised ModuleNotFoundError: No module named 'nonexistent_pkg'"),
    ("raise SystemExit(3)\n", "importing it raised SystemExit(3)"),
    ("raise SystemExit('bye')\n", "importing it raised SystemExit('bye')"),
])
def test_import_failures_are_the_users(runner, tmp_path, source, said):
    file = _write(tmp_path, "m.py", source)
    result = _export(runner, f"{file}:make_model", tmp_path / "out.onnx")
    assert result.exit_code == 2, result.output
    _one_error_line(result, file, said)


def test_keyboard_interrupt_in_user_code_stays_an_interrupt(runner, tmp_path):
    file = _write(tmp_path, "m.py", "def make_model():\n    raise KeyboardInterrupt\n")
    result = _export(runner, f"{file}:make_model", tmp_path / "out.onnx")
    assert result.exit_code == 130
    assert [line for line in result.stderr.splitlines() if line.strip()] == ["error: interrupted"]


@pytest.mark.parametrize("example, said", [
    ("float32[1,10,6]", "Expected 5, got 6"),  # wrong feature size: torch refuses it eagerly
    ("float32[1,10]", "RuntimeError"),  # wrong rank: no torch log lines before the error
])
def test_examples_the_module_cannot_take(runner, tmp_path, example, said):
    file = _write(tmp_path, "m.py", MODULE)
    out = tmp_path / "out.onnx"
    result = _export(runner, f"{file}:make_model", out, example)
    assert result.exit_code == 2, result.output
    _one_error_line(result, "the module fails on the example inputs", said)
    assert not out.exists()


def test_module_left_in_training_mode_after_the_eager_check():
    import torch

    from rnnedge.errors import BadInputError
    from rnnedge.exporting.api import export

    module = torch.nn.GRU(5, 4, batch_first=True)
    with pytest.raises(BadInputError, match="fails on the example inputs"):
        export(module, (torch.randn(1, 3, 6),), "unused.onnx")
    assert module.training


def test_torch_logging_is_quiet_during_the_export():
    import logging

    from rnnedge.exporting.capture import quiet_torch

    noisy = logging.getLogger("torch._subclasses.fake_tensor")
    before = noisy.getEffectiveLevel(), logging.getLogger("torch").level
    with quiet_torch():
        assert not noisy.isEnabledFor(logging.ERROR)
        assert not logging.getLogger("torch.export._trace").isEnabledFor(logging.ERROR)
    assert (noisy.getEffectiveLevel(), logging.getLogger("torch").level) == before


def test_huge_example_is_not_enough_memory(runner, tmp_path):
    file = _write(tmp_path, "m.py", MODULE)
    result = _export(runner, f"{file}:make_model", tmp_path / "out.onnx", "float32[100000000,100000,5]")
    assert result.exit_code == 2, result.output
    _one_error_line(result, "not enough memory", "are the sizes asked for too large?")


def test_memory_error_maps_to_2_with_one_line():
    import numpy as np

    from rnnedge.cli import exit_code
    from rnnedge.cli.app import error_message

    try:
        np.empty((99999999, 99999999, 5))
    except MemoryError as exc:  # numpy's _ArrayMemoryError
        caught = exc
    else:  # pragma: no cover - a machine with 355 PiB
        pytest.skip("the allocation succeeded")
    assert exit_code(caught) == 2 and exit_code(MemoryError()) == 2
    said = error_message(caught, 2)
    assert said.startswith("not enough memory: Unable to allocate") and "too large" in said and "\n" not in said
    assert error_message(MemoryError(), 2) == "not enough memory (are the sizes asked for too large?)"


def test_quantize_huge_sizes_is_not_enough_memory(runner, tmp_path, seed_onnx):
    result = runner.invoke(cli, ["quantize", str(seed_onnx), "-o", str(tmp_path / "q.onnx"), "--for", "batch=99999999,seq=99999999"])
    assert result.exit_code == 2, result.output
    _one_error_line(result, "not enough memory", "are the sizes asked for too large?")


TABLE = """
import torch


class Tagger(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.pos = torch.nn.Parameter(torch.randn(1, 50, 5))
        self.rnn = torch.nn.GRU(5, 8, batch_first=True)

    def forward(self, x):
        return self.rnn(x + self.pos[:, : x.shape[1]])[0]


def make():
    torch.manual_seed(0)
    return Tagger()
"""


def test_export_prints_the_valid_range_torch_itself_bounds_and_run_refuses_past_it(runner, tmp_path):
    """A 50-row table: torch fails past 50 steps, so the file is valid for 1..50; the summary says so (`valid`), --json
    carries it, and `rnnedge run` past it is one error line, exit 2."""
    import json

    import numpy as np

    path = _write(tmp_path, "table.py", TABLE)
    out = tmp_path / "t.onnx"
    result = runner.invoke(cli, ["export", f"{path}:make", "--example", "float32[2,10,5]", "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["valid"] == {"seq": "1..50"}
    np.save(tmp_path / "long.npy", np.zeros((1, 51, 5), np.float32))
    result = runner.invoke(cli, ["run", str(out), "--input", str(tmp_path / "long.npy")])
    assert result.exit_code == 2
    _one_error_line(result, "only valid for seq in 1..50")


CUSTOM_CELL = """
import torch
from rnnedge import run_cell


class LightCell(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Linear(5 + 8, 8)

    def forward(self, x, h=None):
        h = x.new_zeros(x.shape[0], 8) if h is None else h
        return torch.tanh(self.w(torch.cat([x, h], -1)))


class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.cell = LightCell()

    def forward(self, x):
        return run_cell(self.cell, x)[0]


def make():
    return M()
"""


def test_a_custom_cell_exports_from_file_and_factory(runner, tmp_path):
    """run_cell's scan looks the cell's code up by its module: the file is imported as a module would be (it was
    'No module named rnnedge_user_...', every strategy failing)."""
    path = _write(tmp_path, "light.py", CUSTOM_CELL)
    for target in ("dynamic", "stream"):
        out = tmp_path / f"{target}.onnx"
        result = runner.invoke(cli, ["export", f"{path}:make", "--example", "float32[2,10,5]", "--target", target, "-o", str(out)])
        assert result.exit_code == 0 and out.exists(), result.output


WAVE = """
import torch


class Segmenter(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv1d(1, 8, 16, stride=8)
        self.rnn = torch.nn.LSTM(8, 8, batch_first=True)

    def forward(self, waveforms):  # (B, 1, samples), as pyannote takes them
        return self.rnn(self.conv(waveforms).transpose(1, 2))[0]


def make():
    torch.manual_seed(0)
    return Segmenter()


def make_unseeded():
    return Segmenter()
"""


def test_an_axis_given_on_a_mono_waveform_replaces_the_default_seq(runner, tmp_path):
    """--axis waveforms:2=samples on (B, 1, samples): the channel axis stays 1 (the default seq on axis 1 made it dynamic
    and the export was refused 'expected input's size at dim=1 to match num_features'); verify takes the same options."""
    import onnx

    path = _write(tmp_path, "seg.py", WAVE)
    out = tmp_path / "seg.onnx"
    options = ["--example", "float32[2,1,400]", "--axis", "waveforms:2=samples"]
    result = runner.invoke(cli, ["export", f"{path}:make", *options, "-o", str(out)])
    assert result.exit_code == 0, result.output
    dims = [d.dim_param or d.dim_value for d in onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 1, "samples"]
    done = runner.invoke(cli, ["verify", f"{path}:make", str(out), *options, "--no-default-axes"])
    assert done.exit_code == 0, done.output

    again = runner.invoke(cli, ["verify", f"{path}:make_unseeded", str(out), *options])  # new random weights per call
    assert again.exit_code == 2
    _one_error_line(again, "returns other weights on every call", "torch.manual_seed")
