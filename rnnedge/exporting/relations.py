"""Size relations torch.export proved between declared axes, adopted as ties.

A vocoder adding an upsampled mel (`frames * 64` samples) to a noise input declared with its own `samples` axis makes
torch.export prove `samples == 64 * frames`; torch.onnx refines the dynamic shapes with that fix and exports again, so
the program holds `samples` as the expression `64*s26`. Two labels the code adds together (`x + y` with `seq` and
`seq2`) come out as one symbol. Either is what the user could have declared with `tied_axes=`: it becomes a tie in the
spec (`{"samples": {"of": "frames", "scale": 64, "offset": 0}}`), logged, so the checks make inputs that satisfy it
and rnnedge.runtime refuses feeds that break it. A relation that is not affine in one free size (`s1*s2 == 160`)
stays a refusal (rnnedge.guards).
"""

from __future__ import annotations

import logging

from rnnedge.exporting.guardlog import GuardLog

log = logging.getLogger("rnnedge.exporting.guards")


def adopt_relations(program, names: list[str], axes: dict, seen: GuardLog, ties: dict) -> dict[str, dict]:
    """{label: tie} for each declared axis torch.export tied to another one (affine in one free size), not already
    in `ties`; each is logged with torch's guard."""
    import torch

    ep = getattr(program, "exported_program", program)
    if ep is None:
        return {}
    from rnnedge.exporting.guards import input_shapes

    dims = []  # (input, axis, label, SymInt) of the declared axes, in call order
    for name, shape in zip(names, input_shapes(ep)):
        for ax, label in sorted(axes.get(name, {}).items()):
            if shape is not None and ax < len(shape) and isinstance(shape[ax], torch.SymInt):
                dims.append((name, ax, label, shape[ax].node.expr))
    owner: dict = {}  # torch symbol -> the first label that is exactly it
    for _, _, label, expr in dims:
        if expr.is_Symbol and "of" not in ties.get(label, {}):
            owner.setdefault(expr, label)
    adopted: dict[str, dict] = {}
    for name, ax, label, expr in dims:
        if label in ties or label in adopted or owner.get(expr) == label:
            continue
        tie = _affine_tie(expr, owner)
        if tie is None or tie["of"] == label or tie["of"] in adopted or "of" in ties.get(tie["of"], {}):
            continue
        adopted[label] = tie
        guard = next((g for s in expr.free_symbols for g in seen.about(str(s)) if g.expr.startswith("Eq(")), None)
        log.warning("torch.export proved axis %d ('%s') of input '%s' == %s%s: recorded as a tie (as tied_axes=%r would); "
                    "inputs must keep it", ax, label, name, _formula(tie), f" (guard {guard.describe()})" if guard else "",
                    {label: _formula(tie)})
    for guard in seen.guards:  # Eq(Max(0, 275*s71 - 550 - Min(550, 275*s71)), s11) from x[..., 550:-550]: one size of another
        found = _guard_tie(guard.expr, owner)
        if found is None:
            continue
        label, tie = found
        if label in ties or label in adopted or tie["of"] in adopted or "of" in ties.get(tie["of"], {}):
            continue
        adopted[label] = tie
        log.warning("torch.export proved '%s' == %s (guard %s): recorded as a tie (as tied_axes=%r would); inputs must keep it",
                    label, _formula(tie), guard.describe(), {label: _formula(tie)})
    return adopted


def _guard_tie(text: str, owner: dict) -> tuple[str, dict] | None:
    """(label, tie) when an equality guard says one declared size is a function of another one that is affine
    wherever it gives a size >= 1 (checked at every size up to guard_sizes.BOUND_PROBE)."""
    import sympy

    from rnnedge.exporting.guard_sizes import parse_guard

    if not text.startswith("Eq(") or "&" in text:
        return None
    try:
        eq = parse_guard(text)
    except Exception:  # torch's text in a form sympy cannot read back: no tie adopted (check_program refuses)
        log.debug("guard %s: not read", text)
        return None
    if not isinstance(eq, sympy.Eq):
        return None
    named = {str(s): label for s, label in owner.items()}
    for lone, other in ((eq.lhs, eq.rhs), (eq.rhs, eq.lhs)):
        if lone.is_Symbol and str(lone) in named and len(other.free_symbols) == 1:
            (root,) = other.free_symbols
            if str(root) in named and str(root) != str(lone):
                tie = _fit(other, root)
                if tie is not None:
                    return named[str(lone)], {"of": named[str(root)], **tie}
    return None


def _fit(expr, root) -> dict | None:
    """{"scale": a, "offset": b} when expr(n) == a*n + b at every n (up to BOUND_PROBE) where expr(n) >= 1, a >= 1."""

    from rnnedge.exporting.guard_sizes import BOUND_PROBE, size_function

    try:
        f = size_function([root], expr)
        values = [(n, int(f(n))) for n in range(1, BOUND_PROBE + 1)]
    except Exception:  # a function lambdify cannot make: no tie
        log.debug("%s: not evaluated as a size of %s", expr, root)
        return None
    valid = [(n, v) for n, v in values if v >= 1]
    if len(valid) < 2:
        return None
    (n0, v0), (n1, v1) = valid[0], valid[1]
    scale = (v1 - v0) // (n1 - n0) if n1 != n0 else 0
    offset = v0 - scale * n0
    if scale < 1 or any(v != scale * n + offset for n, v in valid) or valid[0][0] != -(-(1 - offset) // scale):
        return None  # not affine, or sizes >= 1 missing where a*n + b >= 1 (the tie would promise them)
    return {"scale": scale, "offset": offset}


def _affine_tie(expr, owner: dict) -> dict | None:
    """{"of": label, "scale": a, "offset": b} when `expr` is a*s + b (integers, a >= 1) of one symbol a label owns."""
    import sympy

    if len(expr.free_symbols) != 1:
        return None
    (symbol,) = expr.free_symbols
    if symbol not in owner:
        return None
    try:
        poly = sympy.Poly(sympy.expand(expr), symbol)
    except sympy.PolynomialError:
        return None  # FloorDiv, Mod, ...: no affine relation
    coeffs = poly.all_coeffs()
    if poly.degree() != 1 or not all(c.is_integer for c in coeffs) or int(coeffs[0]) < 1:
        return None
    return {"of": owner[symbol], "scale": int(coeffs[0]), "offset": int(coeffs[1])}


def _formula(tie: dict) -> str:
    scale, offset = int(tie.get("scale", 1)), int(tie.get("offset", 0))
    text = tie["of"] if scale == 1 else f"{scale} * {tie['of']}"
    return text + (f" + {offset}" if offset > 0 else f" - {-offset}" if offset < 0 else "")
