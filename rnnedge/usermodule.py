"""Your own module on the command line: `rnnedge export FILE.py:FACTORY --example 'float32[1,10,5]'`.

`load_factory` is the only place rnnedge runs code from a file you name (never code from a model or a
checkpoint). torch is imported inside the functions that need it.
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import BadInputError

_EXAMPLE = re.compile(r"\s*(float32|float|int64|long)\s*\[\s*(\d+(?:\s*,\s*\d+)*)\s*\]\s*")


def is_factory_ref(source: str) -> bool:
    """'path/to/file.py:FACTORY' (as opposed to a checkpoint path)."""
    return ":" in source and source.split(":", 1)[0].endswith(".py")


def parse_example(text: str):
    """'float32[1,10,5]' or 'int64[2,7]' -> a random example tensor of that dtype and shape (seed 0)."""
    import torch

    m = _EXAMPLE.fullmatch(text)
    if not m:
        raise BadInputError(f"--example '{text}': expected DTYPE[d0,d1,...] with DTYPE float32 or int64, e.g. 'float32[1,10,5]'")
    shape = [int(d) for d in m.group(2).split(",")]
    gen = torch.Generator().manual_seed(0)
    if m.group(1) in ("int64", "long"):
        return torch.randint(0, 2, shape, generator=gen)
    return torch.randn(shape, generator=gen)


def load_factory(ref: str):
    """'path/to/file.py:FACTORY' -> the module FACTORY() returns. The only way rnnedge runs user code."""
    import importlib.util

    file, _, name = ref.rpartition(":")
    path = Path(file)
    if not file or not name.isidentifier():
        raise BadInputError(f"'{ref}': expected FILE.py:FACTORY")
    if not path.is_file():
        raise BadInputError(f"{path}: no such file")
    spec = importlib.util.spec_from_file_location(f"rnnedge_user_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    factory = getattr(module, name, None)
    if not callable(factory):
        raise BadInputError(f"{path} has no callable '{name}'")
    return factory()


def export_factory(ref: str, examples: list[str], output, **options):
    """Export the module FILE.py:FACTORY returns, fed `examples` ('float32[1,10,5]' ...): an ExportResult.

    `options` go to `rnnedge.export.export` (target, lowering, input_names, output_names, opset, verify)."""
    from .export import export

    if not examples:
        raise BadInputError("FILE.py:FACTORY needs at least one --example, e.g. --example 'float32[1,10,5]'")
    module = load_factory(ref)
    return export(module, [parse_example(e) for e in examples], output, **options)
