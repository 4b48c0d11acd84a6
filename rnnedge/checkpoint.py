"""Checkpoints: one safetensors file holding the weights and, as metadata strings, the model config,
task, labels, metrics and rnnedge version. Loading never unpickles anything.

    >>> save_checkpoint("digits.safetensors", model, task="digits", labels=[...], metrics={...})
    >>> model = load_checkpoint("digits.safetensors")        # SequenceModel in eval mode
    >>> model.rnnedge_meta["metrics"]

Files are checked before they are parsed: a pickle or a zip (torch.save's format), whatever its
name, is refused as unsafe; a missing, empty, truncated or foreign file is refused with one line.
"""

from __future__ import annotations

import json
import logging
import os
import struct
from pathlib import Path
from typing import Any

from rnnedge.errors import BadInputError, UnsafeFileError
from rnnedge.families.registry import family_for_config
from rnnedge.files import holds_pickle, write_bytes_atomic

log = logging.getLogger(__name__)

FORMAT = "rnnedge-checkpoint/1"  # value of the rnnedge.format metadata key
KEYS = ("rnnedge.format", "rnnedge.version", "rnnedge.config", "rnnedge.task", "rnnedge.labels", "rnnedge.metrics")
MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the JSON header


def _version() -> str:
    from rnnedge import __version__

    return __version__


def save_checkpoint(path: str | os.PathLike, model, *, task: str | None = None, labels: list[str] | None = None,
                    metrics: dict[str, Any] | None = None) -> Path:
    """Write `model` (any family's model: a module with a `.config` that has to_dict()) and its metadata to `path`
    atomically; returns the path."""
    from safetensors.torch import save

    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_dict"):
        raise BadInputError("save_checkpoint needs an rnnedge model (a module with a config .config that has to_dict())")
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    meta = {
        "rnnedge.format": FORMAT,
        "rnnedge.version": _version(),
        "rnnedge.config": json.dumps(config.to_dict()),
        "rnnedge.task": task or "",
        "rnnedge.labels": json.dumps(labels) if labels is not None else "",
        "rnnedge.metrics": json.dumps(metrics or {}),
    }
    data = save(tensors, metadata=meta)
    path = Path(path)
    write_bytes_atomic(path, data)
    log.info("wrote checkpoint %s (%d bytes)", path, len(data))
    return path


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise BadInputError(f"{path}: no such file")
    if not path.is_file():
        raise BadInputError(f"{path}: not a file")
    try:
        return path.read_bytes()
    except OSError as e:
        raise BadInputError(f"{path}: cannot read ({e.strerror or e})") from e


def parse_header(data: bytes, path: Path) -> dict[str, Any]:
    """Validate the safetensors framing (8-byte length, JSON header, offsets within the file)."""
    if len(data) == 0:
        raise BadInputError(f"{path}: empty file, not an rnnedge checkpoint")
    n = struct.unpack("<Q", data[:8])[0] if len(data) >= 8 else 0
    if not (2 <= n <= MAX_HEADER and data[8:9] == b"{"):
        if holds_pickle(data):
            raise UnsafeFileError(f"{path}: a pickle, refused: rnnedge never unpickles (save with rnnedge train or save_checkpoint)")
        if data[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
            raise BadInputError(f"{path}: a zip archive (an .npz?), not a safetensors checkpoint")
        if data.startswith(b"\x93NUMPY"):
            raise BadInputError(f"{path}: a .npy array file, not a safetensors checkpoint")
        if len(data) < 10:
            raise BadInputError(f"{path}: truncated or not a safetensors file ({len(data)} bytes)")
        raise BadInputError(f"{path}: not a safetensors checkpoint")
    if 8 + n > len(data):
        raise BadInputError(f"{path}: truncated (header claims {n} bytes, file has {len(data) - 8})")
    try:
        header = json.loads(data[8 : 8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadInputError(f"{path}: corrupt safetensors header ({e})") from e
    if not isinstance(header, dict):
        raise BadInputError(f"{path}: corrupt safetensors header")
    body = len(data) - 8 - n
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise BadInputError(f"{path}: corrupt safetensors header (tensor {name!r})")
        if offsets[1] > body:
            raise BadInputError(f"{path}: truncated (tensor {name!r} ends past the end of the file)")
    return header


def read_checkpoint(path: str | os.PathLike):
    """(ModelConfig, state_dict of tensors, meta dict) without building a model. Never unpickles."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = Path(path)
    data = _read_bytes(path)
    header = parse_header(data, path)
    raw = header.get("__metadata__") or {}
    if not isinstance(raw, dict) or raw.get("rnnedge.format") != FORMAT:
        found = raw.get("rnnedge.format") if isinstance(raw, dict) else None
        hint = f" (format {found!r}, this rnnedge reads {FORMAT!r})" if found else " (no rnnedge metadata)"
        raise BadInputError(f"{path}: a safetensors file, but not an rnnedge checkpoint{hint}")
    try:
        config_dict = json.loads(raw.get("rnnedge.config", ""))
        config = family_for_config(config_dict).config_from_dict(config_dict)
    except json.JSONDecodeError as e:
        raise BadInputError(f"{path}: corrupt rnnedge.config metadata ({e})") from e
    except BadInputError as e:
        raise BadInputError(f"{path}: {e}") from e
    meta = {
        "task": raw.get("rnnedge.task") or None,
        "labels": _json_or_none(raw.get("rnnedge.labels"), path, "rnnedge.labels"),
        "metrics": _json_or_none(raw.get("rnnedge.metrics"), path, "rnnedge.metrics") or {},
        "version": raw.get("rnnedge.version"),
    }
    try:
        state = load(data)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise BadInputError(f"{path}: corrupt safetensors data ({e})") from e
    return config, state, meta


def _json_or_none(text: str | None, path: Path, key: str):
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise BadInputError(f"{path}: corrupt {key} metadata ({e})") from e


def load_checkpoint(path: str | os.PathLike):
    """The model saved at `path` (built by its config's family: SequenceModel, Seq2SeqModel), in eval mode, with a
    `.rnnedge_meta` dict (task, labels, metrics, version)."""
    config, state, meta = read_checkpoint(path)
    model = family_for_config(config).build(config)  # SequenceModel, Seq2SeqModel, ...
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        parts = [f"{label}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
                 for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys]
        raise BadInputError(f"{path}: weights do not match the model config ({'; '.join(parts)})")
    model.load_state_dict(state)
    model.eval()
    model.rnnedge_meta = meta
    return model
