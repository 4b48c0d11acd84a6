"""`rnnedge run`: .npy/.npz in, atomic .npy/.npz out, one-line errors; the runtime's GPU path (IOBinding,
float16 models) and its pure provider selection."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from rnnedge.cli import cli
from rnnedge.runtime import Session, select_providers, uses_iobinding

CPU, CUDA, TRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"




def _x(batch=4, seq=10, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, seq, 5)).astype(np.float32)  # (B, T, F)


def _ok(result):
    assert result.exit_code == 0, result.output + result.stderr
    return result


def _one_error_line(result, code, text):
    assert result.exit_code == code, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], lines


def test_run_npy_json_summary_has_labels_and_placement(runner, seed_onnx, tmp_path):
    x = _x()
    np.save(tmp_path / "x.npy", x)
    d = json.loads(_ok(runner.invoke(cli, ["run", str(seed_onnx), "--input", str(tmp_path / "x.npy"), "--json"])).stdout)
    expected = Session(seed_onnx).run(x)  # (B, C)
    assert d["shape"] == [4, 3] and d["output"] == "logits" and d["dtype"] == "float32"
    assert d["argmax"] == expected.argmax(axis=1).tolist()
    assert d["labels"] == [["down", "flat", "up"][i] for i in d["argmax"]]
    assert CPU in d["providers"] and sum(d["placement"].values()) > 0
    np.testing.assert_allclose(np.array(d["values"]), expected, rtol=1e-6)
    human = _ok(runner.invoke(cli, ["run", str(seed_onnx), "--input", str(tmp_path / "x.npy")]))
    assert "predictions" in human.stdout and d["labels"][0] in human.stdout


def test_run_writes_npy_atomically(runner, seed_onnx, tmp_path):
    x, lengths = _x(), np.array([10, 3, 7, 1])
    np.savez(tmp_path / "in.npz", x=x, lengths=lengths)
    out = tmp_path / "out.npy"
    d = json.loads(_ok(runner.invoke(cli, ["run", str(seed_onnx), "--input", str(tmp_path / "in.npz"), "-o", str(out),
                                           "--json"])).stdout)
    assert d["output_path"] == str(out)
    np.testing.assert_allclose(np.load(out), Session(seed_onnx).run(x, lengths), rtol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npz", "out.npy"]  # no temp file left, no out.npy.npy
    # --lengths from its own file gives the same
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "len.npy", lengths)
    _ok(runner.invoke(cli, ["run", str(seed_onnx), "--input", str(tmp_path / "x.npy"), "--lengths", str(tmp_path / "len.npy"),
                            "-o", str(tmp_path / "out2.npy")]))
    np.testing.assert_array_equal(np.load(tmp_path / "out2.npy"), np.load(out))


def test_run_npz_output_holds_every_output(runner, seed_checkpoint, tmp_path):
    from rnnedge.exporting.api import export_checkpoint

    stream = tmp_path / "stream.onnx"
    export_checkpoint(seed_checkpoint[0], stream, target="stream", verify=False)
    h0 = np.random.default_rng(1).standard_normal((1, 2, 8)).astype(np.float32)  # (L*D, B, H)
    np.savez(tmp_path / "in.npz", x=_x(batch=2), h0=h0)
    _ok(runner.invoke(cli, ["run", str(stream), "--input", str(tmp_path / "in.npz"), "-o", str(tmp_path / "out.npz")]))
    with np.load(tmp_path / "out.npz") as z:
        assert sorted(z.files) == ["hn", "logits"] and z["hn"].shape == (1, 2, 8)
        expected = Session(stream).run_all({"x": _x(batch=2), "h0": h0})
        np.testing.assert_allclose(z["hn"], expected["hn"], rtol=1e-6)


@pytest.mark.parametrize("make, text", [
    (lambda p: np.save(p, np.zeros((2, 10, 4), np.float32)), "feature size 4"),
    (lambda p: np.save(p, np.full((1, 10, 5), np.nan, np.float32)), "NaN"),
    (lambda p: np.save(p, np.zeros((2, 10, 5), object), allow_pickle=True), "pickle"),
    (lambda p: p.write(b"\x93NUMPY garbage"), "corrupt"),
    (lambda p: np.savez(p, x=np.zeros((1, 10, 5), np.float32), c0=np.zeros((1, 1, 8), np.float32)), "does not take"),
    (lambda p: np.savez(p, wrong=np.zeros((1, 10, 5), np.float32)), "'x' or 'tokens'"),
])
def test_bad_input_is_one_line_exit_2_and_keeps_the_old_output(runner, seed_onnx, tmp_path, make, text):
    bad = tmp_path / "bad.npz"
    with open(bad, "wb") as fh:  # a handle: np.save would append .npy to the name
        make(fh)
    out = tmp_path / "out.npy"
    out.write_bytes(b"previous result")
    _one_error_line(runner.invoke(cli, ["run", str(seed_onnx), "--input", str(bad), "-o", str(out)]), 2, text)
    assert out.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.npz", "out.npy"]


def test_missing_files_and_unknown_provider(runner, seed_onnx, tmp_path):
    np.save(tmp_path / "x.npy", _x())
    _one_error_line(runner.invoke(cli, ["run", str(tmp_path / "none.onnx"), "--input", str(tmp_path / "x.npy")]), 2, "not found")
    _one_error_line(runner.invoke(cli, ["run", str(seed_onnx), "--input", str(tmp_path / "none.npy")]), 2, "no such")
    _one_error_line(runner.invoke(cli, ["run", str(seed_onnx), "--input", str(tmp_path / "x.npy"), "--provider", "warp"]),
                    2, "unknown provider")


# -- GPU path: pure selection, IOBinding, float16 -------------------------------------------------


def test_cuda_is_chosen_only_when_available():
    assert select_providers("auto", [CUDA, CPU]) == [CUDA, CPU]
    assert select_providers("auto", [CPU]) == [CPU]
    assert select_providers(["cuda", "cpu"], [CPU]) == [CPU]  # skipped, logged
    assert uses_iobinding([CUDA, CPU]) and uses_iobinding([TRT, CUDA, CPU])
    assert not uses_iobinding([CPU]) and not uses_iobinding([]) and not uses_iobinding(["CoreMLExecutionProvider", CPU])
    from rnnedge.errors import BadInputError

    with pytest.raises(BadInputError, match="not available"):
        select_providers("cuda", [CPU])


def test_iobinding_path_gives_the_same_outputs(seed_onnx):
    """The IOBinding branch itself, forced on the CPU provider (onnxruntime binds CPU buffers too)."""
    plain = Session(seed_onnx, providers="cpu")
    assert not plain.iobinding
    bound = Session(seed_onnx, providers="cpu")
    bound.iobinding = True
    x, lengths = _x(), np.array([10, 3, 7, 1])
    np.testing.assert_array_equal(bound.run(x, lengths), plain.run(x, lengths))
    for a, b in zip(bound.run_all({"x": x}).values(), plain.run_all({"x": x}).values()):
        np.testing.assert_array_equal(a, b)


def test_float16_model_takes_float32_inputs(seed_onnx, tmp_path):
    from rnnedge.quantizing.api import quantize

    half = tmp_path / "half.onnx"
    quantize(seed_onnx, half, mode="fp16", keep_io_types=False)
    session = Session(half, providers="cpu")
    assert np.dtype(session.inputs[0].dtype) == np.float16
    x = _x()
    y = session.run(x)  # float32 in, cast to the model's float16
    np.testing.assert_allclose(y.astype(np.float32), Session(seed_onnx).run(x), atol=2e-2, rtol=2e-2)


@pytest.mark.skipif(CUDA not in ort.get_available_providers(),
                    reason="CUDAExecutionProvider is not in this onnxruntime (install onnxruntime-gpu on a GPU machine)")
def test_cuda_runs_through_iobinding(seed_onnx, tmp_path):
    from rnnedge.quantizing.api import quantize

    gpu = Session(seed_onnx, providers="cuda")
    assert gpu.providers[0] == CUDA and gpu.iobinding
    x, lengths = _x(), np.array([10, 3, 7, 1])
    np.testing.assert_allclose(gpu.run(x, lengths), Session(seed_onnx, providers="cpu").run(x, lengths), atol=1e-4, rtol=1e-4)
    half = tmp_path / "half.onnx"
    quantize(seed_onnx, half, mode="fp16", keep_io_types=False)
    y = Session(half, providers="cuda").run(x, lengths)
    np.testing.assert_allclose(y.astype(np.float32), gpu.run(x, lengths), atol=2e-2, rtol=2e-2)
