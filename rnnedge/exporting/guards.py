"""Never a file that claims a dynamic axis it does not have: guards, ranges and frozen axes.

torch.export records what the module's Python code assumed about each symbolic size. A branch such
as `if x.shape[1] > 100:` becomes a *guard* (`s27 <= 100`); torch.onnx then quietly narrows the axis
to the guarded range (its capture strategy applies torch's "suggested fixes" and exports again) and
the ONNX file, which has no such range, is wrong past it. A `for t in range(x.shape[1])` or a
`reshape(2, 50)` *specialises* the axis to the example's size instead.

Here, around the torch.onnx call:

1. `watch_guards()` listens to torch's own guard log (`torch.fx.experimental.symbolic_shapes`,
   "[guard added]" records, with the user's file and line) and to the constraint-violation message
   torch.onnx swallows while refining the shapes. Each guard on a declared axis is logged as a warning.
2. `check_program()` reads the ExportedProgram: every axis the user declared dynamic must come out as a
   free symbol with an unbounded range. A specialised or tied axis is refused (ExportError); a bounded
   one is refused too, unless `allow_bounded=True`, in which case its valid range is returned, to be
   written to the spec (`IOSpec.ranges`), the metadata (`rnnedge.range.<axis>` = "1..100") and checked
   by `rnnedge.runtime`.
3. `check_frozen()` reads the final ONNX graph: no declared axis may be a fixed dim_value there.

`refuse_torchscript()` turns a ScriptModule into a clear refusal (torch.onnx's dynamo path cannot trace one).
"""

from __future__ import annotations

import logging

from rnnedge.errors import ExportError
from rnnedge.exporting.guard_sizes import SYMBOL, as_bound, constrains, equal_sizes, excluded_sizes, is_relation, joint_bound, unify
from rnnedge.exporting.guardlog import Guard, GuardLog, failed_at, pass_guard_warnings, watch_guards

__all__ = ["Guard", "GuardLog", "check_frozen", "check_program", "failed_at", "parse_span", "pass_guard_warnings",
           "range_metadata", "refuse_torchscript", "watch_guards"]

log = logging.getLogger(__name__)

WAY_OUT = ("keep the recurrence in nn.RNN/nn.GRU/nn.LSTM, step a standard cell with rnnedge.run_cell(cell, x, hx), "
           "or export the one-step module (x_t, state -> state) and loop in the app")


def refuse_torchscript(module) -> None:
    """torch.onnx.export(dynamo=True) traces Python code; a ScriptModule has none left to trace."""
    import torch

    if isinstance(module, (torch.jit.ScriptModule, torch.jit.ScriptFunction)):
        kind = type(module).__name__
        raise ExportError(
            f"the module is TorchScript ({kind}, e.g. a loaded .jit/.pt TorchScript file), which torch.onnx's exporter "
            "cannot trace: export the original nn.Module (its Python class and a state_dict) instead")


def check_program(program, names: list[str], axes: dict, seen: GuardLog, *, allow_bounded: bool = False,
                  ties: dict | None = None, bounds: dict | None = None, split: bool = False) -> dict[str, list]:
    """Every declared axis must be a free, unbounded symbol of the ExportedProgram. Returns {label: [lo, hi]} of the
    bounded ones (only with allow_bounded, or `split`: rnnedge.piecewise exports the other sizes as pieces); raises
    ExportError naming the axis, the range and torch's guard otherwise. `bounds` {label: [lo, hi]}: the sizes this
    export was asked for (one piece): a range that covers them is no bound.

    Axes the user tied (`ties`: samples = 256 * frames - 1024, only sizes 10/20/40) are expressions or relations by
    declaration: only a specialisation is refused for them and their roots."""
    tied = {lab for label, tie in (ties or {}).items() for lab in (label, tie.get("of")) if lab}
    ep = getattr(program, "exported_program", program)
    if ep is None:
        return {}
    shapes = input_shapes(ep)
    hints = _example_sizes(shapes)
    ranges = Ranges()
    problems: list[str] = []
    for name, shape in zip(names, shapes):
        for ax, label in sorted(axes.get(name, {}).items()):
            if shape is None or ax >= len(shape):
                continue
            verdict = _axis_verdict(ep, shape[ax], seen, hints, tuple((bounds or {}).get(label) or (1, None)))
            if verdict is None or (label in tied and verdict[0] != "specialised"):
                continue
            kind, text, rng = verdict
            if kind == "bounded" and _covers(rng, (bounds or {}).get(label)):
                continue  # the piece's own sizes (rnnedge.piecewise asked for them)
            where = f"axis {ax} ('{label}') of input '{name}'"
            for guard in _guards_for(shape[ax], seen):
                log.warning("torch guard on %s: %s", where, guard.describe())
            if kind == "bounded" and (allow_bounded or split):
                if label in ranges and ranges[label] != rng:
                    rng = [max(rng[0], ranges[label][0]), _min_hi(rng[1], ranges[label][1])]
                ranges[label] = rng
                ranges.texts[label] = f"{where} {text}"
                if not split:
                    log.warning("%s is only valid for %s: range recorded (allow_bounded)", where, _span(rng))
                continue
            problems.append((kind, f"{where} {text}"))
    problems += _merged_labels(names, shapes, axes, tied, seen)
    if problems:
        raise ExportError("; ".join(text for _, text in problems) + way_out_hint({kind for kind, _ in problems}))
    return ranges


class Ranges(dict):
    """{label: [lo, hi]} of the bounded axes, with `texts` {label: why} (the refusal check_program would raise)."""

    def __init__(self, *args):
        super().__init__(*args)
        self.texts: dict[str, str] = {}


def _covers(rng, want) -> bool:
    """Whether the valid range `rng` holds every size of `want` ([lo, hi], hi None: unbounded)."""
    if not want:
        return False
    return rng[0] <= want[0] and (rng[1] is None or (want[1] is not None and rng[1] >= want[1]))


MAX_PROBED = 16  # a 'not equal' guard excluding at most this many sizes has them probed; more (T % 16) is refused


def size_one_guards(program, names: list[str], axes: dict, seen: GuardLog, bounds: dict | None = None) -> dict[str, list[int]]:
    """{label: sizes} of the declared axes torch guarded with a 'not equal' guard (Ne(s, 1): a broadcast; `if
    x.size(1) == 64:` a branch) and the few sizes it excludes. The file may be wrong exactly there, so export's quick
    check runs at those sizes even with verify=False (a guard excluding more sizes is refused by check_program)."""
    ep = getattr(program, "exported_program", program)
    if ep is None:
        return {}
    shapes = input_shapes(ep)
    hints, same = _example_sizes(shapes), equal_sizes(seen)
    found: dict[str, list[int]] = {}
    for name, shape in zip(names, shapes):
        for ax, label in sorted(axes.get(name, {}).items()):
            if shape is None or ax >= len(shape):
                continue
            symbol = str(shape[ax].node.expr) if hasattr(shape[ax], "node") else ""
            for g in _guards_for(shape[ax], seen):
                if g.expr.strip().startswith("Ne("):
                    within = tuple((bounds or {}).get(label) or (1, None))
                    excluded = excluded_sizes(unify(g.expr, same), same.get(symbol, symbol), hints, within)
                    if excluded is None or not excluded and within[0] <= 1:
                        excluded = [1]
                    found[label] = sorted({*found.get(label, []), *excluded[:MAX_PROBED]})
    return found


def _merged_labels(names, shapes, axes, tied, seen: GuardLog) -> list[tuple[str, str]]:
    """Two labels the user declared independent that torch.export found to be one size (x + y with seq and seq2)."""
    import torch

    owner: dict[str, str] = {}  # torch symbol -> the first label seen with it
    problems = []
    for name, shape in zip(names, shapes):
        for ax, label in sorted(axes.get(name, {}).items()):
            dim = shape[ax] if shape is not None and ax < len(shape) else None
            if not isinstance(dim, torch.SymInt) or label in tied or not dim.node.expr.is_Symbol:
                continue  # an expression is refused as tied already
            for sym in map(str, dim.node.expr.free_symbols):
                first = owner.setdefault(sym, label)
                if first != label:
                    guard = next((g for g in seen.about(sym) if g.expr.startswith("Eq(")), None)
                    at = f" ({guard.describe()})" if guard else ""
                    problems.append(("tied", f"axis {ax} ('{label}') of input '{name}' must be the same size as '{first}' for torch.export{at}"))
    return problems


def way_out_hint(kinds: set) -> str:
    hints = []
    if "bounded" in kinds:
        hints.append("pass allow_bounded=True (--allow-bounded) to record the range and have rnnedge.runtime enforce it")
    if "tied" in kinds:
        hints.append("make the code independent of the sizes (no branch on them; reshapes sized from the input: x.shape[0], -1), "
                     "or declare the relation (tied_axes)")
    if "specialised" in kinds:
        hints.append(f"to keep the axis dynamic, {WAY_OUT}; where the size meets a tensor made in advance (a positional "
                     "table, a precomputed mask, a cache sized by an earlier call), slice or make it from the input's size "
                     "(table[:, :x.size(1)], x.new_zeros(...)); or pin the axis (fix_dims, --fix-dim LABEL=N)")
    return ". Way out: " + "; or ".join(hints)


def check_frozen(model, axes: dict, user_axes: dict | None = None) -> None:
    """No declared axis may come out as a fixed size in the ONNX graph (inputs, and outputs the user labelled)."""
    frozen = []
    outputs = {o.name for o in model.graph.output}
    declared = dict(axes)
    for name, spec in (user_axes or {}).items():
        if name in outputs and isinstance(spec, dict):
            declared[name] = {int(a): str(lab) for a, lab in spec.items()}
    for vi in [*model.graph.input, *model.graph.output]:
        dims = vi.type.tensor_type.shape.dim
        for ax, label in sorted(declared.get(vi.name, {}).items()):
            if ax < len(dims) and dims[ax].HasField("dim_value"):
                frozen.append(f"axis {ax} ('{label}') of '{vi.name}' is fixed to {dims[ax].dim_value} in the ONNX graph")
    if frozen:
        raise ExportError("; ".join(frozen) + f" (an unrolled loop or a reshape to a constant size?). Way out: {WAY_OUT}; "
                          "size reshapes from the input (x.shape[0], -1) instead of constants")


def range_metadata(ranges: dict[str, list]) -> dict[str, str]:
    """{"rnnedge.range.seq": "1..100"}: what an app (and rnnedge.runtime) reads."""
    return {f"rnnedge.range.{label}": _span(rng) for label, rng in sorted(ranges.items())}


def parse_span(text: str) -> list:
    """"1..100" -> [1, 100]; "5.." -> [5, None]."""
    lo, _, hi = str(text).partition("..")
    return [int(lo) if lo.strip() else 1, int(hi) if hi.strip() else None]


# ------------------------------------------------------------------------------------ helpers


def input_shapes(ep) -> list:
    """The fake shapes of the user inputs, in call order (None for a non-tensor)."""
    user = list(ep.graph_signature.user_inputs)
    nodes = {n.name: n for n in ep.graph.nodes if n.op == "placeholder"}
    out = []
    for name in user:
        val = nodes[name].meta.get("val") if name in nodes else None
        out.append(list(val.shape) if hasattr(val, "shape") else None)
    return out


def _axis_verdict(ep, dim, seen: GuardLog, hints: dict, within: tuple = (1, None)):
    """None when the axis is free and unbounded, else (kind, text, [lo, hi]). `within`: the sizes this export was
    asked for (a piece's range); guards are read there only."""
    import sympy
    import torch

    if not isinstance(dim, torch.SymInt):
        why = _why(seen, None)
        return "specialised", f"was specialised to {int(dim)} by torch.export{why}", [int(dim), int(dim)]
    expr = dim.node.expr
    if not isinstance(expr, sympy.Symbol):
        return "tied", f"is tied to {expr} by torch.export (not a free size){_why(seen, expr)}", None
    vr = ep.range_constraints.get(expr)
    if vr is None:
        return None
    lo, hi = _bound(vr.lower), _bound(vr.upper)
    guards = seen.about(str(expr))
    same = equal_sizes(seen)  # Eq(s2, s77): two names torch gave one size; judge the others with them unified
    symbol = same.get(str(expr), str(expr))
    relations, spans = [], []  # spans: the guard texts read as ranges (for reading them with the relations, below)
    for g in guards:
        text = unify(g.expr, same)
        if g.expr.strip().startswith("Ne("):  # a branch on a size: probed where it excludes a few sizes, else refused
            excluded = excluded_sizes(text, symbol, hints, within)
            if excluded is None or len(excluded) <= MAX_PROBED:
                continue  # 'not 1' (a broadcast), `if T == 64:`: size_one_guards has export's quick check try them
        elif not is_relation(g.expr):  # a plain bound: range_constraints say it, unless torch.onnx could not refine it
            if len(set(SYMBOL.findall(g.expr))) > 1:  # Eq(s2, s77): sizes shared as the labels declared
                continue
            span = as_bound(text, symbol, hints, within)  # (`if framed:` over math.ceil sizes: Max(1, CeilToInt(..)) <= 200)
            if span is not None and (span[1] is None and span[0] <= 2 or not _narrows(span, lo, hi)):
                continue
        elif not constrains(text, symbol, hints, within):
            continue
        span = as_bound(text, symbol, hints, within)  # Eq(s27, Min(200, s27)) from x[:, :200] is s27 <= 200; Ne(s*((s-3)//4), 0): s >= 7
        if span is None or span[0] == span[1]:  # `if T % 16:`, a reshape to a constant: another path, or no dynamic axis
            relations.append((g, text))
        else:
            spans.append(text)
            lo, hi = max(lo or 1, span[0]), _min_hi(hi, span[1])
    if relations:  # read together, the guards may still be one range: unfold(1, 64, 32) gives T >= 32 and T not in 32..63
        joint = joint_bound([t for _, t in relations] + spans, symbol, hints, within)
        if joint is None or joint[0] == joint[1]:  # Eq(8*s27*s77, 160), Mod(s27, 2) from a split in halves, s27 > s77, ...
            return "tied", f"is constrained by torch.export to {relations[0][0].describe()}", None
        lo, hi = max(lo or 1, joint[0]), _min_hi(hi, joint[1])
    if hi is None and (lo is None or lo <= 1 or (lo == 2 and not guards)):
        return None
    rng = [max(lo or 1, 1), hi]
    return "bounded", f"is only valid for {_span(rng)}: torch.export bounded it{_why(seen, expr)}", rng


def _narrows(span, lo, hi) -> bool:
    """Whether a guard's range [a, b] says more than the range torch recorded [lo, hi] (None: unbounded)."""
    return span[0] > max(lo or 1, 1) or (span[1] is not None and (hi is None or span[1] < hi))


def _example_sizes(shapes) -> dict[str, int]:
    """{torch symbol: the export example's size} of the inputs' free symbols."""
    import torch

    hints = {}
    for shape in shapes:
        for dim in shape or ():
            if isinstance(dim, torch.SymInt) and dim.node.expr.is_Symbol and dim.node.hint is not None:
                hints[str(dim.node.expr)] = int(dim.node.hint)
    return hints


def _guards_for(dim, seen: GuardLog) -> list[Guard]:
    import torch

    if isinstance(dim, torch.SymInt):
        return [g for s in dim.node.expr.free_symbols for g in seen.about(str(s))]
    return []


def _why(seen: GuardLog, expr) -> str:
    """The guard(s) torch added on this symbol (or, for a specialised axis, the last user-code guard), with file:line."""
    if expr is not None:
        guards = [g for s in expr.free_symbols for g in seen.about(str(s))]
    else:
        guards = [g for g in seen.guards if g.where and "Eq(" in g.expr] or [g for g in seen.guards if g.where]
    if guards:
        return f" (guard {guards[-1].describe()})"
    if seen.violations:
        lines = [ln.strip(" -") for ln in seen.violations[-1].splitlines() if ln.strip().startswith("-")]
        if lines:
            return f" (torch: {lines[0][:200]})"
    return ""


def _bound(value):
    """A sympy bound as int, None for +-infinity."""
    try:
        from torch.utils._sympy.numbers import int_oo

        infinite = value in (int_oo, -int_oo)
    except ImportError:
        infinite = False
    if infinite or not getattr(value, "is_number", True) or str(value) in ("oo", "-oo", "int_oo", "-int_oo"):
        return None
    return int(value)


def _min_hi(a, b):
    return b if a is None else a if b is None else min(a, b)


def _span(rng) -> str:
    lo, hi = rng
    return f"{lo}..{'' if hi is None else hi}"
