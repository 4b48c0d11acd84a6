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


def test_unexpected_error_is_a_bug_exit_3_one_line_traceback_with_debug(runner, monkeypatch, seed_checkpoint):
    path, _ = seed_checkpoint
    import rnnedge.evaluate

    def broken(_):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(rnnedge.evaluate, "load_predictor", broken)
    plain = runner.invoke(cli, ["evaluate", str(path), "--task", "seed"])
    _one_error_line(plain, 3, "internal error (a bug in rnnedge): RuntimeError: kaboom; run with --debug for the traceback")
    assert "Traceback" not in plain.stderr
    debug = runner.invoke(cli, ["--debug", "evaluate", str(path), "--task", "seed"])
    assert debug.exit_code == 3 and "Traceback" in debug.stderr


def test_exit_codes_come_from_one_table():
    import click

    from rnnedge.cli import EXIT_CODES, INTERNAL_ERROR, exit_code
    from rnnedge.errors import BadInputError, ExportError, ParityError, RnnEdgeError, UnsafeFileError

    expected = {ParityError("x"): 1, BadInputError("x"): 2, UnsafeFileError("x"): 2, ExportError("x"): 2,
                RnnEdgeError("x"): 2, click.UsageError("x"): 2, click.BadParameter("x"): 2, click.FileError("x"): 2,
                KeyboardInterrupt(): 130, click.exceptions.Abort(): 130, RuntimeError("x"): 3, KeyError("x"): 3}
    assert {type(e).__name__: exit_code(e) for e in expected} == {type(e).__name__: c for e, c in expected.items()}
    assert INTERNAL_ERROR == 3 and all(code in (1, 2, 130) for _, code in EXIT_CODES)


def test_keyboard_interrupt_exit_130(runner, monkeypatch, seed_checkpoint):
    path, _ = seed_checkpoint
    import rnnedge.evaluate

    def interrupted(_):
        raise KeyboardInterrupt

    monkeypatch.setattr(rnnedge.evaluate, "load_predictor", interrupted)
    result = runner.invoke(cli, ["evaluate", str(path), "--task", "seed"])
    assert result.exit_code == 130 and result.stderr.strip() == "error: interrupted"


def test_parity_error_exit_1(runner, monkeypatch, seed_checkpoint):
    path, _ = seed_checkpoint
    import rnnedge.evaluate
    from rnnedge.errors import ParityError

    def mismatch(_):
        raise ParityError("logits differ: max abs 0.5 > atol 1e-4")

    monkeypatch.setattr(rnnedge.evaluate, "load_predictor", mismatch)
    _one_error_line(runner.invoke(cli, ["evaluate", str(path), "--task", "seed"]), 1, "logits differ")


def test_help_and_version(runner):
    assert runner.invoke(cli, ["--help"]).exit_code == 0
    assert "train" in runner.invoke(cli, ["--help"]).stdout
    assert runner.invoke(cli, ["--version"]).exit_code == 0
