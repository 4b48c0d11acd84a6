"""The task interface: fixed, seeded splits as NumPy arrays, a default model config, a loss and metrics.

Data stays NumPy so that an ONNX model (through onnxruntime, without torch) is scored by the very
same code as a PyTorch model: `task.evaluate(predict)` only needs `predict(inputs, lengths) -> array`.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from rnnedge.errors import BadInputError

SPLITS = ("train", "val", "test")
IGNORE = -100  # target value of positions that count neither in the loss nor in the metrics

Predict = Callable[[np.ndarray, "np.ndarray | None"], np.ndarray]


@dataclass
class TaskData:
    """One split: inputs float32 (N, T, F) or int64 (N, T); lengths int64 (N,) or None; targets."""

    inputs: np.ndarray
    lengths: np.ndarray | None
    targets: np.ndarray  # int64 (N,) for classification, int64 (N, T) per step (IGNORE = not scored)

    def __len__(self) -> int:
        return len(self.inputs)

    def take(self, index: np.ndarray | slice) -> TaskData:
        return TaskData(self.inputs[index], None if self.lengths is None else self.lengths[index], self.targets[index])


class Task:
    """A dataset with fixed splits, a default model, a loss and metrics. Subclasses fill in `_build`."""

    name: str = ""
    description: str = ""
    family: str = "sequence"  # the model family (rnnedge.families.registry) that builds, trains and exports its models
    metric: str = "accuracy"  # the main metric (best-on-val selection, thresholds)
    higher_is_better: bool = True
    labels: list[str] | None = None  # class names, or the vocabulary of token tasks
    per_step: bool = False  # targets (N, T) scored per step, vs (N,) per sequence
    default_epochs: int = 10
    default_lr: float = 3e-3
    default_batch_size: int = 64

    def __init__(self) -> None:
        self._splits: dict[str, TaskData] | None = None

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    # -- data ---------------------------------------------------------------------------------

    def split(self, name: str) -> TaskData:
        if name not in SPLITS:
            raise BadInputError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}")
        if self._splits is None:
            self._splits = self._build()
        return self._splits[name]

    def _build(self) -> dict[str, TaskData]:
        raise NotImplementedError

    # -- model --------------------------------------------------------------------------------

    def _base_config(self, cell: str) -> dict[str, Any]:
        raise NotImplementedError

    def default_config(self, cell: str = "gru", **overrides: Any):
        """The task's default ModelConfig for `cell`; overrides set to None are ignored."""
        from rnnedge.families.registry import family_named

        d = self._base_config(cell)
        d["cell"] = cell
        d.update({k: v for k, v in overrides.items() if v is not None})
        return family_named(self.family).config_from_dict(d)

    def check_config(self, config) -> None:
        """BadInputError when a model of this config cannot be scored on this task."""
        want = self.default_config()
        problems = []
        for field in ("input_kind", "input_size", "num_outputs"):
            if getattr(config, field) != getattr(want, field):
                problems.append(f"{field} {getattr(config, field)} (task needs {getattr(want, field)})")
        if (config.head in ("tag", "lm")) != self.per_step:
            problems.append(f"head {config.head!r} (task needs {want.head!r})")
        if problems:
            raise BadInputError(f"model does not fit task {self.name}: " + "; ".join(problems))

    # -- loss and metrics ---------------------------------------------------------------------

    def loss(self, out, targets):
        """Mean cross-entropy (torch): out (B, C) with targets (B,), or out (B, T, V) with targets (B, T)."""
        import torch.nn.functional as F

        return F.cross_entropy(out.reshape(-1, out.shape[-1]), targets.reshape(-1), ignore_index=IGNORE)

    def evaluate(self, predict: Predict, split: str = "test", batch_size: int = 256) -> dict[str, float]:
        """Score `predict(inputs, lengths) -> outputs` (NumPy in, NumPy out) on a split."""
        if not isinstance(batch_size, int) or batch_size < 1:
            raise BadInputError(f"batch_size must be a positive integer, got {batch_size!r}")
        data = self.split(split)
        sums: collections.Counter = collections.Counter()
        for start in range(0, len(data), batch_size):
            batch = data.take(slice(start, start + batch_size))
            out = np.asarray(predict(batch.inputs, batch.lengths), dtype=np.float64)
            want = batch.targets.shape + (out.shape[-1],)
            if out.shape != want or out.shape[-1] < 2:
                raise BadInputError(f"task {self.name}: model output has shape {out.shape}, expected {want[:-1] + ('classes',)}")
            sums.update(score_logits(out, batch.targets))
        return self._finish(sums)

    def _finish(self, sums: collections.Counter) -> dict[str, float]:
        n = max(sums["n"], 1)
        return {"accuracy": sums["top1"] / n, "loss": sums["nll"] / n}


def score_logits(out: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Additive sums over scored positions: count, negative log-likelihood, top-1 and top-5 hits."""
    logits = out.reshape(-1, out.shape[-1])  # (P, C)
    t = targets.reshape(-1)
    keep = t != IGNORE
    logits, t = logits[keep], t[keep]
    if len(t) == 0:
        return {"n": 0}
    shifted = logits - logits.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))  # (P, C)
    target_logp = logp[np.arange(len(t)), t]
    rank = (logits > logits[np.arange(len(t)), t][:, None]).sum(axis=1)  # classes scored strictly higher
    return {"n": len(t), "nll": float(-target_logp.sum()), "top1": int((rank == 0).sum()), "top5": int((rank < 5).sum())}
