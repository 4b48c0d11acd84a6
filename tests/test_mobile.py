"""rnnedge.mobile: ORT file that runs like the .onnx, usability per provider, operator config, bad input."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from rnnedge.errors import BadInputError
from rnnedge.exporting.api import export
from rnnedge.inspect import describe_onnx
from rnnedge.mobile import MobileReport, check_usability, prepare_mobile

try:
    from tests.test_unrolled import make
except ImportError:  # tests/ on sys.path (pytest's rootdir-less import mode)
    from test_unrolled import make


@pytest.fixture(scope="module")
def mobile_lstm(tmp_path_factory):
    """A 2-layer LSTM + Linear head exported for target mobile (chunk 8, batch 1): (path, feeds)."""
    module, examples, names, outputs = make("lstm", layers=2)
    path = tmp_path_factory.mktemp("mobile") / "lstm.onnx"
    export(module, examples, path, target="mobile", input_names=names, output_names=outputs, verify=False)
    return path, {n: e.numpy() for n, e in zip(names, examples)}


def test_checker_puts_the_whole_mobile_lstm_on_nnapi_and_coreml(mobile_lstm):
    """onnxruntime's own mobile checker: >= 95% of nodes (in fact all, one partition) per provider."""
    providers, dynamic, fixed, text = check_usability(mobile_lstm[0])
    assert fixed and not dynamic
    for name in ("NNAPI", "CoreML MLProgram", "CoreML NeuralNetwork"):
        p = providers[name]
        assert p.percent >= 95.0, p
        assert p.partitions == 1 and not p.unsupported_ops and p.verdict == "YES", p
    assert "NNAPI" in text and "CoreML MLProgram" in text


def test_prepare_mobile_writes_a_runnable_ort_file(mobile_lstm, tmp_path):
    path, feeds = mobile_lstm
    out = tmp_path / "pkg" / "nested"  # created on demand
    report = prepare_mobile(path, out)
    assert isinstance(report, MobileReport)
    assert sorted(p.name for p in out.iterdir()) == ["lstm.ort", "required_operators.config", "usability.json", "usability.txt"]
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)
    got = ort.InferenceSession(str(report.ort_path), providers=["CPUExecutionProvider"]).run(None, feeds)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=1e-6, rtol=0)
    config = report.config_path.read_text()
    assert "ai.onnx;" in config and "LSTM" not in config and "lstm.ort" in config and "/tmp" not in config
    saved = json.loads(report.usability_path.read_text())
    assert saved == json.loads(json.dumps(report.to_dict()))
    assert saved["providers"]["NNAPI"]["percent"] == 100.0
    assert "NNAPI" in report.summary and "100.0%" in report.summary
    described = describe_onnx(report.ort_path)  # `rnnedge inspect` on the .ort file
    assert described["kind"] == "ort" and [i["name"] for i in described["inputs"]] == list(feeds)
    declared = describe_onnx(path)["spec"]  # `rnnedge inspect` shows the declared spec (rnnedge.spec), roles included
    assert list(declared["inputs"]) == list(feeds) and declared["inputs"][list(feeds)[0]].startswith("features float32[")
    assert described["spec"] == declared and "rnnedge.spec" not in described["metadata"]


@pytest.mark.parametrize("content", [b"", b"not a model at all", b"\x80\x04pickle"])
def test_bad_input_file_is_refused(tmp_path, content):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(content)
    with pytest.raises(BadInputError):
        prepare_mobile(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(BadInputError):
        prepare_mobile(tmp_path / "missing.onnx", tmp_path / "out")
