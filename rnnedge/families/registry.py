"""The model-family registry: stages ask it, and never import a family (optimum's TasksManager pattern).

A family says how to build a model from its config, how a checkpoint exports (one file or a folder of
parts), which torch module a file of it computes, how it trains (its loss on a batch and its metric), and
which tasks it brings. Families register themselves when their package is imported; `load_families()`
imports the known ones (FAMILY_MODULES) once. Adding a family: a package that calls `register(Family(...))`
and its module name in FAMILY_MODULES; no stage changes.

    family_for_config(config)   # by config kind ("sequence" when the config has none)
    family_for_path(path)       # the family whose exported artefact this path is (a seq2seq folder), or None
    family_named("seq2seq")
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rnnedge.errors import BadInputError

FAMILY_MODULES = ("rnnedge.families.sequence", "rnnedge.families.seq2seq")

Hook = Callable[..., Any]


@dataclass(frozen=True)
class Family:
    """What the stages need from a model family. Hooks import their heavy modules when called."""

    name: str  # also the config kind (`config.kind`, "kind" in a checkpoint's config JSON)
    config_from_dict: Hook  # dict -> config
    build: Hook  # config -> torch module (untrained, train mode)
    export_checkpoint: Hook  # (model, path, **options) -> an export result
    train_loss: Hook  # (net, task, tensors, index, device) -> loss: one batch of the one training loop
    evaluate_model: Hook  # (model, task, split) -> metrics
    split_tensors: Hook  # TaskData -> tuple of CPU tensors the train_loss indexes
    torch_module: Hook | None = None  # (model, file metadata) -> the module a one-file export computes
    owns_path: Callable[[Path], bool] = lambda path: False  # an exported artefact of this family (a folder)
    verify_path: Hook | None = None  # (model_or_ckpt, path, **options) -> ParityReport, for owned paths
    quantize_path: Hook | None = None  # (path, out, **options) -> result, for owned paths
    evaluate_path: Hook | None = None  # (path, task name, split, batch_size) -> evaluation dict
    compare_paths: Hook | None = None  # (float path, quantized path, task name) -> comparison dict
    distributed: bool = True  # trains under torchrun (DDP)
    tasks: dict[str, Callable[[], Any]] = field(default_factory=dict)  # task name -> factory


_FAMILIES: dict[str, Family] = {}


def register(family: Family) -> None:
    """Add a family (its tasks come with it: rnnedge.tasks reads them); a family registers itself on import."""
    _FAMILIES[family.name] = family


def load_families() -> dict[str, Family]:
    """Import every known family package once (each registers itself); the registered families by name."""
    for module in FAMILY_MODULES:
        importlib.import_module(module)
    return _FAMILIES


def family_named(name: str) -> Family:
    families = load_families()
    if name not in families:
        raise BadInputError(f"unknown model family {name!r}; known: {', '.join(families)}")
    return families[name]


def config_kind(config: Any) -> str:
    """The family name a config (object or dict) belongs to: its `kind`, "sequence" when it has none."""
    kind = config.get("kind") if isinstance(config, dict) else getattr(config, "kind", None)
    return kind or "sequence"


def family_for_config(config: Any) -> Family:
    return family_named(config_kind(config))


def family_for_path(path: str | os.PathLike) -> Family | None:
    """The family that owns an exported artefact at `path` (a seq2seq folder), or None for a plain file."""
    p = Path(path)
    return next((f for f in load_families().values() if f.owns_path(p)), None)
