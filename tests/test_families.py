"""Model families plug in: a third family registered from outside touches no stage, and the stages use it.

A toy family (a mean-pooling linear classifier over a `parity` task) is registered in the test; `get_task`, the
one training loop, checkpoints and `export_checkpoint` then work on it through rnnedge.families.registry only.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

import rnnedge
from rnnedge.families import registry
from rnnedge.families.configs import config_from_dict
from rnnedge.tasks import TaskData, get_task, task_names
from rnnedge.tasks.base import Task


@dataclasses.dataclass
class ToyConfig:
    features: int = 3
    classes: int = 2
    kind: str = "toy"

    def to_dict(self):
        return dataclasses.asdict(self)


class ToyModel(nn.Module):
    def __init__(self, config: ToyConfig):
        super().__init__()
        self.config = config
        self.linear = nn.Linear(config.features, config.classes)

    def forward(self, x, lengths=None):  # (B, T, F) -> (B, C)
        return self.linear(x.mean(dim=1))


class ToyTask(Task):
    name, family, default_epochs, default_batch_size = "toy-sign", "toy", 3, 16

    def _build(self):
        rng = np.random.default_rng(0)
        x = rng.standard_normal((96, 5, 3)).astype(np.float32)
        y = (x[:, :, 0].mean(axis=1) > 0).astype(np.int64)
        return {"train": TaskData(x[:64], None, y[:64]), "val": TaskData(x[64:80], None, y[64:80]), "test": TaskData(x[80:], None, y[80:])}

    def _base_config(self, cell):
        return {}

    def default_config(self, cell="toy", **overrides):
        return ToyConfig()

    def check_config(self, config):
        pass


def _loss(net, task, tensors, ix, device):
    x, y = tensors
    return task.loss(net(x[ix].to(device)), y[ix].to(device))


def _evaluate(model, task, split):
    from rnnedge.training.loop import evaluate_model

    return evaluate_model(model, task, split)


TOY = registry.Family(name="toy", config_from_dict=lambda d: config_from_dict(ToyConfig, d, "toy config"), build=ToyModel,
                      export_checkpoint=lambda model, path, **o: ("exported", type(model).__name__, str(path)),
                      train_loss=_loss, evaluate_model=_evaluate,
                      split_tensors=lambda data: (torch.from_numpy(data.inputs), torch.from_numpy(data.targets)),
                      tasks={"toy-sign": ToyTask})


@pytest.fixture
def toy_family():
    from rnnedge import tasks

    registry.load_families()
    registry.register(TOY)
    get_task.cache_clear()
    yield TOY
    registry._FAMILIES.pop("toy", None)
    tasks._FACTORIES.pop("toy-sign", None)
    get_task.cache_clear()


def test_the_built_in_families_register_themselves():
    families = registry.load_families()
    assert {"sequence", "seq2seq"} <= set(families)
    assert "dates" in task_names() and "digits" in task_names()  # the seq2seq family brings its task
    assert registry.family_for_config({"kind": "seq2seq"}).name == "seq2seq"
    assert registry.family_for_config({"cell": "gru"}).name == "sequence"  # no kind: the sequence family


def test_a_third_family_trains_saves_loads_and_exports_through_the_stages(toy_family, tmp_path):
    task = get_task("toy-sign")
    assert isinstance(task, ToyTask) and "toy-sign" in task_names()
    result = rnnedge.train(ToyConfig(), task, epochs=3, seed=0, progress=False)  # the one training loop
    assert isinstance(result.model, ToyModel) and 0.0 <= result.metrics["accuracy"] <= 1.0 and len(result.history) == 3
    path = rnnedge.save_checkpoint(tmp_path / "toy.safetensors", result.model, task="toy-sign")
    loaded = rnnedge.load_checkpoint(path)  # built by the toy family from the config kind in the checkpoint
    assert isinstance(loaded, ToyModel) and loaded.config == ToyConfig()
    assert torch.equal(loaded.linear.weight, result.model.linear.weight)
    assert rnnedge.export_checkpoint(path, tmp_path / "toy.onnx") == ("exported", "ToyModel", str(tmp_path / "toy.onnx"))


def test_an_unknown_family_is_bad_input():
    with pytest.raises(rnnedge.BadInputError, match="unknown model family 'nope'"):
        registry.family_for_config({"kind": "nope"})
