"""The command line: train/evaluate/inspect with --json, and one-line errors with the right exit codes."""

from __future__ import annotations

import json
import pickle

import pytest

from rnnedge.cli import cli


def _json(result):
    assert result.exit_code == 0, result.output + result.stderr
    return json.loads(result.stdout)


def test_train_evaluate_inspect(runner, tmp_path):
    ckpt = tmp_path / "seed.safetensors"
    trained = _json(runner.invoke(cli, ["train", "--task", "seed", "--epochs", "2", "--hidden", "6", "-o", str(ckpt), "--json"]))
    assert ckpt.exists() and trained["task"] == "seed" and trained["config"]["hidden"] == 6
    assert 0 <= trained["metrics"]["accuracy"] <= 1

    evaluated = _json(runner.invoke(cli, ["evaluate", str(ckpt), "--json"]))  # task from the metadata
    assert evaluated["metric"] == "accuracy"
    assert evaluated["metrics"]["accuracy"] == pytest.approx(trained["metrics"]["accuracy"])
    val = _json(runner.invoke(cli, ["evaluate", str(ckpt), "--task", "seed", "--split", "val", "--json"]))
    assert val["metrics"]["accuracy"] == pytest.approx(trained["metrics"]["val_accuracy"])

    info = _json(runner.invoke(cli, ["inspect", str(ckpt), "--json"]))
    assert info["kind"] == "checkpoint" and info["task"] == "seed"
    assert info["config"]["cell"] == "gru" and info["parameters"] > 0
    assert info["labels"] == ["down", "flat", "up"]

    human = runner.invoke(cli, ["inspect", str(ckpt)])
    assert human.exit_code == 0 and "parameters" in human.stdout


def test_evaluate_human_output(runner, seed_checkpoint):
    path, _ = seed_checkpoint
    result = runner.invoke(cli, ["evaluate", str(path), "--task", "seed"])
    assert result.exit_code == 0 and "accuracy" in result.stdout


def _one_error_line(result, code, text):
    assert result.exit_code == code, (result.exit_code, result.output)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], lines


def test_errors_are_one_line_exit_2(runner, tmp_path, seed_checkpoint):
    path, _ = seed_checkpoint
    _one_error_line(runner.invoke(cli, ["evaluate", str(tmp_path / "missing.safetensors"), "--task", "seed"]), 2, "no such file")
    _one_error_line(runner.invoke(cli, ["inspect", str(tmp_path / "missing.safetensors")]), 2, "no such file")
    evil = tmp_path / "model.pt"
    evil.write_bytes(pickle.dumps({"a": 1}))
    _one_error_line(runner.invoke(cli, ["inspect", str(evil)]), 2, "never unpickles")
    _one_error_line(runner.invoke(cli, ["evaluate", str(evil), "--task", "seed"]), 2, "never unpickles")
    _one_error_line(runner.invoke(cli, ["evaluate", str(path), "--task", "digits"]), 2, "does not fit task digits")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 100)
    _one_error_line(runner.invoke(cli, ["evaluate", str(junk), "--task", "seed", "--json"]), 2, "junk.safetensors")


def test_usage_errors_exit_2(runner, tmp_path):
    for args in (["train", "--task", "mnist", "-o", "x"], ["train", "--task", "seed"], ["nonsense"], ["train", "--task", "seed", "--epochs", "0", "-o", "x"]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 2, args


def test_unexpected_error_one_line_exit_1_traceback_with_debug(runner, monkeypatch, seed_checkpoint):
    path, _ = seed_checkpoint
    import rnnedge.cli as cli_module

    def broken(_):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(cli_module, "_load_predictor", broken)
    plain = runner.invoke(cli, ["evaluate", str(path), "--task", "seed"])
    _one_error_line(plain, 1, "RuntimeError: kaboom")
    debug = runner.invoke(cli, ["--debug", "evaluate", str(path), "--task", "seed"])
    assert debug.exit_code == 1 and "Traceback" in debug.stderr


def test_keyboard_interrupt_exit_130(runner, monkeypatch, seed_checkpoint):
    path, _ = seed_checkpoint
    import rnnedge.cli as cli_module

    def interrupted(_):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_module, "_load_predictor", interrupted)
    result = runner.invoke(cli, ["evaluate", str(path), "--task", "seed"])
    assert result.exit_code == 130 and result.stderr.strip() == "error: interrupted"


def test_parity_error_exit_1(runner, monkeypatch, seed_checkpoint):
    path, _ = seed_checkpoint
    import rnnedge.cli as cli_module
    from rnnedge.errors import ParityError

    def mismatch(_):
        raise ParityError("logits differ: max abs 0.5 > atol 1e-4")

    monkeypatch.setattr(cli_module, "_load_predictor", mismatch)
    _one_error_line(runner.invoke(cli, ["evaluate", str(path), "--task", "seed"]), 1, "logits differ")


def test_help_and_version(runner):
    assert runner.invoke(cli, ["--help"]).exit_code == 0
    assert "train" in runner.invoke(cli, ["--help"]).stdout
    assert runner.invoke(cli, ["--version"]).exit_code == 0
