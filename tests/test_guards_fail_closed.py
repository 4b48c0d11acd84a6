"""Fail closed: export never trusts a reading of torch's guard log it cannot confirm (rnnedge.exporting.guardlog).

torch's "[guard added]" log is an internal format. Export plants one known guard per export and checks unread records
and range constraints; when the reading is not confirmed (simulated here: the log read as empty, or records in a shape
rnnedge cannot read), it warns, notes it in the result and the file, and runs the full probes, so a module that
branches on a size the log would have named is still caught."""

from __future__ import annotations

import logging

import onnx
import pytest
import torch
from torch import nn

import rnnedge
from rnnedge.errors import ParityError
from rnnedge.exporting import guardlog


class BranchAt64(nn.Module):
    """Another path at exactly 64 steps: only the guard log (Ne(s, 64)) says so; no range constraint does."""

    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(5, 8, batch_first=True)

    def forward(self, x):  # x: (B, T, 5)
        if x.shape[1] == 64:
            return self.gru(x * 0.5)[0]
        return self.gru(x)[0]  # (B, T, 8)


class Plain(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(5, 8, batch_first=True)

    def forward(self, x):
        return self.gru(x)[0]


AXES = {"x": {0: "batch", 1: "seq"}}


def _export(module, path, **kw):
    torch.manual_seed(0)
    return rnnedge.export(module, torch.randn(2, 10, 5), path, input_names=["x"], dynamic_axes=AXES, **kw)


@pytest.fixture
def log_read_as_empty(monkeypatch):
    """torch changed its log: no record reaches rnnedge's reader any more."""
    monkeypatch.setattr(guardlog._GuardHandler, "_read", lambda self, record: None)


@pytest.fixture
def log_in_another_shape(monkeypatch):
    """torch changed its log: "[guard added]" records come with arguments of another shape."""
    read = guardlog._GuardHandler._read

    def garbled(self, record):
        if "[guard added]" in str(record.msg):
            record.args = ("garbage",)
        read(self, record)

    monkeypatch.setattr(guardlog._GuardHandler, "_read", garbled)


def test_a_normal_export_confirms_its_reading_and_drops_the_planted_guard(tmp_path):
    result = _export(Plain(), tmp_path / "m.onnx", verify=False)
    assert result.spec.guard_reading == [] and result.notes == [] and result.parity is None
    assert result.spec.must_probe == {}  # the planted Ne(s, CANARY_SIZE) is not a size to probe
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert "rnnedge.guard_log" not in meta


def test_the_guard_at_64_is_found_from_the_log(tmp_path):
    with pytest.raises(ParityError, match="seq 64"):
        _export(BranchAt64(), tmp_path / "m.onnx", verify=False)  # probed at 64 because the log named it
    assert not (tmp_path / "m.onnx").exists()


def test_log_read_as_empty_runs_the_full_probes_and_catches_the_branch(tmp_path, caplog, log_read_as_empty):
    with caplog.at_level(logging.WARNING, logger="rnnedge.exporting.api"), pytest.raises(ParityError, match="sweep, batch 1, seq 64"):
        _export(BranchAt64(), tmp_path / "m.onnx", verify=False)
    assert "guard log could not be read" in caplog.text and "planted" in caplog.text
    assert not (tmp_path / "m.onnx").exists()  # never a file that claims a dynamic axis it does not have


def test_log_in_another_shape_is_said_in_the_result_and_the_file(tmp_path, caplog, log_in_another_shape):
    with caplog.at_level(logging.WARNING, logger="rnnedge.exporting.api"):
        result = _export(Plain(), tmp_path / "m.onnx", verify=False)
    assert result.spec.guard_reading and "cannot read" in result.notes[0] and "full probes" in result.notes[0]
    assert result.parity is not None and any(c.case.startswith("sweep") and "seq 1025" in c.case for c in result.parity.cases)
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert meta["rnnedge.guard_log"].startswith("unread: ") and "another shape" in meta["rnnedge.guard_log"]
    assert result.to_dict()["notes"] == result.notes and "guard log could not be read" in caplog.text


def test_range_constraints_that_say_nothing_about_a_declared_axis_are_not_trusted(tmp_path, monkeypatch):
    """torch changed where it keeps ranges: an empty reading is no proof that an axis is free."""
    from rnnedge.exporting import strategies

    convert = strategies._convert  # ExportedProgram -> ONNXProgram, for each torch.export strategy

    def without_ranges(*args, **kwargs):
        program = convert(*args, **kwargs)
        program.exported_program._range_constraints = {}
        return program

    monkeypatch.setattr(strategies, "_convert", without_ranges)
    result = _export(Plain(), tmp_path / "m.onnx", verify=False)
    assert any("range constraints say nothing about 'batch', 'seq'" in p for p in result.spec.guard_reading)
    assert result.parity is not None and "full probes" in result.notes[0]
