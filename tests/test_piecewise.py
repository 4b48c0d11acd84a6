"""rnnedge.exporting.piecewise / joining / relations: size branches export as pieces joined by If nodes on the size,
and size relations torch proves become ties.

Each module is checked independently of rnnedge's own checks: onnxruntime on the written file against torch at sizes
the export never saw, on both sides of every split point, at seq 1 and past 300, with the axes symbolic in the file.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper
from torch import nn

import rnnedge
from rnnedge.errors import BadInputError, ExportError
from rnnedge.exporting import piecewise
from rnnedge.exporting.joining import join_models


class HalvesLong(nn.Module):
    """Long-input path: past 100 steps the GRU runs on two halves, the state carried over."""

    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(5, 8, batch_first=True)
        self.out = nn.Linear(8, 3)

    def forward(self, x):  # (B, T, 5)
        if x.shape[1] > 100:
            half = x.shape[1] // 2
            a, h = self.gru(x[:, :half])
            b, _ = self.gru(x[:, half:] * 0.5, h)
            return self.out(torch.cat([a, b], 1))  # (B, T, 3)
        return self.out(self.gru(x)[0])


class ShortPad(nn.Module):
    """Short-input path: under 8 steps the input is zero-padded to 8 and the output cut back."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(5, 6, batch_first=True)

    def forward(self, x):
        T = x.shape[1]
        if T < 8:
            x = F.pad(x, (0, 0, 0, 8 - T))
        return self.lstm(x)[0][:, :T]


class MiddleBand(nn.Module):
    """`if 10 <= T <= 20:` from an example of 30 steps: torch guards T > 20 only (the chained comparison stops there);
    the piece 1..20, exported at a size inside it, brings the second split (T < 10) to light: three pieces."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(5, 6, batch_first=True)

    def forward(self, x):
        if 10 <= x.shape[1] <= 20:
            x = x * 0.5
        return self.lstm(x)[0]


class WindowLower(nn.Module):
    """A conv window of 12 frames: shorter inputs are left-padded to 12 (seq >= 12 on the other side)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 8, 12)
        self.rnn = nn.GRU(8, 8, batch_first=True)

    def forward(self, x):  # (B, T, 4)
        if x.shape[1] < 12:
            x = F.pad(x, (0, 0, 12 - x.shape[1], 0))
        return self.rnn(self.conv(x.transpose(1, 2)).transpose(1, 2))[0]  # (B, max(T, 12) - 11, 8)


class WindowedBLSTM(nn.Module):
    """Published-style BLSTM block (waveform separators): inputs longer than max_steps run as overlapping windows of
    max_steps (stride max_steps // 2), batched, and are stitched back."""

    def __init__(self, dim=8, max_steps=200):
        super().__init__()
        self.max_steps = max_steps
        self.lstm = nn.LSTM(dim, dim, bidirectional=True)
        self.linear = nn.Linear(2 * dim, dim)

    def forward(self, x):  # (B, C, T)
        B, C, T = x.shape
        width, stride = self.max_steps, self.max_steps // 2
        framed = self.max_steps < T
        y = x
        if framed:
            n = (T + stride - 1) // stride
            frames = F.pad(x, (0, (n - 1) * stride + width - T)).unfold(2, width, stride)  # (B, C, n, width)
            y = frames.permute(0, 2, 1, 3).reshape(-1, C, width)  # (B * n, C, width)
        y = self.linear(self.lstm(y.permute(2, 0, 1))[0]).permute(1, 2, 0)  # (B', C, T')
        if framed:
            limit = stride // 2
            f = y.reshape(B, -1, C, width)
            body = f[:, :, :, limit:width - limit].permute(0, 2, 1, 3).reshape(B, C, -1)
            y = torch.cat([f[:, 0, :, :limit], body], -1)[..., :T]
        return x + y


class Vocoder64(nn.Module):
    """mel (B, 16, frames) upsampled 64x, plus a noise input (B, samples): torch proves samples == 64 * frames."""

    def __init__(self):
        super().__init__()
        self.up = nn.ConvTranspose1d(16, 8, 64, stride=64)
        self.gru = nn.GRU(8, 8, batch_first=True)
        self.proj = nn.Linear(8, 1)

    def forward(self, mel, noise):
        h = self.gru(self.up(mel).transpose(1, 2))[0]  # (B, 64 * frames, 8)
        return self.proj(h).squeeze(-1) + noise


class Vocoder275(nn.Module):
    """Hop 275 with two frames of context trimmed each side: samples == 275 * frames - 1100 (as torch found in a
    published vocoder)."""

    def __init__(self):
        super().__init__()
        self.up = nn.ConvTranspose1d(16, 4, 275, stride=275)
        self.gru = nn.GRU(4, 4, batch_first=True)

    def forward(self, mel, noise):
        u = self.up(mel)[:, :, 550:-550]  # (B, 4, 275 * frames - 1100)
        return self.gru(u.transpose(1, 2))[0].sum(-1) + noise


class AddsTwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(5, 8, batch_first=True)

    def forward(self, x, y):
        return self.lstm(x + y)[0]


class SquareSize(nn.Module):
    """y (B, U) added to a (B, T*T) product: U == T**2 is no affine tie."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(5, 5, batch_first=True)

    def forward(self, x, y):
        h = self.lstm(x)[0]  # (B, T, 5)
        return (h @ h.transpose(1, 2)).flatten(1) + y


def _feed(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def matches_torch(module, path, feeds: list[dict]) -> float:
    """The largest |onnxruntime - torch| over `feeds`, run on the file directly (no rnnedge check involved)."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for feed in feeds:
        with torch.no_grad():
            want = module(*[torch.from_numpy(v) for v in feed.values()]).numpy()
        got = session.run(None, feed)[0]
        assert got.shape == want.shape, (got.shape, want.shape)
        worst = max(worst, float(np.abs(got - want).max()))
    return worst


def if_nodes(graph) -> int:
    return sum((n.op_type == "If") + sum(if_nodes(a.g) for a in n.attribute if a.type == onnx.AttributeProto.GRAPH) for n in graph.node)


def symbolic_inputs(path) -> list[list]:
    return [[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in onnx.load(str(path)).graph.input]


SPLIT_CASES = {  # module, example, axes, feed(T), expected pieces, sizes around every split point + seq 1 and >= 300
    "halves past 100": (HalvesLong, (2, 10, 5), None, lambda t: {"x": _feed((3, t, 5), t)},
                        [{"seq": [1, 100]}, {"seq": [101, None]}], [1, 2, 99, 100, 101, 102, 150, 301]),
    "pad under 8": (ShortPad, (2, 10, 5), None, lambda t: {"x": _feed((3, t, 5), t)},
                    [{"seq": [1, 7]}, {"seq": [8, None]}], [1, 2, 6, 7, 8, 9, 300]),
    "band 10..20 (chained comparison)": (MiddleBand, (2, 30, 5), None, lambda t: {"x": _feed((3, t, 5), t)},
                                         [{"seq": [1, 9]}, {"seq": [10, 20]}, {"seq": [21, None]}], [1, 9, 10, 11, 19, 20, 21, 300]),
    "window of 12": (WindowLower, (2, 20, 4), None, lambda t: {"x": _feed((3, t, 4), t)},
                     [{"seq": [1, 11]}, {"seq": [12, None]}], [1, 10, 11, 12, 13, 300]),
    "windowed blstm past 200": (WindowedBLSTM, (2, 8, 50), {"x": {0: "batch", 2: "seq"}}, lambda t: {"x": _feed((2, 8, t), t)},
                                [{"seq": [1, 200]}, {"seq": [201, None]}], [1, 199, 200, 201, 202, 333, 555]),
}
SLOW_SPLITS = {"window of 12", "windowed blstm past 200"}


@pytest.mark.parametrize("case", [pytest.param(c, marks=(pytest.mark.slow,) if c in SLOW_SPLITS else ()) for c in SPLIT_CASES])
def test_a_size_branch_exports_by_default_as_pieces_joined_by_if_and_matches_torch_on_both_sides(case, tmp_path):
    make, shape, axes, feed, pieces, sizes = SPLIT_CASES[case]
    module, path = make().eval(), tmp_path / "m.onnx"
    result = rnnedge.export(module, torch.randn(*shape), path, input_names=["x"], dynamic_axes=axes)
    assert result.spec.pieces == pieces and not result.spec.ranges
    model = onnx.load(str(path))
    spec = json.loads({p.key: p.value for p in model.metadata_props}["rnnedge.spec"])
    assert spec["pieces"] == pieces and "rnnedge.range.seq" not in {p.key for p in model.metadata_props}
    assert if_nodes(model.graph) == len(pieces) - 1  # nested ones (3 pieces on one axis) counted inside the branches
    dims = symbolic_inputs(path)[0]
    assert all(isinstance(dims[ax], str) for ax in (axes or {"x": {0: "batch", 1: "seq"}})["x"])  # the declared axes stay symbolic
    assert "seq" in dims and "batch" in dims
    assert matches_torch(module, path, [feed(t) for t in sizes]) < 1e-4
    cases = [c.case for c in result.parity.cases]  # export's quick check probed each side of the split
    split = pieces[1]["seq"][0]
    assert any(f"seq {split - 1}" in c for c in cases) and any(f"seq {split}," in c or c.endswith(f"seq {split}") for c in cases)


def test_the_pieces_share_their_weights_once_outside_the_branches(tmp_path):
    path = tmp_path / "m.onnx"
    rnnedge.export(HalvesLong().eval(), torch.randn(2, 10, 5), path, input_names=["x"])
    model = onnx.load(str(path))
    weights = [i for i in model.graph.initializer if i.dims and np.prod(i.dims) > 16]
    digests = [numpy_helper.to_array(i).tobytes() for i in weights]
    assert len(digests) == len(set(digests)), "a weight is stored twice"
    for node in model.graph.node:
        for attr in node.attribute:
            assert not (attr.HasField("g") and len(attr.g.initializer)), "weights inside a branch"


def test_verify_probes_both_sides_of_the_split_and_catches_a_misplaced_split(tmp_path):
    """Planted bug: the If chooses the long path from 103 instead of 101: verify (from the file alone) must fail."""
    module, path = HalvesLong().eval(), tmp_path / "m.onnx"
    rnnedge.export(module, torch.randn(2, 10, 5), path, input_names=["x"])
    assert rnnedge.verify(module, path, providers=["CPUExecutionProvider"])
    model = onnx.load(str(path))
    at = next(i for i in model.graph.initializer if i.name.endswith(".at"))
    at.CopyFrom(numpy_helper.from_array(np.array(103, dtype=np.int64), at.name))
    onnx.save(model, str(tmp_path / "bad.onnx"))
    report = rnnedge.verify(module, tmp_path / "bad.onnx", providers=["CPUExecutionProvider"])
    assert not report and any("seq 101" in c.case or "seq 102" in c.case for c in report.failures)


def test_allow_bounded_still_records_one_range_instead_of_pieces(tmp_path):
    result = rnnedge.export(HalvesLong().eval(), torch.randn(2, 10, 5), tmp_path / "m.onnx", input_names=["x"],
                            allow_bounded=True, verify=False)
    assert result.spec.ranges == {"seq": [1, 100]} and not result.spec.pieces


def _fake_builds(ranges_at):
    """export_at stand-in: the valid ranges a piece export reports, by the region asked for."""

    calls = []

    def export_at(region):
        calls.append(region)
        return None, type("Spec", (), {"ranges": _ranges(ranges_at(region))})(), "native"

    return export_at, calls


def test_cover_splits_three_ways_and_refuses_more_than_a_handful():
    # `if T < 5` and `if T > 200`: the example's piece is 5..200; 1..4 and 201.. are exported once each
    export_at, calls = _fake_builds(lambda region: {})
    first = (None, type("S", (), {"ranges": _ranges({"seq": [5, 200]})})(), "native")
    pieces = piecewise._cover({}, export_at, first, {})
    assert [r for r, _ in pieces] == [{"seq": [1, 4]}, {"seq": [5, 200]}, {"seq": [201, None]}] and len(calls) == 2
    # a guard every 10 steps (T // 10 branches): more than MAX_PIECES ranges -> refused, after at most MAX_PIECES + 1 exports
    export_at, calls = _fake_builds(lambda region: _ranges({"seq": [region["seq"][0], region["seq"][0] + 9]}))
    first = (None, type("S", (), {"ranges": _ranges({"seq": [1, 10]})})(), "native")
    with pytest.raises(ExportError, match="more than 6 pieces"):
        piecewise._cover({}, export_at, first, {"seq": "axis 1 ('seq') of input 'x' is only valid for 1..10"})
    assert len(calls) <= piecewise.MAX_PIECES + 1


def _ranges(d):
    from rnnedge.exporting.guards import Ranges

    r = Ranges(d)
    r.texts = {}
    return r


def _piece(op: str, weight: float):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq"])
    w = numpy_helper.from_array(np.full((1,), weight, dtype=np.float32), "w")
    shared = numpy_helper.from_array(np.arange(64, dtype=np.float32), "table")
    nodes = [helper.make_node(op, ["x", "w"], ["t"]), helper.make_node("ReduceSum", ["table"], ["s"], keepdims=0),
             helper.make_node("Add", ["t", "s"], ["y"])]
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y], [w, shared]), opset_imports=[helper.make_opsetid("", 18)])


def test_join_chooses_the_piece_by_the_size_with_nested_ifs_and_one_copy_of_shared_weights():
    pieces = [({"seq": [1, 4]}, _piece("Mul", 2.0)), ({"seq": [5, 9]}, _piece("Mul", 3.0)), ({"seq": [10, None]}, _piece("Add", 1.0))]
    model = join_models(pieces, {"seq": ("x", 1)})
    onnx.checker.check_model(model, full_check=True)
    assert sum(i.name.endswith("table") for i in model.graph.initializer) == 1  # the same tensor in 3 pieces: stored once
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    total = float(np.arange(64).sum())
    for seq, want in [(1, 2.0), (4, 2.0), (5, 3.0), (9, 3.0), (10, 2.0), (300, 2.0)]:
        got = session.run(None, {"x": np.ones((2, seq), np.float32)})[0]
        assert got.shape == (2, seq) and np.allclose(got, want + total), (seq, got[0, 0])


def test_a_relation_torch_proves_becomes_a_tie_and_the_runtime_refuses_feeds_breaking_it(tmp_path, caplog):
    from rnnedge.runtime import Session

    module, path = Vocoder64().eval(), tmp_path / "voc.onnx"
    axes = {"mel": {0: "batch", 2: "frames"}, "noise": {0: "batch", 1: "samples"}}
    with caplog.at_level("WARNING", logger="rnnedge.exporting.guards"):
        result = rnnedge.export(module, (torch.randn(2, 16, 10), torch.randn(2, 640)), path, input_names=["mel", "noise"],
                                dynamic_axes=axes)
    assert result.spec.ties == {"samples": {"of": "frames", "scale": 64, "offset": 0}}
    assert any("samples" in r.getMessage() and "64 * frames" in r.getMessage() for r in caplog.records)
    assert symbolic_inputs(path) == [["batch", 16, "frames"], ["batch", "samples"]]
    feeds = [{"mel": _feed((2, 16, t), t), "noise": _feed((2, 64 * t), t + 1)} for t in (1, 3, 7, 20)]
    assert matches_torch(module, path, feeds) < 1e-4
    session = Session(path)
    session.run_all({"mel": _feed((1, 16, 5), 0), "noise": _feed((1, 320), 1)})
    with pytest.raises(BadInputError, match=r"samples == 64 \* frames = 320"):
        session.run_all({"mel": _feed((1, 16, 5), 0), "noise": _feed((1, 321), 1)})


@pytest.mark.slow
def test_an_affine_relation_with_an_offset_read_from_a_guard_becomes_a_tie(tmp_path):
    module, path = Vocoder275().eval(), tmp_path / "voc.onnx"
    axes = {"mel": {0: "batch", 2: "frames"}, "noise": {0: "batch", 1: "samples"}}
    result = rnnedge.export(module, (torch.randn(2, 16, 10), torch.randn(2, 1650)), path, input_names=["mel", "noise"],
                            dynamic_axes=axes)
    assert result.spec.ties == {"samples": {"of": "frames", "scale": 275, "offset": -1100}}
    feeds = [{"mel": _feed((2, 16, t), t), "noise": _feed((2, 275 * t - 1100), t + 1)} for t in (5, 6, 9, 31)]
    assert matches_torch(module, path, feeds) < 1e-4


def test_two_labels_torch_finds_to_be_one_size_become_one_tie(tmp_path):
    module, path = AddsTwoInputs().eval(), tmp_path / "m.onnx"
    axes = {"x": {0: "batch", 1: "seq"}, "y": {0: "batch", 1: "seq2"}}
    result = rnnedge.export(module, (torch.randn(2, 10, 5), torch.randn(2, 10, 5)), path, input_names=["x", "y"], dynamic_axes=axes)
    assert result.spec.ties == {"seq2": {"of": "seq", "scale": 1, "offset": 0}}
    assert matches_torch(module, path, [{"x": _feed((2, t, 5), t), "y": _feed((2, t, 5), t + 1)} for t in (1, 4, 300)]) < 1e-4


def test_a_relation_that_is_not_affine_is_still_refused(tmp_path):
    axes = {"x": {0: "batch", 1: "seq"}, "y": {0: "batch", 1: "pairs"}}
    with pytest.raises(ExportError, match="pairs") as err:
        rnnedge.export(SquareSize().eval(), (torch.randn(2, 6, 5), torch.randn(2, 36)), tmp_path / "m.onnx",
                       input_names=["x", "y"], dynamic_axes=axes)
    assert "tied_axes" in str(err.value) and not (tmp_path / "m.onnx").exists()
