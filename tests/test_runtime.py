"""rnnedge.runtime: the torch-free app API runs models right and refuses bad input cleanly."""
from __future__ import annotations

import gc
import json
import subprocess
import sys
import textwrap
import threading
import tracemalloc

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from rnnedge.errors import BadInputError, RnnEdgeError, UnsafeFileError
from rnnedge.runtime import PROVIDER_ALIASES, Session, StreamingSession, select_providers

try:
    from tests import runtime_models as rm
except ImportError:  # tests/ is not a package
    import runtime_models as rm

RNG = np.random.default_rng(1234)
CPU = "CPUExecutionProvider"


def save(tmp_path_factory, name: str, model: onnx.ModelProto) -> str:
    path = tmp_path_factory.mktemp("models") / f"{name}.onnx"
    onnx.save(model, str(path))
    return str(path)


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    """Every test model, saved once: name -> path."""
    specs = {
        "lstm_tag": dict(),
        "lstm_cls": dict(head="classify"),
        "gru_tag": dict(cell="gru"),
        "lstm_nolen": dict(lengths=False),
        "tokens": dict(vocab=20),
        "lstm_stream": dict(stream=True, layers=2),
        "gru_stream": dict(cell="gru", stream=True),
        "lstm_stream_cls": dict(stream=True, head="classify"),
        "mobile": dict(stream=True, lengths=False, fixed=(1, 4)),
        "mobile_b2": dict(stream=True, lengths=False, fixed=(2, 4)),
        "stream_bare": dict(stream=True, metadata=False),
        "tokens_stream": dict(vocab=20, stream=True, head="classify"),
    }
    out = {name: save(tmp_path_factory, name, rm.rnn_model(**kw)) for name, kw in specs.items()}
    out["identity"] = save(tmp_path_factory, "identity", rm.identity_model())
    return out


@pytest.fixture(scope="module")
def sessions(paths):
    return {name: Session(p, providers="cpu") for name, p in paths.items()}


def feats(b, t, f=5):
    return RNG.normal(size=(b, t, f)).astype(np.float32)


# ---- import hygiene ----------------------------------------------------------------------

def test_runtime_imports_and_runs_without_torch_or_onnx(paths):
    code = textwrap.dedent(f"""
        import sys, importlib.abc
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "onnx"):
                    raise ImportError("blocked: " + name)
        sys.meta_path.insert(0, Block())
        import numpy as np
        import rnnedge.runtime as rt
        s = rt.Session({paths['lstm_tag']!r})
        y = s.run(np.zeros((2, 3, 5), np.float32))
        assert y.shape == (2, 3, 3), y.shape
        st = rt.StreamingSession({paths['lstm_stream']!r})
        st.feed(np.zeros((4, 5), np.float32))
        assert not any(m.split(".")[0] in ("torch", "onnx") for m in sys.modules)
        print("ok")
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"


# ---- provider selection (pure) -------------------------------------------------------------

ALL = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CoreMLExecutionProvider",
       "NnapiExecutionProvider", "XnnpackExecutionProvider", "QNNExecutionProvider",
       "DmlExecutionProvider", "AzureExecutionProvider", CPU]


@pytest.mark.parametrize("available, expected", [
    ([CPU], [CPU]),
    (["AzureExecutionProvider", CPU], [CPU]),
    (list(reversed(ALL)), ALL[:6] + [CPU]),
    (["XnnpackExecutionProvider", "CUDAExecutionProvider", CPU],
     ["CUDAExecutionProvider", "XnnpackExecutionProvider", CPU]),
    (["CoreMLExecutionProvider"], ["CoreMLExecutionProvider", CPU]),
])
def test_auto_takes_accelerators_in_order_then_cpu(available, expected):
    assert select_providers("auto", available) == expected
    assert select_providers(None, available) == expected


@pytest.mark.parametrize("name", ["cuda", "CUDA", "CUDAExecutionProvider", " cuda "])
def test_explicit_provider_by_short_or_full_name(name):
    assert select_providers(name, ALL) == ["CUDAExecutionProvider", CPU]


def test_every_alias_resolves_when_available():
    for short, full in PROVIDER_ALIASES.items():
        assert select_providers(short, [full, CPU])[0] == full
    assert select_providers("cpu", [CPU]) == [CPU]


def test_unknown_provider_is_refused():
    with pytest.raises(BadInputError, match="unknown provider 'warp'"):
        select_providers("warp", ALL)
    with pytest.raises(BadInputError, match="unknown provider"):
        select_providers(["cpu", "warp"], ALL)


def test_other_available_providers_pass_by_full_name():
    assert select_providers("AzureExecutionProvider", ["AzureExecutionProvider", CPU]) == \
        ["AzureExecutionProvider", CPU]


def test_unavailable_explicit_provider_names_the_available_ones():
    with pytest.raises(BadInputError, match=r"not available.*AzureExecutionProvider, CPUExecutionProvider"):
        select_providers("cuda", ["AzureExecutionProvider", CPU])


def test_provider_list_skips_unavailable_but_not_all():
    assert select_providers(["tensorrt", "cuda", "cpu"], ["CUDAExecutionProvider", CPU]) == \
        ["CUDAExecutionProvider", CPU]
    with pytest.raises(BadInputError, match="none of the providers"):
        select_providers(["tensorrt", "cuda"], [CPU])
    with pytest.raises(BadInputError, match="empty provider list"):
        select_providers([], [CPU])


def test_session_reports_providers_in_use_and_node_placement(paths):
    s = Session(paths["lstm_tag"])  # auto: CPU here
    assert s.providers[-1] == CPU
    placement = s.node_placement()
    assert sum(placement.values()) >= 5 and set(placement) <= set(ort.get_available_providers())
    assert s.node_placement() == placement  # cached
    with pytest.raises(BadInputError, match="not available"):
        Session(paths["lstm_tag"], providers="tensorrt")


@pytest.mark.parametrize("threads", [0, -1, 1.5, "2", True])
def test_bad_thread_count_is_refused(paths, threads):
    with pytest.raises(BadInputError, match="threads"):
        Session(paths["lstm_tag"], threads=threads)


# ---- loading --------------------------------------------------------------------------------

def test_unloadable_files_are_one_line_bad_input(tmp_path):
    (tmp_path / "empty.onnx").write_bytes(b"")
    (tmp_path / "junk.onnx").write_bytes(b"\x00garbage that is not a protobuf\xff" * 10)
    (tmp_path / "adir.onnx").mkdir()
    cases = {"missing.onnx": "not found", "empty.onnx": "empty", "junk.onnx": "cannot load",
             "adir.onnx": "directory"}
    with pytest.raises(BadInputError, match="str or os.PathLike"):
        Session(None)
    for name, words in cases.items():
        with pytest.raises(BadInputError, match=words) as info:
            Session(tmp_path / name)
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/hostname"])
def test_external_data_outside_model_folder_is_refused(tmp_path, location):
    (tmp_path / "secret.bin").write_bytes(np.ones(3, np.float32).tobytes())
    (tmp_path / "m").mkdir()
    path = tmp_path / "m" / "model.onnx"
    path.write_bytes(rm.external_data_model(location).SerializeToString())
    with pytest.raises((UnsafeFileError, BadInputError)) as info:
        Session(path)
    assert "\n" not in str(info.value)


def test_external_data_escape_is_unsafe_file_error(tmp_path):
    (tmp_path / "secret.bin").write_bytes(np.ones(3, np.float32).tobytes())
    (tmp_path / "m").mkdir()
    path = tmp_path / "m" / "model.onnx"
    path.write_bytes(rm.external_data_model("../secret.bin").SerializeToString())
    with pytest.raises(UnsafeFileError, match="external data"):
        Session(path)


def test_ort_format_file_loads_and_matches(tmp_path, paths):
    ort_path = str(tmp_path / "model.ort")
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = ort_path
    opts.add_session_config_entry("session.save_model_format", "ORT")
    ort.InferenceSession(paths["lstm_tag"], opts, providers=[CPU])
    x = feats(2, 6)
    np.testing.assert_allclose(Session(ort_path).run(x), Session(paths["lstm_tag"]).run(x), atol=1e-6)


def test_properties_come_from_metadata(sessions):
    s = sessions["lstm_stream"]
    assert [i.name for i in s.inputs] == ["x", "lengths", "h0", "c0"]
    assert s.inputs[0].shape == ("batch", "seq", 5) and s.inputs[0].dtype == np.float32
    assert [o.name for o in s.outputs] == ["logits", "hn", "cn"]
    assert s.config["cell"] == "lstm" and s.config["layers"] == 2
    assert s.labels == ["c0", "c1", "c2"] and s.metadata["rnnedge.task"] == "test"
    assert s.target == "stream" and s.is_streaming and s.chunk is None
    m = sessions["mobile"]
    assert m.target == "mobile" and m.chunk == 4 and m.fixed_batch == 1 and m.is_streaming
    d = sessions["lstm_tag"]
    assert d.target == "dynamic" and not d.is_streaming and d.chunk is None


def test_third_party_model_without_metadata_runs(sessions):
    s = sessions["identity"]
    assert s.config is None and s.labels is None and s.target == "dynamic"
    x = feats(2, 3, 4)
    np.testing.assert_array_equal(s.run(x), x)
    assert list(s.run_all({"input": x})) == ["output"]
    assert sessions["stream_bare"].target == "stream"


def test_malformed_metadata_is_ignored(tmp_path):
    model = rm.rnn_model()
    helper.set_model_props(model, {"rnnedge.config": "{not json", "rnnedge.labels": '"x"'})
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    s = Session(path)
    assert s.config is None and s.labels is None
    assert s.run(feats(1, 2)).shape == (1, 2, 3)


# ---- numerics -------------------------------------------------------------------------------

def test_lstm_matches_numpy_reference_with_lengths(paths):
    model = onnx.load(paths["lstm_cls"])
    w = rm.weights(model)
    x, lengths = feats(3, 6), np.array([6, 2, 4])
    Y, h, _ = rm.lstm_reference(x, w["W0"], w["R0"], w["B0"], lengths=lengths)
    want = h @ w["Wout"] + w["bout"]
    np.testing.assert_allclose(Session(paths["lstm_cls"]).run(x, lengths), want, atol=1e-5)
    tag = Session(paths["lstm_tag"]).run(x, lengths)
    want_tag = Y @ w["Wout"] + w["bout"]
    for i, n in enumerate(lengths):
        np.testing.assert_allclose(tag[i, :n], want_tag[i, :n], atol=1e-5)


def test_run_equals_raw_onnxruntime(paths):
    x, lengths = feats(2, 5), np.array([5, 3])
    raw = ort.InferenceSession(paths["gru_tag"], providers=[CPU]).run(
        ["logits"], {"x": x, "lengths": lengths})[0]
    s = Session(paths["gru_tag"])
    np.testing.assert_array_equal(s.run(x, lengths), raw)
    np.testing.assert_array_equal(s(x, lengths), raw)


def test_dtypes_that_are_cast(sessions):
    s = sessions["lstm_tag"]
    x = feats(2, 3)
    np.testing.assert_allclose(s.run(x.astype(np.float64)), s.run(x), atol=1e-6)
    t = sessions["tokens"]
    ids = RNG.integers(0, 20, (2, 5))
    np.testing.assert_array_equal(t.run(ids.astype(np.int32)), t.run(ids.astype(np.int64)))
    np.testing.assert_array_equal(t.run(ids.tolist()), t.run(ids))


@pytest.mark.parametrize("name", ["lstm_tag", "lstm_cls", "gru_tag", "tokens"])
def test_list_of_sequences_equals_one_at_a_time(sessions, name):
    s = sessions[name]
    lens = [5, 1, 3, 7]
    seqs = [RNG.integers(0, 20, n) if s.is_tokens else feats(1, n)[0] for n in lens]
    batched = s.run(seqs)
    for i, seq in enumerate(seqs):
        alone = s.run(seq[None])[0]
        got = batched[i, : lens[i]] if batched.ndim == 3 else batched[i]
        np.testing.assert_allclose(got, alone, atol=1e-5)


def test_list_batching_without_lengths_input(sessions):
    s = sessions["lstm_nolen"]
    seqs = [feats(1, 4)[0], feats(1, 4)[0]]
    np.testing.assert_allclose(s.run(seqs)[1], s.run(seqs[1][None])[0], atol=1e-6)
    with pytest.raises(BadInputError, match="no 'lengths' input"):
        s.run([feats(1, 4)[0], feats(1, 3)[0]])


def test_streaming_model_runs_whole_from_zero_state(sessions):
    s = sessions["lstm_stream"]
    x = feats(2, 5)
    zeros = np.zeros((2, 2, 8), np.float32)
    full = s.run_all({"x": x, "h0": zeros, "c0": zeros})
    np.testing.assert_array_equal(s.run(x), full["logits"])
    assert full["hn"].shape == (2, 2, 8) and full["cn"].shape == (2, 2, 8)


def test_onnxruntime_failures_are_wrapped(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])], "bad",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "t", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [helper.make_tensor("shape", TensorProto.INT64, [1], [7])])
    path = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(RnnEdgeError, match="inference failed") as info:
        Session(path).run(feats(1, 2, 3))
    assert "\n" not in str(info.value) and type(info.value).__module__ == "rnnedge.errors"


# ---- bad input ------------------------------------------------------------------------------

def _bad_cases():
    x = np.zeros((2, 3, 5), np.float32)
    nan, inf = x.copy(), x.copy()
    nan[0, 1, 2], inf[1, 0, 0] = np.nan, -np.inf
    return [
        ("lstm_tag", (np.zeros((3, 5), np.float32),), "rank"),
        ("lstm_tag", (np.zeros((1, 2, 3, 5), np.float32),), "rank"),
        ("lstm_tag", (np.zeros((2, 3, 4), np.float32),), "feature size 4"),
        ("lstm_tag", (x.astype(np.int64),), "dtype int64"),
        ("lstm_tag", (x.astype(bool),), "dtype bool"),
        ("lstm_tag", (x.astype(np.complex64),), "dtype complex64"),
        ("lstm_tag", (np.array([["a"]]),), "dtype"),
        ("lstm_tag", (np.zeros((0, 3, 5), np.float32),), "empty batch"),
        ("lstm_tag", ([],), "empty batch"),
        ("lstm_tag", (np.zeros((2, 0, 5), np.float32),), "zero-length"),
        ("lstm_tag", ([np.zeros((0, 5), np.float32)],), "sequence 0"),
        ("lstm_tag", ([np.zeros((2, 5)), np.zeros((2, 4))],), "sequence 1"),
        ("lstm_tag", (x, np.array([3, 0])), "zero-length"),
        ("lstm_tag", (x, np.array([3, -1])), "negative"),
        ("lstm_tag", (x, np.array([3, 4])), "exceed"),
        ("lstm_tag", (x, np.array([3])), r"shape \(1,\)"),
        ("lstm_tag", (x, np.array([[3, 3]])), "shape"),
        ("lstm_tag", (x, np.array([3.0, 3.0])), "integers"),
        ("lstm_tag", ([x[0]], np.array([3])), "do not pass"),
        ("lstm_tag", (nan,), "NaN or Inf"),
        ("lstm_tag", (inf,), "NaN or Inf"),
        ("lstm_nolen", (x, np.array([3, 2])), "no 'lengths' input"),
        ("tokens", (np.array([[1, 2, 20]]),), r"\[0, 20\)"),
        ("tokens", (np.array([[1, -2, 3]]),), r"\[0, 20\)"),
        ("tokens", (np.array([[1.0, 2.0]]),), "dtype float64"),
        ("tokens", (np.zeros((1, 2, 5), np.int64),), "rank"),
        ("tokens", (np.array([[1, 2]], np.uint64),), "dtype uint64"),
        ("mobile", (np.zeros((1, 5, 5), np.float32),), "StreamingSession"),
        ("mobile", (np.zeros((2, 4, 5), np.float32),), "StreamingSession"),
        ("identity", (np.zeros((1, 2, 3), np.float32),), "feature size 3"),
    ]


@pytest.mark.parametrize("name, args, words", _bad_cases())
def test_bad_input_is_one_line_bad_input_error(sessions, name, args, words):
    with pytest.raises(BadInputError, match=words) as info:
        sessions[name].run(*args)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("feeds, words", [
    ({"x": np.zeros((1, 2, 5), np.float32), "bogus": 1}, "unknown input"),
    ({"lengths": np.array([2])}, "missing input 'x'"),
    ({"x": np.zeros((1, 2, 5), np.float32), "h0": np.zeros((2, 3, 8), np.float32)}, "batch 1"),
    ({"x": np.zeros((1, 2, 5), np.float32), "h0": np.zeros((1, 1, 8), np.float32)}, "dim 0"),
    ({"x": np.zeros((1, 2, 5), np.float32), "c0": np.full((2, 1, 8), np.nan, np.float32)}, "NaN"),
])
def test_run_all_checks_every_input(sessions, feeds, words):
    with pytest.raises(BadInputError, match=words):
        sessions["lstm_stream"].run_all(feeds)


DTYPES = [np.float16, np.float32, np.float64, np.int8, np.int32, np.int64, np.uint8, np.uint64,
          np.bool_, np.complex64]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(["lstm_tag", "lstm_nolen", "tokens", "mobile", "identity"]),
       shape=st.lists(st.integers(0, 6), min_size=0, max_size=4),
       dtype=st.sampled_from(DTYPES), special=st.sampled_from([None, np.nan, np.inf, -3, 25]),
       lengths=st.one_of(st.none(), st.lists(st.integers(-2, 7), min_size=0, max_size=4)))
def test_random_inputs_only_succeed_or_raise_bad_input(sessions, name, shape, dtype, special, lengths):
    x = np.ones(shape, dtype=np.float64)
    if special is not None and x.size:
        x.flat[0] = special
    with np.errstate(all="ignore"):
        x = x.astype(dtype)
    args = (x,) if lengths is None else (x, np.array(lengths, dtype=np.int64))
    try:
        y = sessions[name].run(*args)
    except BadInputError as err:
        assert "\n" not in str(err)
    else:
        assert isinstance(y, np.ndarray) and y.shape[0] == x.shape[0]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lens=st.lists(st.integers(0, 5), min_size=0, max_size=4), features=st.integers(4, 6))
def test_random_lists_only_succeed_or_raise_bad_input(sessions, lens, features):
    seqs = [np.ones((n, features), np.float32) for n in lens]
    try:
        y = sessions["lstm_cls"].run(seqs)
    except BadInputError:
        assert not lens or 0 in lens or features != 5
    else:
        assert y.shape == (len(lens), 3)


# ---- streaming ------------------------------------------------------------------------------

def _whole(session: Session, x):
    """Whole-sequence main output and final states for one (T, F) sequence, from zero state."""
    return session.run_all({session.inputs[0].name: x[None]})


@pytest.mark.parametrize("name", ["lstm_stream", "gru_stream", "lstm_stream_cls", "stream_bare",
                                  "tokens_stream"])
def test_chunks_of_7_with_carried_state_equal_whole_sequence(sessions, name):
    s = sessions[name]
    x = RNG.integers(0, 20, 45) if s.is_tokens else feats(1, 45)[0]
    stream = StreamingSession(s)
    parts = [stream.feed(x[i: i + 7]) for i in range(0, 45, 7)]
    whole = _whole(s, x)["logits"][0]
    if whole.ndim == 2:  # per-step outputs
        np.testing.assert_allclose(np.concatenate(parts), whole, atol=1e-5)
    else:
        np.testing.assert_allclose(parts[-1], whole, atol=1e-5)


def test_concurrent_streams_stepped_together_equal_each_alone(sessions):
    s = sessions["lstm_stream"]
    data = {"a": feats(1, 20)[0], "b": feats(1, 11)[0], 3: feats(1, 16)[0]}
    together = StreamingSession(s)
    got = {k: [] for k in data}
    for lo, hi in [(0, 3), (3, 9), (9, 20)]:
        chunks = {k: v[lo:hi] for k, v in data.items() if len(v[lo:hi])}
        for k, out in together.step(chunks).items():
            assert out.shape == (len(chunks[k]), 3)
            got[k].append(out)
    for k, v in data.items():
        alone = StreamingSession(s)
        np.testing.assert_allclose(np.concatenate(got[k]), alone.feed(v), atol=1e-5)
    assert sorted(map(str, together.streams)) == ["3", "a", "b"]


def test_reset_and_close_touch_one_stream_only(sessions):
    s = sessions["gru_stream"]
    xa, xb = feats(1, 6)[0], feats(1, 6)[0]
    st_ = StreamingSession(s)
    st_.step({"a": xa, "b": xb})
    st_.reset("a")
    out = st_.step({"a": xa, "b": xb})
    np.testing.assert_allclose(out["a"], _whole(s, xa)["logits"][0], atol=1e-5)
    np.testing.assert_allclose(out["b"], _whole(s, np.concatenate([xb, xb]))["logits"][0][6:], atol=1e-5)
    st_.close("b")
    assert st_.streams == ["a"]
    with pytest.raises(BadInputError, match="no stream 'b'"):
        st_.close("b")
    assert st_.step({}) == {}


def test_mobile_chunks_split_and_group_by_fixed_batch(sessions):
    m1, m2 = sessions["mobile"], sessions["mobile_b2"]  # same weights (seed 0), batch 1 and 2
    data = {k: feats(1, n)[0] for k, n in zip("abc", [12, 4, 8])}
    one, two = StreamingSession(m1), StreamingSession(m2)
    out1, out2 = one.step(data), two.step(data)
    for k, v in data.items():
        assert out1[k].shape == (len(v), 3)
        np.testing.assert_allclose(out1[k], out2[k], atol=1e-5)
    ref = StreamingSession(m1)
    np.testing.assert_allclose(np.concatenate([ref.feed(data["a"][i: i + 4]) for i in range(0, 12, 4)]),
                               out1["a"], atol=1e-6)
    with pytest.raises(BadInputError, match="not a multiple of this model's fixed chunk of 4"):
        one.step({"a": feats(1, 6)[0]})


def test_streaming_refuses_models_that_cannot_stream(paths, tmp_path, sessions):
    with pytest.raises(BadInputError, match="no state inputs.*--target stream"):
        StreamingSession(paths["lstm_tag"])
    model = rm.rnn_model(stream=True)
    cfg = json.loads(next(p.value for p in model.metadata_props if p.key == "rnnedge.config"))
    helper.set_model_props(model, {"rnnedge.config": json.dumps({**cfg, "bidirectional": True})})
    onnx.save(model, str(tmp_path / "bi.onnx"))
    with pytest.raises(BadInputError, match="bidirectional"):
        StreamingSession(tmp_path / "bi.onnx")
    st_ = StreamingSession(sessions["lstm_stream"])
    for bad, words in [(np.zeros((3, 4), np.float32), "feature size 4"),
                       (np.zeros((0, 5), np.float32), "stream 's': sequence 0"),
                       (np.zeros((3,), np.int64), "stream 's': .*dtype int64"),
                       (np.full((2, 5), np.nan, np.float32), "NaN")]:
        with pytest.raises(BadInputError, match=words):
            st_.step({"s": bad})
    assert st_.streams == []  # a refused step leaves no state behind


def test_uneven_chunks_without_a_lengths_input_run_in_groups_of_one_length(tmp_path):
    """Built-in stream exports have no lengths input: streams whose chunks differ in length are run in groups of equal
    length (it was refused: 'rows have different lengths'); each stream equals its own session fed alone."""
    path = tmp_path / "nolen.onnx"
    onnx.save(rm.rnn_model(stream=True, lengths=False), str(path))
    together = StreamingSession(path)
    chunks = [{"a": feats(1, 3)[0], "b": feats(1, 3)[0]}, {"a": feats(1, 3)[0], "b": feats(1, 2)[0], "c": feats(1, 5)[0]}]
    got = [together.step(c) for c in chunks]
    for sid in ("a", "b", "c"):
        alone = StreamingSession(path)
        for c, g in zip(chunks, got):
            if sid in c:
                np.testing.assert_allclose(g[sid], alone.step({sid: c[sid]})[sid], rtol=0, atol=1e-6)


# ---- threads and soak -----------------------------------------------------------------------

def _hammer(session: Session, n_threads: int, calls: int):
    inputs = [(feats(2, 1 + i % 9), np.array([1 + i % 9, 1 + min(i % 9, i % 5)])) for i in range(calls)]
    want = [session.run(x, lengths) for x, lengths in inputs]
    errors, results = [], {}

    def worker(tid):
        try:
            for i in range(calls):
                j = (i + tid) % calls
                results[(tid, j)] = session.run(*inputs[j])
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for (_tid, j), got in results.items():
        np.testing.assert_array_equal(got, want[j])
    assert len(results) == n_threads * calls


def test_eight_threads_on_one_session_match_one_thread(sessions):
    _hammer(sessions["lstm_tag"], 8, 50)


@pytest.mark.slow
def test_eight_threads_long(sessions):
    _hammer(sessions["lstm_stream"], 8, 200)


def _soak(session: Session, steps: int, chunk: int):
    x = (0.5 * RNG.normal(size=(steps, 5))).astype(np.float32)
    whole = _whole(session, x)["logits"][0]  # (T, C)
    got = np.empty_like(whole)
    stream = StreamingSession(session)
    tracemalloc.start()
    try:
        marks = []
        for i in range(0, steps, chunk):
            got[i: i + chunk] = stream.feed(x[i: i + chunk])
            if i // chunk in (10, (steps // chunk) // 2, steps // chunk - 1):
                gc.collect()
                marks.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    drift = float(np.abs(got - whole).max())
    assert drift < 1e-4, drift
    assert marks[-1] - marks[0] < 64 * 1024, marks  # state only: no growth with stream length


def test_streaming_soak_short(sessions):
    _soak(sessions["lstm_stream"], 5_000, 50)


@pytest.mark.slow
def test_streaming_soak_100k_steps(sessions):
    import resource
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _soak(sessions["lstm_stream"], 100_000, 25)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert after - before < 200 * 1024, (before, after)  # KiB on Linux: under 200 MB


def test_sequence_first_models_are_fed_in_their_own_layout(tmp_path):
    """A (seq, batch, features) model: run_all takes its layout with a state (it read the batch from axis 0 before and
    refused), a list of sequences is stacked along axis 1 (it ran them as a batch of time steps, silently wrong), and
    StreamingSession refuses it with a reason."""
    torch = pytest.importorskip("torch")
    from user_modules import SeqFirstWithState

    import rnnedge
    from rnnedge.errors import BadInputError
    from rnnedge.runtime import Session, StreamingSession

    torch.manual_seed(0)
    module = SeqFirstWithState().eval()
    path = tmp_path / "sf.onnx"
    rnnedge.export(module, (torch.randn(6, 2, 5), torch.zeros(1, 2, 12)), path, input_names=["x", "h0"], output_names=["y", "hn"],
                   dynamic_axes={"x": {0: "seq", 1: "batch"}, "h0": {1: "batch"}})
    session = Session(path, providers="cpu")
    x, h0 = torch.randn(7, 3, 5), torch.randn(1, 3, 12)
    with torch.no_grad():
        want = module(x, h0)[0].numpy()
    np.testing.assert_allclose(session.run_all({"x": x.numpy(), "h0": h0.numpy()})["y"], want, rtol=0, atol=1e-5)
    a, b = torch.randn(6, 5), torch.randn(6, 5)
    with torch.no_grad():
        want_a = module(a[:, None], torch.zeros(1, 1, 12))[0][:, 0].numpy()
    got = session.run([a.numpy(), b.numpy()])
    np.testing.assert_allclose(got[:, 0], want_a, rtol=0, atol=1e-5)  # (seq, batch, classes): sequence 0 is column 0
    with pytest.raises(BadInputError, match="seq, batch"):
        StreamingSession(path)
