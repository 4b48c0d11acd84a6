"""Sequence to sequence, the parts without export: the dates data, the codec's refusals, the shared beam search,
the model's batched generate and training through rnnedge.training.loop (tiny sizes, seconds)."""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pytest

from rnnedge.errors import BadInputError
from rnnedge.families.seq2seq.dates import FORMATS, DatesTask, generate_pairs, score_strings, write_date
from rnnedge.runtime.seq2seq import Codec, beam_search


def _parses(src: str, target: str) -> bool:
    """Some format of the issue reads `src` as the date `target` (strptime: names case-insensitive, %d unpadded ok)."""
    want = dt.date.fromisoformat(target)
    for fmt in FORMATS:
        try:
            if dt.datetime.strptime(src, fmt).date() == want:
                return True
        except ValueError:
            continue
    return False


def test_dates_pairs_are_the_issue_formats_and_right():
    pairs = generate_pairs(3000, seed=5)
    assert pairs == generate_pairs(3000, seed=5)  # seeded
    assert all(_parses(src, tgt) for src, tgt in pairs)
    assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", tgt) for _, tgt in pairs)
    years = [int(tgt[:4]) for _, tgt in pairs]
    assert min(years) >= 1900 and max(years) <= 2099 and max(years) - min(years) > 190
    lower = sum(src == src.lower() and any(c.isalpha() for c in src) for src, _ in pairs)
    named = [src for src, _ in pairs if any(c.isalpha() for c in src)]
    assert 0.2 < lower / len(named) < 0.4  # 30% all lower case
    assert any(re.search(r"(^|[ ,])[1-9] ", s) or re.search(r" [1-9],", s) for s in named)  # a day without its zero
    shapes = {re.sub(r"[A-Za-z]+", "a", re.sub(r"\d", "9", src)) for src, _ in pairs}
    assert len(shapes) >= 9


def test_write_date_spells_every_format():
    day = dt.date(2001, 5, 5)
    got = [write_date(day, f) for f in FORMATS]
    assert got == ["05 May 2001", "05 May 2001", "May 05, 2001", "May 05, 2001", "05/05/2001", "05.05.2001", "2001/05/05",
                   "Saturday, May 05, 2001", "Sat 05 May 2001"]
    assert write_date(day, "%A, %B %d, %Y", unpad=True, lower=True) == "saturday, may 5, 2001"
    assert write_date(day, "%m/%d/%Y", unpad=True) == "05/05/2001"  # numeric formats keep their zeros


def test_dates_splits_fixed_and_disjoint():
    task, fresh = DatesTask(), DatesTask()
    assert task.pairs == fresh.pairs
    train = {s for s, _ in task.pairs["train"]}
    assert not train & {s for s, _ in task.pairs["test"]} and not train & {s for s, _ in task.pairs["val"]}
    data = task.split("test")
    assert data.inputs.dtype == np.int64 and data.lengths.max() == data.inputs.shape[1]
    assert (data.targets[:, 10] == 2).all()  # "YYYY-MM-DD" then EOS


def test_score_strings():
    assert score_strings(["2001-05-05", "2001-05-06"], ["2001-05-05", "2001-05-05"]) == {
        "exact_match": 0.5, "char_accuracy": 19 / 20, "n": 2}
    assert score_strings(["", "x"], ["2001-05-05", "2001-05-05"])["char_accuracy"] == 0.0


@pytest.mark.parametrize("bad, message", [
    ([""], "empty"), (["  "], "empty"), (["5 May 2001 ✓"], "'✓' at position 11"), (["1" * 41], "at most 40"),
    ("5 May 2001", "list of strings"), ([5], "expected a string"),
])
def test_codec_refuses_bad_strings_with_one_clear_line(bad, message):
    codec = Codec(DatesTask().labels, 40, 12)
    with pytest.raises(BadInputError, match=re.escape(message)):
        codec.encode(bad)


def test_codec_round_trip_strips_surrounding_space():
    codec = Codec(DatesTask().labels, 40, 12)
    tokens, lengths = codec.encode([" 5 May 2001", "12/31/1999\t"])
    assert tokens.shape == (2, 10) and lengths.tolist() == [10, 10]
    assert codec.decode(tokens.tolist()) == ["5 May 2001", "12/31/1999"]
    assert codec.decode([[9, 2, 10]]) == ["0"]  # id 9 is "0"; cut at EOS (2)


# a toy decoder: the state is the prefix read so far (-1 nothing, 0 BOS, 1 "a", 2 "b", 3 longer); ids: 2 EOS, 3 "a", 4 "b"
_TOY = {0: {3: 0.55, 4: 0.45}, 1: {3: 0.3, 4: 0.3, 2: 0.4}, 2: {2: 0.9, 3: 0.1}, 3: {2: 1.0}}


def _toy_step(calls):
    def step(prev, state, memory, mask):
        calls.append(len(prev))
        s = state[:, 0]
        new = np.where(s == -1, 0, np.where((s == 0) & (prev == 3), 1, np.where((s == 0) & (prev == 4), 2, 3)))
        probs = np.full((len(prev), 5), 1e-9)
        for i, code in enumerate(new):
            for tok, p in _TOY[int(code)].items():
                probs[i, tok] = p
        return np.log(probs).astype(np.float32), new.astype(np.float32)[:, None], mask.astype(np.float32)

    return step


def _toy_search(beam, calls, rows=2, max_len=5):
    memory, mask = np.zeros((rows, 3, 2), np.float32), np.ones((rows, 3), bool)
    state = np.full((rows, 1), -1, np.float32)
    return beam_search(_toy_step(calls), memory, mask, state, beam=beam, max_len=max_len, bos=1, eos=2)


def test_beam_search_beats_greedy_where_it_should():
    calls: list[int] = []
    assert _toy_search(1, calls) == [[3], [3]]  # greedy: "a" (0.55) then EOS (0.4): p = 0.22
    assert calls == [2, 2]  # both rows stop at EOS after two steps: no third call
    calls.clear()
    assert _toy_search(2, calls) == [[4], [4]]  # beam 2: "b" then EOS: p = 0.405
    assert _toy_search(3, []) == [[4], [4]]


def test_beam_search_refuses_bad_beam_and_honours_max_len():
    with pytest.raises(BadInputError, match="beam"):
        _toy_search(0, [])
    assert _toy_search(1, [], max_len=1) == [[3], [3]]  # cut after one step, no EOS yet


@pytest.fixture(scope="module")
def tiny_task():
    class TinyDates(DatesTask):
        sizes = {"train": 384, "val": 48, "test": 48}

    return TinyDates()


def test_train_dispatches_seq2seq_and_generate_is_batched(tiny_task):
    from rnnedge.families.seq2seq.model import Seq2SeqModel
    from rnnedge.training.loop import train

    result = train(tiny_task.default_config("lstm", hidden=16, attention="bahdanau"), tiny_task, epochs=1, progress=False)
    model = result.model
    assert isinstance(model, Seq2SeqModel) and set(result.metrics) >= {"exact_match", "char_accuracy", "best_epoch"}
    strings = [s for s, _ in tiny_task.pairs["test"][:9]]
    alone = [model.generate([s], beam=2)[0] for s in strings]
    assert model.generate(strings, beam=2) == alone  # padding in a batch changes nothing
    assert model.generate([]) == []
    assert all(len(s) <= 3 for s in model.generate(strings, max_len=3))
    with pytest.raises(BadInputError):
        model.generate(["5 May 2001", ""])


def test_seq2seq_config_refuses_what_it_cannot_build():
    task = DatesTask()
    with pytest.raises(BadInputError, match="bidirectional"):
        task.default_config("gru", bidirectional=False)
    with pytest.raises(BadInputError, match="layers"):
        task.default_config("gru", layers=2)
    with pytest.raises(BadInputError, match="attention"):
        task.default_config("gru", attention="dot-product")
    assert task.default_config("gru", hidden=32).decoder_hidden == 32
