"""`rnnedge bench` and `rnnedge quickstart`: the figures are there, positive and consistent; no timed assertions."""

from __future__ import annotations

import json
import sys

import pytest

from rnnedge.cli import cli


def _json(result):
    assert result.exit_code == 0, result.output + result.stderr
    return json.loads(result.stdout)


def _positive_stats(s: dict, repeats: int):
    assert s["repeats"] == repeats
    assert 0 < s["min_ms"] <= s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"] and s["throughput_seq_s"] > 0


def test_bench_json_fields(runner, seed_onnx):
    d = _json(runner.invoke(cli, ["bench", str(seed_onnx), "--repeats", "5", "--batch", "2", "--json"]))
    assert d["batch"] == 2 and d["seq"] == 10 and d["threads"] == 1  # seq: the seed task's length
    assert d["model_bytes"] == seed_onnx.stat().st_size and d["providers"] == ["CPUExecutionProvider"]
    _positive_stats(d["onnx"], 5)
    _positive_stats(d["floor"], 5)
    assert d["torch"] is None and set(d["ratios"]) == {"floor"} and d["ratios"]["floor"] > 0
    m = d["memory"]
    assert m["peak_rss_mb"] > 0 and m["rss_growth_mb"] >= 0 and m["peak_rss_mb"] >= m["rss_before_mb"] - 1e-6


def test_bench_reports_work_and_fraction_of_the_measured_peak(runner, seed_onnx):
    from rnnedge.bench.flops import config_flops

    d = _json(runner.invoke(cli, ["bench", str(seed_onnx), "--repeats", "5", "--batch", "3", "--seq", "4", "--json"]))
    w = d["work"]
    # the seed fixture: GRU(5 -> 8), 3 gates, + Linear(8 -> 3) on the last state
    assert w["flops"] == config_flops({"cell": "gru", "hidden": 8, "input_size": 5, "num_outputs": 3}, 3, 4) == 2.0 * 3 * 4 * 24 * 13 + 2.0 * 3 * 8 * 3
    assert w["peak_gflops"] > 0 and w["gflops"] > 0 and w["peak_fraction"] == pytest.approx(w["gflops"] / w["peak_gflops"])
    assert d["quantization"] is None


def test_bench_reads_the_forms_a_quantized_file_records(runner, seed_onnx, tmp_path):
    from rnnedge.bench.flops import model_flops
    from rnnedge.files import load_onnx
    from rnnedge.quantizing.api import quantize

    out = tmp_path / "q.onnx"
    result = quantize(seed_onnx, out, forms="weights-int8")
    d = _json(runner.invoke(cli, ["bench", str(out), "--repeats", "3", "--json"]))
    q = d["quantization"]
    assert result.kept_fp32 is None and q["mode"] == "int8" and q["forms"] == result.forms  # int8 really written (0.82 of the size)
    model = load_onnx(out)
    del model.metadata_props[:]  # no config: the work is read from the (int8-stored) recurrent weights
    assert model_flops(model, 2, 5) == 2.0 * 2 * 5 * (24 * 5 + 24 * 8)
    human = runner.invoke(cli, ["bench", str(out), "--repeats", "3"])
    assert "quantization: int8" in human.stdout and "GFLOP/s" in human.stdout


def test_bench_against_checkpoint_gives_ratios(runner, seed_onnx, seed_checkpoint):
    d = _json(runner.invoke(cli, ["bench", str(seed_onnx), "--against", str(seed_checkpoint[0]), "--repeats", "5",
                                  "--seq", "7", "--json"]))
    assert d["seq"] == 7
    _positive_stats(d["torch"], 5)
    for k in ("p50", "p90", "p99", "mean"):
        assert d["ratios"][k] == pytest.approx(d["onnx"][f"{k}_ms"] / d["torch"][f"{k}_ms"])
    human = runner.invoke(cli, ["bench", str(seed_onnx), "--against", str(seed_checkpoint[0]), "--repeats", "3"])
    assert human.exit_code == 0 and "onnx/torch" in human.stdout and "floor" in human.stdout


def test_bench_plot_writes_a_png(runner, seed_onnx, seed_checkpoint, tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "latency.png"
    d = _json(runner.invoke(cli, ["bench", str(seed_onnx), "--against", str(seed_checkpoint[0]), "--repeats", "5",
                                  "--plot", str(png), "--json"]))
    assert png.read_bytes().startswith(b"\x89PNG")
    curves = d["plot"]["p50_ms"]
    assert set(curves) == {"torch eager", "onnx fp32", "onnx int8"}
    assert all(len(v) == len(d["plot"]["seqs"]) and min(v) > 0 for v in curves.values())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latency.png"]  # written atomically


def test_plot_without_matplotlib_says_what_to_install(monkeypatch, seed_onnx, tmp_path):
    from rnnedge.bench.latency import bench
    from rnnedge.errors import BadInputError

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(BadInputError, match=r"pip install rnnedge\[plot\]"):
        bench(seed_onnx, repeats=1, plot=tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_latency_stats_and_bad_options():
    from rnnedge.bench.latency import latency_stats
    from rnnedge.errors import BadInputError

    s = latency_stats([0.001] * 9 + [0.011], batch=4)
    assert s["p50_ms"] == pytest.approx(1.0) and s["mean_ms"] == pytest.approx(2.0)
    assert s["throughput_seq_s"] == pytest.approx(2000.0) and s["p99_ms"] > s["p90_ms"]
    with pytest.raises(BadInputError):
        latency_stats([], batch=1)


def test_bench_bad_input_one_line(runner, tmp_path, seed_onnx):
    result = runner.invoke(cli, ["bench", str(tmp_path / "none.onnx")])
    assert result.exit_code == 2 and result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"not a checkpoint")
    result = runner.invoke(cli, ["bench", str(seed_onnx), "--against", str(bad)])
    assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1


# -- quickstart ---------------------------------------------------------------------------------


def test_quickstart_seed_one_epoch(runner, tmp_path):
    out = tmp_path / "qs"
    d = _json(runner.invoke(cli, ["quickstart", "--task", "seed", "--epochs", "1", "--out", str(out), "--json"]))
    assert d["task"] == "seed" and d["cell"] == "gru" and d["parity"]["ok"] and d["parity"]["max_abs"] < 1e-4
    for name in ("model.safetensors", "model.onnx", "model-int8.onnx", "parity.json", "summary.json"):
        assert (out / name).stat().st_size > 0
    assert json.loads((out / "summary.json").read_text())["parity"] == d["parity"]
    assert set(d["accuracy"]) == {"torch", "onnx fp32", "onnx int8"} and all(0 <= v <= 1 for v in d["accuracy"].values())
    assert d["accuracy"]["onnx fp32"] == pytest.approx(d["accuracy"]["torch"])  # same model, same test split
    assert set(d["latency"]["ratios"]) == {"onnx fp32", "onnx int8"} and min(d["latency"]["ratios"].values()) > 0


def test_quickstart_exits_1_when_parity_fails(runner, monkeypatch, tmp_path):
    import rnnedge.quickstart

    summary = {"parity": {"ok": False, "summary": "parity FAILED: 1 of 6 cases"}}
    monkeypatch.setattr(rnnedge.quickstart, "quickstart", lambda *a, **k: summary)
    result = runner.invoke(cli, ["quickstart", "--task", "seed", "--out", str(tmp_path), "--json"])
    assert result.exit_code == 1 and result.stderr.strip() == "error: parity FAILED: 1 of 6 cases"


def test_bench_against_another_model_is_bad_input(runner, seed_onnx, tmp_path):
    """A checkpoint of another model (here an LSTM against the GRU file) would be timed as if it were the file's: refused."""
    from rnnedge.checkpoint import save_checkpoint
    from rnnedge.families.sequence.model import ModelConfig, SequenceModel

    other = tmp_path / "lstm.safetensors"
    save_checkpoint(other, SequenceModel(ModelConfig(input_size=5, cell="lstm", hidden=8, num_outputs=3)))
    out = runner.invoke(cli, ["bench", str(seed_onnx), "--against", str(other), "--repeats", "3"])
    assert out.exit_code == 2 and "not this file's model: cell 'lstm'" in out.output
