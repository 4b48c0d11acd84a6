"""``StreamingSession``: many concurrent streams of one streaming model, recurrent state carried across calls."""
from __future__ import annotations

import os
import threading
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from rnnedge.errors import BadInputError
from rnnedge.runtime.bound import BoundStream
from rnnedge.runtime.inputs import initial_state
from rnnedge.runtime.providers import ort_error
from rnnedge.runtime.session import FAST_SHAPES, Session, time_axis, values_ok

__all__ = ["StreamingSession"]


def _fixed(dim) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None


class StreamingSession:
    """Carry recurrent state across calls for many concurrent streams of one streaming model.

    The model needs state pairs (``--target stream`` or ``mobile``): the spec's (``rnnedge.spec`` "states": any
    number, any rank, each with its batch axis and initial value), or ``h0``/``c0`` -> ``hn``/``cn`` by name for
    files without them. A spec ``stride`` (strided convs or pooling over time) makes every chunk a multiple of
    it; a spec ``lookahead`` N (a centred conv with only per-frame layers after it) delays the output: step i of a
    stream answers for step i - N, so its first N steps are warm-up. Bidirectional models cannot stream (a
    bidirectional mobile chunk is one whole sequence); sequence-first models are refused. ``step`` runs every
    given stream in one batched call (states stacked along their batch axis, uneven chunks padded with
    ``lengths``; a model without a ``lengths`` input runs one call per chunk length). Fixed-shape (mobile) models
    take multiples of ``chunk`` steps per stream, run in groups of the model's fixed batch. Only the states are
    kept, so memory stays flat however long the streams run. ``step`` is serialised with a lock, so streams may
    be fed from several threads.
    """

    DEFAULT = "default"

    def __init__(self, path_or_session: str | os.PathLike | Session,
                 providers: str | Sequence[str] | None = "auto", threads: int | None = None):
        s = path_or_session if isinstance(path_or_session, Session) else Session(
            path_or_session, providers=providers, threads=threads)
        if not s.is_streaming:
            raise BadInputError(f"{s.path} has no state inputs, so nothing carries from one chunk to the next: export a "
                                "streaming file with --target stream (rnnedge export FILE.py:FACTORY --example ... --target "
                                "stream -o stream.onnx, or rnnedge export CKPT --target stream)")
        from rnnedge.runtime.inputs import batch_axis

        if batch_axis(s) == 1:
            raise BadInputError(f"{s.path} takes (seq, batch, ...) inputs; StreamingSession streams batch-first models: "
                                "export with batch_first=True layers, or call Session.run_all with your own state")
        if (s.config or {}).get("bidirectional") or s.metadata.get("rnnedge.bidirectional") == "1":
            raise BadInputError(f"{s.path} is bidirectional; bidirectional models cannot stream")
        self.session = s
        self.stride = s.stride  # chunks must be a multiple of this many steps (strided convs / pooling over time)
        self.lookahead = s.lookahead  # output i of a stream is the whole sequence's output i - lookahead (a centred conv)
        self._pairs = {p.input: p for p in s.state_pairs}
        self._state_specs = {n: s._by_name[n] for n in self._pairs}
        outputs = [o.name for o in s.outputs]
        missing = [p.output for p in s.state_pairs if p.output not in outputs]
        if missing:
            raise BadInputError(f"{s.path} takes {list(self._pairs)} but does not return {missing}")
        for name, spec in self._state_specs.items():
            ax = self._pairs[name].batch_axis
            if not all(_fixed(d) for i, d in enumerate(spec.shape) if i != ax):
                raise BadInputError(f"state input {name!r} needs fixed sizes but on its batch axis {ax}, got shape {spec.shape}")
        out = next(o for o in s.outputs if o.name == s.output_name).shape
        seq_dim = s._main.shape[s.time_axis] if len(s._main.shape) > 1 else None
        self._per_step = len(out) >= 3 or (len(out) == 2 and isinstance(out[1], str) and out[1] == seq_dim)
        # a channels-first file ((B, F, T) in, (B, C, T) out): chunks and answers keep its layout, time on these axes
        self.time_axis = s.time_axis - 1  # of a chunk (no batch axis)
        self.output_time_axis = (out.index(seq_dim) if isinstance(seq_dim, str) and seq_dim in out[1:]
                                 else time_axis(out, s.target if s.time_axis != 1 else None)) - 1
        self._states: dict[Hashable, dict[str, np.ndarray]] = {}  # stream -> name -> state without its batch axis
        self._lock = threading.Lock()
        self._bound: dict[tuple, BoundStream] = {}  # chunk shape -> the default stream's pre-bound calls (feed)

    @property
    def per_step(self) -> bool:
        """Whether the main output has a value per step (joined over chunks) or one per sequence (each chunk's last)."""
        return self._per_step

    @property
    def streams(self) -> list:
        """The ids of the streams that hold state."""
        with self._lock:
            return list(self._states)

    def _zeros(self) -> dict[str, np.ndarray]:
        """One stream's start: each state at its declared initial value, without the batch axis."""
        return {n: np.take(initial_state(sp, self._pairs[n], 1), 0, axis=self._pairs[n].batch_axis)
                for n, sp in self._state_specs.items()}

    def _row(self, name: str) -> tuple:
        """Index of row 0 along a state's batch axis (a view of one stream's state in a batch-1 buffer)."""
        return (slice(None),) * self._pairs[name].batch_axis + (0,)

    def reset(self, stream_id: Hashable = DEFAULT) -> None:
        """Set one stream's state back to its start (zeros, or each state's declared initial value); others are untouched."""
        with self._lock:
            self._states[stream_id] = self._zeros()

    def close(self, stream_id: Hashable = DEFAULT) -> None:
        """Forget one stream entirely."""
        with self._lock:
            if self._states.pop(stream_id, None) is None:
                raise BadInputError(f"no stream {stream_id!r}; open streams: {list(self._states)}")

    def feed(self, x) -> np.ndarray:
        """Step the single default stream with ``x`` (``(T, F)`` features or ``(T,)`` tokens)."""
        if type(x) is np.ndarray:
            fast = self._fast_feed(x)
            if fast is not None:
                return fast
        return self.step({self.DEFAULT: x})[self.DEFAULT]

    def _fast_feed(self, x: np.ndarray) -> np.ndarray | None:
        """The pre-bound path (rnnedge.runtime.bound): a chunk of the input's own dtype for the default stream.

        Every check runs on a chunk shape's first call, the value checks on every call; None sends the
        call down the checked path (``step``). The state stays in the bound buffers (no copy per call).
        """
        s = self.session
        if s.iobinding or s.time_axis != 1 or x.dtype != s._main_dtype or x.ndim != len(s._main.shape) - 1 or s.fixed_batch not in (None, 1):
            return None
        if len(x) % self.stride:  # the checked path says why
            return None
        with self._lock:
            bound = self._bound.get(x.shape)
            if bound is None:
                if len(self._bound) >= FAST_SHAPES or (s.chunk and len(x) != s.chunk):
                    return None
                feeds = s._check_feeds({s._main.name: x[None]})  # every check, once for this shape; zero states
                try:
                    bound = self._bound[x.shape] = BoundStream(s._sess, feeds, {n: p.output for n, p in self._pairs.items()},
                                                               s.output_name, {n: p.batch_axis for n, p in self._pairs.items()})
                except Exception as err:  # onnxruntime raises its own pybind classes
                    raise ort_error("inference failed", err) from err
            elif not values_ok(s, x):
                return None
            state = self._states.get(self.DEFAULT)
            if state is not bound.views[bound.current]:  # set by reset/step or another chunk shape: copy it in
                zero = self._zeros() if state is None else state
                for name, buf in bound.states[bound.current].items():
                    buf[self._row(name)] = zero[name]
            np.copyto(bound.inputs[s._main.name][0], x)
            try:
                bound.step()
            except Exception as err:
                raise ort_error("inference failed", err) from err
            self._states[self.DEFAULT] = bound.views[bound.current]
            return (bound.output[0, : len(x)] if self._per_step else bound.output[0]).copy()

    def step(self, chunks: Mapping[Hashable, Any]) -> dict[Hashable, np.ndarray]:
        """Feed the next chunk of each given stream; return each stream's main output.

        Per-step outputs (tag/lm: ``(T_i, C)``) cover the chunk; per-sequence outputs
        (classify: ``(C,)``) are the answer after the chunk's last step. New ids start at zero.
        """
        if not isinstance(chunks, Mapping):
            raise BadInputError("chunks must be a dict of stream id -> array")
        s = self.session
        pieces: dict[Hashable, list[np.ndarray]] = {}
        for sid, chunk in chunks.items():
            try:
                x = s._batch([chunk], None)[0][0]  # checks dtype, rank and emptiness
            except BadInputError as err:
                raise BadInputError(f"stream {sid!r}: {err}") from None
            x = np.moveaxis(x, self.time_axis, 0)  # time first from here on
            if self.stride > 1 and len(x) % self.stride:
                raise BadInputError(f"stream {sid!r}: {len(x)} steps is not a multiple of this model's stride of "
                                    f"{self.stride} (strided convolutions or pooling over time); buffer the remaining "
                                    f"{len(x) % self.stride} steps for the next call")
            if s.chunk and len(x) % s.chunk:
                raise BadInputError(f"stream {sid!r}: {len(x)} steps is not a multiple of this "
                                    f"model's fixed chunk of {s.chunk}; buffer the remaining "
                                    f"{len(x) % s.chunk} steps for the next call")
            n = s.chunk or len(x)
            pieces[sid] = [x[i: i + n] for i in range(0, len(x), n)]
        with self._lock:
            states = {sid: self._states.get(sid) or self._zeros() for sid in pieces}
            outs: dict[Hashable, list[np.ndarray]] = {sid: [] for sid in pieces}
            padded = s.has_lengths  # uneven chunks share a call only where the model masks by lengths
            for k in range(max((len(p) for p in pieces.values()), default=0)):
                active = [sid for sid in pieces if k < len(pieces[sid])]
                buckets = [active] if padded else [[i for i in active if len(pieces[i][k]) == n]
                                                   for n in sorted({len(pieces[i][k]) for i in active})]
                for bucket in buckets:
                    group = s.fixed_batch or len(bucket)
                    for g in range(0, len(bucket), group):
                        ids = bucket[g: g + group]
                        self._run_group(ids, [pieces[sid][k] for sid in ids], group, states, outs)
            self._states.update(states)  # commit only when every call succeeded
        return {sid: np.moveaxis(np.concatenate(o, axis=0), 0, self.output_time_axis) if self._per_step else o[-1]
                for sid, o in outs.items()}

    def _run_group(self, ids, xs, group, states, outs) -> None:
        """One batched call for streams ``ids``; pads the batch to ``group`` rows if fixed."""
        s = self.session
        rows = xs + [np.zeros_like(xs[0])] * (group - len(xs)) if s.fixed_batch else xs
        x, lens = s._batch(rows, None)
        feeds = {s._main.name: np.moveaxis(x, 1, s.time_axis), "lengths": lens}
        zero = self._zeros()
        for name, pair in self._pairs.items():  # one stream's state -> the streams stacked on the batch axis
            feeds[name] = np.stack([states[i][name] for i in ids]
                                   + [zero[name]] * (len(rows) - len(ids)), axis=pair.batch_axis)
        wanted = [s.output_name] + [p.output for p in self._pairs.values()]
        result = s._infer(s._check_feeds(feeds), wanted)
        y = result[s.output_name]  # (B, T, C) per step, or (B, C) per sequence
        if self._per_step:
            y = np.moveaxis(y, self.output_time_axis + 1, 1)
        for row, sid in enumerate(ids):
            out = y[row, : len(xs[row])] if self._per_step else y[row]
            outs[sid].append(np.array(out))
            states[sid] = {n: np.array(np.take(result[p.output], row, axis=p.batch_axis)) for n, p in self._pairs.items()}
