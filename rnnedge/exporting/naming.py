"""What a user module's file is called at its edges: input names from ``forward``'s signature, the default
axes kept beside ``--axis``, and each input's and output's dims as the file states them.

    default_input_names(model, (mel, lengths))   # forward(self, mel, lengths) -> ["mel", "lengths"]
    default_input_names(model, (x, (h0, c0)))    # forward(self, x, hidden)    -> ["x", "hidden_0", "hidden_1"]

Outputs without names given are ``output`` (one) or ``output_0``, ``output_1``, ... (several): see
``rnnedge.exporting.fixups.finish``. An app then feeds ``Session.run({"mel": x})`` by the names the
module's author wrote.
"""
from __future__ import annotations

import inspect
import logging

log = logging.getLogger(__name__)

__all__ = ["default_input_names", "with_default_axes", "io_dims", "output_name"]


def output_name(index: int, count: int) -> str:
    """The default name of output ``index`` of ``count``: ``output`` alone, else ``output_<index>``."""
    return "output" if count == 1 else f"output_{index}"


def _positional_names(module) -> list[str]:
    """forward's positional parameter names (self excluded), up to a *args or keyword-only parameter. Not a module (a
    factory returning None): no names, so export's own check says what it got."""
    forward = getattr(module, "forward", None)
    if forward is None:
        return []
    try:
        params = inspect.signature(forward).parameters.values()
    except (TypeError, ValueError):  # a builtin or C-implemented forward: no signature to read
        return []
    names = []
    for p in params:
        if p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            break
        names.append(p.name)
    return names


def _leaves(example) -> int:
    """How many tensors one (possibly nested) example argument holds."""
    if isinstance(example, (tuple, list)):
        return sum(_leaves(e) for e in example)
    if isinstance(example, dict):
        return sum(_leaves(e) for e in example.values())
    return 1


def default_input_names(module, examples) -> list[str]:
    """One name per input tensor the file will take: forward's parameter names, ``<name>_<k>`` for the tensors of a
    nested argument, ``input_<i>`` past what the signature names (``*args``). Unique by construction."""
    params = _positional_names(module)
    names: list[str] = []
    for i, ex in enumerate(examples):
        base = params[i] if i < len(params) else f"input_{i}"
        count = _leaves(ex)
        names += [base] if count == 1 and not isinstance(ex, (tuple, list, dict)) else [f"{base}_{k}" for k in range(count)]
    if len(set(names)) != len(names):  # e.g. a parameter literally called input_1 beside *args
        return [f"input_{i}" for i in range(len(names))]
    log.info("input names from %s.forward: %s", type(module).__name__, ", ".join(names))
    return names


def with_default_axes(dynamic_axes: dict, defaults: dict) -> dict:
    """The user's ``{name: {axis: label}}`` added to the default axes (batch and seq of the first input, lengths'
    and states' batch): per input, the user's label wins on an axis both name, and an input given an axis other than
    its batch keeps only the default batch (`--axis wav:2=samples` on (B, 1, samples): the default seq on axis 1, a
    channel, would be dropped, not added). A list of axes keeps its form."""
    merged = {name: dict(axes) for name, axes in defaults.items()}
    for name, axes in dynamic_axes.items():
        if isinstance(axes, dict):
            given = {int(a): label for a, label in axes.items()}
            base = merged.get(name, {})
            if any(base.get(a) != "batch" for a in given):  # the user says where this input's own sizes are
                base = {a: label for a, label in base.items() if label == "batch"}
            merged[name] = {**base, **given}
        else:
            merged[name] = axes
    return merged


def io_dims(model) -> dict[str, list[dict]]:
    """{"inputs": [{"name", "dtype", "shape"}], "outputs": [...]} as the file states them (labels for symbolic dims)."""
    import onnx

    def one(vi) -> dict:
        t = vi.type.tensor_type
        shape = [d.dim_param or (d.dim_value if d.HasField("dim_value") else "?") for d in t.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name if t.elem_type else "?"
        return {"name": vi.name, "dtype": dtype, "shape": shape}

    return {"inputs": [one(v) for v in model.graph.input], "outputs": [one(v) for v in model.graph.output]}
