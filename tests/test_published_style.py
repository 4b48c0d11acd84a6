"""Issue 21 / 19 red team: modules written the way published packages write them (tests/published_modules.py), exported
with default options and checked independently: a plain onnxruntime session against torch at unseen batch and
sequence sizes (seq 1 where torch runs, >= 300, both sides of the branches), and for the streamable ones
`--target stream` streamed by rnnedge.runtime.StreamingSession at chunks 1, 7 and 50 against torch on the whole
sequence. A quick sample runs by default; every case runs with -m slow."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rnnedge
from rnnedge.errors import ExportError
from rnnedge.runtime import StreamingSession

try:
    from tests import published_modules as pm
except ImportError:  # run from inside tests/
    import published_modules as pm

TOL = 1e-5
STREAM_FRAMES = 211


def _flat(xs) -> list:
    out = []
    for x in xs:
        out += _flat(x) if isinstance(x, (list, tuple)) else [x]
    return out


def independent_error(module, path, args) -> float:
    """max |onnxruntime - torch| over every output, a plain CPU session fed the flattened inputs in file order."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    feeds = _flat(args)
    assert len(feeds) == len(names)
    with torch.no_grad():
        ref = module(*args)
    ref = _flat(ref if isinstance(ref, (list, tuple)) else [ref])
    out = session.run(None, {n: t.numpy() for n, t in zip(names, feeds)})
    assert [o.shape for o in out] == [tuple(r.shape) for r in ref]
    return max(float(np.abs(r.detach().numpy().astype(np.float64) - o).max()) if o.size else 0.0 for r, o in zip(ref, out))


def torch_runs(module, args) -> bool:
    try:
        with torch.no_grad():
            module(*args)
    except (RuntimeError, ValueError, IndexError):
        return False
    return True


def streamed_error(module, path, x: torch.Tensor, chunk: int) -> float:
    """StreamingSession fed `x` (1, T, ...) `chunk` frames at a time against torch's main output on the whole of it."""
    session = StreamingSession(path, providers="cpu")
    chunk = -(-chunk // session.stride) * session.stride
    frames = x.numpy()[0]
    got = np.concatenate([session.feed(frames[i: i + chunk]) for i in range(0, len(frames) - len(frames) % chunk, chunk)])
    with torch.no_grad():
        ref = module(x)
    ref = (ref[0] if isinstance(ref, tuple) else ref).numpy()[0]
    la = session.lookahead
    return float(np.abs(got[la:] - ref[: len(got) - la]).max())


def assert_right_at_probes(cases, name, module, path) -> None:
    """Every declared axis symbolic in the file, and onnxruntime == torch at the case's probes where torch runs (>= 2)."""
    import onnx

    case = cases.CASES[name]
    graph_inputs = {i.name: i for i in onnx.load(str(path)).graph.input}
    for inp, axes in case.dynamic_axes.items():
        for ax in axes:
            assert graph_inputs[inp].type.tensor_type.shape.dim[ax].dim_param, (inp, ax)
    checked = 0
    for batch, seq in case.probes:
        args = cases.inputs(name, batch, seq, seed=7)
        if not torch_runs(module, args):
            continue
        err = independent_error(module, path, args)
        assert err < TOL, (name, batch, seq, err)
        checked += 1
    assert checked >= 2, name


def export_case(cases, name, tmp_path):
    """(module, path, ExportResult) of one case of a module-case file (tests/published_modules*.py), default options."""
    case = cases.CASES[name]
    module = case.factory()
    path = tmp_path / f"{name}.onnx"
    result = rnnedge.export(module, cases.inputs(name, *case.example), path, dynamic_axes=case.dynamic_axes, **case.export_options)
    return module, path, result


def assert_refused_saying_why(cases, name, tmp_path) -> None:
    """The case's export is refused with the words its `expect` gives after 'refuse: ', and no file is written."""
    words = cases.CASES[name].expect.split(": ", 1)[1]
    with pytest.raises(ExportError, match=words):
        export_case(cases, name, tmp_path)
    assert not (tmp_path / f"{name}.onnx").exists()


QUICK = {"crf_tagger", "recurrent_ppo"}


@pytest.mark.parametrize("name", [n if n in QUICK else pytest.param(n, marks=pytest.mark.slow)
                                  for n, c in pm.CASES.items() if c.expect == "exports"])
def test_published_style_module_exports_right_at_unseen_sizes(name, tmp_path):
    module, path, _ = export_case(pm, name, tmp_path)
    assert_right_at_probes(pm, name, module, path)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n, c in pm.CASES.items() if c.expect != "exports"])
def test_published_style_refusals_say_why(name, tmp_path):
    assert_refused_saying_why(pm, name, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n, c in pm.CASES.items() if c.stream])
def test_published_style_streams_equal_torch_on_the_whole_sequence(name, tmp_path):
    module = pm.CASES[name].factory()
    path = tmp_path / f"{name}.stream.onnx"
    rnnedge.export(module, pm.inputs(name, 1, 24), path, target="stream")
    x = pm.inputs(name, 1, STREAM_FRAMES, seed=5)[0]
    for chunk in (1, 7, 50):
        assert streamed_error(module, path, x, chunk) < TOL, (name, chunk)


@pytest.mark.slow
def test_a_transposed_conv_decoder_is_refused_for_streaming_naming_the_layer(tmp_path):
    """CRN's decoder (ConvTranspose2d over time, then the last frame chomped) is causal, but rnnedge streams only
    forward windows: refused with the layer named, no file written."""
    with pytest.raises(ExportError, match="tran_conv_block_1"):
        rnnedge.export(pm.build("crn_denoiser"), pm.inputs("crn_denoiser", 1, 24), tmp_path / "s.onnx", target="stream")
    assert not (tmp_path / "s.onnx").exists()


class PooledFrontEnd(nn.Module):
    """Conv1d -> MaxPool1d(3) over time -> GRU (SincNet's and CBHG's pooling, small)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(6, 8, 3)
        self.pool = nn.MaxPool1d(3, stride=3)
        self.gru = nn.GRU(8, 10, batch_first=True)

    def forward(self, x):  # (B, T, 6)
        z = self.pool(torch.relu(self.conv(x.transpose(1, 2))))
        return self.gru(z.transpose(1, 2))[0]


def test_max_pool1d_keeps_the_time_axis_dynamic(tmp_path):
    """Planted bug it catches: without rnnedge.exporting.translations.max_pool1d_kept_dynamic, torch 2.13's
    max_pool1d reads the length as an int and every module pooling over time was refused ("specialised to 40")."""
    torch.manual_seed(0)
    module, path = PooledFrontEnd().eval(), tmp_path / "pool.onnx"
    result = rnnedge.export(module, torch.randn(2, 40, 6), path, dynamic_axes={"x": {0: "batch", 1: "seq"}})
    assert result.spec.ranges.get("seq", [5, None])[0] == 5  # 3 conv frames: one window; torch fails under that
    for batch, seq in ((3, 5), (1, 7), (2, 8), (1, 301)):
        assert independent_error(module, path, (torch.randn(batch, seq, 6),)) < TOL, (batch, seq)


class CausalMaxPool(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(12, 16, 3)
        self.gru = nn.GRU(16, 20, 2, batch_first=True)
        self.head = nn.Linear(20, 3)

    def forward(self, x):  # (B, T, 12)
        z = torch.relu(self.conv(F.pad(x.transpose(1, 2), (2, 0))))
        z = F.max_pool1d(F.pad(z, (2, 0), value=float("-inf")), 3, 1)  # causal: k - 1 frames of -inf on the left
        return self.head(self.gru(z.transpose(1, 2))[0])


def test_a_causal_max_pool_streams_from_a_finite_context(tmp_path):
    """The pool's left padding of -inf becomes a carried context; its start is float32's lowest, not -inf (planted
    bug it catches: the state's initial value was -inf, and StreamingSession refused its own state as 'NaN or Inf')."""
    torch.manual_seed(0)
    module, path = CausalMaxPool().eval(), tmp_path / "causal.onnx"
    result = rnnedge.export(module, torch.randn(1, 24, 12), path, target="stream")
    assert all(np.isfinite(s["init"]) for s in result.spec.states)
    x = torch.randn(1, STREAM_FRAMES, 12)
    for chunk in (1, 7, 50):
        assert streamed_error(module, path, x, chunk) < TOL, chunk


def test_floor_division_guards_are_read_exactly():
    """Planted bug it catches: guard texts were evaluated in floats; sympy reads `(s27 - 5)//3` as floor(s27/3 - 5/3)
    and 8/3 - 5/3 = 0.9999999999999998, so conv(3) + MaxPool1d(3) + LSTM ('frames != 1') read as valid from 9 and was
    split at the wrong size, then refused ('could not be exported as a piece')."""
    from rnnedge.exporting.guard_sizes import as_bound, excluded_sizes

    guard = "Ne(Max(1, (((s27 - 5)//3)) + 1), 1)"
    assert as_bound(guard, "s27", {"s27": 40}) == [8, None]
    assert excluded_sizes(guard, "s27", {"s27": 40}) == list(range(1, 8))
