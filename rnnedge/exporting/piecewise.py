"""Size branches exported piece by piece and joined into one file with `If` nodes on the axis size.

`if x.shape[1] > 100: ...` makes torch.export trace one side and guard the axis to it (`s27 <= 100`). Both sides are
ordinary dynamic graphs, so rnnedge exports each range of sizes the guards split the axis into (a *piece*: torch's
Dim narrowed to the range, the example resized into it), and joins the pieces into ONE ONNX graph:

    Shape(x) -> Gather(axis) -> Less(size, 101) -> If(then: piece 1..100, else: piece 101..)

Each piece's nodes become one branch (their values prefixed `p<k>.`; subgraphs see the outer inputs and the shared
initializers, which are kept outside the branches and deduplicated: the pieces' weights are mostly the same tensors).
A piece may itself be split further (`if T < 5` and `if T > 200`: three pieces; two axes: a tree of Ifs), up to
MAX_PIECES. The spec records the pieces; export's quick check and verify probe each side of every split point (the
split value and +-1).

A range at either end of an axis where the module itself fails at every size tried (`torch.stft` below its window,
a positional table past its length: torch raises there) is no piece: the file is valid where torch is, and that range
is recorded in spec.ranges and enforced by rnnedge.runtime, as `allow_bounded` would (logged). Refused as before (with
rnnedge.guards' message): more pieces than MAX_PIECES, a range torch runs but cannot export, a range where the module
fails at some sizes only, relations on data. `allow_bounded=True` keeps its meaning: one file valid in the example's
range, the range recorded and enforced.
"""

from __future__ import annotations

import logging

from rnnedge.errors import ExportError, RnnEdgeError
from rnnedge.exporting.joining import join_models

log = logging.getLogger(__name__)

MAX_PIECES = 6  # "a handful": more ranges than this is a size pattern (T % 16), not a branch: refused


def candidates(job):
    """strategies.candidates, with a candidate whose axis torch's guards split into ranges replaced by its pieces
    joined into one graph. Yields (strategy name, onnx.ModelProto, IOSpec); rnnedge's refusals raise."""
    from rnnedge.exporting import strategies

    if job.allow_bounded:  # the user asked for one range, recorded and enforced
        yield from strategies.candidates(job)
        return
    job.split = True
    for name, model, spec in strategies.candidates(job):
        if not spec.ranges:
            yield name, model, spec
            continue
        strategy = next(s for s in strategies.STRATEGIES if s.name == name)
        yield (name, *_joined(job, strategy, model, spec))


def _joined(job, strategy, model, spec):
    """(joined onnx.ModelProto, IOSpec) from a first capture whose spec.ranges split the declared axes."""
    from rnnedge.exporting import strategies

    texts = dict(getattr(spec.ranges, "texts", {}))
    taken = {int(n) for ex in job.examples for n in ex.shape}

    def export_at(region):
        log.info("exporting the piece %s", _describe(region))
        try:
            piece = _piece_job(job, spec, region, taken)
            raw, piece_spec = strategy.capture(piece)
            return strategies.finish(raw, piece, piece_spec), piece_spec
        except _Undefined:
            raise
        except (RnnEdgeError, strategies.CaptureFailed) as exc:
            raise _refusal(texts, f"the sizes {_describe(region)} could not be exported as a piece: {exc}") from exc

    undefined: list[tuple[dict, str]] = []
    pieces = _cover({}, export_at, (model, spec), texts, undefined=undefined)
    valid = _valid_ranges(undefined, texts)
    if len(pieces) == 1:  # the other side of the split is where the module itself fails: one file, its range recorded
        model, spec = pieces[0][1]
        spec.ranges = valid
        return model, spec
    log.warning("torch.export split %s: exported as %d pieces (%s), joined with If nodes on the size",
                ", ".join(sorted(texts)), len(pieces), "; ".join(_describe(r) for r, _ in pieces))
    joined = join_models([(region, built[0]) for region, built in pieces], _size_inputs(spec, [r for r, _ in pieces]))
    spec.ranges = valid
    spec.pieces = [{label: list(rng) for label, rng in sorted(region.items())} for region, _ in pieces]
    spec.must_probe = _probes(spec, pieces)
    for _, (_, piece_spec) in pieces[1:]:  # ties torch proved and guard log problems of any piece hold for the file
        spec.ties.update(piece_spec.ties)
        spec.guard_reading = [*(getattr(spec, "guard_reading", None) or []), *(getattr(piece_spec, "guard_reading", None) or [])]
    spec.outputs = [o.name for o in joined.graph.output]
    return joined, spec


def _piece_job(job, spec, region: dict, taken: set[int]):
    """The job for one piece: examples resized into the region (the module run on them once), torch's Dims narrowed."""
    import dataclasses

    from rnnedge.exporting import capture

    examples = _resized(spec, job.examples, region, taken)
    failure = capture.run_eagerly(job.module, examples)
    if failure is not None:  # another size of the range may run (the range holds a further split): export there
        size = _size_that_runs(job, spec, region, failure, taken)
        if size is None:
            raise failure
        (label, _), = region.items()
        examples = _resized(spec, job.examples, {label: [size, size]}, set())
    return dataclasses.replace(job, examples=examples, bounds=region, attempts=[], errors=[], eager_failure=None)


class _Undefined(Exception):
    """The module itself fails at every size of a region tried: no piece there (args: region, torch's message)."""


def _size_that_runs(job, spec, region: dict, failure: Exception, taken: set[int] = frozenset()) -> int | None:
    """A size of a one-axis `region` the module runs at, tried in turn (every size of a closed range of up to 64, sizes
    >= 2 and not `taken` by the examples' other axes first; else its ends, neighbours and a spread); _Undefined where it
    fails at all of them (None: more axes)."""
    from rnnedge.exporting import capture

    if len(region) != 1:
        return None
    (label, (lo, hi)), = region.items()
    if hi is not None and hi - lo < 64:
        sizes = list(range(lo, hi + 1))
    else:
        top = hi if hi is not None else max(4 * lo, lo + 1000)
        sizes = sorted({lo, lo + 1, (lo + top) // 2, top - 1, top, *(lo * 2**k for k in range(1, 6) if lo * 2**k <= top)})
    for size in sorted(sizes, key=lambda n: (n < 2 or n in taken, n)):
        if capture.run_eagerly(job.module, _resized(spec, job.examples, {label: [size, size]}, set())) is None:
            return size
    raise _Undefined(region, str(failure))


def _valid_ranges(undefined: list[tuple[dict, str]], texts: dict):
    """spec.ranges for the sizes left once the regions where the module fails are taken out (each at an end of one axis)."""
    from rnnedge.exporting.guards import Ranges

    valid = Ranges()
    for region, why in undefined:
        (label, (lo, hi)), = region.items()
        rng = valid.setdefault(label, [1, None])
        if lo <= 1:
            rng[0] = max(rng[0], hi + 1)
        else:
            rng[1] = lo - 1 if rng[1] is None else min(rng[1], lo - 1)
        valid.texts[label] = (f"{texts.get(label, label)}; the module itself fails at {_describe(region)} ({why}): "
                              f"valid for {_describe({label: rng})}")
        log.warning("%s: the module itself fails there (%s): the file is valid for %s (recorded; rnnedge.runtime "
                    "enforces it)", _describe(region), why, _describe({label: rng}))
    return valid


def _cover(region: dict, export_at, known, texts: dict, made: list | None = None, undefined: list | None = None) -> list[tuple[dict, tuple]]:
    """[(region, (onnx.ModelProto, IOSpec))] covering `region` ({label: [lo, hi]}; absent labels: every size). `made` counts
    the exports: each is at least one piece, so past MAX_PIECES the split is refused before exporting any more. A range at
    an end of one axis where the module itself fails is left out and appended to `undefined` as (region, why)."""
    made = [1] if made is None else made
    if known is None:
        made[0] += 1
        if made[0] > MAX_PIECES:
            raise _refusal(texts, f"its guards split the sizes into more than {MAX_PIECES} pieces")
    try:
        built = known if known is not None else export_at(region)
    except _Undefined as exc:
        (label, (lo, hi)), = region.items()
        if undefined is None or not (lo <= 1 or hi is None):
            raise _refusal(texts, f"the module itself fails at {_describe(region)} ({exc.args[1]}) but runs on both sides") from exc
        undefined.append((region, exc.args[1]))
        return []
    valid = built[1].ranges
    for label, (lo, hi) in sorted(valid.items()):
        texts.setdefault(label, valid.texts.get(label, f"axis '{label}' is only valid for {lo}..{hi or ''}"))
        rlo, rhi = region.get(label, [1, None])
        if lo <= rlo and (hi is None or (rhi is not None and hi >= rhi)):
            continue
        out = []
        for part in ([rlo, lo - 1], [max(lo, rlo), _min(hi, rhi)], [hi + 1 if hi is not None else None, rhi]):
            if part[0] is None or part[0] < 1 or (part[1] is not None and part[1] < part[0]):
                continue
            inside = part[0] >= lo and (hi is None or (part[1] is not None and part[1] <= hi))
            out += _cover({**region, label: part}, export_at, built if inside else None, texts, made, undefined)
            if len(out) > MAX_PIECES:
                raise _refusal(texts, f"its guards split the sizes into more than {MAX_PIECES} pieces")
        return out
    return [(region, built)]


def _refusal(texts: dict, why: str) -> ExportError:
    from rnnedge.exporting.guards import way_out_hint

    return ExportError("; ".join(texts.values()) + f"; {why}" + way_out_hint({"bounded"}))


def _min(a, b):
    return b if a is None else a if b is None else min(a, b)


def _describe(region: dict) -> str:
    return ", ".join(f"{label} {lo}..{'' if hi is None else hi}" for label, (lo, hi) in sorted(region.items())) or "all sizes"


def _resized(spec, examples, region: dict, taken: set[int]):
    """The examples with each bounded label's axes resized to a size inside its range (rows repeated, index i % n),
    away from every other size of the examples (torch.export would take equal sizes for one); axes tied to it follow."""
    import torch

    sizes = {dim: int(ex.shape[ax]) for t, ex in zip(spec.inputs, examples) for ax, dim in enumerate(t.shape) if isinstance(dim, str)}
    sizes.update({label: _representative(lo, hi, taken) for label, (lo, hi) in region.items()})
    want = spec.resolve(sizes)
    out = []
    for t, ex in zip(spec.inputs, examples):
        for ax, dim in enumerate(t.shape):
            if dim in want and ax < ex.dim() and ex.shape[ax] != want[dim]:
                ex = ex.index_select(ax, torch.arange(want[dim]) % ex.shape[ax])
        out.append(ex)
    return tuple(out)


def _representative(lo: int, hi, taken: set[int]) -> int:
    """A size in lo..hi, >= 2 where the range allows, not among `taken`: the middle of a closed range, lo + 1 of an
    open one (a small example keeps the export fast)."""
    top = hi if hi is not None else lo + 64
    first = (lo + top) // 2 if hi is not None else lo + 1
    for size in [first, *range(max(lo, 2), top + 1), lo]:
        if lo <= size <= top and size >= min(2, top) and size not in taken:
            return size
    return first


def _size_inputs(spec, regions) -> dict[str, tuple[str, int]]:
    """{label: (input name, axis)} where each split label can be read."""
    labels = {label for region in regions for label in region}
    where = {}
    for t in spec.inputs:
        for ax, dim in enumerate(t.shape):
            if dim in labels and dim not in where:
                where[dim] = (t.name, ax)
    missing = labels - set(where)
    if missing:
        raise ExportError(f"the split axis '{sorted(missing)[0]}' is no input axis: cannot choose a piece by it")
    return where


def _probes(spec, pieces) -> dict[str, list[int]]:
    """spec.must_probe plus both sides of every split point (the split value and +-1), for the quick check and verify."""
    probes = {label: list(sizes) for label, sizes in (getattr(spec, "must_probe", None) or {}).items()}
    for _, built in pieces:
        for label, sizes in (getattr(built[1], "must_probe", None) or {}).items():
            probes[label] = sorted({*probes.get(label, []), *sizes})
    for label, sizes in spec.split_sizes().items():
        probes[label] = sorted({*probes.get(label, []), *sizes})
    return probes
