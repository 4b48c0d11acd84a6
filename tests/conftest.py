"""Shared fixtures: a tiny trained seed checkpoint (session-wide) and quick model configs."""

from __future__ import annotations

import os

import pytest


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False,
                     help="also run tests marked slow (the full matrices; `-m slow` runs only those)")


def pytest_collection_modifyitems(config, items):
    """Slow tests are left out unless --runslow, or a -m expression chooses what runs."""
    if config.getoption("--runslow") or config.option.markexpr:
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]


def pytest_configure(config):
    """Small models run fastest single-threaded, and the suite shares a small machine. RNNEDGE_PLANT=<name> plants
    one bug in the product first (tests/plants.py; `python samples/planted_bugs.py` runs the whole table)."""
    if os.environ.get("RNNEDGE_PLANT"):
        from plants import apply

        apply(os.environ["RNNEDGE_PLANT"])
    try:
        import torch
    except ImportError:  # torch-free parts of the suite still run
        return
    torch.set_num_threads(int(os.environ.get("RNNEDGE_TEST_THREADS", "1")))


@pytest.fixture(scope="session")
def seed_checkpoint(tmp_path_factory):
    """A seed-task GRU trained for 2 epochs and saved with rnnedge metadata: (path, model)."""
    from rnnedge.checkpoint import save_checkpoint
    from rnnedge.tasks import get_task
    from rnnedge.training.loop import train

    task = get_task("seed")
    result = train(task.default_config("gru"), task, epochs=2, seed=0, progress=False)
    path = tmp_path_factory.mktemp("ckpt") / "seed.safetensors"
    save_checkpoint(path, result.model, task=task.name, labels=task.labels, metrics=result.metrics)
    return path, result.model


@pytest.fixture(scope="session")
def seed_onnx(seed_checkpoint, tmp_path_factory):
    """The seed GRU (features 5, classes down/flat/up) exported with dynamic axes and a lengths input."""
    from rnnedge.exporting.api import export_checkpoint

    path = tmp_path_factory.mktemp("seed-onnx") / "seed.onnx"
    export_checkpoint(seed_checkpoint[0], path, verify=False, lengths=True)  # seed's default would leave lengths out
    return path


@pytest.fixture
def runner():
    """click's CliRunner for the rnnedge command group."""
    from click.testing import CliRunner

    return CliRunner()
