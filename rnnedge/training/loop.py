"""A small, model-agnostic training loop: AdamW, gradient clipping, cosine decay, per-epoch validation,
best-on-val weights, seeded and reproducible on CPU, and DistributedDataParallel under torchrun.

    >>> from rnnedge.tasks import get_task
    >>> task = get_task("seed")
    >>> result = train(task.default_config("gru"), task, epochs=5, seed=0)
    >>> result.metrics["accuracy"]

Under `torchrun --nproc_per_node N` (RANK/WORLD_SIZE set) every rank trains on its shard of each
epoch's permutation (DistributedSampler-style), gradients are averaged by DDP (gloo on CPU, nccl on
CUDA), and all ranks end with identical weights; callers write files on rank 0 only
(`is_main_process()`).

Progress is reported through a small hook object (`start`, `step`, `epoch_end`, `close`): the CLI
passes a rich progress bar; `progress=True` logs one line per epoch; `progress=False` is silent.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from rnnedge.errors import BadInputError
from rnnedge.families.registry import family_for_config
from rnnedge.tasks import Task

log = logging.getLogger(__name__)


class ProgressHook(Protocol):
    def start(self, epochs: int, steps_per_epoch: int) -> None: ...
    def step(self, epoch: int, loss: float) -> None: ...
    def epoch_end(self, record: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


class LogProgress:
    """Logs one INFO line per epoch (what `progress=True` means for library callers)."""

    def start(self, epochs: int, steps_per_epoch: int) -> None:
        log.info("training %d epochs of %d steps", epochs, steps_per_epoch)

    def step(self, epoch: int, loss: float) -> None:
        pass

    def epoch_end(self, record: dict[str, Any]) -> None:
        log.info("epoch %(epoch)d: train loss %(train_loss).4f, val %(val)s", {**record, "val": record["val"]})

    def close(self) -> None:
        pass


class _Silent(LogProgress):
    def start(self, epochs: int, steps_per_epoch: int) -> None:
        pass

    def epoch_end(self, record: dict[str, Any]) -> None:
        pass


@dataclass
class TrainResult:
    model: nn.Module  # the best-on-val weights, in eval mode (the config's family's model)
    metrics: dict[str, float]  # test metrics of those weights, plus "val_<metric>" and "best_epoch"
    history: list[dict[str, Any]] = field(default_factory=list)  # one record per epoch
    seconds: float = 0.0  # wall-clock training time (this rank)


# -- distributed helpers ------------------------------------------------------------------------


def dist_env() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's environment; (0, 0, 1) when not distributed."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return 0, 0, 1
    try:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local = int(os.environ.get("LOCAL_RANK", rank))
    except ValueError as e:
        raise BadInputError(f"RANK/WORLD_SIZE/LOCAL_RANK must be integers ({e})") from e
    return rank, local, world


def is_main_process() -> bool:
    """True on rank 0 (or when not distributed): the one process that writes files."""
    return dist_env()[0] == 0


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    if device not in ("auto", "cpu", "cuda"):
        raise BadInputError(f"device must be auto, cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise BadInputError("device cuda asked for, but torch sees no CUDA device")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(f"cuda:{local_rank}") if device == "cuda" else torch.device("cpu")


# -- prediction ---------------------------------------------------------------------------------


def torch_predictor(model: nn.Module) -> Callable[[np.ndarray, np.ndarray | None], np.ndarray]:
    """`predict(inputs, lengths) -> outputs` over NumPy arrays, for Task.evaluate (model in eval mode)."""
    device = next(model.parameters()).device

    def predict(inputs: np.ndarray, lengths: np.ndarray | None) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(inputs)).to(device)
        lens = None if lengths is None else torch.from_numpy(np.asarray(lengths, dtype=np.int64))
        with torch.no_grad():
            return model(x, lens).float().cpu().numpy()

    return predict


def evaluate_model(model: nn.Module, task: Task, split: str = "test", batch_size: int = 256) -> dict[str, float]:
    """Task metrics of a torch model on a split (restores the model's train/eval mode)."""
    was_training = model.training
    model.eval()
    try:
        return task.evaluate(torch_predictor(model), split=split, batch_size=batch_size)
    finally:
        model.train(was_training)


# -- the loop -----------------------------------------------------------------------------------


def optimizer_step(loss, model, opt, sched, grad_clip: float) -> float:
    """One step on `loss` (gradients cleared, clipped to grad_clip when > 0, schedule advanced); returns its value."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    sched.step()
    return loss.item()


def _epoch_batches(n: int, batch_size: int, seed: int, epoch: int, rank: int, world: int) -> list[np.ndarray]:
    """This rank's batches of one epoch: a seeded permutation, padded to a multiple of world, sharded."""
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    if world > 1:
        total = math.ceil(n / world) * world
        perm = np.concatenate([perm, perm[: total - n]])[rank::world]
    return [perm[i : i + batch_size] for i in range(0, len(perm), batch_size)]


def train(
    config: Any,
    task: Task,
    *,
    epochs: int | None = None,
    lr: float | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    device: str = "auto",
    progress: bool | ProgressHook = True,
    weight_decay: float = 0.01,
    grad_clip: float = 1.0,
    schedule: str = "cosine",
) -> TrainResult:
    """Train a model of `config` (its family builds it: SequenceModel, Seq2SeqModel) on `task`; None picks the task's default epochs/lr/batch size.

    weight_decay: AdamW's decoupled weight decay. grad_clip: max global gradient norm (0 = off).
    schedule: "cosine" (decay to 0 over all steps) or "constant".
    """
    family = family_for_config(config)
    epochs = task.default_epochs if epochs is None else epochs
    lr = task.default_lr if lr is None else lr
    batch_size = task.default_batch_size if batch_size is None else batch_size
    _check_options(epochs, lr, batch_size, seed, schedule)
    task.check_config(config)

    rank, local_rank, world = dist_env()
    if world > 1 and not family.distributed:
        raise BadInputError(f"{family.name} models train in one process; run it without torchrun")
    dev = resolve_device(device, local_rank)
    created_group = _init_distributed(world, dev)
    hook: ProgressHook = progress if not isinstance(progress, bool) else (LogProgress() if progress else _Silent())
    if rank != 0:
        hook = _Silent()

    torch.manual_seed(seed)
    model = family.build(config).to(dev)
    net: nn.Module = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    data = task.split("train")
    tensors = family.split_tensors(data)
    steps = len(_epoch_batches(len(data), batch_size, seed, 0, rank, world))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, (lambda s: 0.5 * (1 + math.cos(math.pi * s / (epochs * steps)))) if schedule == "cosine" else (lambda s: 1.0)
    )

    sign = 1.0 if task.higher_is_better else -1.0
    best_score, best_state, best_epoch, best_val = -math.inf, None, 0, {}
    history: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    hook.start(epochs, steps)
    try:
        for epoch in range(1, epochs + 1):
            t_epoch = time.perf_counter()
            net.train()
            total, count = 0.0, 0
            for idx in _epoch_batches(len(data), batch_size, seed, epoch, rank, world):
                loss = family.train_loss(net, task, tensors, torch.from_numpy(idx), dev)
                value = optimizer_step(loss, model, opt, sched, grad_clip)
                total, count = total + value, count + 1
                hook.step(epoch, value)
            val = family.evaluate_model(model, task, "val")
            record = {"epoch": epoch, "train_loss": total / max(count, 1), "val": val,
                      "lr": opt.param_groups[0]["lr"], "seconds": time.perf_counter() - t_epoch}
            history.append(record)
            hook.epoch_end(record)
            score = sign * val[task.metric]
            if score > best_score or best_state is None:
                best_score, best_epoch, best_val = score, epoch, val
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    finally:
        hook.close()
        if created_group:
            import torch.distributed as dist

            dist.destroy_process_group()
    seconds = time.perf_counter() - t_start
    model.load_state_dict(best_state)
    model.eval()
    metrics = family.evaluate_model(model, task, "test")
    metrics[f"val_{task.metric}"] = best_val[task.metric]
    metrics["best_epoch"] = best_epoch
    log.info("trained a %s model on %s in %.1fs: test %s %.4f", family.name, task.name, seconds, task.metric, metrics[task.metric])
    return TrainResult(model=model, metrics=metrics, history=history, seconds=seconds)


def _check_options(epochs: Any, lr: Any, batch_size: Any, seed: Any, schedule: str) -> None:
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BadInputError(f"{name} must be a positive integer, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise BadInputError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < 10:
        raise BadInputError(f"lr must be a number in (0, 10), got {lr!r}")
    if schedule not in ("cosine", "constant"):
        raise BadInputError(f"schedule must be cosine or constant, got {schedule!r}")


def _init_distributed(world: int, dev: torch.device) -> bool:
    """Join torchrun's process group (gloo on CPU, nccl on CUDA); True when this call created it."""
    if world <= 1:
        return False
    import torch.distributed as dist

    if dev.type == "cpu":
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    else:
        torch.cuda.set_device(dev)
    if dist.is_initialized():
        return False
    dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return True


