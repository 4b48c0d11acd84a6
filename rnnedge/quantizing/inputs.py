"""Where quantize's inputs come from: the file's spec, the user's data, or sizes that run. Never invented.

    found = find_inputs(model, meta, deploy, data="digits", examples={"sr": "16000"})
    found.timing    # {name: array} at the deployment shape (what forms are timed on), or None
    found.judged    # [{name: array}, ...]: what drift is judged on (the user's rows, the task's, or spec-shaped)
    found.source    # in words, for the report: "task digits (val split, 256 rows)"
    found.why       # when timing is None: why nothing runnable was found (quantize then keeps the default form)

In order: the user's data (`--eval`/`--calibration`: a task or an .npz by input name), a checkpoint's own task, the
spec's inputs at the deployment sizes (ties, ranges, lengths), and for a foreign file sizes and values inferred from
the graph and checked by running it (`infer_feeds`). `examples` ({input name: "16000" | "float32[1,512]"}, CLI
`--example NAME=VALUE`) fix an input the file cannot describe (a sample rate, relative lengths) over any of these.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

import numpy as np

from rnnedge.errors import BadInputError
from rnnedge.quantizing.roles import batch_axis, batch_like, input_roles, shape_from_use
from rnnedge.spec import state_start

log = logging.getLogger(__name__)

JUDGE_ROWS = 256  # at most this many rows of the user's data or a task split are judged
JUDGE_BATCH = 64  # rows per call when judging
JUDGE_SEEDS = 4  # spec-shaped or inferred inputs: this many random draws are judged
JUDGE_MIN_ROWS = 8  # and at least this many rows each (the timing batch may be 1)
GROW = (16, 32, 64, 128, 256, 512, 1024, 1536, 2048, 4096, 8000, 16000)  # sizes tried for a free time axis
TIME_WORDS = ("seq", "time", "step", "frame", "sample", "len", "audio", "wav", "t")  # a symbolic dim named like time
RATE_WORDS = ("sr", "rate", "sample_rate", "sampling_rate", "fs")
RATES = (16000, 8000)  # values tried for an integer scalar named like a sample rate (each is judged)
STATE_WORDS = ("h", "c", "h0", "c0", "state", "hidden", "cell")


@dataclass
class Inputs:
    timing: dict | None  # feeds at the deployment shape; None: nothing runnable found
    judged: list[dict] = field(default_factory=list)  # feeds the drift check runs on
    source: str = ""  # where they come from, in words
    why: str = ""  # timing is None: why
    deploy: dict = field(default_factory=dict)  # {batch, seq} the timing feeds have


def find_inputs(model, meta: dict, deploy: dict, data=None, examples: dict | None = None, run=None) -> Inputs:
    """The inputs quantize times and judges on (see the module docstring). `run(feeds)` runs the float model (raises
    when onnxruntime refuses the feeds); it is how inferred sizes are checked."""
    examples = parse_examples(examples, model)
    spec = _spec(meta)
    timing = None
    if spec is not None:
        timing = _fix_roles(spec.make_inputs(spec.sizes_for(deploy["batch"], deploy["seq"]), seed=0), model, deploy["seq"])
        timing.update(_example_arrays(examples, timing, model))
    if data is not None:
        judged, source = user_batches(data, model, meta, examples)
        if timing is None:
            timing = _rows(judged, deploy["batch"], model, meta)
        return Inputs(timing, judged, source, deploy=_shape_of(timing, deploy, model))
    task = meta.get("rnnedge.task")
    if task and timing is not None:
        try:
            judged, source = user_batches(task, model, meta, examples)
            if run is None or _runs(run, judged[0]):  # a mobile chunk fixes other sizes than the task's: the spec below
                return Inputs(timing, judged, f"{source}: the file's own task", deploy=deploy)
        except BadInputError as exc:  # a stream/mobile file the task's rows do not fit: the spec's inputs
            log.info("task %s does not fit %s: %s", task, "the file", exc)
    if spec is not None:
        batch = max(deploy["batch"], JUDGE_MIN_ROWS)
        judged = [_fix_roles(spec.make_inputs(spec.sizes_for(batch, deploy["seq"]), seed=k), model, deploy["seq"]) for k in range(JUDGE_SEEDS)]
        for feeds in judged:
            feeds.update(_example_arrays(examples, feeds, model))
        what = ", ".join(f"{k}={v}" for k, v in _described({}, judged[0]).items())  # as the spec pins them (a mobile chunk)
        return Inputs(timing, judged, f"the spec's inputs ({what}; random values)", deploy=deploy)
    return infer_feeds(model, deploy, examples, run)


# -- the user's data -----------------------------------------------------------------------------


def user_batches(data, model, meta: dict, examples: dict | None = None) -> tuple[list[dict], str]:
    """([feeds, ...], source) from a task name, an .npz/.npy path or a dict of arrays keyed by input name. Inputs
    the data does not hold: lengths (full), state (zeros) and `examples`; anything else is a BadInputError."""
    from rnnedge.files import load_arrays
    from rnnedge.tasks import TASKS

    inputs = graph_inputs(model)
    if isinstance(data, str) and data in TASKS:
        from rnnedge.tasks import get_task

        rows = get_task(data).split("val").take(slice(0, JUDGE_ROWS))
        first = next(iter(inputs))
        arrays = {("tokens" if "tokens" in inputs else "x" if "x" in inputs else first): rows.inputs}
        if rows.lengths is not None and "lengths" in inputs:
            arrays["lengths"] = rows.lengths
        source = f"task {data} (val split, {len(rows)} rows)"
    else:
        arrays = dict(data) if isinstance(data, dict) else load_arrays(data)
        source = "given inputs" if isinstance(data, dict) else f"inputs {data}"
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    is_state = _state_test(model, meta)
    unknown = sorted(set(arrays) - set(inputs))
    if unknown:
        raise BadInputError(f"{source}: arrays {unknown} are not inputs of the model (inputs: {sorted(inputs)})")
    ax = {k: batch_axis(inputs[k][1]) for k in inputs}  # rows first, or a time-major foreign file's ("T", "B", F)
    rows = {a.shape[ax[n]] for n, a in arrays.items() if a.ndim > ax[n] and not is_state(n)}
    if len(rows) != 1:
        raise BadInputError(f"{source}: arrays must share their batch axis, got sizes {sorted(rows)}")
    n = rows.pop()
    arrays = fill_missing(arrays, model, meta, source, skip=set(examples or {}))
    for name, value in (examples or {}).items():
        arrays.setdefault(name, _example_value(value, n, inputs[name]))
    arrays = {k: v.astype(_np(inputs[k][0])) for k, v in arrays.items()}
    batches = [{k: (v if is_state(k) or v.ndim <= ax[k] else np.take(v, np.arange(s, min(s + JUDGE_BATCH, n)), axis=ax[k]))
                for k, v in arrays.items()} for s in range(0, min(n, JUDGE_ROWS), JUDGE_BATCH)]
    states = [k for k in arrays if is_state(k)]
    for b in batches:  # a state input follows its batch's rows
        rows_b = next(v.shape[ax[k]] for k, v in b.items() if k not in states and v.ndim > ax[k])
        for k in states:
            b[k] = _state_rows(b[k], inputs[k][1], rows_b)
    return batches, source


def _state_test(model, meta: dict):
    """name -> whether that input is a recurrent state: a stream file's declared state pairs, else by name and rank."""
    inputs = graph_inputs(model)
    declared = {st["input"] for st in getattr(_spec(meta), "states", None) or []}
    return lambda name: name in declared or _is_state(name, inputs[name][1])


def fill_missing(arrays: dict, model, meta: dict, source: str, skip=frozenset()) -> dict:
    """`arrays` (the user's, by input name, rows first) with the inputs they lack that have one obvious value: lengths
    (full rows; relative lengths 1.0) and state (a stream's start: zeros, or the spec's initial value). Any other
    missing input is a BadInputError naming it."""
    inputs = graph_inputs(model)
    is_state = _state_test(model, meta)
    declared = {st["input"]: st for st in getattr(_spec(meta), "states", None) or []}
    ax = {n: batch_axis(inputs[n][1]) for n in arrays if n in inputs}
    rows = next((np.shape(a)[ax[n]] for n, a in arrays.items() if n in ax and np.ndim(a) > ax[n] and not is_state(n)), 1)
    seq = next((np.shape(a)[1 - min(ax.get(n, 0), 1)] for n, a in arrays.items() if np.ndim(a) >= 2), 1)
    out = dict(arrays)
    for name, (elem, dims) in inputs.items():
        if name in out or name in skip:
            continue
        if _is_lengths(name, dims, elem):
            out[name] = np.full(rows, seq, _np(elem)) if elem in INTS else np.ones(rows, _np(elem))
        elif is_state(name):
            start = declared.get(name, {})
            out[name] = state_start([d if isinstance(d, int) else rows for d in dims], start.get("init", 0.0),
                                    int(start.get("batch_axis", 1)), _np(elem))
        else:
            raise BadInputError(f"{source}: no array for model input '{name}' (give it in the .npz or with --example {name}=VALUE)")
    return out


def _state_rows(state: np.ndarray, dims: list, rows: int) -> np.ndarray:
    axis = next((i for i, d in enumerate(dims) if not isinstance(d, int)), None)
    if axis is None or state.shape[axis] == rows:
        return state
    return np.take(state, np.arange(rows) % state.shape[axis], axis=axis)


def _rows(judged: list[dict], batch: int, model, meta: dict) -> dict:
    """The first `batch` rows of the first judged batch (tiled when it has fewer; a state follows): the timing feeds."""
    first, is_state, inputs = judged[0], _state_test(model, meta), graph_inputs(model)
    ax = {k: batch_axis(inputs[k][1]) for k in first}
    lead = next((v.shape[ax[k]] for k, v in first.items() if v.ndim > ax[k] and not is_state(k)), 1)
    idx = np.arange(batch) % lead
    return {k: (_state_rows(v, inputs[k][1], batch) if is_state(k) else np.take(v, idx, axis=ax[k]) if v.ndim > ax[k] else v)
            for k, v in first.items()}


def _shape_of(feeds: dict, deploy: dict, model) -> dict:
    inputs = graph_inputs(model)
    name, data = next(((k, v) for k, v in feeds.items() if v.ndim >= 2), (None, None))
    seq = int(data.shape[1 - min(batch_axis(inputs[name][1]), 1)]) if data is not None else deploy["seq"]  # the other axis
    return {"batch": deploy["batch"], "seq": seq}


# -- a foreign file: sizes that run --------------------------------------------------------------


def infer_feeds(model, deploy: dict, examples: dict | None, run) -> Inputs:
    """Inputs for a file with no spec, from its graph: symbolic dims named like batch get the deployment batch, the
    others (time-like names first) grow through GROW until onnxruntime runs the model; integer scalars named like a
    sample rate get RATES (each judged), lengths (by name, or feeding sequence_lens: `roles`) get valid values <= the
    time size, embedding ids values inside the table, float [batch] inputs named like lengths relative lengths in
    (0, 1], state inputs zeros."""
    inputs = graph_inputs(model)
    if not inputs:
        return Inputs(None, [], "", "the model has no inputs")
    rates = [n for n, (elem, dims) in inputs.items() if not dims and elem in INTS and _word(n, RATE_WORDS) and n not in (examples or {})]
    sizes = [s for s in dict.fromkeys([deploy["seq"], *GROW]) if s >= 1]
    roles = input_roles(model)  # integer inputs the graph shows as lengths or embedding ids (bounded by the table)
    errors = []
    for size in sizes:
        feeds = _feeds_at(inputs, deploy["batch"], size, examples, seed=0, rate=RATES[0], roles=roles)
        try:
            run(feeds)
        except Exception as exc:  # onnxruntime refuses this size: the next one (the reason is kept for the report)
            log.debug("size %d does not run: %s", size, exc)
            errors.append((size, ort_reason(exc)))
            continue
        judged = [_feeds_at(inputs, max(deploy["batch"], JUDGE_MIN_ROWS), size, examples, seed=k, rate=r, roles=roles)
                  for r in (RATES if rates else RATES[:1]) for k in range(JUDGE_SEEDS // (2 if rates else 1))]
        judged = [f for f in judged if _runs(run, f)]
        what = ", ".join(f"{k}={v}" for k, v in _described(inputs, feeds).items())
        return Inputs(feeds, judged, f"sizes inferred from the graph that run ({what}; random values)",
                      deploy={"batch": deploy["batch"], "seq": size})
    last = errors[-1][1] if errors else "no size tried"
    return Inputs(None, [], "", f"no input sizes found that the model runs (tried {sizes[0]}..{sizes[-1]} steps; last error: {last})")


INTS = (2, 3, 4, 5, 6, 7, 12, 13)  # onnx integer element types


def _runs(run, feeds) -> bool:
    try:
        run(feeds)
        return True
    except Exception as exc:  # this value of a rate-like input is not one the model takes: not judged on it
        log.debug("not judged on %s: %s", _described({}, feeds), exc)
        return False


def ort_reason(exc: Exception) -> str:
    """onnxruntime's reason in one short line: the innermost 'Status Message' of a failed run."""
    msg = " ".join(str(exc).split()).rsplit("Status Message: ", 1)[-1]
    return re.sub(r"^/\S+:\d+ [\w:~]+\([^)]*\) ", "", msg)[:200]  # onnxruntime's source file, line and function


def _feeds_at(inputs: dict, batch: int, size: int, examples: dict | None, seed: int, rate: int, roles=None) -> dict:
    roles = roles or {}
    rng = np.random.default_rng(seed)
    named = {}  # symbol -> size, shared across inputs (ties by name)
    feeds = {}
    for name, (elem, dims) in inputs.items():
        if examples and name in examples:
            continue
        shape = [_dim(d, i, name, batch, size, named, dims) for i, d in enumerate(_symbols(name, dims))]
        dtype = _np(elem)
        if not shape and elem in INTS and _word(name, RATE_WORDS):
            feeds[name] = np.array(rate, dtype)
        elif roles.get(name, ("",))[0] == "lengths" or _is_lengths(name, dims, elem):
            feeds[name] = _lengths(rng, shape, size, elem)
        elif _is_state(name, dims):
            feeds[name] = np.zeros(shape, dtype)
        elif roles.get(name, ("",))[0] == "ids":  # embedding ids: the whole table, never past it
            feeds[name] = rng.integers(0, roles[name][1], shape).astype(dtype)
        elif elem in INTS:
            feeds[name] = rng.integers(0, 2, shape).astype(dtype)
        elif elem == 9:  # bool
            feeds[name] = np.zeros(shape, bool)
        else:
            feeds[name] = 0.5 * rng.standard_normal(shape)
        feeds[name] = np.asarray(feeds[name], dtype)  # an ndarray even for a scalar input (onnxruntime refuses numpy scalars)
    rows = next((v.shape[0] for v in feeds.values() if v.ndim), batch)
    for name, value in (examples or {}).items():
        feeds[name] = _example_value(value, rows, inputs[name])
    return feeds


def _symbols(name: str, dims: list) -> list:
    """Dims with unnamed free dims given a positional name: axis 0 the batch, axis 1 the time (a state's axis 1)."""
    return [d if d is not None else ("?batch" if i == 0 or (i == 1 and _is_state(name, dims)) else f"?{name}{i}")
            for i, d in enumerate(dims)]


def _dim(d, i: int, name: str, batch: int, size: int, named: dict, dims: list) -> int:
    if isinstance(d, int):
        return d
    if d not in named:
        if batch_like(d):
            named[d] = batch
        else:  # a time-like name, or any other free dim: the size being tried
            named[d] = size
    return named[d]


def _lengths(rng, shape: list, size: int, elem: int) -> np.ndarray:
    if elem in INTS:
        out = rng.integers(1, size + 1, shape)
        if out.size:
            out.flat[0] = size  # one full row keeps the padded length meaningful
        return out.astype(_np(elem))
    out = rng.uniform(0.05, 1.0, shape)  # relative lengths in (0, 1]
    if out.size:
        out.flat[0] = 1.0
    return out.astype(_np(elem))


def _described(inputs: dict, feeds: dict) -> dict:
    return {n: ((int(v) if v.dtype.kind in "biu" else float(f"{float(v):.3g}")) if not v.ndim else "x".join(map(str, v.shape)))
            for n, v in feeds.items()}


# -- roles read from names -----------------------------------------------------------------------


def _word(name: str, words) -> bool:
    parts = [p for p in re.split(r"[^a-z0-9]+", name.lower()) if p]
    return name.lower() in words or any(p in words for p in parts)


def _is_lengths(name: str, dims: list, elem: int) -> bool:
    """[batch]-shaped lengths: integers named like lengths, or floats named like (relative) lengths."""
    low = name.lower()
    return len(dims) == 1 and ("len" in low or (elem not in INTS and "rel" in low))


def _is_state(name: str, dims: list) -> bool:
    return len(dims) == 3 and _word(name, STATE_WORDS)


def _fix_roles(feeds: dict, model, seq: int) -> dict:
    """Spec inputs the spec declares as plain features but that are relative lengths (float [batch] named like lengths):
    values in (0, 1], as the module scales them itself (random normal values past 1 make sequence_lens > seq)."""
    inputs = graph_inputs(model)
    rng = np.random.default_rng(0)
    for name, value in feeds.items():
        elem, dims = inputs.get(name, (1, []))
        if value.dtype.kind == "f" and value.ndim == 1 and _is_lengths(name, dims, elem):
            feeds[name] = _lengths(rng, list(value.shape), seq, elem)
    return feeds


def _spec(meta: dict):
    if "rnnedge.spec" not in meta:
        return None
    from rnnedge.spec import IOSpec

    return IOSpec.from_json(meta["rnnedge.spec"])


def graph_inputs(model) -> dict[str, tuple[int, list]]:
    """{name: (onnx elem type, dims: int fixed, str symbolic, None unnamed)} of the real inputs (no initializers)."""
    inits = {t.name for t in model.graph.initializer}
    out = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        t = vi.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]
        out[vi.name] = (t.elem_type, dims if t.HasField("shape") else shape_from_use(model, vi.name))
    return out


def _np(elem: int):
    import onnx

    return onnx.helper.tensor_dtype_to_np_dtype(elem)


# -- --example NAME=VALUE ------------------------------------------------------------------------

_SHAPE = re.compile(r"(float32|float16|float64|int64|int32|bool)\[([\d,\s]*)\]")


def parse_examples(examples, model) -> dict:
    """{name: number | (dtype, shape)} from {name: "16000" | "float32[1,512]"} or ["sr=16000", ...]; names checked."""
    if not examples:
        return {}
    if not isinstance(examples, dict):
        pairs = {}
        for item in examples:
            name, sep, value = str(item).partition("=")
            if not sep or not name.strip():
                raise BadInputError(f"--example {item!r}: expected NAME=VALUE (a number, or a shape like float32[1,512])")
            pairs[name.strip()] = value.strip()
        examples = pairs
    inputs = graph_inputs(model)
    out = {}
    for name, value in examples.items():
        if name not in inputs:
            raise BadInputError(f"--example {name}: not an input of the model (inputs: {', '.join(inputs)})")
        out[name] = _read_example(name, value)
    return out


def _read_example(name: str, value):
    if isinstance(value, (int, float, np.ndarray)) and not isinstance(value, bool):
        return value
    text = str(value).strip()
    m = _SHAPE.fullmatch(text.replace(" ", ""))
    if m:
        return (m.group(1), [int(s) for s in m.group(2).split(",") if s])
    try:
        return int(text) if re.fullmatch(r"[+-]?\d+", text) else float(text)
    except ValueError:
        raise BadInputError(f"--example {name}={text}: expected a number or a shape like float32[1,512]") from None


def _example_value(value, rows: int, spec: tuple) -> np.ndarray:
    """An --example as an array of the input's dtype: a number fills the input (a scalar input stays a scalar; a
    [batch] input gets one per row), a (dtype, shape) gives random values of that shape."""
    elem, dims = spec
    if isinstance(value, np.ndarray):
        return value.astype(_np(elem))
    if isinstance(value, tuple):
        dtype, shape = value
        return (0.5 * np.random.default_rng(0).standard_normal(shape)).astype(dtype)
    shape = [rows if d is None or isinstance(d, str) else d for d in dims]
    return np.full(shape, value, _np(elem))


def _example_arrays(examples: dict, feeds: dict, model) -> dict:
    inputs = graph_inputs(model)
    rows = next((v.shape[0] for v in feeds.values() if v.ndim), 1)
    return {name: _example_value(value, rows, inputs[name]) for name, value in examples.items()}
