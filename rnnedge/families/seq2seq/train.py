"""The seq2seq family's part of training: its loss on one batch (teacher forcing) and its metric (greedy exact match).

The loop itself (AdamW, gradient clipping, cosine decay, best on val) is the one in rnnedge.training.loop; the family
registers these two as its `train_loss` and `evaluate_model`. Single process only (the family is not `distributed`).
"""

from __future__ import annotations

from rnnedge.families.seq2seq.model import Seq2SeqModel
from rnnedge.tasks import Task


def evaluate_seq2seq(model: Seq2SeqModel, task: Task, split: str = "test", beam: int = 1, batch_size: int = 256) -> dict[str, float]:
    """Exact match and character accuracy of `model.generate` on a split."""
    return task.evaluate(lambda strings: model.generate(strings, beam=beam), split=split, batch_size=batch_size)


def teacher_forced_loss(net, task: Task, tensors, ix, device):
    """The loss of one batch (the one training loop's step for this family): the batch's padding columns trimmed."""
    src, lengths, tgt = tensors  # (N, Ts), (N,), (N, Tt)
    width = int(lengths[ix].max())
    target = tgt[ix].to(device)
    return task.loss(net(src[ix, :width].to(device), lengths[ix].to(device), target), target)
