"""The built-in tasks of the sequence family: seed, digits, fillblank, charlm (each registered by name).

    >>> task = get_task("digits")
    >>> data = task.split("train")          # TaskData(inputs (N, 8, 8) float32, lengths None, targets (N,))
    >>> task.evaluate(lambda x, lengths: my_logits(x))
    {'accuracy': 0.97..., 'loss': 0.1...}

Tasks: `seed` (synthetic, seconds), `digits` (8x8 handwritten digits read row by row), `fillblank`
(masked word from both sides; bidirectional vs unidirectional) and `charlm` (character LM). The two
text tasks read Python's own documentation topics (`pydoc_data.topics`), so the exact split
depends on the Python version's docs; it is fixed for a given Python.
"""

from __future__ import annotations

import collections
import functools
import logging
import math
import re
from typing import Any

import numpy as np

from rnnedge.errors import BadInputError
from rnnedge.tasks.base import IGNORE, SPLITS, Task, TaskData

log = logging.getLogger(__name__)

# -- seed ---------------------------------------------------------------------------------------


class SeedTask(Task):
    """The source example's shapes (5 features, 10 steps, hidden 8): does the running sum of feature 0
    minus feature 1 end low, middle or high? Learnable by a tiny model in seconds."""

    name = "seed"
    description = "synthetic: trend of feature 0 minus feature 1 over 10 steps (3 classes)"
    labels = ["down", "flat", "up"]
    default_epochs = 10
    default_lr = 1e-2
    default_batch_size = 32
    sizes = {"train": 2000, "val": 500, "test": 500}
    steps, features = 10, 5

    def _base_config(self, cell: str) -> dict[str, Any]:
        return dict(input_size=self.features, hidden=8, num_outputs=3, head="classify")

    def _build(self) -> dict[str, TaskData]:
        out = {}
        for i, (split, n) in enumerate(self.sizes.items()):
            rng = np.random.default_rng(1000 + i)
            x = rng.standard_normal((n, self.steps, self.features)).astype(np.float32)  # (N, T, F)
            s = x[:, :, 0].sum(axis=1) - x[:, :, 1].sum(axis=1)  # ~ N(0, 2T)
            cut = 0.4307 * math.sqrt(2 * self.steps)  # terciles of N(0, 2T)
            y = np.where(s < -cut, 0, np.where(s > cut, 2, 1)).astype(np.int64)
            out[split] = TaskData(x, None, y)
        return out


# -- digits -------------------------------------------------------------------------------------


class DigitsTask(Task):
    """scikit-learn's 1,797 8x8 digits (UCI optical digits, CC BY 4.0): 8 steps (rows) of 8 pixels/16.
    Stratified, seeded 70/15/15 split."""

    name = "digits"
    description = "1,797 handwritten 8x8 digits read row by row (10 classes)"
    labels = [str(d) for d in range(10)]
    default_epochs = 30
    default_lr = 3e-3
    default_batch_size = 32

    def _base_config(self, cell: str) -> dict[str, Any]:
        return dict(input_size=8, hidden=128, num_outputs=10, head="classify")

    def _build(self) -> dict[str, TaskData]:
        images, target = load_digits_arrays()
        x = (images.astype(np.float32) / 16.0).reshape(-1, 8, 8)  # (N, T=8 rows, F=8 pixels)
        rng = np.random.default_rng(0)
        parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
        for label in range(10):
            idx = rng.permutation(np.flatnonzero(target == label))
            n_train, n_val = round(0.70 * len(idx)), round(0.15 * len(idx))
            parts["train"].append(idx[:n_train])
            parts["val"].append(idx[n_train : n_train + n_val])
            parts["test"].append(idx[n_train + n_val :])
        out = {}
        for split, chunks in parts.items():
            idx = rng.permutation(np.concatenate(chunks))
            out[split] = TaskData(x[idx], None, target[idx].astype(np.int64))
        return out


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (1797, 8, 8) in 0..16, target int64 (1797,)) from the packaged digits.npz."""
    from importlib import resources

    ref = resources.files("rnnedge") / "data" / "digits.npz"
    try:
        with ref.open("rb") as f, np.load(f, allow_pickle=False) as z:
            return z["images"], z["target"]
    except (OSError, KeyError, ValueError) as e:
        raise BadInputError(f"packaged digits data unreadable ({e}); reinstall rnnedge") from e


# -- text tasks ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def corpus_text() -> str:
    """English text of Python's documentation topics (pydoc_data.topics), in a fixed order."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k] for k in sorted(topics))


def _assign_blocks(n_items: int, block: int, seed: int) -> dict[str, list[tuple[int, int]]]:
    """Cut [0, n_items) into blocks and deal them 80/10/10 to train/val/test by a seeded shuffle."""
    starts = list(range(0, n_items, block))
    order = np.random.default_rng(seed).permutation(len(starts))
    n_val = n_test = max(1, len(starts) // 10)
    groups = {"val": order[:n_val], "test": order[n_val : n_val + n_test], "train": order[n_val + n_test :]}
    return {s: [(starts[i], min(starts[i] + block, n_items)) for i in sorted(g)] for s, g in groups.items()}


class FillBlankTask(Task):
    """Predict a masked word ("Exercise is very effective at [ ] belly fat") in windows of 12 words.
    Only the masked position is scored, so a unidirectional model sees the left context only."""

    name = "fillblank"
    description = "masked word in 12-word windows of Python's docs (top-1/top-5 accuracy)"
    metric = "top1"
    per_step = True
    default_epochs = 10
    default_lr = 3e-3
    default_batch_size = 64
    vocab_size = 2000  # most frequent words, plus <pad>, <unk>, <mask>
    window = 12
    stride = 4  # windows overlap within a split, never across splits (splits are 240-word blocks)
    mask_range = (2, 9)  # the masked position is drawn from [2, 9]: context on both sides

    def __init__(self) -> None:
        super().__init__()
        words = re.findall(r"[a-z]+", corpus_text().lower())
        counts = collections.Counter(words)
        common = sorted(counts, key=lambda w: (-counts[w], w))[: self.vocab_size]
        self.labels = ["<pad>", "<unk>", "<mask>"] + common
        index = {w: i for i, w in enumerate(self.labels)}
        self._ids = np.array([index.get(w, 1) for w in words], dtype=np.int64)

    def _base_config(self, cell: str) -> dict[str, Any]:
        return dict(input_kind="tokens", input_size=len(self.labels), embed_dim=128, hidden=128,
                    bidirectional=True, dropout=0.3, head="tag", num_outputs=len(self.labels))

    def _build(self) -> dict[str, TaskData]:
        out = {}
        for i, (split, blocks) in enumerate(_assign_blocks(len(self._ids), 240, seed=7).items()):
            rng = np.random.default_rng(100 + i)
            rows, targets = [], []
            for lo, hi in blocks:
                for start in range(lo, hi - self.window + 1, self.stride):
                    w = self._ids[start : start + self.window].copy()
                    candidates = [p for p in range(self.mask_range[0], self.mask_range[1] + 1) if w[p] != 1]
                    if not candidates:
                        continue
                    p = candidates[rng.integers(len(candidates))]
                    t = np.full(self.window, IGNORE, dtype=np.int64)
                    t[p], w[p] = w[p], 2  # 2 = <mask>
                    rows.append(w)
                    targets.append(t)
            out[split] = TaskData(np.stack(rows), None, np.stack(targets))  # (N, 12), (N, 12)
        return {s: out[s] for s in SPLITS}

    def _finish(self, sums: collections.Counter) -> dict[str, float]:
        n = max(sums["n"], 1)
        return {"top1": sums["top1"] / n, "top5": sums["top5"] / n, "loss": sums["nll"] / n}


class CharLMTask(Task):
    """Next-character prediction over Python's docs: sequences of 128 characters, a 2-layer LSTM
    with dropout between layers (Zaremba et al. 2014)."""

    name = "charlm"
    description = "character language model on Python's docs (perplexity, bits per char)"
    metric = "perplexity"
    higher_is_better = False
    per_step = True
    default_epochs = 8
    default_lr = 5e-3
    default_batch_size = 32
    seq_len = 128
    min_count = 5  # rarer characters map to <unk>

    def __init__(self) -> None:
        super().__init__()
        text = corpus_text()
        counts = collections.Counter(text)
        self.labels = ["<unk>"] + sorted(ch for ch, n in counts.items() if n >= self.min_count)
        index = {ch: i for i, ch in enumerate(self.labels)}
        self._ids = np.array([index.get(ch, 0) for ch in text], dtype=np.int64)

    def _base_config(self, cell: str) -> dict[str, Any]:
        return dict(input_kind="tokens", input_size=len(self.labels), embed_dim=32, cell="lstm", hidden=128,
                    layers=2, dropout=0.2, head="lm", num_outputs=len(self.labels))

    def default_config(self, cell: str = "lstm", **overrides: Any):
        return super().default_config(cell, **overrides)

    def _build(self) -> dict[str, TaskData]:
        n = self.seq_len + 1
        out = {}
        for split, blocks in _assign_blocks(len(self._ids), 16 * n, seed=11).items():
            seqs = [self._ids[s : s + n] for lo, hi in blocks for s in range(lo, hi - n + 1, n)]
            arr = np.stack(seqs)  # (N, T+1)
            out[split] = TaskData(arr[:, :-1].copy(), None, arr[:, 1:].copy())  # (N, T), (N, T)
        return {s: out[s] for s in SPLITS}

    def _finish(self, sums: collections.Counter) -> dict[str, float]:
        n = max(sums["n"], 1)
        nll = sums["nll"] / n
        return {"perplexity": math.exp(nll), "bits_per_char": nll / math.log(2), "top1": sums["top1"] / n, "loss": nll}


BUILTIN = {"seed": SeedTask, "digits": DigitsTask, "fillblank": FillBlankTask, "charlm": CharLMTask}
