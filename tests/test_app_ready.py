"""A user module's file, ready for a plain app: inputs named as forward names them, outputs `output` / `output_N`,
labels stored from the CLI, --axis adding to the default axes, each input and output printed with its dims, and
`Session.run` taking a dict of arrays as onnxruntime does."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import rnnedge
from rnnedge.cli import cli
from rnnedge.errors import BadInputError
from rnnedge.exporting.naming import default_input_names, with_default_axes
from rnnedge.runtime import Session

MODULE = '''
import torch
from torch import nn


class Spotter(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(6, 8, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, mel):
        y, _ = self.rnn(mel)
        return self.head(y[:, -1])


def make():
    torch.manual_seed(0)
    return Spotter()
'''


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(6, 8, batch_first=True)

    def forward(self, feats, state, lengths=None):
        y, (h, c) = self.rnn(feats, state)
        return y, h


def test_names_come_from_forward():
    ex = (torch.zeros(1, 4, 6), (torch.zeros(1, 1, 8), torch.zeros(1, 1, 8)), torch.tensor([4]))
    assert default_input_names(TwoInputs(), ex) == ["feats", "state_0", "state_1", "lengths"]
    assert default_input_names(nn.GRU(6, 8), (torch.zeros(3, 1, 6),)) == ["input"]

    class Star(nn.Module):
        def forward(self, x, *rest):
            return x

    assert default_input_names(Star(), (torch.zeros(1), torch.zeros(1), torch.zeros(1))) == ["x", "input_1", "input_2"]


def test_default_axes_are_kept_beside_the_users():
    defaults = {"mel": {0: "batch", 1: "seq"}, "lengths": {0: "batch"}}
    assert with_default_axes({"mel": {1: "frames"}}, defaults) == {"mel": {0: "batch", 1: "frames"}, "lengths": {0: "batch"}}
    assert with_default_axes({"mel": {"0": "n"}}, defaults)["mel"] == {0: "n", 1: "seq"}
    # (B, 1, samples): the user's time axis replaces the default seq (axis 1, a channel here), the batch stays
    assert with_default_axes({"mel": {2: "samples"}}, defaults)["mel"] == {0: "batch", 2: "samples"}


def test_api_export_names_a_module_as_its_author_did(tmp_path):
    torch.manual_seed(0)
    module = TwoInputs().eval()
    ex = (torch.randn(2, 5, 6), (torch.zeros(1, 2, 8), torch.zeros(1, 2, 8)))
    result = rnnedge.export(module, ex, tmp_path / "m.onnx")
    assert result.inputs == ["feats", "state_0", "state_1"] and result.outputs == ["output_0", "output_1"]
    io = result.to_dict()["io"]
    assert [(t["name"], t["shape"]) for t in io["inputs"]] == [("feats", ["batch", "seq", 6]), ("state_0", [1, "batch", 8]),
                                                              ("state_1", [1, "batch", 8])]
    assert io["outputs"][0] == {"name": "output_0", "dtype": "float32", "shape": ["batch", "seq", 8]}
    report = rnnedge.verify(module, tmp_path / "m.onnx", providers=["cpu"])  # verify feeds the file by those names
    assert report, report.summary()


@pytest.fixture(scope="module")
def spotter(tmp_path_factory):
    folder = tmp_path_factory.mktemp("app-ready")
    (folder / "spotter.py").write_text(MODULE)
    (folder / "labels.txt").write_text("yes\nno\n\nsilence\n")
    return folder


def _export_args(folder):
    return ["export", f"{folder / 'spotter.py'}:make", "--example", "float32[1,12,6]", "--axis", "mel:1=frames",
            "--labels", str(folder / "labels.txt"), "-o", str(folder / "kws.onnx")]


@pytest.fixture(scope="module")
def kws(spotter):
    """The spotter exported from the command line as an app would want it: (file, the export's JSON)."""
    from click.testing import CliRunner

    done = CliRunner().invoke(cli, [*_export_args(spotter), "--json"])
    assert done.exit_code == 0, done.output
    return spotter / "kws.onnx", json.loads(done.stdout)


def test_cli_export_for_an_app(runner, kws, spotter):
    """Names from forward, `output`, labels from a file, --axis added to batch, dims printed (JSON and table)."""
    out, data = kws
    assert data["io"]["inputs"] == [{"name": "mel", "dtype": "float32", "shape": ["batch", "frames", 6]}]  # batch stays symbolic
    assert data["io"]["outputs"] == [{"name": "output", "dtype": "float32", "shape": ["batch", 3]}]
    session = Session(out)
    assert session.labels == ["yes", "no", "silence"]
    x = np.random.default_rng(0).standard_normal((3, 20, 6)).astype(np.float32)
    np.testing.assert_array_equal(session.run({"mel": x}), session.run(x))
    table = runner.invoke(cli, [*_export_args(spotter), "--no-verify"])
    assert "input  mel  float32 [batch, frames, 6]" in table.stdout and "output output  float32 [batch, 3]" in table.stdout


def test_cli_labels_names_and_no_default_axes(runner, spotter):
    out = spotter / "named.onnx"
    (spotter / "labels.json").write_text('["a", "b", "c"]')
    done = runner.invoke(cli, ["export", f"{spotter / 'spotter.py'}:make", "--example", "float32[2,12,6]", "--axis", "x:1=frames",
                               "--no-default-axes", "--input-name", "x", "--output-name", "scores", "--label", "first",
                               "--labels", str(spotter / "labels.json"), "-o", str(out), "--no-verify", "--json"])
    assert done.exit_code == 0, done.output + done.stderr
    io = json.loads(done.stdout)["io"]
    assert io["inputs"][0]["shape"] == [2, "frames", 6] and io["outputs"][0]["name"] == "scores"  # batch pinned: asked for
    assert Session(out).labels == ["first", "a", "b", "c"]


def test_cli_refuses_labels_for_checkpoints_and_bad_label_files(runner, spotter, seed_checkpoint):
    done = runner.invoke(cli, ["export", str(seed_checkpoint[0]), "-o", str(spotter / "c.onnx"), "--label", "x"])
    assert done.exit_code == 2 and "for FILE.py:FACTORY modules" in done.stderr
    (spotter / "bad.json").write_text('[1, {"a": 2}]')
    done = runner.invoke(cli, ["export", f"{spotter / 'spotter.py'}:make", "--example", "float32[1,12,6]",
                               "--labels", str(spotter / "bad.json"), "-o", str(spotter / "b.onnx")])
    assert done.exit_code == 2 and "expected a JSON list of strings" in done.stderr


def test_session_run_takes_a_dict_as_onnxruntime_does(kws):
    session = Session(kws[0])
    x = np.zeros((1, 4, 6), np.float32)
    with pytest.raises(BadInputError, match=r"unknown input\(s\) \['x'\]; model inputs: \['mel'\]"):
        session.run({"mel": x, "x": x})
    with pytest.raises(BadInputError, match="missing input 'mel'"):
        session.run({})
    with pytest.raises(BadInputError, match="pass lengths in it"):
        session.run({"mel": x}, lengths=np.array([4]))


def test_a_list_of_sequences_stacks_or_says_why(kws):
    session = Session(kws[0])
    a, b = np.ones((5, 6), np.float32), np.zeros((5, 6), np.float32)
    assert session.run([a, b]).shape == (2, 3)  # equal lengths: stacked (no lengths input needed)
    with pytest.raises(BadInputError, match="rows have different lengths .* no 'lengths' input.*--lengths"):
        session.run([a, b[:3]])


class OwnLengths(nn.Module):
    """A module that calls its lengths `lens`: the runtime finds them by the spec's role, not by the name."""

    def __init__(self):
        super().__init__()
        self.rnn, self.head = nn.GRU(6, 8, batch_first=True), nn.Linear(8, 3)

    def forward(self, feats, lens):
        packed = nn.utils.rnn.pack_padded_sequence(feats, lens, batch_first=True, enforce_sorted=False)
        _, h = self.rnn(packed)
        return self.head(h[-1])


def test_a_list_of_sequences_is_padded_into_a_modules_own_lengths_input(tmp_path):
    torch.manual_seed(0)
    module = OwnLengths().eval()
    rnnedge.export(module, (torch.randn(2, 7, 6), torch.tensor([7, 4])), tmp_path / "lens.onnx")
    session = Session(tmp_path / "lens.onnx")
    assert [t.name for t in session.inputs] == ["feats", "lens"] and session.lengths_name == "lens" and session.has_lengths
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((9, 6)).astype(np.float32), rng.standard_normal((4, 6)).astype(np.float32)
    got = session.run([a, b])  # padded to 9 steps, lens [9, 4] fed by the module's own name
    with torch.no_grad():
        want = torch.cat([module(torch.from_numpy(s[None]), torch.tensor([len(s)])) for s in (a, b)]).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    padded = np.zeros((2, 9, 6), np.float32)
    padded[0], padded[1, :4] = a, b
    np.testing.assert_array_equal(session.run({"feats": padded, "lens": np.array([9, 4])}), got)
    np.testing.assert_array_equal(session.run(padded, lengths=np.array([9, 4])), got)
    with pytest.raises(BadInputError, match="lengths given twice"):
        session.run_all({"feats": padded, "lens": np.array([9, 4]), "lengths": np.array([9, 4])})
