"""Built-in tasks: deterministic splits of the right shapes, metrics computed right on fake predictors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rnnedge.errors import BadInputError
from rnnedge.tasks import IGNORE, SPLITS, TASKS, Task, get_task


@pytest.mark.parametrize("name", [n for n in TASKS if n != "dates"])  # dates (seq2seq): tests/test_seq2seq.py
def test_splits_deterministic_and_shaped(name):
    task = get_task(name)
    fresh = type(task)()  # a new instance rebuilds the data from scratch
    cfg = task.default_config()
    sizes = {}
    for split in SPLITS:
        a, b = task.split(split), fresh.split(split)
        np.testing.assert_array_equal(a.inputs, b.inputs)
        np.testing.assert_array_equal(a.targets, b.targets)
        sizes[split] = len(a)
        if cfg.input_kind == "tokens":
            assert a.inputs.dtype == np.int64 and a.inputs.ndim == 2
            assert a.inputs.min() >= 0 and a.inputs.max() < cfg.input_size
        else:
            assert a.inputs.dtype == np.float32 and a.inputs.shape[2] == cfg.input_size
        assert a.targets.dtype == np.int64
        if task.per_step:
            assert a.targets.shape == a.inputs.shape
            scored = a.targets[a.targets != IGNORE]
        else:
            assert a.targets.shape == (len(a),)
            scored = a.targets
        assert scored.min() >= 0 and scored.max() < cfg.num_outputs
    assert sizes["train"] > sizes["val"] > 0 and sizes["test"] > 0
    assert task.metric in ("accuracy", "top1", "perplexity")


def test_digits_split_is_stratified_and_disjoint():
    task = get_task("digits")
    parts = [task.split(s) for s in SPLITS]
    assert sum(len(p) for p in parts) == 1797
    rows = [{p.inputs[i].tobytes() + bytes([int(p.targets[i])]) for i in range(len(p))} for p in parts]
    # the 1,797 digits contain a few exact duplicates, so compare counts loosely
    assert len(rows[0] & rows[2]) < 5
    for p in parts:
        assert len(np.unique(p.targets)) == 10
    assert parts[0].inputs.max() <= 1.0 and parts[0].inputs.shape[1:] == (8, 8)


def test_seed_matches_the_source_shapes():
    task = get_task("seed")
    cfg = task.default_config()
    assert task.split("train").inputs.shape[1:] == (10, 5)
    assert (cfg.input_size, cfg.hidden) == (5, 8)
    assert task.labels == ["down", "flat", "up"]


def test_fillblank_scores_only_the_mask():
    task = get_task("fillblank")
    data = task.split("test")
    mask_id = task.labels.index("<mask>")
    scored = data.targets != IGNORE
    assert (scored.sum(axis=1) == 1).all()
    assert (data.inputs[scored] == mask_id).all()
    cols = np.nonzero(scored)[1]
    assert cols.min() >= 2 and cols.max() <= 9


def _one_hot(targets, classes, scale=5.0):
    return np.eye(classes)[targets] * scale


def test_accuracy_on_fake_predictors():
    task = get_task("seed")
    data = task.split("test")
    perfect = task.evaluate(lambda x, lengths: _one_hot(_lookup(task, x), 3))
    assert perfect["accuracy"] == 1.0
    uniform = task.evaluate(lambda x, lengths: np.zeros((len(x), 3)), batch_size=7)
    assert uniform["loss"] == pytest.approx(math.log(3))
    wrong = task.evaluate(lambda x, lengths: _one_hot((_lookup(task, x) + 1) % 3, 3))
    assert wrong["accuracy"] == 0.0
    assert len(data) == 500


def _lookup(task, x):
    """The true targets of a batch, found by matching its rows (a cheating oracle)."""
    data = task.split("test")
    index = {row.tobytes(): t for row, t in zip(data.inputs, data.targets)}
    return np.array([index[row.tobytes()] for row in x])


def test_top5_perplexity_and_bits():
    task = get_task("charlm")
    V = len(task.labels)
    data = task.split("test")

    def uniform(x, lengths):
        return np.zeros(x.shape + (V,), dtype=np.float32)

    m = task.evaluate(uniform)
    assert m["perplexity"] == pytest.approx(V, rel=1e-6)
    assert m["bits_per_char"] == pytest.approx(math.log2(V), rel=1e-6)
    assert len(data) > 0

    fill = get_task("fillblank")
    Vf = len(fill.labels)
    test = fill.split("test")
    answers = {row.tobytes(): t[t != IGNORE][0] for row, t in zip(test.inputs, test.targets)}

    def second_best(x, lengths):  # the right word always ranks 2nd -> top1 0, top5 1
        out = np.zeros(x.shape + (Vf,), dtype=np.float32)
        for i, row in enumerate(x):
            t = answers[row.tobytes()]
            out[i, :, t] = 2.0
            out[i, :, (t + 1) % Vf] = 3.0
        return out

    m = fill.evaluate(second_best)
    assert m["top1"] == 0.0 and m["top5"] == 1.0


def test_bad_names_and_shapes():
    with pytest.raises(BadInputError, match="seed, digits, fillblank, charlm"):
        get_task("mnist")
    task = get_task("seed")
    with pytest.raises(BadInputError):
        task.split("holdout")
    with pytest.raises(BadInputError, match="shape"):
        task.evaluate(lambda x, lengths: np.zeros((len(x), 10, 3)))
    with pytest.raises(BadInputError, match="does not fit"):
        task.check_config(get_task("digits").default_config())
    assert isinstance(task, Task)


def test_default_config_overrides():
    task = get_task("digits")
    cfg = task.default_config("lstm", hidden=32, layers=None)
    assert (cfg.cell, cfg.hidden, cfg.layers) == ("lstm", 32, 1)
    assert get_task("charlm").default_config().cell == "lstm"
    with pytest.raises(BadInputError):
        task.default_config("gru", hidden=-1)
