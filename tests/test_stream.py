"""`--target stream` for a user's own module (issue 19): the streaming apps of tests/stream_modules.py, each exported
from its factory and fed to rnnedge.runtime.StreamingSession chunk by chunk (1, 7, 50 steps over 200 frames) against
torch on the whole sequence; what cannot stream is refused naming the layer; a file that would disagree is never
written (the export's quick check streams it); `rnnedge verify FILE.py:FACTORY` re-checks a stream file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import rnnedge
from rnnedge.cli import cli
from rnnedge.errors import BadInputError, ExportError, ParityError
from rnnedge.runtime import StreamingSession

try:
    from tests import stream_modules as sm
except ImportError:  # run from inside tests/
    import stream_modules as sm

HERE = Path(__file__).resolve().parent
FRAMES = 200
_FILES: dict[str, tuple] = {}


def _export(name: str, tmp_path_factory) -> tuple[Path, object]:
    """The stream file of factory `name` (exported once per session) and its ExportResult."""
    if name not in _FILES:
        path = tmp_path_factory.mktemp("stream") / f"{name}.onnx"
        shape = sm.STREAMING[name]
        result = rnnedge.export(getattr(sm, name)(), torch.randn(*shape), path, target="stream")  # strided: seq >= 4 recorded (pooling fails under)
        _FILES[name] = (path, result)
    return _FILES[name]


def _whole(name: str, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return getattr(sm, name)()(torch.from_numpy(x[None])).numpy()[0]


def _whole_batch(name: str, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return getattr(sm, name)()(torch.from_numpy(x)).numpy()


def _streamed(session, x: np.ndarray, n: int, per_step: bool) -> np.ndarray:
    outs = [session.feed(x[i: i + n]) for i in range(0, len(x), n)]
    return np.concatenate(outs, 0) if per_step else outs[-1]


def _streams_like_torch(module, path, seed: int) -> float:
    """Export `module` (features 8) --target stream to `path`; the largest |stream in chunks of 7 - torch on the whole| over 60 frames."""
    rnnedge.export(module, torch.randn(1, 24, 8), path, target="stream")
    x = np.random.default_rng(seed).standard_normal((60, 8)).astype(np.float32)
    with torch.no_grad():
        ref = module(torch.from_numpy(x[None])).numpy()[0]
    return float(np.abs(_streamed(StreamingSession(path, providers="cpu"), x, 7, True) - ref).max())


@pytest.mark.parametrize("name", ["make_kws", "make_denoiser", "make_trimmed", "make_cells", "make_last_step", "make_strided", "make_custom_cell",
                                  pytest.param("make_vad", marks=pytest.mark.slow), pytest.param("make_crnn", marks=pytest.mark.slow)])
def test_streamed_chunks_equal_torch_on_the_whole_sequence(name, tmp_path_factory):
    path, _ = _export(name, tmp_path_factory)
    x = np.random.default_rng(1).standard_normal((FRAMES, sm.STREAMING[name][2])).astype(np.float32)
    ref = _whole(name, x)
    per_step = name != "make_last_step"
    for n in (1, 7, 50):
        session = StreamingSession(path, providers="cpu")
        n = -(-n // session.stride) * session.stride
        got = _streamed(session, x, n, per_step)
        assert got.shape == ref.shape and np.abs(got - ref).max() < 1e-5, (name, n, np.abs(got - ref).max())
    two = StreamingSession(path, providers="cpu")  # two streams stepped together keep their own state
    other = x[::-1].copy()
    n = 7 * two.stride
    outs = [two.step({"a": x[i: i + n], "b": other[i: i + n]}) for i in range(0, FRAMES, n)]
    got_a = np.concatenate([o["a"] for o in outs]) if per_step else outs[-1]["a"]
    got_b = np.concatenate([o["b"] for o in outs]) if per_step else outs[-1]["b"]
    assert np.abs(got_a - ref).max() < 1e-5 and np.abs(got_b - _whole(name, other)).max() < 1e-5


def test_the_spec_declares_every_state_pair(tmp_path_factory):
    path, result = _export("make_kws", tmp_path_factory)
    states = {s["input"]: s for s in result.spec.states}
    assert set(states) == {"conv1.ctx0", "conv2.ctx0", "rnn.h0"}
    assert states["conv1.ctx0"].items() >= {"output": "conv1.ctxn", "shape": ["batch", 40, 2], "batch_axis": 0, "init": 0.0}.items()
    assert states["conv2.ctx0"]["shape"] == ["batch", 32, 4]  # (k - 1) * dilation frames of context
    assert states["rnn.h0"].items() >= {"output": "rnn.hn", "shape": [2, "batch", 48], "batch_axis": 1}.items()
    import onnx

    model = onnx.load(path)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["rnnedge.target"] == "stream" and json.loads(meta["rnnedge.spec"])["states"] == result.spec.states
    assert {s["output"] for s in result.spec.states} <= {o.name for o in model.graph.output}
    from rnnedge.inspect import declared_spec

    shown = declared_spec(meta)["spec"]["states"]  # rnnedge inspect lists them
    assert any(line.startswith("conv2.ctx0 -> conv2.ctxn") and "batch axis 0" in line for line in shown)


def test_a_custom_cell_through_run_cell_carries_its_scan_state(tmp_path_factory):
    """The Scan's (h, c) loop state: two state pairs named after the cell, batch axis 0, zeros at the start."""
    _, result = _export("make_custom_cell", tmp_path_factory)
    states = {s["input"]: s for s in result.spec.states}
    assert set(states) == {"conv.ctx0", "cell.s0_0", "cell.s1_0"}
    assert states["cell.s0_0"].items() >= {"output": "cell.s0_n", "shape": ["batch", 12], "batch_axis": 0, "init": 0.0}.items()


def test_a_custom_cell_started_from_anything_but_zeros_is_refused(tmp_path):
    class FromInput(sm.CustomCellKWS):
        def forward(self, x):
            z = F.relu(self.conv(F.pad(x.transpose(1, 2), (2, 0)))).transpose(1, 2)
            start = z.new_full((z.shape[0], 12), 0.5)  # a start other than zeros
            y, _ = self.run_cell(self.cell, z, (start, start))
            return self.head(y)

    with pytest.raises(ExportError, match="a stream starts from zeros"):
        rnnedge.export(FromInput().eval(), torch.randn(1, 24, 10), tmp_path / "m.onnx", target="stream")


def test_a_strided_front_end_declares_its_stride_and_the_runtime_enforces_it(tmp_path_factory):
    path, result = _export("make_strided", tmp_path_factory)
    assert result.spec.stride == 4  # a stride-2 conv, then a stride-2 pooling
    session = StreamingSession(path, providers="cpu")
    with pytest.raises(BadInputError, match="not a multiple of this model's stride of 4"):
        session.feed(np.zeros((6, 20), np.float32))


def test_a_module_that_takes_its_own_state_gets_its_conv_context_carried(tmp_path):
    module = sm.make_own_state()
    path = tmp_path / "own.onnx"
    result = rnnedge.export(module, (torch.randn(1, 24, 40), torch.zeros(2, 1, 48)), path, target="stream",
                            input_names=["mel", "h0"], output_names=["logits", "hn"])
    pairs = {s["input"]: s["output"] for s in result.spec.states}
    assert pairs == {"conv1.ctx0": "conv1.ctxn", "conv2.ctx0": "conv2.ctxn", "h0": "hn"}
    x = np.random.default_rng(2).standard_normal((60, 40)).astype(np.float32)
    with torch.no_grad():
        ref = module(torch.from_numpy(x[None]), torch.zeros(2, 1, 48))[0].numpy()[0]
    assert np.abs(_streamed(StreamingSession(path, providers="cpu"), x, 1, True) - ref).max() < 1e-5


def test_a_module_that_packs_its_own_batch_streams_with_full_chunk_lengths(tmp_path):
    module = sm.make_packed()
    path = tmp_path / "packed.onnx"
    rnnedge.export(module, (torch.randn(2, 24, 20), torch.tensor([24, 15])), path, target="stream",
                   input_names=["x", "lengths"], output_names=["y", "h"])
    x = np.random.default_rng(4).standard_normal((90, 20)).astype(np.float32)
    with torch.no_grad():
        ref = module(torch.from_numpy(x[None]), torch.tensor([90]))[0].numpy()[0]
    assert np.abs(_streamed(StreamingSession(path, providers="cpu"), x, 7, True) - ref).max() < 1e-5


def test_a_learned_initial_state_is_the_declared_start(tmp_path):
    module = sm.make_learned_start()
    path = tmp_path / "learned.onnx"
    result = rnnedge.export(module, torch.randn(1, 24, 20), path, target="stream")
    start = np.asarray(result.spec.states[0]["init"])
    assert start.shape == (2, 16) and np.allclose(start, module.h0.detach().numpy()[:, 0])
    x = np.random.default_rng(5).standard_normal((40, 20)).astype(np.float32)
    with torch.no_grad():
        ref = module(torch.from_numpy(x[None])).numpy()[0]
    session = StreamingSession(path, providers="cpu")
    for _ in range(2):  # reset goes back to the learned start, not to zeros
        assert np.abs(_streamed(session, x, 1, True) - ref).max() < 1e-5
        session.reset()


def test_a_centred_conv_with_only_per_frame_layers_after_it_declares_its_lookahead(tmp_path):
    module = sm.make_postnet()
    path = tmp_path / "post.onnx"
    result = rnnedge.export(module, torch.randn(1, 24, 16), path, target="stream")
    assert result.spec.lookahead == 1
    import onnx

    assert {p.key: p.value for p in onnx.load(path).metadata_props}["rnnedge.stream.lookahead"] == "1"
    x = np.random.default_rng(6).standard_normal((60, 16)).astype(np.float32)
    with torch.no_grad():
        ref = module(torch.from_numpy(x[None])).numpy()[0]
    session = StreamingSession(path, providers="cpu")
    assert session.lookahead == 1  # the runtime reports it
    got = _streamed(session, x, 7, True)
    assert np.abs(got[1:] - ref[:-1]).max() < 1e-5 and np.abs(got[1:] - ref[1:]).max() > 1e-3  # one frame late, exactly


def test_rnnedge_run_says_a_stream_file_answers_late(runner, tmp_path):
    """`rnnedge run --chunk 7` (or whole) on a file with a declared lookahead printed an output of the input's length
    without a word: off by the delay against the module (0.8 on a GRU + 'same' post-net), nothing said why."""
    path = tmp_path / "post.onnx"
    rnnedge.export(sm.make_postnet(), torch.randn(1, 24, 16), path, target="stream")
    np.save(tmp_path / "x.npy", np.random.default_rng(7).standard_normal((2, 30, 16)).astype(np.float32))
    for chunk in (["--chunk", "7"], []):
        done = runner.invoke(cli, ["run", str(path), "--input", str(tmp_path / "x.npy"), *chunk, "--json"])
        assert done.exit_code == 0, done.output
        assert json.loads(done.stdout)["lookahead"].startswith("1 steps: output i is the module's output at step i - 1")


@pytest.mark.parametrize("factory, words", [
    ("make_centred", r"conv \(Conv\) pads the time axis by \(1, 1\).*1 future frame.*no layer after it carries state"),
    ("make_norm", r"x.mean\(dim=1.*reduces over the time axis"),
    ("make_attention", r"torch.softmax.*pairs every time step with every other"),
])
def test_right_context_is_refused_naming_the_layer(factory, words, tmp_path):
    shape = sm.REFUSED[factory][0]
    with pytest.raises(ExportError, match=words):
        rnnedge.export(getattr(sm, factory)(), torch.randn(*shape), tmp_path / "m.onnx", target="stream")
    assert not (tmp_path / "m.onnx").exists()


def test_a_stream_file_that_disagrees_is_never_written(tmp_path, monkeypatch):
    """Planted: the conv context is not carried (each chunk zero-padded again): the quick check's chunks catch it."""
    from rnnedge.exporting.stream_context import WindowContext

    monkeypatch.setattr(WindowContext, "window_state", lambda self, node: ([], 1, 0))
    with pytest.raises(ParityError, match="stream: chunk 1"):
        rnnedge.export(sm.make_kws(), torch.randn(1, 24, 40), tmp_path / "bad.onnx", target="stream")
    assert not (tmp_path / "bad.onnx").exists()


def test_cli_exports_and_verifies_a_stream_file_from_file_and_factory(runner, tmp_path):
    source = str(HERE / "stream_modules.py")
    out = tmp_path / "kws.onnx"
    done = runner.invoke(cli, ["export", f"{source}:make_kws", "--example", "float32[1,24,40]", "--target", "stream",
                                           "-o", str(out), "--json"])
    assert done.exit_code == 0, done.output
    done = runner.invoke(cli, ["verify", f"{source}:make_kws", str(out), "--example", "float32[1,24,40]",
                                           "--axis", "mel:1=seq", "--json"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["ok"] and {"chunk 1 of 200", "chunk 7 of 200", "chunk 50 of 200"} <= {
        c["case"].split(": ", 1)[1].split(" steps")[0] for c in report["results"] if c["case"].startswith("stream")}
    mel = np.random.default_rng(3).standard_normal((2, 30, 40)).astype(np.float32)
    np.save(tmp_path / "mel.npy", mel)
    done = runner.invoke(cli, ["run", str(out), "--input", str(tmp_path / "mel.npy"), "--chunk", "7", "-o", str(tmp_path / "y.npy")])
    assert done.exit_code == 0, done.output
    assert np.abs(np.load(tmp_path / "y.npy") - _whole_batch("make_kws", mel)).max() < 1e-5  # rows streamed, state carried
    np.savez(tmp_path / "mel.npz", mel=mel)  # the states start at their initial values: the user gives mel only
    done = runner.invoke(cli, ["quantize", str(out), "-o", str(tmp_path / "q.onnx"), "--eval", str(tmp_path / "mel.npz"),
                               "--max-drift", "0.5"])
    assert done.exit_code == 0, done.output
    q = StreamingSession(tmp_path / "q.onnx", providers="cpu")  # the int8 file streams too
    assert np.abs(_streamed(q, mel[0], 7, True) - _whole_batch("make_kws", mel)[0]).max() < 0.05
    done = runner.invoke(cli, ["verify", f"{source}:make_kws_retrained", str(out)])
    assert done.exit_code == 1, done.output  # other weights: the streamed outputs differ
    done = runner.invoke(cli, ["verify", f"{source}:make_kws", str(out), "--axis", "mel:1=frames"])
    assert done.exit_code == 2 and "declares 'mel'" in done.stderr


def test_cli_refuses_a_centred_conv_in_one_line(runner, tmp_path):
    done = runner.invoke(cli, ["export", f"{HERE / 'stream_modules.py'}:make_centred", "--example", "float32[1,24,16]",
                                           "--target", "stream", "-o", str(tmp_path / "c.onnx")])
    assert done.exit_code == 2 and len(done.stderr.splitlines()) == 1 and "future frame" in done.stderr, done.output


def test_a_channels_first_stream_file_is_streamed_along_its_time_axis(runner, tmp_path):
    """(B, F, T) in and out: the runtime took axis 1 (the 12 features) for time - `run --chunk 7` was refused as 'not a
    multiple of this model's fixed chunk of 12', a stride-2 file refused every chunk of 12 features ('stride of 2'),
    and `feed` ran each chunk as one piece whatever its length. Chunks and answers keep the module's layout."""
    source = str(HERE / "stream_modules.py")
    out = tmp_path / "cf.onnx"
    done = runner.invoke(cli, ["export", f"{source}:make_channels_first", "--example", "float32[1,12,24]",
                               "--axis", "x:2=frames", "--target", "stream", "-o", str(out)])
    assert done.exit_code == 0, done.output
    x = np.random.default_rng(4).standard_normal((2, 12, FRAMES)).astype(np.float32)
    ref = _whole_batch("make_channels_first", x)  # (2, 12, 100)
    session = StreamingSession(out, providers="cpu")
    assert session.stride == 2
    for n in (2, 14, 50):
        got = np.concatenate([session.feed(x[0][:, i: i + n]) for i in range(0, FRAMES, n)], axis=1)
        assert got.shape == ref[0].shape and np.abs(got - ref[0]).max() < 1e-5, n
        session.reset()
    with pytest.raises(BadInputError, match="7 steps is not a multiple of this model's stride of 2"):
        session.feed(x[0][:, :7])
    np.save(tmp_path / "x.npy", x)
    done = runner.invoke(cli, ["run", str(out), "--input", str(tmp_path / "x.npy"), "--chunk", "8", "-o", str(tmp_path / "y.npy")])
    assert done.exit_code == 0, done.output
    assert np.abs(np.load(tmp_path / "y.npy") - ref).max() < 1e-5
    assert session.time_axis == 1 and session.output_time_axis == 1  # of a chunk and of an answer (no batch axis)


def test_cli_exports_a_module_taking_lengths_from_a_filled_int64_example(runner, tmp_path):
    """`--example 'int64[1]=24'` (every element 24): an int64 example was random ids of 0 and 1, so a mel + lengths
    module could not be exported from the command line at all ('Length of all samples has to be greater than 0')."""
    source, out = f"{HERE / 'stream_modules.py'}:make_packed", tmp_path / "packed.onnx"
    done = runner.invoke(cli, ["export", source, "--example", "float32[1,24,20]", "--example", "int64[1]", "-o", str(out)])
    assert done.exit_code == 2 and "'int64[1]=100'" in done.stderr, done.output  # says how
    examples = ["--example", "float32[1,24,20]", "--example", "int64[1]=24"]
    done = runner.invoke(cli, ["export", source, *examples, "--target", "stream", "-o", str(out)])
    assert done.exit_code == 0, done.output
    done = runner.invoke(cli, ["verify", source, str(out), *examples])
    assert done.exit_code == 0, done.output
    x = np.random.default_rng(5).standard_normal((60, 20)).astype(np.float32)
    with torch.no_grad():
        ref = sm.make_packed()(torch.from_numpy(x[None]), torch.tensor([60]))[0].numpy()[0]
    assert np.abs(_streamed(StreamingSession(out, providers="cpu"), x, 7, True) - ref).max() < 1e-5
    done = runner.invoke(cli, ["export", source, "--example", "float32[1,24,20]", "--example", "int64[1]=2.5",
                               "-o", str(tmp_path / "bad.onnx")])
    assert done.exit_code == 2 and "whole number" in done.stderr, done.output


def test_cli_exports_a_module_taking_a_state_tuple_from_a_tuple_example(runner, tmp_path):
    """`--example '(float32[2,1,16], float32[2,1,16])'` is one argument, a tuple (an LSTM's (h0, c0)): the CLI had no
    way to give one (each --example is one argument: 'forward() takes 3 positional arguments but 4 were given')."""
    source, out = f"{HERE / 'stream_modules.py'}:make_own_lstm_state", tmp_path / "own.onnx"
    examples = ["--example", "float32[1,24,10]", "--example", "(float32[2,1,16], float32[2,1,16])"]
    done = runner.invoke(cli, ["export", source, *examples, "--target", "stream", "-o", str(out)])
    assert done.exit_code == 0, done.output
    done = runner.invoke(cli, ["verify", source, str(out), *examples])
    assert done.exit_code == 0, done.output
    x = np.random.default_rng(6).standard_normal((60, 10)).astype(np.float32)
    with torch.no_grad():
        ref = sm.make_own_lstm_state()(torch.from_numpy(x[None]), (torch.zeros(2, 1, 16), torch.zeros(2, 1, 16)))[0].numpy()[0]
    assert np.abs(_streamed(StreamingSession(out, providers="cpu"), x, 7, True) - ref).max() < 1e-5


def test_a_cumulative_sum_over_time_is_refused_and_one_over_features_streams(tmp_path):
    """CumSum's axis is an input (a 0-d constant): reading it crashed every stream export of a cumsum (exit 3,
    'IndexError: too many indices for array')."""
    with pytest.raises(ExportError, match=r"x.cumsum\(self.dim\).*\(CumSum\) accumulates along the time axis"):
        rnnedge.export(sm.make_cumulative_over_time(), torch.randn(1, 24, 8), tmp_path / "t.onnx", target="stream")
    module = sm.make_cumulative_over_features()
    assert _streams_like_torch(module, tmp_path / "f.onnx", seed=8) < 1e-5


def test_a_groupnorm_over_time_is_refused_naming_it_and_one_per_frame_streams(tmp_path):
    """nn.GroupNorm on (B, C, T) is Reshape (time folded into an unnamed axis) -> InstanceNormalization: the time
    check saw no time axis, so only the quick check stopped it ('the exported model differs from torch', exit 1,
    0.64 off at chunk 1), naming nothing."""
    with pytest.raises(ExportError, match=r"norm \(InstanceNormalization\) normalises over an axis the time axis was reshaped into"):
        rnnedge.export(sm.make_groupnorm_over_time(), torch.randn(1, 24, 8), tmp_path / "t.onnx", target="stream", verify=False)
    module = sm.make_groupnorm_per_frame()
    assert _streams_like_torch(module, tmp_path / "f.onnx", seed=9) < 1e-5


def test_a_padding_before_a_transpose_is_refused_saying_where_to_pad(tmp_path):
    """F.pad(x, (0, 0, 2, 0)) on (B, T, F), then .transpose(1, 2) into a causal conv: refused as 'a start symbol or
    padding no conv reads' (or, before that refusal, 'pads the time axis by (0, 0) ... needs 2 future frames'), with
    no word on the transpose that hides the padding from the conv."""
    with pytest.raises(ExportError, match=r"\(Pad\) adds frames.*a conv reads it after a transpose: pad right before the conv"):
        rnnedge.export(sm.make_padded_before_transpose(), torch.randn(1, 24, 8), tmp_path / "p.onnx", target="stream")
