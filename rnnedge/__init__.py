"""rnnedge: recurrent models from PyTorch to ONNX Runtime, verified.

Importing rnnedge does not import torch (nor onnx): public names are resolved lazily on first use
(`rnnedge.load_checkpoint` imports rnnedge.checkpoint, which imports torch only when called).

Functions and the stage packages that hold them have different names, so neither shadows the other:
`rnnedge.export(...)` is the function, `rnnedge.exporting` the package (its `api`, `capture`, `guards`, ...);
likewise `rnnedge.quantize(...)` / `rnnedge.quantizing`, `rnnedge.train(...)` / `rnnedge.training`,
`rnnedge.verify(...)` / `rnnedge.parity`. `import rnnedge.exporting.guards` and friends work as usual.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> "module:attribute", imported on first access
_LAZY = {
    "RnnEdgeError": "rnnedge.errors:RnnEdgeError",
    "BadInputError": "rnnedge.errors:BadInputError",
    "UnsafeFileError": "rnnedge.errors:UnsafeFileError",
    "ExportError": "rnnedge.errors:ExportError",
    "ParityError": "rnnedge.errors:ParityError",
    "ModelConfig": "rnnedge.families.sequence.model:ModelConfig",
    "SequenceModel": "rnnedge.families.sequence.model:SequenceModel",
    "count_parameters": "rnnedge.families.sequence.model:count_parameters",
    "Seq2SeqConfig": "rnnedge.families.seq2seq.config:Seq2SeqConfig",
    "Seq2SeqModel": "rnnedge.families.seq2seq.model:Seq2SeqModel",
    "get_task": "rnnedge.tasks:get_task",
    "TASKS": "rnnedge.tasks:TASKS",
    "Task": "rnnedge.tasks:Task",
    "TaskData": "rnnedge.tasks:TaskData",
    "train": "rnnedge.training.loop:train",
    "TrainResult": "rnnedge.training.loop:TrainResult",
    "save_checkpoint": "rnnedge.checkpoint:save_checkpoint",
    "load_checkpoint": "rnnedge.checkpoint:load_checkpoint",
    "read_checkpoint": "rnnedge.checkpoint:read_checkpoint",
    "export": "rnnedge.exporting.api:export",
    "export_checkpoint": "rnnedge.exporting.api:export_checkpoint",
    "ExportResult": "rnnedge.exporting.api:ExportResult",
    "run_cell": "rnnedge.exporting.recurrence:run_cell",
    "verify": "rnnedge.parity:verify",
    "compare": "rnnedge.parity:compare",
    "ParityReport": "rnnedge.parity:ParityReport",
    "quantize": "rnnedge.quantizing.api:quantize",
    "QuantizeResult": "rnnedge.quantizing.api:QuantizeResult",
}
# the packages a user may reach as attributes (`rnnedge.runtime.Session`): imported on first access too
_PACKAGES = ("runtime", "testing", "exporting", "quantizing", "training", "parity", "bench", "tasks", "families", "spec", "errors")

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _PACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'rnnedge' has no attribute {name!r}")
    module, _, attr = target.partition(":")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({"__version__", *_LAZY, *_PACKAGES})
