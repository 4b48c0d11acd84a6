"""Training: reproducible with a seed, best-on-val kept, options checked, identical weights under torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from rnnedge.errors import BadInputError
from rnnedge.tasks import get_task
from rnnedge.training.loop import evaluate_model, train


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_same_seed_same_weights_other_seed_other_weights():
    task = get_task("seed")
    cfg = task.default_config("lstm", dropout=0.1)
    a = train(cfg, task, epochs=2, seed=3, progress=False, device="cpu")
    b = train(cfg, task, epochs=2, seed=3, progress=False, device="cpu")
    c = train(cfg, task, epochs=2, seed=4, progress=False, device="cpu")
    wa, wb, wc = _weights(a.model), _weights(b.model), _weights(c.model)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)
    assert a.metrics == b.metrics


def test_learns_seed_and_keeps_best_on_val():
    task = get_task("seed")
    result = train(task.default_config("gru"), task, epochs=4, seed=0, progress=False)
    vals = [h["val"]["accuracy"] for h in result.history]
    assert len(vals) == 4
    assert result.metrics["val_accuracy"] == max(vals)
    assert result.history[result.metrics["best_epoch"] - 1]["val"]["accuracy"] == max(vals)
    assert result.metrics["accuracy"] > 0.6  # chance is 1/3
    assert not result.model.training
    assert evaluate_model(result.model, task)["accuracy"] == result.metrics["accuracy"]


def test_progress_hook_is_called():
    calls = []

    class Hook:
        def start(self, epochs, steps):
            calls.append(("start", epochs, steps))

        def step(self, epoch, loss):
            calls.append("step")

        def epoch_end(self, record):
            calls.append(("epoch", record["epoch"]))

        def close(self):
            calls.append("close")

    task = get_task("seed")
    train(task.default_config(), task, epochs=1, seed=0, batch_size=500, progress=Hook())
    assert calls == [("start", 1, 4), "step", "step", "step", "step", ("epoch", 1), "close"]


@pytest.mark.parametrize("bad", [dict(epochs=0), dict(lr=-1.0), dict(batch_size=0), dict(seed=-1), dict(device="tpu"), dict(schedule="step")])
def test_bad_options_refused(bad):
    task = get_task("seed")
    with pytest.raises(BadInputError):
        train(task.default_config(), task, progress=False, **{"epochs": 1, **bad})


def test_config_must_fit_task():
    with pytest.raises(BadInputError, match="does not fit"):
        train(get_task("digits").default_config(), get_task("seed"), epochs=1, progress=False)


DDP_SCRIPT = textwrap.dedent(
    """
    import hashlib, json, os, sys
    from rnnedge.checkpoint import save_checkpoint
    from rnnedge.tasks import get_task
    from rnnedge.training.loop import is_main_process, train

    task = get_task("seed")
    result = train(task.default_config(), task, epochs=1, seed=0, progress=False, device="cpu")
    state = result.model.state_dict()
    digest = hashlib.sha256(b"".join(state[k].numpy().tobytes() for k in sorted(state))).hexdigest()
    with open(os.path.join(sys.argv[1], "rank%s.json" % os.environ["RANK"]), "w") as f:
        json.dump({"digest": digest, "world": os.environ["WORLD_SIZE"]}, f)
    if is_main_process():
        save_checkpoint(os.path.join(sys.argv[1], "model.safetensors"), result.model, task=task.name)
    """
)


def test_torchrun_two_processes_end_identical(tmp_path):
    script = tmp_path / "ddp_job.py"
    script.write_text(DDP_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script), str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["world"] == "2"
    assert ranks[0]["digest"] == ranks[1]["digest"]
    assert (tmp_path / "model.safetensors").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp_job.py", "model.safetensors", "rank0.json", "rank1.json"]


@pytest.mark.slow
def test_cli_under_torchrun_writes_once(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    out = tmp_path / "seed.safetensors"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "rnnedge.cli",
         "train", "--task", "seed", "--epochs", "1", "--json", "-o", str(out)],
        env=env, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1 and json.loads(lines[0])["checkpoint"] == str(out)
    assert out.exists()
