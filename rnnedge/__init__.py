"""rnnedge: recurrent models from PyTorch to ONNX Runtime, verified.

Importing rnnedge does not import torch: public names are resolved lazily on first use
(`rnnedge.load_checkpoint` imports rnnedge.checkpoint, which imports torch only when called).
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
    "ModelConfig": "rnnedge.models:ModelConfig",
    "SequenceModel": "rnnedge.models:SequenceModel",
    "count_parameters": "rnnedge.models:count_parameters",
    "get_task": "rnnedge.tasks:get_task",
    "TASKS": "rnnedge.tasks:TASKS",
    "Task": "rnnedge.tasks:Task",
    "TaskData": "rnnedge.tasks:TaskData",
    "train": "rnnedge.train:train",
    "TrainResult": "rnnedge.train:TrainResult",
    "save_checkpoint": "rnnedge.checkpoint:save_checkpoint",
    "load_checkpoint": "rnnedge.checkpoint:load_checkpoint",
    "read_checkpoint": "rnnedge.checkpoint:read_checkpoint",
    "export": "rnnedge.export:export",
    "export_checkpoint": "rnnedge.export:export_checkpoint",
    "ExportResult": "rnnedge.export:ExportResult",
    "verify": "rnnedge.parity:verify",
    "compare": "rnnedge.parity:compare",
    "ParityReport": "rnnedge.parity:ParityReport",
    "quantize": "rnnedge.quantize:quantize",
    "runtime": "rnnedge.runtime",
    "testing": "rnnedge.testing",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'rnnedge' has no attribute {name!r}")
    module, _, attr = target.partition(":")
    value = importlib.import_module(module)
    value = getattr(value, attr) if attr else value
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
