"""The registry of int8 forms (onnxruntime's quantization `registry.py` pattern): one module per form registers a
`Form`; units ask which forms apply to them (`candidates`), and `build` asks each chosen form for its `plan`."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Plan:
    """What the chosen forms ask of the build: nodes for onnxruntime's dynamic quantizer, for MatMulNBits, and nodes
    whose weights stay float32. Every other weight of a quantized op type gets the floor's int8 storage."""

    dynamic: list[str] = field(default_factory=list)
    nbits: list[str] = field(default_factory=list)
    floats: set[str] = field(default_factory=set)


class Form:
    """One int8 form of a unit. `ops`: the unit kinds it is a speed candidate for (RNN, GRU, LSTM, Scan, REST)."""

    name: str = ""
    ops: tuple[str, ...] = ()
    rank: int = 50  # forms are listed and measured in rank order (the floor first)

    def plan(self, model, unit, units: dict, plan: Plan) -> None:
        """Add what this form needs for `unit` to `plan` (the model may be rewritten in place, e.g. lowered to Scan)."""
        raise NotImplementedError


_FORMS: dict[str, Form] = {}


def register(form: Form) -> Form:
    """Add a form (listed and tried in rank order, the floor first)."""
    _FORMS[form.name] = form
    return form


def _ranked() -> list[Form]:
    return sorted(_FORMS.values(), key=lambda f: (f.rank, f.name))


def form_named(name: str) -> Form:
    if name not in _FORMS:
        raise ValueError(f"unknown int8 form {name!r}; known: {', '.join(_FORMS)}")
    return _FORMS[name]


def form_names() -> tuple[str, ...]:
    return tuple(f.name for f in _ranked())


def candidates(op: str) -> tuple[str, ...]:
    """The forms a unit of kind `op` can take, in rank order (the floor applies to every unit)."""
    return tuple(f.name for f in _ranked() if op in f.ops)
