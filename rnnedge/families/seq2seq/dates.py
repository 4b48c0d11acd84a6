"""The `dates` task: human-written dates -> ISO `YYYY-MM-DD`, character level, generated from a seed.

Dates are uniform over 1900-01-01..2099-12-31 and written in one of nine strftime formats:

    %d %b %Y      %d %B %Y      %B %d, %Y     %b %d, %Y     %m/%d/%Y
    %d.%m.%Y      %Y/%m/%d      %A, %B %d, %Y               %a %d %b %Y

English month and day names are spelled out here (strftime's names follow the C locale; these
are the same, whatever the process locale). In the six formats with a month name the day loses
its leading zero half of the time ("5 May 2001"), and any string is all lower case with
probability 0.3. Splits are fixed: train, val and test come from their own seeds, and a training
string that also occurs in val or test is dropped, so nothing is scored on a string it trained on.

numpy only: the loss imports torch lazily.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from rnnedge.errors import BadInputError
from rnnedge.tasks import IGNORE, SPLITS, Task, TaskData

log = logging.getLogger(__name__)

FORMATS = ("%d %b %Y", "%d %B %Y", "%B %d, %Y", "%b %d, %Y", "%m/%d/%Y", "%d.%m.%Y", "%Y/%m/%d", "%A, %B %d, %Y", "%a %d %b %Y")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")  # date.weekday() order
FIRST, LAST = dt.date(1900, 1, 1), dt.date(2099, 12, 31)
LOWER_P = 0.3  # probability that a string is all lower case
UNPAD_P = 0.5  # probability that a month-name format drops the day's leading zero

SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
PAD, BOS, EOS, UNK = 0, 1, 2, 3
# One character vocabulary for sources and targets: the specials, then every character a source may hold.
VOCAB = (*SPECIALS, " ", ",", "-", ".", "/", *"0123456789", *"ABCDEFGHIJKLMNOPQRSTUVWXYZ", *"abcdefghijklmnopqrstuvwxyz")
MAX_SOURCE_LEN = 40  # longest source accepted ("Wednesday, September 30, 2099" is 29)
MAX_TARGET_LEN = 12  # decode steps by default: 10 characters + EOS, one spare


def write_date(day: dt.date, fmt: str, unpad: bool = False, lower: bool = False) -> str:
    """`day` written in strftime format `fmt` with English names (locale independent)."""
    month = MONTHS[day.month - 1]
    weekday = DAYS[day.weekday()]
    names_month = "%b" in fmt or "%B" in fmt
    dd = str(day.day) if unpad and names_month else f"{day.day:02d}"
    out = (fmt.replace("%Y", f"{day.year:04d}").replace("%m", f"{day.month:02d}").replace("%d", dd)
           .replace("%B", month).replace("%b", month[:3]).replace("%A", weekday).replace("%a", weekday[:3]))
    return out.lower() if lower else out


def generate_pairs(n: int, seed: int) -> list[tuple[str, str]]:
    """`n` (source, ISO target) pairs drawn from a seeded generator."""
    rng = np.random.default_rng(seed)
    first, last = FIRST.toordinal(), LAST.toordinal()
    days = rng.integers(first, last + 1, size=n)
    fmts = rng.integers(0, len(FORMATS), size=n)
    unpad = rng.random(n) < UNPAD_P
    lower = rng.random(n) < LOWER_P
    out = []
    for o, f, u, low in zip(days, fmts, unpad, lower):
        day = dt.date.fromordinal(int(o))
        out.append((write_date(day, FORMATS[f], bool(u), bool(low)), day.isoformat()))
    return out


def encode_strings(strings: list[str], index: dict[str, int], max_len: int, *, bos: bool = False,
                   eos: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(ids int64 (N, T) padded with PAD, lengths int64 (N,)); unknown characters are refused."""
    rows = []
    for i, s in enumerate(strings):
        bad = [ch for ch in s if ch not in index]
        if bad:
            raise BadInputError(f"string {i} ({s!r}): character {bad[0]!r} is not in the vocabulary")
        rows.append(([BOS] if bos else []) + [index[ch] for ch in s] + ([EOS] if eos else []))
    width = max([len(r) for r in rows] + [1])
    if width > max_len:
        raise BadInputError(f"a string is {width} tokens long; the model takes at most {max_len}")
    ids = np.full((len(rows), width), PAD, dtype=np.int64)  # (N, T)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
    return ids, np.array([len(r) for r in rows], dtype=np.int64)


def score_strings(predicted: list[str], targets: list[str]) -> dict[str, float]:
    """Exact match (whole string) and character accuracy (target positions predicted right, over all target characters)."""
    if len(predicted) != len(targets):
        raise BadInputError(f"{len(predicted)} predictions for {len(targets)} targets")
    exact = sum(p == t for p, t in zip(predicted, targets))
    chars = sum(sum(a == b for a, b in zip(p, t)) for p, t in zip(predicted, targets))
    total = max(sum(len(t) for t in targets), 1)
    n = max(len(targets), 1)
    return {"exact_match": exact / n, "char_accuracy": chars / total, "n": len(targets)}


class DatesTask(Task):
    """Human-written dates -> ISO dates with an attention encoder-decoder (rnnedge.families.seq2seq)."""

    name = "dates"
    description = "human-written dates -> ISO YYYY-MM-DD, attention encoder-decoder (exact match)"
    metric = "exact_match"
    per_step = True
    seq2seq = True  # trained by rnnedge.families.seq2seq.train, scored by generating strings
    labels = list(VOCAB)
    default_epochs = 2  # one epoch (375 steps) already reached 99.5% test exact match; the second is margin
    default_lr = 3e-3
    default_batch_size = 64  # a step of 256 costs ~1.3x one of 64 on CPU, but 1 epoch of 256 reached only 94.4% val (64: 99.1%)
    sizes = {"train": 24000, "val": 1000, "test": 2000}
    seeds = {"train": 150_001, "val": 150_002, "test": 150_003}

    def __init__(self) -> None:
        super().__init__()
        self.index = {ch: i for i, ch in enumerate(VOCAB)}

    # -- data ---------------------------------------------------------------------------------

    @functools.cached_property
    def pairs(self) -> dict[str, list[tuple[str, str]]]:
        """The fixed splits as (source, target) string pairs."""
        out = {s: generate_pairs(self.sizes[s], self.seeds[s]) for s in ("val", "test")}
        held_out = {src for s in ("val", "test") for src, _ in out[s]}
        out["train"] = [p for p in generate_pairs(self.sizes["train"], self.seeds["train"]) if p[0] not in held_out]
        return {s: out[s] for s in SPLITS}

    def _build(self) -> dict[str, TaskData]:
        out = {}
        for split, pairs in self.pairs.items():
            src, lengths = encode_strings([p[0] for p in pairs], self.index, MAX_SOURCE_LEN)  # (N, Ts), (N,)
            tgt, _ = encode_strings([p[1] for p in pairs], self.index, MAX_TARGET_LEN, eos=True)  # (N, Tt)
            tgt[tgt == PAD] = IGNORE
            out[split] = TaskData(src, lengths, tgt)
        return out

    # -- model --------------------------------------------------------------------------------

    def _base_config(self, cell: str) -> dict[str, Any]:
        return {}

    def default_config(self, cell: str = "gru", **overrides: Any):
        """The default Seq2SeqConfig; `cell` is the decoder's cell, `hidden` sets encoder and decoder sizes."""
        from rnnedge.families.seq2seq.config import Seq2SeqConfig

        return Seq2SeqConfig.for_task(list(VOCAB), cell=cell, max_source_len=MAX_SOURCE_LEN, max_target_len=MAX_TARGET_LEN,
                                      **overrides)

    def check_config(self, config) -> None:
        if getattr(config, "kind", None) != "seq2seq" or list(config.vocab) != list(VOCAB):
            raise BadInputError(f"model does not fit task {self.name}: it needs a seq2seq model over the dates vocabulary")

    # -- loss and metrics ---------------------------------------------------------------------

    def evaluate(self, generate: Callable[[list[str]], list[str]], split: str = "test", batch_size: int = 256) -> dict[str, float]:
        """Score `generate(list_of_strings) -> list_of_strings` on a split: exact match and character accuracy."""
        if not isinstance(batch_size, int) or batch_size < 1:
            raise BadInputError(f"batch_size must be a positive integer, got {batch_size!r}")
        if split not in SPLITS:
            raise BadInputError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        pairs = self.pairs[split]
        predicted: list[str] = []
        for start in range(0, len(pairs), batch_size):
            predicted += generate([src for src, _ in pairs[start : start + batch_size]])
        return score_strings(predicted, [t for _, t in pairs])

