"""Choosing each unit's int8 form by measuring it at the deployment shape (`--for batch=B,seq=T`).

    shape = parse_for("batch=1,seq=16")
    timer = Timer(model, find_inputs(model, meta, shape, run=...), ops, ...)   # quantizing.inputs: what runs
    forms, figures = choose_forms(units, timer, accurate=timer.accurate)   # timer(list of {unit: form}) -> ms each

Accuracy first: a unit whose floor form alone (every other unit float32) moves the outputs by more than
CANDIDATE_DRIFT of their range, on the inputs the file is made for (the user's data, its task, its spec at
the deployment shape, or sizes that run: `quantizing.inputs`), keeps float32 weights (form `float32`) and
is said so; an output constant on those inputs is unjudged (`judge`).
Greedy and measured: every other unit starts in the floor form (`weights-int8`: fp32 speed, int8 size);
then, unit by unit, its other forms are timed against the current choice in one interleaved run
(the machine is shared and noisy: candidates see the same noise) and a form replaces the current
one only when it is at least MARGIN faster; the final choice must beat the all-floor model by MARGIN
again, in two separate runs (`quantize._Timer.final`), or the floor is kept. The floor never loses to
fp32 beyond noise, so the result never does either; what is measured is kept in `figures`.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

import numpy as np

from rnnedge.errors import BadInputError
from rnnedge.quantizing.forms import FLOOR, FP32, Unit, build
from rnnedge.runtime.providers import open_session

log = logging.getLogger(__name__)

CANDIDATE_DRIFT = 0.05  # a form whose outputs move by more than this fraction of the output range is not chosen
MARGIN = 0.08  # a form must beat the current choice by this fraction to replace it (noise on a shared machine: +-5%)
DEFAULT_BATCH = 1  # the edge case: one stream, one sequence at a time
DEFAULT_SEQ = 16  # a streaming-ish chunk, when the file fixes none (stream targets: 1 step)
BUDGET_S = 0.6  # seconds of timing per comparison (all candidates together), after warm-up
MIN_REPEATS = 5  # timed blocks per candidate at least
QUANTILE = 10  # percentile of the block times reported: other processes' bursts only ever add time


def parse_for(text: str | dict | None) -> dict[str, int] | None:
    """'batch=8,seq=50' -> {'batch': 8, 'seq': 50}; a dict passes through checked; None stays None."""
    if text is None:
        return None
    if isinstance(text, dict):
        pairs = dict(text)
    else:
        pairs = {}
        for part in filter(None, (p.strip() for p in str(text).split(","))):
            m = re.fullmatch(r"(batch|seq)\s*=\s*(\d+)", part)
            if not m:
                raise BadInputError(f"--for {text!r}: expected batch=B,seq=T (positive integers)")
            pairs[m.group(1)] = int(m.group(2))
    unknown = set(pairs) - {"batch", "seq"}
    if unknown or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in pairs.values()):
        raise BadInputError(f"--for {text!r}: expected batch=B,seq=T (positive integers)")
    return pairs


def default_shape(meta: dict, model, given: dict | None) -> dict[str, int]:
    """The deployment shape: what was given, else batch 1 and the file's chunk (mobile), 1 step (stream) or DEFAULT_SEQ."""
    shape = dict(given or {})
    shape.setdefault("batch", DEFAULT_BATCH)
    if "seq" not in shape:
        chunk = meta.get("rnnedge.chunk")
        fixed = _fixed_seq(model)
        if chunk and str(chunk).isdigit():
            shape["seq"] = int(chunk)
        elif fixed:
            shape["seq"] = fixed
        else:
            shape["seq"] = 1 if meta.get("rnnedge.target") == "stream" else DEFAULT_SEQ
    return shape


def _fixed_seq(model) -> int | None:
    """The sequence length of a file whose data input is fixed but for its batch (a mobile chunk); None otherwise.
    (A (B, 1, 32, W) image fixes axis 1 but not W: its sequence is free.)"""
    inits = {t.name for t in model.graph.initializer}
    for vi in model.graph.input:
        dims = vi.type.tensor_type.shape.dim
        if vi.name in inits or len(dims) < 2:
            continue
        if all(d.HasField("dim_value") for d in dims[1:]):
            return int(dims[1].dim_value)
        return None  # the first data input has a free axis past the batch: no fixed sequence
    return None


def time_sessions(sessions: list, feeds: dict, budget_s: float = BUDGET_S) -> list[float]:
    """ms per call (QUANTILE-th percentile of blocks) of each session on `feeds`, interleaved in blocks, for about `budget_s` seconds."""
    calls = [lambda s=s: s.run(None, feeds) for s in sessions]
    costs = []
    for call in calls:  # warm-up, and a rough cost per call to size the blocks
        call()
        start = time.perf_counter()
        call()
        costs.append(max(time.perf_counter() - start, 1e-6))
    blocks = [max(1, int(0.002 / c)) for c in costs]  # ~2 ms per block: steady state, as timeit does
    times: list[list[float]] = [[] for _ in calls]
    deadline = time.perf_counter() + budget_s
    while min(len(t) for t in times) < MIN_REPEATS or time.perf_counter() < deadline:
        for k, call in enumerate(calls):
            call()
            start = time.perf_counter()
            for _ in range(blocks[k]):
                call()
            times[k].append((time.perf_counter() - start) / blocks[k])
        if min(len(t) for t in times) >= 200:
            break
    return [float(np.percentile(t, QUANTILE)) * 1e3 for t in times]


def choose_forms(units: list[Unit], timer: Callable[[list[dict]], list[float | None]], margin: float = MARGIN,
                 accurate: Callable[[dict], bool] | None = None) -> tuple[dict[str, str], dict[str, dict[str, float]]]:
    """Greedy per unit (see the module docstring). `timer(assignments)` -> ms of each (None: that one failed);
    `accurate(assignment)` -> whether its outputs stay within CANDIDATE_DRIFT (None: not checked)."""
    forms = {u.name: FLOOR for u in units}
    if accurate is not None and not accurate(forms):  # someone's int8 weights alone move the outputs too far: who?
        for unit in units:
            if not accurate({u.name: (FLOOR if u is unit else FP32) for u in units}):
                forms[unit.name] = FP32
    figures: dict[str, dict[str, float]] = {}
    for unit in units:
        if forms[unit.name] == FP32:
            continue
        others = [f for f in unit.forms if f != forms[unit.name]]
        if not others:
            continue
        trials = [dict(forms)] + [dict(forms, **{unit.name: f}) for f in others]
        ms = timer(trials)
        names = [forms[unit.name], *others]
        figures[unit.name] = {n: round(m, 4) for n, m in zip(names, ms) if m is not None}
        current = ms[0]
        if current is None:
            continue
        best = min(((m, n) for n, m in zip(names[1:], ms[1:]) if m is not None), default=None)
        if best is not None and best[0] < current * (1 - margin):
            forms[unit.name] = best[1]
            log.info("%s: %s (%.3f ms) beats %s (%.3f ms)", unit.name, best[1], best[0], names[0], current)
    return forms, figures


UNJUDGED_SPAN = 1e-6  # an output whose range on the judged inputs is at most this (x its scale) is constant there: unjudged


def judge(want: list, got: list, names: list[str]) -> tuple[str, dict]:
    """('' or why the outputs drift past CANDIDATE_DRIFT, {output: worst drift or None}) over judged batches.

    A float output's drift is its worst change over its range on all the judged inputs (one batch of a file fixed
    at batch 1 holds a handful of values: their spread is no range); an output constant on every judged input has
    no range to judge against: None (unjudged). An integer, bool or string output (labels, an ArgMax, a mask) has no
    range to scale by: its drift is the fraction of its values that change."""
    spans = {name: _span([outs[k] for outs in want]) for k, name in enumerate(names)}
    worst: dict[str, float | None] = {n: None for n in names}
    why = ""
    for ref_outs, outs in zip(want, got):
        for name, ref, out in zip(names, ref_outs, outs):
            ref, out = np.asarray(ref), np.asarray(out)
            if not ref.size:
                continue
            if ref.dtype.kind in "biuOSU":  # integers, bools, strings
                rel = float(np.mean(ref != out))
                text = f"output '{name}' changes {rel:.1%} of its values"
            elif spans[name] is None:
                continue
            else:
                diff = float(np.abs(ref.astype(np.float64) - out.astype(np.float64)).max())
                rel = diff / spans[name]
                text = f"output '{name}' drifts {diff:.3g} of its range {spans[name]:.3g}"
            worst[name] = max(worst[name] or 0.0, rel)
            if rel > CANDIDATE_DRIFT and not why:
                why = text
    return why, worst


def _span(refs: list) -> float | None:
    """The range of a float output over every judged batch, or None where it is constant there (or not float)."""
    refs = [np.asarray(r, np.float64) for r in refs if np.asarray(r).size and np.asarray(r).dtype.kind == "f"]
    if not refs:
        return None
    low, high = min(float(r.min()) for r in refs), max(float(r.max()) for r in refs)
    scale = max(float(np.abs(r).max()) for r in refs)
    return high - low if high - low > UNJUDGED_SPAN * max(1.0, scale) else None


class Timer:
    """timer(assignments) -> ms each, for choose_forms; candidates that fail or drift get None.

    `found` (quantizing.inputs.Inputs): `found.timing` is what forms are timed on, `found.judged` what drift is
    judged on; `providers`: where the file will run (forms are opened and timed there)."""

    def __init__(self, model, found, ops, per_channel: bool, threads: int, notes: list[str], providers=None):
        self.model, self.ops, self.per_channel, self.threads, self.notes = model, ops, per_channel, threads, notes
        self.feeds, self.judged, self.source = found.timing, found.judged, found.source
        self.providers = providers or "cpu"
        self.ref = self._session(model)
        self.names = [o.name for o in self.ref.get_outputs()]
        self.ref.run(None, self.feeds)  # the timing inputs run (onnxruntime raises where they do not)
        self.want = [self.ref.run(None, f) for f in self.judged]
        self.drift: dict[str, str] = {}  # why a unit kept float32, by unit name (filled by `accurate`)
        self._seen: dict[tuple, tuple] = {}  # assignment -> (session or None, drift or failure), see _checked

    def _session(self, model):
        return open_on(model, self.providers, self.threads)

    def _checked(self, forms: dict) -> tuple:
        """(session, why it drifts or '') of an assignment, or (None, why it failed): built and checked once, since the
        accuracy pass and the timing pass ask about the same assignments (the all-floor one first)."""
        key = tuple(sorted(forms.items()))
        if key not in self._seen:
            try:
                built = build(self.model, forms, op_types=self.ops, per_channel=self.per_channel)
                refused = runs_on(built, self.providers, reference=self.model)
                if refused:
                    self._seen[key] = (None, refused)
                else:
                    sess = self._session(built)
                    self._seen[key] = (sess, self.judge(sess)[0])
            except Exception as exc:  # a form onnxruntime cannot build or run here
                log.debug("forms %s not usable", forms, exc_info=True)
                self._seen[key] = (None, f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}")
        return self._seen[key]

    def judge(self, sess) -> tuple[str, dict]:
        """(why the outputs of `sess` drift too far or '', {output: worst relative drift, None where unjudged})."""
        return judge(self.want, [sess.run(None, f) for f in self.judged], self.names)

    def _candidate(self, forms: dict):
        sess, why = self._checked(forms)
        if sess is None:  # not chosen, and said so
            self.notes.append(f"form {forms} not usable: {why}")
            return None
        if why:
            self.notes.append(f"form {forms} not chosen: {why}")
            return None
        return sess

    def accurate(self, forms: dict) -> bool:
        """Whether `forms` keeps every output within CANDIDATE_DRIFT of its range. When one unit alone is int8 (the
        others float32), why it is not is kept in `drift[unit]`: the reason that unit keeps float32."""
        sess, why = self._checked(forms)
        if sess is None:  # not buildable or runnable: the timing pass reports it
            return True
        alone = [name for name, f in forms.items() if f != FP32]
        if why and len(alone) == 1:
            self.drift[alone[0]] = why
        return not why

    def __call__(self, assignments: list[dict]) -> list[float | None]:
        sessions = [self._candidate(a) for a in assignments]
        live = [s for s in sessions if s is not None]
        ms = iter(time_sessions(live, self.feeds) if live else [])
        keep = {tuple(sorted(a.items())) for a in assignments}  # the next unit starts from one of these: keep them only
        self._seen = {k: v for k, v in self._seen.items() if k in keep}
        return [next(ms) if s is not None else None for s in sessions]

    def final(self, out, floor=None) -> tuple[float, float, float | None, bool]:
        """float32, `out` and (if given) the all-floor model's ms in one interleaved run, and whether `out` beat the
        floor by MARGIN in that run and in a second one (noise on a shared machine can fake one win, rarely two)."""
        sessions = [self.ref, self._session(out)] + ([self._session(floor)] if floor is not None else [])
        ms = time_sessions(sessions, self.feeds)
        if floor is None:
            return round(ms[0], 4), round(ms[1], 4), None, True
        wins = ms[1] < ms[2] * (1 - MARGIN)
        if wins:
            again = time_sessions(sessions[1:], self.feeds)
            wins = again[0] < again[1] * (1 - MARGIN)
        return round(ms[0], 4), round(ms[1], 4), round(ms[2], 4), wins


def open_on(model, providers, threads: int | None = None, options=None):
    """A session of `model` (a ModelProto) on `providers` (None: CPU), never falling back: what quantize times and judges."""
    return open_session(model.SerializeToString(), providers=providers or "cpu", threads=threads, options=options, fallback=False)


CPU_ONLY_OPS = ("DynamicQuantizeLSTM",)  # onnxruntime implements these contrib ops for its CPU provider only


def runs_on(model, providers, reference=None) -> str:
    """'' when every node of `model` runs on the first of `providers`, else why not. The CPU provider runs everything;
    another one refuses the forms that add a CPU_ONLY_OPS operator, and is asked about the rest by opening a session
    with onnxruntime's CPU fallback off (`_probe`). Where even `reference` (the float model) does not open so (its
    own nodes fall back to CPU too), the table alone decides."""
    from rnnedge.runtime.providers import CPU, provider_entries

    entry = provider_entries(providers)[0]
    if entry[0] == CPU:
        return ""
    cpu_only = sorted({n.op_type for n in _nodes(model) if n.op_type in CPU_ONLY_OPS})
    if cpu_only:
        return f"{', '.join(cpu_only)} runs on the CPU provider only, not on {entry[0]}"
    why = _probe(model, entry)
    if why and reference is not None and _probe(reference, entry):
        return ""
    return f"{entry[0]} cannot run every node of this form ({why})" if why else ""


def _probe(model, entry) -> str:
    """'' when onnxruntime opens `model` on the provider `entry` alone with CPU fallback off, else its reason."""
    import onnxruntime as ort

    from rnnedge.quantizing.inputs import ort_reason
    from rnnedge.runtime.providers import session_options

    opts = session_options()
    opts.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    try:
        ort.InferenceSession(model.SerializeToString(), opts, providers=[entry[0]], provider_options=[entry[1]])
    except Exception as exc:  # onnxruntime's own classes: the provider cannot take some node
        log.debug("%s cannot open this model alone", entry[0], exc_info=True)
        return ort_reason(exc)
    return ""


def _nodes(model):
    from exporters.graph import all_nodes

    return list(all_nodes(model.graph))
