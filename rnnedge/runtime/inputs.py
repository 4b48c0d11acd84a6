"""Input checks for ``Session``: every broken rule is one ``BadInputError`` line, raised before onnxruntime runs.

Rank, feature size, dtype (float64 is cast to float32, int32 token ids to int64; anything else is
refused), an empty batch or a zero-length sequence, ``lengths`` of the wrong shape, negative or past
the sequence, token ids outside ``[0, vocab)``, a fixed-shape (mobile) model fed another batch or chunk
size, and NaN/Inf in float inputs (values that overflow float32 on the cast count as Inf).
Functions of the session ``s`` (its signature and config); numpy only.
"""
from __future__ import annotations

import functools

import numpy as np

from rnnedge.errors import BadInputError
from rnnedge.runtime.signature import TensorInfo

__all__ = ["batch_sequences", "coerce", "check_feeds"]

_TOKEN_KINDS = {np.dtype(t) for t in (np.int8, np.int16, np.int32, np.int64,
                                      np.uint8, np.uint16, np.uint32)}


def batch_axis(sess) -> int:
    """Where the main input's batch is: 1 for a sequence-first model whose axes say (seq, batch, ...), or whose lengths
    input ([B], one per row) names the main input's axis 1 (a foreign file's ("T", "B", F)), else 0."""
    shape = list(sess._main.shape)
    if len(shape) < 3:
        return 0
    lens = sess._by_name.get(sess.lengths_name) if sess.has_lengths else None
    rows = lens.shape[0] if lens is not None and len(lens.shape) == 1 and isinstance(lens.shape[0], str) else None
    if rows is not None and shape[1] == rows and shape[0] != rows:
        return 1
    return 1 if shape[1] == "batch" and shape[0] != "batch" else 0


def batch_sequences(sess, x, lengths):
    """A list of variable-length sequences -> (padded batch, lengths), in the model's layout; arrays pass through."""
    if not isinstance(x, (list, tuple)):
        return x, lengths
    if lengths is not None:
        raise BadInputError("lengths is computed from a list of sequences; do not pass it too")
    if not x:
        raise BadInputError("empty batch: got an empty list of sequences")
    rank = len(sess._main.shape) - 1
    rows = []
    for i, row in enumerate(x):
        row = coerce(sess, row, f"sequence {i}")
        bad = row.ndim != rank or row.shape[0] == 0
        if bad or (rows and row.shape[1:] != rows[0].shape[1:]):
            want = "(seq,)" if rank == 1 else "(seq, features)"
            raise BadInputError(f"sequence {i} has shape {row.shape}; expected a non-empty {want}"
                                + (f" like {rows[0].shape[1:]}" if rows and rank > 1 else ""))
        rows.append(row)
    lens = np.array([len(r) for r in rows], dtype=np.int64)
    out = np.zeros((len(rows), int(lens.max()), *rows[0].shape[1:]), dtype=rows[0].dtype)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    if batch_axis(sess) == 1:  # a sequence-first model takes (seq, batch, ...)
        out = np.ascontiguousarray(np.swapaxes(out, 0, 1))
    return out, lens


def coerce(sess, a, what: str, spec: TensorInfo | None = None) -> np.ndarray:
    """Convert to an array of the input's dtype; refuse dtypes that would change meaning."""
    spec = spec or sess._main
    try:
        arr = np.asarray(a)
    except (ValueError, TypeError) as err:
        raise BadInputError(f"{what}: cannot read as an array ({err})") from None
    want = np.dtype(spec.dtype) if not isinstance(spec.dtype, str) else None
    if want is None or arr.dtype == want:
        return arr
    if want.kind == "f" and arr.dtype.kind == "f":
        with np.errstate(over="ignore", invalid="ignore"):  # overflow -> Inf, refused by _check_values
            return arr.astype(want)
    if want.kind in "iu" and arr.dtype in _TOKEN_KINDS:
        return arr.astype(want)
    raise BadInputError(f"{what}: dtype {arr.dtype} not accepted; expected {want}"
                        + (" (float64 is cast)" if want.kind == "f" else " integer ids"))


def check_feeds(sess, feeds: dict) -> dict[str, np.ndarray]:
    """Validate and complete a feed dict; every problem is one BadInputError line."""
    alias = sess.lengths_name if sess.lengths_name != "lengths" else None  # a module's own name for its lengths (`lens`)
    if alias is not None and alias in feeds:
        if "lengths" in feeds:
            raise BadInputError(f"lengths given twice: as 'lengths' and as {alias!r}")
        feeds["lengths"] = feeds.pop(alias)  # checked under the one internal name, fed under the file's
    unknown = set(feeds) - set(sess._by_name) - {"lengths"}  # lengths is checked below
    if unknown:
        raise BadInputError(f"unknown input(s) {sorted(unknown)}; model inputs: {list(sess._by_name)}")
    main = sess._main
    if main.name not in feeds:
        raise BadInputError(f"missing input {main.name!r}")
    x = coerce(sess, feeds[main.name], f"input {main.name!r}")
    if x.ndim != len(main.shape):
        raise BadInputError(f"input {main.name!r} has rank {x.ndim} {x.shape}; expected rank "
                            f"{len(main.shape)} {main.shape}")
    b_ax = batch_axis(sess)
    t_ax = 1 - b_ax if b_ax else getattr(sess, "time_axis", 1)
    if x.ndim >= 1 and x.shape[b_ax if x.ndim > b_ax else 0] == 0:
        raise BadInputError(f"empty batch: input {main.name!r} has shape {x.shape}")
    if x.ndim >= 2 and x.shape[t_ax] == 0:
        raise BadInputError(f"zero-length sequence: input {main.name!r} has shape {x.shape}")
    _check_static(sess, x, main)
    _check_values(sess, x, main.name)
    feeds[main.name] = x
    batch = x.shape[b_ax] if x.ndim > b_ax else 1
    seq = x.shape[t_ax] if x.ndim >= 2 else None
    _check_lengths(sess, feeds, batch, seq)
    for s in sess.inputs:
        if s.name in (main.name, "lengths", alias):
            continue
        pair = next((p for p in sess.state_pairs if p.input == s.name), None)
        if s.name not in feeds and pair is not None:  # a stream's start: the state's declared initial value
            feeds[s.name] = initial_state(s, pair, batch)
        elif s.name not in feeds:
            raise BadInputError(f"missing input {s.name!r} {s.shape}")
        arr = coerce(sess, feeds[s.name], f"input {s.name!r}", s)
        if arr.ndim != len(s.shape) or (pair is not None and arr.shape[pair.batch_axis] != batch):
            raise BadInputError(f"input {s.name!r} has shape {arr.shape}; expected {s.shape} "
                                f"with batch {batch}")
        _check_static(sess, arr, s)
        _check_values(sess, arr, s.name)
        feeds[s.name] = arr
    _check_ranges(sess, feeds)
    _check_ties(sess, feeds)
    if alias is not None and "lengths" in feeds:
        feeds[alias] = feeds.pop("lengths")
    return feeds


def initial_state(spec: TensorInfo, pair, batch: int) -> np.ndarray:
    """A state input's start value for `batch` streams: its declared init, the batch at the pair's batch axis."""
    shape = [d if isinstance(d, int) and d > 0 else batch if i == pair.batch_axis else None for i, d in enumerate(spec.shape)]
    if None in shape:
        raise BadInputError(f"cannot size the initial {spec.name!r} from shape {spec.shape}; pass it")
    from rnnedge.spec import state_start

    return state_start(shape, pair.init, pair.batch_axis, spec.dtype)


def _check_ties(sess, feeds: dict) -> None:
    """Sizes the file's spec ties together (``samples == 64 * frames``, declared or proved by torch.export at export):
    a feed that breaks one would run, and be wrong; refused."""
    shapes, ties = _declared_ties((sess.metadata or {}).get("rnnedge.spec"))
    if not ties:
        return
    sizes: dict[str, int] = {}
    for name, shape in shapes.items():
        arr = feeds.get(name)
        for axis, label in enumerate(shape):
            if isinstance(label, str) and arr is not None and axis < np.ndim(arr):
                sizes.setdefault(label, int(np.shape(arr)[axis]))
    for label, tie in ties.items():
        root = tie.get("of")
        if label not in sizes or (root is not None and root not in sizes):
            continue
        if root is not None:
            want = int(tie.get("scale", 1)) * sizes[root] + int(tie.get("offset", 0))
            if sizes[label] != want:
                raise BadInputError(f"axis '{label}' is {sizes[label]}, but this model needs {label} == {_tie_text(tie)} = {want} "
                                    f"({root} {sizes[root]}): a relation between its inputs' sizes recorded at export")
        elif tie.get("sizes") and sizes[label] not in tie["sizes"]:
            raise BadInputError(f"axis '{label}' is {sizes[label]}; this model takes only {label} in {tie['sizes']}")


def _tie_text(tie: dict) -> str:
    scale, offset = int(tie.get("scale", 1)), int(tie.get("offset", 0))
    text = tie["of"] if scale == 1 else f"{scale} * {tie['of']}"
    return text + (f" + {offset}" if offset > 0 else f" - {-offset}" if offset < 0 else "")


@functools.lru_cache(maxsize=32)
def _declared_ties(raw: str | None) -> tuple[dict, dict]:
    """({input: shape}, ties) of a file's rnnedge.spec metadata (empty when it has none or cannot be read)."""
    import json

    try:
        data = json.loads(raw) if raw else {}
        ties = data.get("ties") or {}
        shapes = {t["name"]: list(t["shape"]) for t in data.get("inputs", [])} if ties else {}
        return shapes, (ties if isinstance(ties, dict) else {})
    except (ValueError, TypeError, KeyError, AttributeError):  # a malformed spec is reported where it is read (signature)
        return {}, {}


def _check_ranges(sess, feeds: dict) -> None:
    """Axes exported with a valid range only (``rnnedge.range.<axis>`` = "1..100", export --allow-bounded)."""
    spans = {k[len("rnnedge.range."):]: v for k, v in (sess.metadata or {}).items() if k.startswith("rnnedge.range.")}
    for s in sess.inputs if spans else ():
        arr = feeds.get(s.name)
        for axis, label in enumerate(s.shape):
            if arr is None or label not in spans or axis >= arr.ndim:
                continue
            lo, _, hi = spans[label].partition("..")
            size = arr.shape[axis]
            if (lo.strip().isdigit() and size < int(lo)) or (hi.strip().isdigit() and size > int(hi)):
                raise BadInputError(f"input {s.name!r} has {label} {size} (shape {arr.shape}); this model is only valid for "
                                    f"{label} in {spans[label]} (a range torch.export recorded at export)")


def _check_static(sess, arr: np.ndarray, spec: TensorInfo) -> None:
    cfg_features = (sess.config or {}).get("input_size") if spec is sess._main else None
    for axis, (got, want) in enumerate(zip(arr.shape, spec.shape)):
        if spec is sess._main and axis == 2 and not isinstance(want, int):
            want = cfg_features if isinstance(cfg_features, int) and not sess.is_tokens else want
        if isinstance(want, int) and want > 0 and got != want:
            if spec is sess._main and axis < 2 and sess.is_streaming:  # a mobile chunk model
                raise BadInputError(
                    f"this fixed-shape model takes {spec.name!r} of batch {spec.shape[0]} and "
                    f"{spec.shape[1]} steps, got {arr.shape}; use StreamingSession to feed "
                    f"longer sequences in chunks of {spec.shape[1]}")
            what = {0: "batch", 1: "sequence length", 2: "feature size"}.get(axis, f"dim {axis}") \
                if spec is sess._main else f"dim {axis}"
            raise BadInputError(f"input {spec.name!r} has {what} {got} (shape {arr.shape}); "
                                f"the model expects {want} (shape {spec.shape})")


def _check_values(sess, arr: np.ndarray, name: str) -> None:
    if arr.dtype.kind == "f" and arr.size and not np.isfinite(arr).all():
        raise BadInputError(f"input {name!r} contains NaN or Inf; refused (clean the data first)")
    if name == sess._main.name and sess.is_tokens and arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or (sess.vocab is not None and hi >= sess.vocab):
            raise BadInputError(f"token ids must be in [0, {sess.vocab or 'vocab'}); "
                                f"got values in [{lo}, {hi}]")


def _check_lengths(sess, feeds: dict, batch: int, seq: int | None) -> None:
    lengths = feeds.pop("lengths", None)
    if lengths is None:
        if sess.has_lengths:
            feeds["lengths"] = np.full((batch,), seq or 1, dtype=_lengths_dtype(sess))
        return
    lengths = np.asarray(lengths)
    if lengths.dtype.kind not in "iu":
        raise BadInputError(f"lengths must be integers, got dtype {lengths.dtype}")
    if lengths.shape != (batch,):
        raise BadInputError(f"lengths has shape {lengths.shape}; expected ({batch},), one per row")
    if (lengths < 0).any():
        raise BadInputError(f"lengths must not be negative, got min {int(lengths.min())}")
    if (lengths == 0).any():
        raise BadInputError("zero-length sequence: every length must be at least 1")
    if seq is not None and (lengths > seq).any():
        raise BadInputError(f"lengths up to {int(lengths.max())} exceed the sequence length {seq}")
    if sess.has_lengths:
        _refuse_ignored_lengths(sess, lengths, seq)
        feeds["lengths"] = lengths.astype(_lengths_dtype(sess))
    elif seq is not None and (lengths != seq).any():
        raise BadInputError(f"rows have different lengths ({int(lengths.min())}..{int(lengths.max())}) "
                            "but this model has no 'lengths' input: pass equal-length sequences (or export with --lengths)")


def _refuse_ignored_lengths(sess, lengths: np.ndarray, seq: int | None) -> None:
    """A provider known to ignore lengths on this file (rnnedge.runtime.known_wrong): rows shorter than the sequence
    would come out wrong, silently; refused with the reason."""
    wrong = getattr(sess, "known_wrong", None)
    if wrong and seq is not None and (lengths < seq).any():
        raise BadInputError(f"rows shorter than the sequence (lengths {int(lengths.min())} < {seq}) refused: "
                            f"{wrong[0].message(sess.path)}")


def _lengths_dtype(sess):
    """The model's own lengths dtype (int64 for rnnedge checkpoints; a user module's int32 stays int32)."""
    info = sess._by_name.get(sess.lengths_name)
    return info.dtype if info is not None and not isinstance(info.dtype, str) else np.int64
