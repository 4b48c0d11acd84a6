"""samples/gpu_check.py's CPU-side logic: provider planning and skip reasons from fake provider lists, argument
parsing, ratios, and a clean exit with a clear message where onnxruntime has no CUDA provider (as here)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "samples" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_plan_without_cuda_skips_everything_with_reasons(gpu_check):
    p = gpu_check.plan(["CPUExecutionProvider"], torch_cuda=False)
    assert not p["ok"] and p["runs"] == []
    assert "onnxruntime-gpu" in p["skipped"]["ort cuda"] and "CPUExecutionProvider" in p["skipped"]["ort cuda"]
    assert "torch" in p["skipped"]["torch cuda"] and "TensorrtExecutionProvider" in p["skipped"]["ort tensorrt"]


def test_plan_with_cuda_and_tensorrt(gpu_check):
    p = gpu_check.plan(["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"], torch_cuda=True)
    labels = [r[0] for r in p["runs"]]
    assert p["ok"] and p["skipped"] == {}
    assert labels == ["ort cuda fp32", "ort cuda fp16", "ort tensorrt fp16", "torch cuda fp32", "torch cuda fp16"]
    assert dict((r[0], r[1]) for r in p["runs"])["ort tensorrt fp16"] == ["TensorrtExecutionProvider", "CUDAExecutionProvider"]
    only_trt = gpu_check.plan(["TensorrtExecutionProvider", "CPUExecutionProvider"], torch_cuda=False)
    assert not only_trt["ok"] and "needs CUDAExecutionProvider" in only_trt["skipped"]["ort tensorrt"]


def test_provider_options_and_ratios(gpu_check):
    opts = gpu_check.provider_options(["TensorrtExecutionProvider", "CUDAExecutionProvider"])
    assert opts[0][0] == "TensorrtExecutionProvider" and opts[0][1]["trt_fp16_enable"] and opts[1] == "CUDAExecutionProvider"
    r = gpu_check.ratios({"torch cuda fp32": 2.0, "ort cuda fp32": 1.0, "ort cuda fp16": 0.5})
    assert r == {"ort cuda fp32": 0.5, "ort cuda fp16": 0.25}
    assert gpu_check.ratios({"ort cuda fp32": 1.0}) == {"ort cuda fp32": None}


def test_parse_args(gpu_check):
    a = gpu_check.parse_args(["--cells", "gru,lstm", "--shapes", "1x16, 8x50", "--repeats", "3"])
    assert a.cells == ["gru", "lstm"] and a.shapes == [(1, 16), (8, 50)] and a.repeats == 3
    for bad in (["--cells", "transformer"], ["--shapes", "1x"], ["--shapes", "0x5"], ["--repeats", "0"]):
        with pytest.raises(SystemExit) as e:
            gpu_check.parse_args(bad)
        assert e.value.code == 2


def test_exits_cleanly_without_a_cuda_provider(gpu_check, monkeypatch, capsys):
    import onnxruntime as ort

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert gpu_check.main(["--repeats", "1"]) == 0
    out = capsys.readouterr()
    d = json.loads(out.out)
    assert d["results"] == {} and "no CUDAExecutionProvider" in out.err and "ort cuda" in d["skipped"]
