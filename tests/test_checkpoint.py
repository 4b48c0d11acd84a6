"""Checkpoints: round trip with identical outputs; refusal of anything unsafe, foreign or broken."""

from __future__ import annotations

import json
import os
import pickle
import zipfile

import pytest
import torch
from safetensors.torch import save_file

from rnnedge.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from rnnedge.errors import BadInputError, UnsafeFileError
from rnnedge.families.sequence.model import ModelConfig, SequenceModel


def _model(**kw):
    torch.manual_seed(0)
    cfg = dict(input_kind="tokens", input_size=13, embed_dim=4, cell="lstm", hidden=6, layers=2, bidirectional=True, head="tag", num_outputs=5)
    cfg.update(kw)
    return SequenceModel(ModelConfig(**cfg)).eval()


def test_round_trip_identical_outputs(tmp_path):
    model = _model()
    path = save_checkpoint(tmp_path / "m.safetensors", model, task="fillblank", labels=["a", "b"], metrics={"top1": 0.5})
    loaded = load_checkpoint(path)
    assert not loaded.training and loaded.config == model.config
    assert loaded.rnnedge_meta["task"] == "fillblank"
    assert loaded.rnnedge_meta["labels"] == ["a", "b"]
    assert loaded.rnnedge_meta["metrics"] == {"top1": 0.5}
    assert loaded.rnnedge_meta["version"]
    x, lengths = torch.randint(0, 13, (3, 9)), torch.tensor([9, 4, 1])
    with torch.no_grad():
        assert torch.equal(model(x, lengths), loaded(x, lengths))
    config, state, meta = read_checkpoint(path)
    assert config == model.config and set(state) == set(model.state_dict())
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temp files left


def test_save_is_atomic_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, _model())
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        save_checkpoint(path, _model(hidden=7))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


class _Payload:
    """Unpickling this would create the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("name", ["evil.pt", "evil.ckpt", "evil.safetensors"])
@pytest.mark.parametrize("how", ["pickle", "torch.save"])
def test_pickles_refused_never_executed(tmp_path, name, how):
    marker = tmp_path / "pwned"
    path = tmp_path / name
    if how == "pickle":
        path.write_bytes(pickle.dumps(_Payload(marker)))
    else:
        torch.save({"w": torch.zeros(2), "x": _Payload(marker)}, path)
        assert zipfile.is_zipfile(path)
    with pytest.raises(UnsafeFileError, match="a pickle, refused: rnnedge never unpickles"):
        load_checkpoint(path)
    assert not marker.exists()


def test_old_protocol_pickle_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "old.ckpt"
    path.write_bytes(pickle.dumps(_Payload(marker), protocol=0))
    with pytest.raises(UnsafeFileError):
        load_checkpoint(path)
    assert not marker.exists()


def test_broken_files_refused(tmp_path):
    good = save_checkpoint(tmp_path / "good.safetensors", _model())
    data = good.read_bytes()
    cases = {
        "missing.safetensors": None,
        "empty.safetensors": b"",
        "tiny.safetensors": b"\x01\x02",
        "header-cut.safetensors": data[:40],
        "body-cut.safetensors": data[: len(data) - 10],
        "random.safetensors": os.urandom(4096),
        "text.safetensors": b"hello world, not a model\n" * 10,
    }
    for name, content in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(BadInputError) as info:
            load_checkpoint(path)
        assert "\n" not in str(info.value) and name in str(info.value)
    with pytest.raises(BadInputError, match="not a file"):
        load_checkpoint(tmp_path)


def test_foreign_safetensors_refused(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.zeros(3)}, str(path))
    with pytest.raises(BadInputError, match="not an rnnedge checkpoint"):
        load_checkpoint(path)
    save_file({"weight": torch.zeros(3)}, str(path), metadata={"format": "pt"})
    with pytest.raises(BadInputError, match="not an rnnedge checkpoint"):
        load_checkpoint(path)


def test_state_dict_not_matching_config_refused(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", _model())
    config, state, meta = read_checkpoint(path)
    raw = {"rnnedge.format": "rnnedge-checkpoint/1", "rnnedge.version": "0", "rnnedge.task": "",
           "rnnedge.labels": "", "rnnedge.metrics": "{}"}
    bigger = {**config.to_dict(), "hidden": 7}
    save_file(state, str(path), metadata={**raw, "rnnedge.config": json.dumps(bigger)})
    with pytest.raises(BadInputError, match="wrong shape"):
        load_checkpoint(path)
    fewer = {k: v for k, v in state.items() if not k.startswith("head.")}
    save_file(fewer, str(path), metadata={**raw, "rnnedge.config": json.dumps(config.to_dict())})
    with pytest.raises(BadInputError, match="missing: head"):
        load_checkpoint(path)
    save_file(state, str(path), metadata={**raw, "rnnedge.config": json.dumps({**config.to_dict(), "cell": "tcn"})})
    with pytest.raises(BadInputError, match="cell"):
        load_checkpoint(path)
    save_file(state, str(path), metadata={**raw, "rnnedge.config": "{not json"})
    with pytest.raises(BadInputError, match="rnnedge.config"):
        load_checkpoint(path)


def test_save_refuses_foreign_module(tmp_path):
    with pytest.raises(BadInputError):
        save_checkpoint(tmp_path / "x.safetensors", torch.nn.Linear(2, 2))
