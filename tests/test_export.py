"""Export: any module with RNN/GRU/LSTM layers -> one ONNX file whose batch and seq axes stay symbolic,
and onnxruntime matches torch at sizes never used for export (T=1 and T>=512 included)."""

from __future__ import annotations

import itertools
import json
import zlib

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn
from torch.utils._pytree import tree_leaves
from user_modules import PackedLengths, cases

import rnnedge
from rnnedge.errors import BadInputError, ExportError

USER_CASES = cases()


def run_both(module, path, inputs, names):
    module.eval()
    with torch.no_grad():
        ref = [t.numpy() for t in tree_leaves(module(*inputs)) if isinstance(t, torch.Tensor)]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, {n: t.numpy() for n, t in zip(names, inputs)})
    return ref, out


def max_error(ref, out):
    assert len(ref) == len(out)
    for r, o in zip(ref, out):
        assert r.shape == o.shape
    return max(float(np.abs(r - o).max()) if r.size else 0.0 for r, o in zip(ref, out))


def symbolic_dims(value_infos):
    return {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in value_infos}


@pytest.mark.parametrize("name", list(USER_CASES))
def test_user_module_exports_with_symbolic_axes_and_matches_torch(name, tmp_path):
    torch.manual_seed(0)
    module, examples, names, axes, make = USER_CASES[name]()
    module.eval()
    path = tmp_path / "m.onnx"
    result = rnnedge.export(module, examples, path, dynamic_axes=axes, input_names=names)
    assert result.parity  # the quick check ran and passed
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]  # one self-contained file
    dims = symbolic_dims(model.graph.input)
    for input_name, input_axes in axes.items():
        for axis, label in input_axes.items():
            assert dims[input_name][axis] == label
    for out, out_dims in symbolic_dims(model.graph.output).items():
        assert "batch" in out_dims, (out, out_dims)  # batch stays symbolic on every output
    for b, t in [(1, 1), (3, 17), (2, 512)]:
        ref, out = run_both(module, path, make(b, t), names)
        assert max_error(ref, out) < 1e-4, (b, t)


def test_user_module_is_unchanged_by_export(tmp_path):
    module, examples, names, axes, _ = USER_CASES["lstm with projections"]()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    layer = module.rnn
    rnnedge.export(module, examples, tmp_path / "m.onnx", dynamic_axes=axes, input_names=names, verify=False)
    assert module.rnn is layer and isinstance(module.rnn, nn.LSTM)
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())


def test_source_rnn_is_a_handful_of_nodes_and_keeps_seq_dynamic(tmp_path):
    torch.manual_seed(0)
    rnn = nn.RNN(5, 8, batch_first=True)
    result = rnnedge.export(rnn, (torch.randn(1, 10, 5),), tmp_path / "rnn.onnx", lowering="native")
    assert result.nodes <= 10
    assert result.inputs == ["input"] and result.outputs == ["output_0", "output_1"]  # forward(input, hx); (y, h)
    ref, out = run_both(rnn, tmp_path / "rnn.onnx", (torch.randn(4, 23, 5),), ["input"])
    assert max_error(ref, out) < 1e-5


def test_a_classifier_does_not_compute_the_per_step_output_it_never_reads(tmp_path):
    class LastState(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm, self.head = nn.LSTM(6, 16, batch_first=True), nn.Linear(16, 3)

        def forward(self, x):
            _, (h, _) = self.lstm(x)
            return self.head(h[-1])

    torch.manual_seed(0)
    module = LastState().eval()
    result = rnnedge.export(module, (torch.randn(2, 9, 6),), tmp_path / "c.onnx", lowering="native")
    assert result.inputs == ["x"] and result.outputs == ["output"]  # forward's own name; one output is `output`
    (lstm,) = [n for n in onnx.load(tmp_path / "c.onnx").graph.node if n.op_type == "LSTM"]
    assert lstm.output[0] == "" and lstm.output[1]  # Y blank (not allocated or written), Y_h kept
    ref, out = run_both(module, tmp_path / "c.onnx", (torch.randn(5, 31, 6),), ["x"])
    assert max_error(ref, out) < 1e-5


def test_same_module_gives_byte_identical_files(tmp_path):
    torch.manual_seed(0)
    module = PackedLengths(nn.GRU, bidirectional=True)
    args = (torch.randn(2, 6, 5), torch.tensor([6, 3]))
    for name in ("a.onnx", "b.onnx"):
        rnnedge.export(module, args, tmp_path / name, input_names=["x", "lengths"], verify=False)
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()


def test_metadata_and_checkpoint_export(seed_checkpoint, tmp_path):
    path, _ = seed_checkpoint
    result = rnnedge.export_checkpoint(path, tmp_path / "seed.onnx")
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "seed.onnx")).metadata_props}
    assert {"rnnedge.config", "rnnedge.version", "rnnedge.task", "rnnedge.labels", "rnnedge.lowering", "rnnedge.target"} <= set(meta)
    assert json.loads(meta["rnnedge.config"])["input_size"] == 5
    assert meta["rnnedge.task"] == "seed" and meta["rnnedge.target"] == "dynamic"
    assert result.inputs == ["x"] and result.outputs == ["logits"]  # seed sequences never vary: no lengths input


@pytest.mark.parametrize("lengths, inputs", [(None, ["x"]), (True, ["x", "lengths"]), (False, ["x"])])
def test_checkpoint_lengths_input_follows_the_task_unless_asked(seed_checkpoint, tmp_path, lengths, inputs):
    from rnnedge.runtime import Session

    path, _ = seed_checkpoint
    result = rnnedge.export_checkpoint(path, tmp_path / "s.onnx", lengths=lengths)
    assert result.inputs == inputs and result.parity
    report = rnnedge.verify(path, tmp_path / "s.onnx")  # verify rebuilds the same wrapper from the checkpoint
    assert report
    x = np.random.default_rng(0).standard_normal((3, 10, 5)).astype(np.float32)
    assert Session(tmp_path / "s.onnx").run(x).shape == (3, 3)  # the runtime takes files with or without lengths


def test_checkpoint_stream_without_lengths_and_pinned_batch(seed_checkpoint, tmp_path):
    path, _ = seed_checkpoint
    result = rnnedge.export_checkpoint(path, tmp_path / "s.onnx", target="stream", lengths=False, fix_dims={"batch": 1})
    assert result.inputs == ["x", "h0"] and result.parity
    model = onnx.load(str(tmp_path / "s.onnx"))
    assert symbolic_dims(model.graph.input) == {"x": [1, "seq", 5], "h0": [1, 1, 8]}
    assert json.loads({p.key: p.value for p in model.metadata_props}["rnnedge.fixed_dims"]) == {"batch": 1}
    assert rnnedge.verify(path, tmp_path / "s.onnx")


def test_stream_target_refuses_bidirectional(tmp_path):
    from rnnedge.checkpoint import save_checkpoint
    from rnnedge.families.sequence.model import ModelConfig, SequenceModel

    model = SequenceModel(ModelConfig(input_size=5, hidden=8, bidirectional=True, num_outputs=3))
    save_checkpoint(tmp_path / "bi.safetensors", model)
    with pytest.raises(BadInputError, match="cannot stream"):
        rnnedge.export_checkpoint(tmp_path / "bi.safetensors", tmp_path / "bi.onnx", target="stream")


def test_failed_export_leaves_existing_file_untouched(tmp_path):
    target = tmp_path / "keep.onnx"
    target.write_bytes(b"precious")
    with pytest.raises(ExportError):
        rnnedge.export(torch.jit.script(nn.Linear(3, 3)), (torch.randn(2, 3),), target)  # TorchScript: refused (a plain Linear now exports)
    assert target.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.onnx"]  # no temp file left


def test_native_lowering_refuses_projections(tmp_path):
    with pytest.raises(BadInputError, match="proj"):
        rnnedge.export(nn.LSTM(4, 8, proj_size=3), (torch.randn(5, 2, 4),), tmp_path / "p.onnx", lowering="native")


# --- the matrix: cell x direction x layers x lowering x target x lengths x batch_first -----------------------------

CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


class StatefulLengths(nn.Module):
    """forward(x[, lengths][, h0[, c0]]) -> (y, hn[, cn]) for any layer layout."""

    def __init__(self, layer, use_lengths, stream):
        super().__init__()
        self.rnn, self.use_lengths, self.stream = layer, use_lengths, stream
        self.lstm = isinstance(layer, nn.LSTM)

    def forward(self, x, *rest):
        rest = list(rest)
        lengths = rest.pop(0) if self.use_lengths else None
        state = None
        if self.stream:
            state = (rest[0], rest[1]) if self.lstm else rest[0]
        if lengths is None:
            y, s = self.rnn(x, state)
        elif getattr(self.rnn, "accepts_lengths", False):
            y, s = self.rnn(x, state, lengths=lengths)
        else:
            bf = self.rnn.batch_first
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=bf, enforce_sorted=False)
            y, s = self.rnn(packed, state)
            y, _ = nn.utils.rnn.pad_packed_sequence(y, batch_first=bf, total_length=x.shape[1 if bf else 0])
        return (y, *s) if self.lstm else (y, s)


def matrix_case(cell, bidirectional, layers, lowering, stream, use_lengths, batch_first):
    torch.manual_seed(zlib.crc32(repr((cell, bidirectional, layers, lowering, stream, use_lengths, batch_first)).encode()))  # stable across processes
    layer = CELLS[cell](5, 7, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first)
    module = StatefulLengths(layer, use_lengths, stream).eval()
    dirs = 2 if bidirectional else 1

    def make(b, t):
        x = torch.randn(b, t, 5) if batch_first else torch.randn(t, b, 5)
        args = [x]
        if use_lengths:
            lengths = torch.randint(1, t + 1, (b,))
            lengths[0] = t
            args.append(lengths)
        if stream:
            args += [torch.randn(layers * dirs, b, 7) for _ in range(2 if cell == "lstm" else 1)]
        return args

    names = ["x"] + (["lengths"] if use_lengths else []) + (["h0", "c0"][: 2 if cell == "lstm" else 1] if stream else [])
    xa = {0: "batch", 1: "seq"} if batch_first else {0: "seq", 1: "batch"}
    axes = {"x": xa, "lengths": {0: "batch"}, "h0": {1: "batch"}, "c0": {1: "batch"}}
    return module, make, names, {n: axes[n] for n in names}


MATRIX = list(itertools.product(CELLS, [False, True], [1, 2], ["native", "scan"], [False, True], [False, True], [True, False]))
# The default run takes an even sample that still covers every value of every factor; -m slow runs all 192.
SAMPLE = MATRIX[::11]


def _run_matrix_case(params, tmp_path, sizes):
    module, make, names, axes = matrix_case(*params)
    path = tmp_path / "m.onnx"
    rnnedge.export(module, make(2, 6), path, dynamic_axes=axes, input_names=names, lowering=params[3], verify=False)
    for b, t in sizes:
        ref, out = run_both(module, path, make(b, t), names)
        assert max_error(ref, out) < 1e-4, (params, b, t)


@pytest.mark.parametrize("params", SAMPLE, ids=lambda p: "-".join(map(str, p)))
def test_export_matrix_sample(params, tmp_path):
    _run_matrix_case(params, tmp_path, [(1, 1), (3, 9), (2, 512)])


@pytest.mark.slow
@pytest.mark.parametrize("params", MATRIX, ids=lambda p: "-".join(map(str, p)))
def test_export_matrix_full(params, tmp_path):
    _run_matrix_case(params, tmp_path, [(1, 1), (3, 9), (5, 40), (2, 600)])


def test_sample_covers_every_factor():
    for i in range(len(MATRIX[0])):
        assert {p[i] for p in SAMPLE} == {p[i] for p in MATRIX}


def test_state_inputs_left_out_of_dynamic_axes_follow_the_batch(tmp_path):
    """Users often name only x's axes; a fixed h0 would freeze (or contradict) the batch."""
    module, examples, names, _, make = USER_CASES["tied language model with state"]()
    path = tmp_path / "lm.onnx"
    rnnedge.export(module, examples, path, input_names=names, dynamic_axes={"tokens": {0: "batch", 1: "seq"}})
    dims = symbolic_dims(onnx.load(str(path)).graph.input)
    assert dims["h0"] == [2, "batch", 16] and dims["c0"] == [2, "batch", 16]
    ref, out = run_both(module.eval(), path, make(5, 9), names)
    assert max_error(ref, out) < 1e-4


def test_subclassed_and_parametrized_recurrent_layers_export(tmp_path):
    """`class BLSTM(nn.LSTM): pass` (a KeyError before) and parametrizations.weight_norm on a GRU's weight_hh
    (refused before: the computed weight is no Parameter) export and match torch at an unseen shape."""
    from torch.nn.utils.parametrizations import weight_norm

    class BLSTM(nn.LSTM):
        pass

    class Both(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = BLSTM(6, 8, batch_first=True, bidirectional=True)
            self.gru = weight_norm(nn.GRU(16, 8, batch_first=True), name="weight_hh_l0")

        def forward(self, x):
            return self.gru(self.lstm(x)[0])[0]

    torch.manual_seed(0)
    module = Both().eval()
    rnnedge.export(module, (torch.randn(2, 9, 6),), tmp_path / "m.onnx", input_names=["x"], dynamic_axes={"x": {0: "batch", 1: "time"}})
    ref, out = run_both(module, tmp_path / "m.onnx", (torch.randn(3, 41, 6),), ["x"])
    assert max_error(ref, out) < 1e-5


def test_dynamic_axes_naming_no_input_or_output_is_refused(tmp_path):
    """A typo in dynamic_axes (or the CLI's --axis) would leave the axis it meant fixed: refused, naming the inputs."""
    with pytest.raises(BadInputError, match=r"names 'inputs', which is no input \(x\)"):
        rnnedge.export(nn.GRU(5, 8, batch_first=True), (torch.randn(2, 6, 5),), tmp_path / "m.onnx", input_names=["x"],
                       dynamic_axes={"inputs": {0: "batch", 1: "seq"}})
    assert not (tmp_path / "m.onnx").exists()


def test_forward_code_asking_isinstance_of_its_layer_keeps_its_branch(tmp_path):
    """OpenNMT-style bridges branch on `isinstance(self.rnn, nn.LSTM)`: export's stand-in answers as the layer it
    replaces (the branch took the other path before: an ExportError or a ParityError)."""

    class Bridge(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.LSTM(10, 16, batch_first=True, bidirectional=True)

        def forward(self, x):
            out, h = self.rnn(x)
            if isinstance(self.rnn, nn.LSTM):
                h = h[0]
            return out, torch.cat([h[0::2], h[1::2]], 2)

    torch.manual_seed(0)
    module = Bridge().eval()
    rnnedge.export(module, (torch.randn(2, 20, 10),), tmp_path / "m.onnx", input_names=["x"], output_names=["out", "h"],
                   dynamic_axes={"x": {0: "batch", 1: "time"}})
    ref, out = run_both(module, tmp_path / "m.onnx", (torch.randn(3, 33, 10),), ["x"])
    assert max_error(ref, out) < 1e-5


def test_a_bidirectional_user_module_cannot_stream(tmp_path):
    """Its backward direction needs the whole sequence: chunks chained gave other answers (0.083 off) with no error."""

    class BiState(nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = nn.GRU(5, 12, batch_first=True, bidirectional=True)

        def forward(self, x, h0):
            return self.gru(x, h0)

    with pytest.raises(BadInputError, match="bidirectional layer cannot stream"):
        rnnedge.export(BiState().eval(), (torch.randn(2, 7, 5), torch.zeros(2, 2, 12)), tmp_path / "m.onnx", input_names=["x", "h0"],
                       output_names=["y", "hn"], dynamic_axes={"x": {0: "batch", 1: "seq"}, "h0": {1: "batch"}}, target="stream")
