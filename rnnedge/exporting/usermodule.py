"""Your own module on the command line: `rnnedge export FILE.py:FACTORY --example 'float32[1,10,5]'`.

`load_factory` is the only place rnnedge runs code from a file you name (never code from a model or a
checkpoint). torch is imported inside the functions that need it.
"""

from __future__ import annotations

import contextlib
import math
import re
import sys
from pathlib import Path

from rnnedge.errors import BadInputError

_EXAMPLE = re.compile(r"\s*(float32|float|int64|long)\s*\[\s*(\d+(?:\s*,\s*\d+)*)\s*\]\s*(?:=\s*(-?\d+(?:\.\d*)?)\s*)?")


def is_factory_ref(source: str) -> bool:
    """'path/to/file.py:FACTORY' (as opposed to a checkpoint path)."""
    return ":" in source and source.split(":", 1)[0].endswith(".py")


def parse_examples(text: str):
    """One --example: a tensor, or '(float32[2,1,16], float32[2,1,16])' -> a tuple of them (an argument such as an
    LSTM's (h0, c0))."""
    inner = text.strip()
    if inner.startswith("(") and inner.endswith(")"):
        parts = [t for t in re.split(r",(?=\s*(?:float32|float|int64|long)\s*\[)", inner[1:-1]) if t.strip()]
        if parts:
            return tuple(parse_example(t.rstrip(", ")) for t in parts)
    return parse_example(text)


def parse_example(text: str):
    """'float32[1,10,5]' or 'int64[2,7]' -> a random example tensor of that dtype and shape (seed 0); 'int64[2]=100'
    -> every element that value (lengths: random ids of 0 and 1 are no lengths)."""
    import torch

    m = _EXAMPLE.fullmatch(text)
    if not m:
        raise BadInputError(f"--example '{text}': expected DTYPE[d0,d1,...] with DTYPE float32 or int64, e.g. 'float32[1,10,5]'"
                            " (or DTYPE[...]=VALUE, every element VALUE: 'int64[1]=100' for lengths)")
    shape = [int(d) for d in m.group(2).split(",")]
    gen = torch.Generator().manual_seed(0)
    try:
        if m.group(3) is not None:
            value = float(m.group(3))
            if m.group(1) in ("int64", "long") and not value.is_integer():
                raise BadInputError(f"--example '{text}': an int64 example takes a whole number")
            return torch.full(shape, int(value) if m.group(1) in ("int64", "long") else value,
                              dtype=torch.int64 if m.group(1) in ("int64", "long") else torch.float32)
        if m.group(1) in ("int64", "long"):
            return torch.randint(0, 2, shape, generator=gen)
        return torch.randn(shape, generator=gen)
    except (RuntimeError, MemoryError) as exc:  # torch's allocator says "can't allocate memory" as a RuntimeError
        if isinstance(exc, MemoryError) or "allocate" in str(exc):
            size = math.prod(shape) * (8 if m.group(1) in ("int64", "long") else 4)
            raise MemoryError(f"--example '{text}' needs {size / 2**30:,.0f} GiB") from exc
        raise


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
    if spec is None or spec.loader is None:
        raise BadInputError(f"{path}: cannot be loaded as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as an import would: torch looks functions up by their module (run_cell's scan did)
    try:
        with _user_code(path, "importing it"):
            spec.loader.exec_module(module)
    except BadInputError:
        sys.modules.pop(spec.name, None)
        raise
    factory = getattr(module, name, None)
    if not callable(factory):
        raise BadInputError(f"{path} has no callable '{name}'")
    with _user_code(path, f"{name}()"):
        return factory()


@contextlib.contextmanager
def _user_code(path: Path, what: str):
    """Failures of the user's own code (a SyntaxError, a missing import, a raising factory, even SystemExit):
    the user's error, one line naming the file (exit 2), not a bug in rnnedge. Ctrl-C stays an interrupt."""
    try:
        yield
    except (Exception, SystemExit) as exc:
        if isinstance(exc, BadInputError):  # rnnedge's own refusal, raised from code the user called
            raise
        raise BadInputError(f"{path}: {what} raised {_describe(exc)}") from exc


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"SystemExit({exc.code!r})"
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def export_factory(ref: str, examples: list[str], output, *, check_input_files=(), labels=None, **options):
    """Export the module FILE.py:FACTORY returns, fed `examples` ('float32[1,10,5]' ...): an ExportResult.

    `check_input_files`: --check-input files, read by the input names (given, or forward's own). `labels`: a list stored
    as `rnnedge.labels`. `options` go to `rnnedge.exporting.api.export` (target, lowering, input_names, output_names,
    opset, verify, dynamic_axes, default_axes, ...)."""
    from rnnedge.exporting.api import export
    from rnnedge.exporting.naming import default_input_names

    if not examples:
        raise BadInputError("FILE.py:FACTORY needs at least one --example, e.g. --example 'float32[1,10,5]'")
    module = load_factory(ref)
    tensors = [parse_examples(e) for e in examples]
    names = options.get("input_names") or default_input_names(module, tensors)
    if check_input_files:
        options["check_inputs"] = [read_check_input(f, names) for f in check_input_files]
    if labels:
        options["metadata"] = {**(options.get("metadata") or {}), "rnnedge.labels": list(labels)}
    try:
        return export(module, tensors, output, **{**options, "input_names": names})
    except BadInputError as err:
        ids = [e for e in examples if "=" not in e and re.match(r"\s*(int64|long)", e)]
        if ids and str(err).startswith("the module fails on the example inputs"):
            raise BadInputError(f"{err} (--example '{ids[0]}' is random ids of 0 and 1; for lengths or sizes give "
                                "every element a value: 'int64[1]=100')") from err
        raise


def read_labels(labels, labels_file) -> list[str] | None:
    """--label L (repeatable) and --labels FILE (one label per line, or a JSON list) -> the labels, or None."""
    import json

    found = [str(label) for label in labels or ()]
    if labels_file is not None:
        path = Path(labels_file)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise BadInputError(f"--labels {path}: cannot read it ({err})") from None
        if text.lstrip().startswith("["):
            try:
                listed = json.loads(text)
            except ValueError as err:
                raise BadInputError(f"--labels {path}: not a JSON list ({err})") from None
            if not isinstance(listed, list) or not all(isinstance(x, (str, int, float)) for x in listed):
                raise BadInputError(f"--labels {path}: expected a JSON list of strings")
            found += [str(x) for x in listed]
        else:
            found += [line.strip() for line in text.splitlines() if line.strip()]
        if not found:
            raise BadInputError(f"--labels {path}: no labels in it (one per line, or a JSON list)")
    return found or None


def verify_factory(ref: str, model, *, examples=(), axes=(), check_inputs=(), **options):
    """`rnnedge verify FILE.py:FACTORY MODEL.onnx`: the module FACTORY() returns against the file, a ParityReport.

    The file's own spec says what it takes; the export options say the same again or more: `examples`
    ('float32[1,100,40]') set the example length the cases are built around, `axes` (INPUT:AXIS=LABEL) must be
    what the file declares, `check_inputs` (.npz/.npy paths) are compared exactly (streamed, for a stream file).
    `options` go to rnnedge.parity.verify (atol, rtol, cases, providers, allow_ill_conditioned)."""
    from rnnedge.parity import verify
    from rnnedge.parity.verify import spec_of

    spec, _ = spec_of(model)
    own = [t for t in spec.inputs if t.role != "state" or t.name not in {s["input"] for s in spec.states if not s.get("own")}]
    for name, declared in parse_axes_text(axes).items():
        shape = next((t.shape for t in own if t.name == name), None)
        if shape is None:
            raise BadInputError(f"--axis names '{name}', which {model} does not take (inputs: {', '.join(t.name for t in own)})")
        wrong = [f"{a}={lab}" for a, lab in declared.items() if a >= len(shape) or shape[a] != lab]
        if wrong:
            raise BadInputError(f"--axis {name}:{wrong[0]}: {model} declares '{name}' as {shape}")
    example_seq = None
    if examples:
        first = parse_example(examples[0])
        time = spec.time_axis
        shape = own[0].shape if own else []
        if first.dim() != len(shape):
            raise BadInputError(f"--example '{examples[0]}' has rank {first.dim()}; {model} takes '{own[0].name}' as {shape}")
        example_seq = int(first.shape[shape.index(time)]) if time in shape else None
    names = [t.name for t in own]
    spec.check_feeds = [{n: t.numpy() for n, t in zip(names, read_check_input(f, names))} for f in check_inputs]
    module = load_factory(ref)
    _same_weights(module, load_factory(ref), ref)
    return verify(module, model, spec=spec, example_seq=example_seq, **options)


def _same_weights(first, second, ref: str) -> None:
    """verify compares the file with what FACTORY() returns now: a factory that draws new random weights on every
    call (an unseeded nn.Module()) would make any file fail, so it is refused, saying so."""
    import torch

    a, b = first.state_dict(), second.state_dict()
    differ = [k for k in a if k in b and isinstance(a[k], torch.Tensor) and (a[k].shape != b[k].shape or not torch.equal(a[k], b[k]))]
    if differ:
        raise BadInputError(f"{ref} returns other weights on every call ({differ[0]} differs between two calls: an unseeded "
                            "random initialisation): verify would compare the file with weights it was not exported from; "
                            "seed it (torch.manual_seed) or load your trained weights in the factory")


# -- the command line's axis options (--fix-dim, --axis, --tie, --check-input) ---------------------------


def parse_fix_dims(items) -> dict[str, int]:
    """["batch=1", ...] (the CLI's --fix-dim) -> {"batch": 1}."""
    fixed = {}
    for item in items or []:
        name, sep, size = str(item).partition("=")
        if not sep or not name.strip() or not size.strip().isdigit() or int(size) < 1:
            raise BadInputError(f"--fix-dim {item!r}: expected NAME=SIZE with a positive integer size, e.g. batch=1")
        fixed[name.strip()] = int(size)
    return fixed


def parse_axes_text(items) -> dict[str, dict[int, str]]:
    """["mel:1=frames", "mel:0=batch", ...] (the CLI's --axis) -> dynamic_axes {"mel": {0: "batch", 1: "frames"}}."""
    axes: dict[str, dict[int, str]] = {}
    for item in items or []:
        where, sep, label = str(item).partition("=")
        name, colon, axis = where.rpartition(":")
        if not sep or not colon or not name or not axis.strip().isdigit() or not label.strip():
            raise BadInputError(f"--axis {item!r}: expected INPUT:AXIS=LABEL, e.g. mel:1=frames")
        axes.setdefault(name.strip(), {})[int(axis)] = label.strip()
    return axes


def parse_ties_text(items) -> dict[str, str]:
    """["samples=(frames - 4) * 256", ...] (the CLI's --tie) -> {"samples": "(frames - 4) * 256"}."""
    ties = {}
    for item in items or []:
        name, sep, relation = str(item).partition("=")
        if not sep or not name.strip() or not relation.strip():
            raise BadInputError(f"--tie {item!r}: expected NAME=RELATION, e.g. 'samples=(frames - 4) * 256'")
        ties[name.strip()] = relation.strip()
    return ties


def read_check_input(path, names: list[str] | None) -> tuple:
    """One --check-input file (.npz: one array per input, named like the inputs or in order; .npy: one input)."""
    import torch

    from rnnedge.files import load_arrays

    arrays = load_arrays(path)
    if names and all(n in arrays for n in names):
        ordered = [arrays[n] for n in names]
    elif names and len(arrays) != len(names):
        raise BadInputError(f"{path}: holds {len(arrays)} arrays ({', '.join(arrays)}), the module takes {len(names)} ({', '.join(names)})")
    else:
        ordered = list(arrays.values())
    return tuple(torch.from_numpy(a.copy()) for a in ordered)
