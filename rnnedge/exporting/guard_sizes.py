"""Which sizes a torch.export guard allows: the arithmetic behind rnnedge.exporting.guards' verdicts (torch-free but for
torch's own sympy size functions, imported when a guard is parsed).

A guard's text (`Ne(Mod(s27, 16), 0)`, `Eq(s27, Min(200, s27))`, `s77*((s27 // 32) - 1) > -1`) is parsed back to
sympy and evaluated over the sizes 1..BOUND_PROBE of one axis, the other sizes it names tried at their export
example's and a few more: `as_bound` / `joint_bound` read one or several guards as a range, `excluded_sizes`
lists what a 'not equal' guard leaves out, `constrains` says whether a guard limits an axis at all;
`equal_sizes` / `unify` make the names torch gave one size into one symbol.
"""

from __future__ import annotations

import functools
import logging
import math
import re

from rnnedge.exporting.guardlog import GuardLog

log = logging.getLogger("rnnedge.exporting.guards")
SYMBOL = re.compile(r"\b[su]\d+\b")


_SAME = r"Eq\(([su]\d+), ([su]\d+)\)"


def _conjuncts(expr: str) -> list[str]:
    """'Eq(s56, s21) & Eq(s98, s15)' (torch logs one guard for a bmm's two shared sizes) -> its parts."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(expr):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "&" and depth == 0:
            parts.append(expr[start:i].strip())
            start = i + 1
    return [*parts, expr[start:].strip()]


def is_relation(expr: str) -> bool:
    """A guard that ties a size to others or to a pattern (not a plain bound, which range_constraints already say)."""
    if all(re.fullmatch(_SAME, part) for part in _conjuncts(expr.strip())):
        return False  # inputs sharing sizes: what the shared labels declared
    if expr.startswith("Ne("):
        return False  # "not 1" style guards (broadcasting, or a branch on size 1): probed by the quick check, see size_one_guards
    if any(f in expr for f in ("Mod(", "FloorDiv(", "CleanDiv(", "PythonMod(")):
        return True
    return expr.startswith("Eq(") or len(set(SYMBOL.findall(expr))) > 1


PROBE_SIZES = (1, 2, 3, 5, 8, 13, 33, 100, 257, 513)


def equal_sizes(seen: GuardLog) -> dict[str, str]:
    """{symbol: representative} from torch's plain equality guards (Eq(s2, s77)), so one size is one symbol."""
    parent: dict[str, str] = {}

    def root(s: str) -> str:
        while parent.get(s, s) != s:
            s = parent[s]
        return s

    for g in seen.guards:
        for part in _conjuncts(g.expr.strip()):
            m = re.fullmatch(_SAME, part)
            if m:
                a, b = sorted((root(m.group(1)), root(m.group(2))))
                if a != b:
                    parent[b] = a
    return {s: root(s) for s in parent}


def unify(expr: str, same: dict[str, str]) -> str:
    return SYMBOL.sub(lambda m: same.get(m.group(0), m.group(0)), expr) if same else expr


def constrains(expr: str, symbol: str, hints: dict, within: tuple = (1, None)) -> bool:
    """Whether a guard fails at some probed size of `symbol`, the other sizes kept at the export example's.

    `s0*(s26 - 4) >= 0` (a convolution's frames >= 4) constrains s26 but not the batch s0; torch's slice bound checks
    such as `Min(5, s27) <= s27` constrain nothing. A size with no known example value is probed too (then the guard
    must both hold and fail as `symbol` varies). A value read from data (torch's unbacked `u0`: `.item()`, a slice
    start torch cannot size) is no size: the guard constrains `symbol` only at a size where no such value makes it
    hold (`u0 <= s20` holds at every size for some u0: no bound). Only sizes `within` [lo, hi] count (a piece's
    range, rnnedge.exporting.piecewise). Unevaluable guards count as constraints."""
    import itertools
    import random


    try:
        formula = parse_guard(expr, evaluate=False)
        target = next((s for s in formula.free_symbols if str(s) == symbol), None)
        if target is None or _defines_data_size(formula):
            return False
        others = sorted((s for s in formula.free_symbols if s != target), key=str)
        fixed = {s: hints[str(s)] for s in others if hints.get(str(s)) is not None}
        data = [s for s in others if s not in fixed and str(s).startswith("u")]
        unknown = [s for s in others if s not in fixed and s not in data]
        grid = list(itertools.product(PROBE_SIZES, repeat=len(unknown))) if len(unknown) <= 2 else [
            tuple(random.Random(i).choice(PROBE_SIZES) for _ in unknown) for i in range(100)]
        check = size_function([target, *unknown, *data, *fixed], formula)
        lo, hi = within
        sizes = [n for n in (*PROBE_SIZES, lo, lo + 1, *([hi - 1, hi] if hi else [])) if n >= lo and (hi is None or n <= hi)]
        for values in grid:
            results = {any(bool(check(size, *values, *dv, *fixed.values())) for dv in _data_values(len(data), size))
                       for size in sizes}
            if False in results and (True in results or not unknown):
                return True
        return False
    except Exception:
        log.debug("guard %s: not evaluated here", expr)
        return True


def _defines_data_size(formula) -> bool:
    """Eq(<sizes>, u0) with u0 a value torch could not size (a slice past a `math.ceil` length) alone on one side: torch
    names that size u0; it holds at every size of the others, so it bounds nothing."""
    import sympy

    if not isinstance(formula, sympy.Eq):
        return False
    return any(side.is_Symbol and str(side).startswith("u") and side not in other.free_symbols
               for side, other in ((formula.lhs, formula.rhs), (formula.rhs, formula.lhs)))


DATA_VALUES = (0, 1, 2, 3, 5, 8, 13, 33, 100, 257, 513, -1)  # values tried for a value read from data (u0)


def _data_values(count: int, size: int) -> list[tuple]:
    """Trials of `count` data values (torch's unbacked symbols) at one probed size: DATA_VALUES and the values near
    the size and its double (a slice start `size - k`), every combination of two, a seeded sample beyond."""
    import itertools
    import random

    values = sorted({*DATA_VALUES, *(size + d for d in range(-3, 4)), *(2 * size + d for d in range(-1, 2))})
    if count <= 2:
        return list(itertools.product(values, repeat=count))
    return [tuple(random.Random(i).choice(values) for _ in range(count)) for i in range(400)]


BOUND_PROBE = 4096  # a guard's truth is read over sizes 1..BOUND_PROBE of the axis
OTHER_SIZES = (1, 2, 3, 8, 33, 100)  # sizes tried for the other sizes a guard names (with their example's)
PYTHON_FNS = {"FloorDiv": lambda a, b: a // b, "CleanDiv": lambda a, b: a // b, "IntTrueDiv": lambda a, b: a / b,
               "CeilDiv": lambda a, b: -(-a // b), "Mod": lambda a, b: a % b, "PythonMod": lambda a, b: a % b,
               "ModularIndexing": lambda a, b, c: (a // b) % c, "Min": min, "Max": max, "TruncToInt": int, "FloorToInt": math.floor,
               "CeilToInt": math.ceil, "RoundToInt": round}


def _truth_sets(expr: str, symbol: str, hints: dict, within: tuple = (1, None)) -> list[tuple[bool, ...]] | None:
    """Where a guard holds, as the axis `symbol` runs over 1..BOUND_PROBE: one tuple per trial of the other sizes it
    names (each at its example size and at OTHER_SIZES, where the guard holds at `symbol`'s example size); None when it
    cannot be evaluated here. Read once per guard and export: the verdict, its ranges and the probes all ask.
    Sizes outside `within` [lo, hi] (a piece's range: torch never traced them) read as True."""
    sets = _truth_sets_of(expr, symbol, tuple(sorted(hints.items())))
    lo, hi = within
    if sets is None or (lo <= 1 and hi is None):
        return sets
    inside = [lo <= n and (hi is None or n <= hi) for n in range(1, BOUND_PROBE + 1)]
    return [tuple(ok or not keep for ok, keep in zip(t, inside)) for t in sets]


@functools.lru_cache(maxsize=256)
def _truth_sets_of(expr: str, symbol: str, hint_items: tuple) -> list[tuple[bool, ...]] | None:
    compiled = _compiled(expr, symbol, hint_items)
    if compiled is None:
        return None
    check, trials = compiled
    try:
        return [tuple(bool(check(n, *values)) for n in range(1, BOUND_PROBE + 1)) for values in trials] or None
    except Exception:
        log.debug("guard %s: not evaluated here", expr)
        return None


@functools.lru_cache(maxsize=256)
def _compiled(expr: str, symbol: str, hint_items: tuple):
    """(check(size, *others) -> bool, [trials of the other sizes]) for a guard, or None when it cannot be evaluated."""
    import itertools
    import random


    try:
        formula = parse_guard(expr, evaluate=False)
    except Exception:
        log.debug("guard %s: not evaluated here", expr)
        return None
    target = next((x for x in formula.free_symbols if str(x) == symbol), None)
    if target is None:
        return None
    hints = dict(hint_items)
    others = sorted((x for x in formula.free_symbols if x != target), key=str)
    choices = [sorted({*OTHER_SIZES, *([hints[str(o)]] if hints.get(str(o)) else [])}) for o in others]
    trials = list(itertools.product(*choices))
    if len(trials) > 64:
        trials = random.Random(0).sample(trials, 64)
    try:
        check = size_function([target, *others], formula)
        example = hints.get(symbol)
        if example:  # only trials where the export example itself is valid: others at sizes torch could have seen
            trials = [values for values in trials if check(example, *values)]
        return check, trials
    except Exception:
        log.debug("guard %s: not evaluated here", expr)
        return None


FAR_PROBE = 2**31  # past BOUND_PROBE, a guard is read at doubling sizes up to here, and its edge found by bisection


def _far_edge(expr: str, symbol: str, hints: dict, within: tuple = (1, None)) -> int | None:
    """Past BOUND_PROBE (`if T > 200` on a bottleneck 1024x shorter than the input: samples > 205,000): the first size
    where the guard fails for some trial, found by doubling then bisection; None when it holds at every size tried up to
    FAR_PROBE (or the piece's end); -1 when it holds again after failing, or cannot be read (no range)."""
    compiled = _compiled(expr, symbol, tuple(sorted(hints.items())))
    top = within[1] or FAR_PROBE
    if compiled is None or not compiled[1]:
        return -1
    check, trials = compiled

    def holds(n: int) -> bool:
        return all(check(n, *values) for values in trials)

    try:
        sizes, n = [], BOUND_PROBE * 2
        while n < top:
            sizes.append(n)
            n *= 2
        truth = [holds(n) for n in [*sizes, top]] if top > BOUND_PROBE else []
        if all(truth):
            return None
        first = truth.index(False)
        if any(truth[first:]):
            return -1
        good, bad = ([BOUND_PROBE, *sizes][first], [*sizes, top][first])
        while bad - good > 1:
            mid = (good + bad) // 2
            good, bad = (mid, bad) if holds(mid) else (good, mid)
        return bad
    except Exception:
        log.debug("guard %s: not evaluated here", expr)
        return -1


def as_bound(expr: str, symbol: str, hints: dict | None = None, within: tuple = (1, None)) -> list | None:
    """[lo, hi] (hi None: no upper bound) when a guard holds on one and the same run of sizes of `symbol` whatever the
    other sizes it names (`s77*((s27 // 32) - 1) > -1` from unfold(1, 64, 32): s27 >= 32); else None (a relation)."""
    return joint_bound([expr], symbol, hints or {}, within)


def joint_bound(exprs: list[str], symbol: str, hints: dict, within: tuple = (1, None)) -> list | None:
    """[lo, hi] where guards that are no range alone are one together (each must not depend on the other sizes)."""
    joint = None
    for expr in exprs:
        sets = _truth_sets(expr, symbol, hints, within)
        if not sets or any(t != sets[0] for t in sets):
            return None
        joint = sets[0] if joint is None else tuple(a and b for a, b in zip(joint, sets[0]))
    lo, hi = within  # one run inside a piece's sizes is a range there (`seq < 10` in a piece 1..20), whatever lies outside
    true = [n for n, ok in enumerate(joint or (), start=1) if ok and n >= lo and (hi is None or n <= hi)]
    if not true or true[-1] - true[0] + 1 != len(true):
        return None
    if true[-1] < BOUND_PROBE:
        return [true[0], true[-1]]
    edges = [_far_edge(expr, symbol, hints, within) for expr in exprs]
    if -1 in edges:
        return None
    ends = [e - 1 for e in edges if e is not None]
    return [true[0], min(ends) if ends else None]


def excluded_sizes(expr: str, symbol: str, hints: dict, within: tuple = (1, None)) -> list[int] | None:
    """Sizes of `symbol` (up to BOUND_PROBE) where a guard fails for some trial of the other sizes; None: unknown."""
    sets = _truth_sets(expr, symbol, hints, within)
    if sets is None:
        return None
    return [n for n in range(1, BOUND_PROBE + 1) if not all(t[n - 1] for t in sets)]


def size_function(args, formula):
    """`formula` as a Python function of `args`, read in exact arithmetic: sympy parses torch's `(s27 - 5)//3` as
    floor(s27/3 - 5/3), which floats read wrong (8/3 - 5/3 = 0.9999999999999998: floor 0), so a guard
    `Ne((s27 - 5)//3 + 1, 1)` (a conv of 3 then a pool of 3 leave one frame) read as valid from 9, not 8, and split the
    axis where the module does not. Rationals are `fractions.Fraction`, so floor, ceil and comparisons are exact."""
    import fractions

    import sympy
    from sympy.printing.pycode import PythonCodePrinter

    class ExactPrinter(PythonCodePrinter):
        def _print_Rational(self, expr):
            return f"Fraction({expr.p}, {expr.q})"

    names = {**PYTHON_FNS, "Fraction": fractions.Fraction}
    printer = ExactPrinter({"fully_qualified_modules": False, "inline": True, "allow_unknown_functions": True,
                            "user_functions": {name: name for name in names}})  # as lambdify's own printer is made
    return sympy.lambdify(args, formula, modules=[names, "math"], printer=printer)


@functools.lru_cache(maxsize=1024)
def parse_guard(expr: str, evaluate: bool = True):
    """torch's guard text (it logs str(expr)) back to sympy, with torch's own size functions (FloorDiv, TruncToInt, ...).
    evaluate=False keeps the expression as written (what lambdify needs to read it at sizes): sympy's own simplification
    of nested Max/CeilToInt sizes (a conv encoder's `math.ceil` lengths) took 0.3-1.5 s per guard."""
    import sympy
    import torch.utils._sympy.functions as functions
    from sympy.parsing.sympy_parser import parse_expr

    names = {n: getattr(functions, n) for n in dir(functions) if not n.startswith("_") and isinstance(getattr(functions, n), type)}
    names.update({s: sympy.Symbol(s, integer=True, positive=True) for s in SYMBOL.findall(expr)}, Min=sympy.Min, Max=sympy.Max)
    if evaluate:
        return sympy.sympify(expr, locals=names)
    names.update(Min=lambda *a: sympy.Min(*a, evaluate=False), Max=lambda *a: sympy.Max(*a, evaluate=False))  # called, not operators
    return parse_expr(expr, local_dict=names, evaluate=False)
