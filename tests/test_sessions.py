"""rnnedge.runtime.providers: the one onnxruntime session factory (path or bytes, quiet, CPU retry logged, one-line errors)."""
from __future__ import annotations

import logging
import pickle

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from rnnedge.errors import BadInputError, RnnEdgeError, UnsafeFileError
from rnnedge.runtime import providers as sessions

try:
    from tests import runtime_models as rm
except ImportError:  # tests/ is not a package
    import runtime_models as rm

CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("sessions") / "gru.onnx"
    onnx.save(rm.rnn_model(cell="gru"), str(path))
    return path


def _feeds(session) -> dict:
    x = np.random.default_rng(0).normal(size=(2, 3, 5)).astype(np.float32)
    return {"x": x, "lengths": np.array([3, 2], np.int64)} if len(session.get_inputs()) > 1 else {"x": x}


def test_path_and_bytes_open_the_same_model(model_path):
    by_path = sessions.open_session(model_path, providers="cpu")
    by_bytes = sessions.open_session(model_path.read_bytes(), providers="cpu")
    assert by_path.get_providers() == [CPU]
    for a, b in zip(by_path.run(None, _feeds(by_path)), by_bytes.run(None, _feeds(by_bytes))):
        np.testing.assert_array_equal(a, b)


@pytest.fixture
def cuda_that_fails(monkeypatch):
    """onnxruntime claims CUDA, but a session on it fails to start (a missing driver, say)."""
    real = ort.InferenceSession
    opened = []

    def fake(model, options=None, providers=None, **kw):
        opened.append(list(providers))
        if CUDA in providers:
            raise RuntimeError("CUDA failure 35: CUDA driver version is insufficient")
        return real(model, options, providers=providers, **kw)

    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA, CPU])
    monkeypatch.setattr(ort, "InferenceSession", fake)
    return opened


def test_failed_accelerator_retries_on_cpu_logged_not_printed(model_path, cuda_that_fails, caplog, capfd):
    with caplog.at_level(logging.WARNING, logger="rnnedge"):
        session = sessions.open_session(model_path, providers="cuda")
    assert cuda_that_fails == [[CUDA, CPU], [CPU]] and session.get_providers() == [CPU]
    assert any("retrying on CPU only" in r.getMessage() and "insufficient" in r.getMessage() for r in caplog.records)
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # onnxruntime's own fallback would print to stdout


def test_without_fallback_the_failure_is_one_line(model_path, cuda_that_fails):
    with pytest.raises(RnnEdgeError, match=r"^cannot load model .*gru\.onnx: CUDA failure 35") as info:
        sessions.open_session(model_path, providers="cuda", fallback=False)
    assert "\n" not in str(info.value) and cuda_that_fails == [[CUDA, CPU]]


def test_files_onnxruntime_refuses_are_bad_input(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(BadInputError, match="cannot load model"):
        sessions.open_session(junk)
    pickled = tmp_path / "weights.onnx"
    pickled.write_bytes(pickle.dumps({"w": [1.0]}, protocol=4))
    with pytest.raises(UnsafeFileError, match="never unpickles"):
        sessions.open_session(pickled)
    with pytest.raises(BadInputError, match="not found"):
        sessions.open_session(tmp_path / "missing.onnx")


def test_available_providers_are_local_compute_only(monkeypatch):
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["AzureExecutionProvider", CUDA, CPU])
    assert sessions.available_providers() == [CUDA, CPU]
    assert sessions.select_providers("auto") == [CUDA, CPU]  # the default `available` is onnxruntime's own list


def test_onnxruntime_log_is_quiet_unless_debug():
    assert sessions.session_options().log_severity_level == 4
    logger = logging.getLogger("rnnedge")
    old = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        assert sessions.session_options().log_severity_level == 2
    finally:
        logger.setLevel(old)
    opts = sessions.session_options(threads=2, optimization="basic")
    assert opts.intra_op_num_threads == 2 and opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    with pytest.raises(BadInputError, match="optimization"):
        sessions.session_options(optimization="max")
