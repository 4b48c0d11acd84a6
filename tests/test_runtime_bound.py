"""The pre-bound fast path of Session.run and StreamingSession.feed (rnnedge.runtime.bound) gives exactly what the
checked path gives: same outputs, same state carried, same refusals, per thread; no timing asserted here."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from rnnedge.errors import BadInputError
from rnnedge.runtime import Session, StreamingSession

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def stream_models(tmp_path_factory):
    """A streaming LSTM(8->128) tagger (the issue's one-step call) and the seed task's RNN(5->8) classifier."""
    from rnnedge.checkpoint import save_checkpoint
    from rnnedge.exporting.api import export_checkpoint
    from rnnedge.families.sequence.model import ModelConfig, SequenceModel

    folder = tmp_path_factory.mktemp("bound")
    torch.manual_seed(0)
    paths = {}
    for name, kw in {"lstm": dict(input_size=8, cell="lstm", hidden=128, num_outputs=10, head="tag"),
                     "seed": dict(input_size=5, cell="rnn", hidden=8, num_outputs=2)}.items():
        ckpt = folder / f"{name}.safetensors"
        save_checkpoint(ckpt, SequenceModel(ModelConfig(**kw)))
        paths[name] = folder / f"{name}.onnx"
        export_checkpoint(ckpt, paths[name], target="stream", verify=False)
    return paths


@pytest.mark.parametrize("name,features", [("lstm", 8), ("seed", 5)])
def test_feed_fast_path_equals_checked_step_and_whole_run(stream_models, name, features):
    fast, checked = StreamingSession(stream_models[name], threads=1), StreamingSession(stream_models[name], threads=1)
    xs = np.random.default_rng(0).standard_normal((12, features)).astype(np.float32)
    got = [fast.feed(xs[i : i + 1]) for i in range(6)] + [fast.feed(xs[6:9]), fast.feed(xs[9:12])]  # two chunk shapes
    want = [checked.step({"default": xs[i : i + 1].astype(np.float64)})["default"] for i in range(6)]  # float64: checked path
    want += [checked.step({"default": xs[6:9].astype(np.float64)})["default"], checked.step({"default": xs[9:12].astype(np.float64)})["default"]]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-6)
    assert len(fast._bound) == 2  # both chunk shapes pre-bound
    whole = fast.session.run(xs[None].astype(np.float64))[0]
    last = np.concatenate(got) if got[0].ndim == 2 else got[-1]
    np.testing.assert_allclose(last, whole, rtol=0, atol=1e-5)


def test_feed_state_follows_reset_and_step(stream_models):
    s = StreamingSession(stream_models["lstm"], threads=1)
    x = np.ones((1, 8), np.float32)
    first = s.feed(x)
    second = s.feed(x)
    assert np.abs(first - second).max() > 0  # the state moved on
    s.reset()
    np.testing.assert_array_equal(s.feed(x), first)
    s.step({"default": x.astype(np.float64)})  # the checked path continues from the fast path's state ...
    after_step = s.feed(x)  # ... and the fast path from the checked path's
    ref = StreamingSession(stream_models["lstm"], threads=1)
    for _ in range(2):
        ref.step({"default": x.astype(np.float64)})
    np.testing.assert_allclose(after_step, ref.step({"default": x.astype(np.float64)})["default"], atol=1e-6)


def test_fast_paths_refuse_what_the_checked_path_refuses(stream_models):
    sess = Session(stream_models["seed"], threads=1)
    x = np.zeros((2, 3, 5), np.float32)
    sess.run(x)  # pre-bound now
    x[1, 2, 0] = np.nan
    with pytest.raises(BadInputError, match="NaN"):
        sess.run(x)
    with pytest.raises(BadInputError, match="feature size"):
        sess.run(np.zeros((2, 3, 4), np.float32))
    stream = StreamingSession(sess)
    stream.feed(np.zeros((1, 5), np.float32))
    with pytest.raises(BadInputError, match="NaN"):
        stream.feed(np.full((1, 5), np.inf, np.float32))


def test_run_fast_path_per_thread(stream_models):
    sess = Session(stream_models["lstm"], threads=1)
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((1, 4, 8)).astype(np.float32) for _ in range(4)]
    want = [sess.run(x.astype(np.float64)) for x in xs]
    errors = []

    def worker(k):
        for _ in range(50):
            got = sess.run(xs[k])
            if np.abs(got - want[k]).max() > 1e-6:
                errors.append(k)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_a_kept_run_outlives_its_bound_call(tmp_path):
    """`run` of a BoundCall kept after the BoundCall itself is dropped still reads live buffers (it used to crash:
    the callable held the C binding, not the numpy buffers bound to it)."""
    import gc

    from onnx import TensorProto, helper

    from rnnedge.runtime.bound import BoundCall
    from rnnedge.runtime.providers import open_session

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 512])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 512])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    runs = []
    for k in range(4):
        bound = BoundCall(open_session(model.SerializeToString(), providers="cpu", threads=1), {"x": np.full((64, 512), k - 1.5, np.float32)})
        runs.append(bound.run)
    del bound
    gc.collect()
    junk = [np.full((64, 512), 7.0, np.float32) for _ in range(64)]  # reuse freed memory, if any was freed
    for run in runs:
        for _ in range(50):
            run()
    assert len(junk) == 64
