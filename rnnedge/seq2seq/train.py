"""Training a Seq2SeqModel: teacher forcing, AdamW, gradient clipping, cosine decay, best-on-val greedy exact match.

`rnnedge.train.train` hands a task with `seq2seq = True` (the `dates` task) to `train_seq2seq`, so
`rnnedge train --task dates` and `rnnedge.train(config, get_task("dates"))` both land here.
Single process only (no torchrun sharding: the default model trains in minutes on 2 cores).
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import torch

from rnnedge.errors import BadInputError
from rnnedge.seq2seq.config import Seq2SeqConfig
from rnnedge.seq2seq.model import Seq2SeqModel
from rnnedge.tasks import Task
from rnnedge.train import LogProgress, TrainResult, _check_options, _epoch_batches, _Silent, dist_env, optimizer_step, resolve_device

log = logging.getLogger(__name__)


def evaluate_seq2seq(model: Seq2SeqModel, task: Task, split: str = "test", beam: int = 1, batch_size: int = 256) -> dict[str, float]:
    """Exact match and character accuracy of `model.generate` on a split."""
    return task.evaluate(lambda strings: model.generate(strings, beam=beam), split=split, batch_size=batch_size)


def train_seq2seq(config: Seq2SeqConfig, task: Task, *, epochs: int | None = None, lr: float | None = None,
                  batch_size: int | None = None, seed: int = 0, device: str = "auto", progress: Any = True,
                  weight_decay: float = 0.01, grad_clip: float = 1.0, schedule: str = "cosine") -> TrainResult:
    """Train a Seq2SeqModel of `config` on a seq2seq task; None picks the task's defaults."""
    epochs = task.default_epochs if epochs is None else epochs
    lr = task.default_lr if lr is None else lr
    batch_size = task.default_batch_size if batch_size is None else batch_size
    _check_options(epochs, lr, batch_size, seed, schedule)
    task.check_config(config)
    if dist_env()[2] > 1:
        raise BadInputError("sequence-to-sequence training runs in one process; run it without torchrun")
    dev = resolve_device(device)
    hook = progress if not isinstance(progress, bool) else (LogProgress() if progress else _Silent())

    torch.manual_seed(seed)
    model = Seq2SeqModel(config).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    data = task.split("train")
    src, lengths, tgt = (torch.from_numpy(a) for a in (data.inputs, data.lengths, data.targets))  # (N, Ts), (N,), (N, Tt)
    steps = len(_epoch_batches(len(data), batch_size, seed, 0, 0, 1))
    total_steps = epochs * steps
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, (lambda s: 0.5 * (1 + math.cos(math.pi * s / total_steps))) if schedule == "cosine" else (lambda s: 1.0))

    best = (-math.inf, None, 0, {})  # (score, state, epoch, val metrics)
    history: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    hook.start(epochs, steps)
    try:
        for epoch in range(1, epochs + 1):
            t_epoch = time.perf_counter()
            model.train()
            total, count = 0.0, 0
            for idx in _epoch_batches(len(data), batch_size, seed, epoch, 0, 1):
                ix = torch.from_numpy(idx)
                width = int(lengths[ix].max())  # trim the batch's padding columns
                loss = task.loss(model(src[ix, :width].to(dev), lengths[ix].to(dev), tgt[ix].to(dev)), tgt[ix].to(dev))
                value = optimizer_step(loss, model, opt, sched, grad_clip)
                total, count = total + value, count + 1
                hook.step(epoch, value)
            val = evaluate_seq2seq(model, task, "val")
            record = {"epoch": epoch, "train_loss": total / max(count, 1), "val": val, "lr": opt.param_groups[0]["lr"],
                      "seconds": time.perf_counter() - t_epoch}
            history.append(record)
            hook.epoch_end(record)
            if val[task.metric] > best[0] or best[1] is None:
                best = (val[task.metric], {k: v.detach().clone() for k, v in model.state_dict().items()}, epoch, val)
    finally:
        hook.close()
    seconds = time.perf_counter() - t_start
    model.load_state_dict(best[1])
    model.eval()
    metrics = evaluate_seq2seq(model, task, "test")
    metrics[f"val_{task.metric}"] = best[3][task.metric]
    metrics["best_epoch"] = best[2]
    log.info("trained seq2seq (%s decoder) on %s in %.1fs: test %s %.4f", config.cell, task.name, seconds, task.metric,
             metrics[task.metric])
    return TrainResult(model=model, metrics=metrics, history=history, seconds=seconds)
