"""The sequence-model family: ModelConfig + SequenceModel (`model`), its export contract (`contract`) and how a
checkpoint exports (`export`). Registers itself with rnnedge.families.registry; importing it imports no torch."""

from __future__ import annotations

from rnnedge.families.registry import Family, register


def _config_from_dict(d):
    from rnnedge.families.sequence.model import ModelConfig

    return ModelConfig.from_dict(d)


def _build(config):
    from rnnedge.families.sequence.model import SequenceModel

    return SequenceModel(config)


def _export_checkpoint(model, path, **options):
    from rnnedge.families.sequence.export import export_sequence_model

    return export_sequence_model(model, path, **options)


def _split_tensors(data):
    import torch

    lengths = None if data.lengths is None else torch.from_numpy(data.lengths)  # (N,)
    return torch.from_numpy(data.inputs), lengths, torch.from_numpy(data.targets)  # (N, T[, F]), (N,), (N,) | (N, T)


def _train_loss(net, task, tensors, ix, device):
    x, lengths, y = tensors
    return task.loss(net(x[ix].to(device), None if lengths is None else lengths[ix]), y[ix].to(device))


def _evaluate_model(model, task, split):
    from rnnedge.training.loop import evaluate_model

    return evaluate_model(model, task, split)


def _torch_module(model, meta):
    from rnnedge.families.sequence.contract import contract

    return contract(model, meta.get("rnnedge.target", "dynamic"), chunk=int(meta.get("rnnedge.chunk", 16))).module


register(Family(name="sequence", config_from_dict=_config_from_dict, build=_build, export_checkpoint=_export_checkpoint,
                train_loss=_train_loss, evaluate_model=_evaluate_model, split_tensors=_split_tensors, torch_module=_torch_module))
