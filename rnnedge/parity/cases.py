"""Cases from the spec: named input sets at shapes and values exports get wrong, never the export's own.

Sizes come from the spec's own helpers (`sizes_for`: tied axes computed, listed sizes snapped, fixed
axes kept), so cases always respect what the spec declares; integer inputs keep their declared dtype.
Sequence lengths probe 1, a few small ones, the export example's length +-1 (where known), and lengths
past every bound a module may branch on (verify: > 256 and > 512; the quick check: > 256 at batch 1-2).
An axis with a recorded valid range (`spec.ranges`) is probed inside it, at its ends.
"""

from __future__ import annotations

import numpy as np

from rnnedge.spec import IOSpec

LONG = 300  # > 256: past the bounds modules branch on (`if T > 200`)
LONGER = 600  # > 512


def time_axis(spec: IOSpec) -> str | None:
    label = getattr(spec, "time_axis", None)
    if label:
        return label
    return "seq" if "seq" in spec.axes else next((a for a in spec.axes if a != "batch"), None)


def _clamp(spec: IOSpec, axis: str | None, size: int) -> int:
    lo, hi = (list(getattr(spec, "ranges", {}).get(axis) or [None, None]) + [None, None])[:2] if axis else (None, None)
    if lo is not None:
        size = max(size, int(lo))
    if hi is not None:
        size = min(size, int(hi))
    return size


def case_sizes(spec: IOSpec, batch: int, seq: int) -> dict[str, int]:
    """{axis: size} for every named axis: batch and the time axis as asked (clamped to a recorded range)."""
    t_axis = time_axis(spec)
    batch, seq = _clamp(spec, "batch", batch), _clamp(spec, t_axis, seq)
    helper = getattr(spec, "sizes_for", None)
    if helper is not None:
        return helper(batch, seq)
    return {a: (batch if a == "batch" else seq if a == t_axis else 3) for a in spec.axes}


def _label(sizes: dict[str, int]) -> str:
    return ", ".join(f"{a} {n}" for a, n in sizes.items()) or "fixed shape"


def _shape_cases(spec: IOSpec, shapes, seed: int) -> list[tuple[str, dict]]:
    cases, seen = [], set()
    for k, (b, t, scale, tag) in enumerate(shapes):
        sizes = case_sizes(spec, b, t)
        key = (tuple(sorted(sizes.items())), scale)
        if key in seen:  # a range or a tie made two probes the same: keep one
            continue
        seen.add(key)
        name = f"{tag}{', ' if tag else ''}{_label(sizes)}"
        cases.append((name, spec.make_inputs(sizes, seed=seed + k, scale=scale)))
    return cases


def _guarded_cases(spec: IOSpec, seed: int) -> list[tuple[str, dict]]:
    """The sizes a 'not equal' guard excluded (`if T == 64:` in forward), per axis, at export: the file may take the
    other path's answer there (spec.must_probe, set by export from guards.size_one_guards); both sides of every split
    point of a file joined from pieces (spec.pieces)."""
    probes = dict(getattr(spec, "must_probe", None) or {})
    for label, sizes in (spec.split_sizes() if hasattr(spec, "split_sizes") else {}).items():  # a file joined from pieces
        probes[label] = sorted({*probes.get(label, []), *sizes})
    cases = []
    base = case_sizes(spec, 2, 5)
    for label, sizes in probes.items():
        for k, n in enumerate(sizes):
            if label not in base or not _in_range(spec, label, n):
                continue
            chosen = spec.resolve({**base, label: n}) if hasattr(spec, "resolve") else {**base, label: n}
            cases.append((f"guarded size, {_label(chosen)}", spec.make_inputs(chosen, seed=seed + 100 + k)))
    return cases


def _in_range(spec: IOSpec, label: str, n: int) -> bool:
    lo, hi = (getattr(spec, "ranges", None) or {}).get(label, (None, None))
    return (lo is None or n >= lo) and (hi is None or n <= hi)


def probe_lengths(example_seq: int | None, quick: bool) -> list[tuple[int, int, float, str]]:
    """(batch, seq, input scale, tag) probes: 1, small, example +-1, past 256 (and 512 for verify)."""
    shapes = [(1, 1, 1.0, ""), (3, 2, 1.0, ""), (2, 3, 1.0, "")]
    if not quick:
        shapes += [(3, 7, 1.0, ""), (16, 33, 1.0, ""), (4, 20, 10.0, "saturated (x10)")]
    if example_seq:
        shapes += [(2, max(example_seq - 1, 1), 1.0, "example length -1"), (2, example_seq + 1, 1.0, "example length +1")]
    shapes += [(1 if quick else 2, LONG, 1.0, "past 256")]
    if not quick:
        shapes += [(2, LONGER, 1.0, "past 512")]
    return shapes


def generate_cases(spec: IOSpec, extra: int = 0, seed: int = 0, *, quick: bool = False, example_seq: int | None = None) -> list[tuple[str, dict]]:
    """Named input sets covering the shapes and values exports get wrong."""
    fixed = not spec.axes
    if fixed:
        cases = [("fixed shape", spec.make_inputs({}, seed=seed))]
        if not quick:
            cases.append(("saturated (x10)", spec.make_inputs({}, seed=seed + 1, scale=10.0)))
    else:
        cases = _shape_cases(spec, probe_lengths(example_seq, quick), seed) + _guarded_cases(spec, seed)
    if not quick:
        cases += _value_cases(spec, fixed, seed)
    cases += check_cases(spec)
    for k in range(extra):
        rng = np.random.default_rng(seed + 100 + k)
        sizes = case_sizes(spec, int(rng.integers(1, 9)), int(rng.integers(1, 80))) if not fixed else {}
        cases.append((f"random #{k + 1}, {_label(sizes)}", spec.make_inputs(sizes, seed=seed + 100 + k)))
    return cases


SWEEP = sorted({*range(1, 65), *(2 ** k + d for k in range(7, 11) for d in (-1, 0, 1)),
                *(m * 10 ** k + d for k in (2, 3) for m in (1, 2, 5) for d in (0, 1) if m * 10 ** k <= 1000)})
SWEEP_OTHER = 64  # axes other than time are swept up to this size (a batch of 1000 proves little more)


def sweep_cases(spec: IOSpec, seed: int = 0) -> list[tuple[str, dict]]:
    """Every size of each named axis up to 64, then powers of two +-1 and decades up to 1025 (the time axis only),
    the others kept small: the full probes export runs when it cannot read torch's guards (a branch such as
    `if T == 64:` is then only found by trying)."""
    t_axis, cases = time_axis(spec), []
    for label in spec.axes:
        if label in (getattr(spec, "fixed", None) or {}) or "of" in (getattr(spec, "ties", None) or {}).get(label, {}):
            continue
        base = case_sizes(spec, 1, 3)
        for k, n in enumerate(SWEEP if label == t_axis else [n for n in SWEEP if n <= SWEEP_OTHER]):
            if label not in base or not _in_range(spec, label, n):
                continue
            chosen = spec.resolve({**base, label: n}) if hasattr(spec, "resolve") else {**base, label: n}
            cases.append((f"sweep, {_label(chosen)}", spec.make_inputs(chosen, seed=seed + 300 + k)))
    return cases


def _value_cases(spec: IOSpec, fixed: bool, seed: int) -> list[tuple[str, dict]]:
    """Ragged lengths, every token id, zero initial state."""
    cases = []
    lengths = spec.input("lengths")
    if lengths is not None and not fixed:
        sizes = case_sizes(spec, 6, 25)
        feeds = spec.make_inputs(sizes, seed=seed + 5)
        seq = sizes.get(getattr(lengths, "seq_label", None) or time_axis(spec), 25)
        ragged = np.array([seq, 1, 13, seq - 1, 2, 7], dtype=np.int64).clip(1, seq)
        feeds[lengths.name] = lengths.arrange(ragged[: len(feeds[lengths.name])])  # its dtype; longest first if the module needs it
        cases.append((f"ragged lengths, {_label(sizes)}", feeds))
    tokens = spec.input("tokens")
    if tokens is not None and tokens.vocab:
        sizes = case_sizes(spec, -(-tokens.vocab // 64), 64) if not fixed else {}
        feeds = spec.make_inputs(sizes, seed=seed + 6)
        ids = feeds[tokens.name]
        flat = np.resize(np.arange(tokens.vocab, dtype=np.int64), ids.size)  # 0..vocab-1, as many as fit
        feeds[tokens.name] = flat.reshape(ids.shape).astype(ids.dtype)
        cases.append(("every token id", feeds))
    if any(t.role == "state" for t in spec.inputs):
        bases = _shape_cases(spec, [(1, 1, 1.0, ""), (3, 7, 1.0, "")], seed + 7) if not fixed else [("fixed shape", spec.make_inputs({}, seed=seed + 7))]
        for name, feeds in bases:
            zeros = {t.name: np.zeros_like(feeds[t.name]) for t in spec.inputs if t.role == "state"}
            cases.append((f"{name}, zero state", {**feeds, **zeros}))
    return cases


def check_cases(spec: IOSpec) -> list[tuple[str, dict]]:
    """The user's own check inputs (`check_inputs=` / `--check-input`), where the spec carries them."""
    feeds = getattr(spec, "check_feeds", None) or []
    if isinstance(feeds, dict):
        feeds = [feeds]
    if feeds:
        sizes = [s for s in getattr(spec, "checks", None) or [] if isinstance(s, dict)]  # the shapes, named in messages
        return [(f"check input #{k + 1}" + (f", {_label(sizes[k])}" if k < len(sizes) else ""), dict(f)) for k, f in enumerate(feeds)]
    checks = [s for s in getattr(spec, "checks", None) or [] if isinstance(s, dict)]  # stored sizes: random values at them
    return [(f"check sizes #{k + 1}, {_label(s)}", spec.make_inputs(dict(s), seed=200 + k)) for k, s in enumerate(checks)]
