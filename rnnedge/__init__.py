"""rnnedge: recurrent models from PyTorch to ONNX Runtime, verified.

Importing rnnedge does not import torch (nor onnx): public names are resolved lazily on first use
(`rnnedge.load_checkpoint` imports rnnedge.checkpoint, which imports torch only when called).

`rnnedge.export(...)` and `rnnedge.quantize(...)` are functions defined here that call the functions of
the same name in the submodules rnnedge.export and rnnedge.quantize. Those submodules are registered
at import with the standard library's `importlib.util.LazyLoader` (their code runs on first use), so a
later `import rnnedge.export` finds them in `sys.modules` and does not rebind `rnnedge.export` to the
module: the attribute stays the function. Use `from rnnedge.export import ...` for the module's other names.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
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
    "export_checkpoint": "rnnedge.export:export_checkpoint",
    "ExportResult": "rnnedge.export:ExportResult",
    "run_cell": "rnnedge.recurrence:run_cell",
    "verify": "rnnedge.parity:verify",
    "compare": "rnnedge.parity:compare",
    "ParityReport": "rnnedge.parity:ParityReport",
    "runtime": "rnnedge.runtime",
    "testing": "rnnedge.testing",
}

__all__ = ["__version__", "export", "quantize", *_LAZY]


def _register_lazily(name: str) -> None:
    """Put submodule rnnedge.<name> in sys.modules now, its code to run on first attribute access."""
    full = f"{__name__}.{name}"
    if full in sys.modules:
        return
    spec = importlib.util.find_spec(full)
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[full] = module
    spec.loader.exec_module(module)


_register_lazily("export")
_register_lazily("quantize")


def export(*args, **kwargs):
    """Export a torch module with recurrent layers to one ONNX file: `rnnedge.export.export` (its docstring
    has the arguments), e.g. `rnnedge.export(model, (x,), "model.onnx", dynamic_axes=...) -> ExportResult`."""
    return sys.modules[f"{__name__}.export"].export(*args, **kwargs)


def quantize(*args, **kwargs):
    """Quantize an ONNX file (int8 dynamic, int8 static, fp16): `rnnedge.quantize.quantize` (its docstring
    has the arguments), e.g. `rnnedge.quantize("model.onnx", "model.int8.onnx", mode="int8")`."""
    return sys.modules[f"{__name__}.quantize"].quantize(*args, **kwargs)


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
