"""Chunked == whole: a stream file fed chunk by chunk (state carried) against torch on the whole sequence.

This is the check of a user module's `--target stream` file (export's quick check and `rnnedge verify`): torch
runs the user's own module, unchanged, once on the whole sequence; onnxruntime runs the file on consecutive
chunks along the time axis, every state pair of the spec (`spec.states`) carried from one call to the next
and starting at its declared initial value. Per-frame outputs are joined along their time axis; an output
without one (a last-step head, `y[:, -1]`) is the last chunk's. Errors are judged by the noise policy
(rnnedge.parity.compare), as every other parity check.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from rnnedge.parity.compare import CaseResult, ParityReport, compare
from rnnedge.spec import IOSpec

log = logging.getLogger(__name__)

QUICK_CHUNKS = (1, 7)  # with the example's length: export's quick check
VERIFY_CHUNKS = (1, 7, 50)  # rnnedge verify
VERIFY_FRAMES = 200  # frames streamed by verify (at least)


def carried(spec: IOSpec) -> list[dict]:
    """The spec's state pairs; for files written before them, h0 -> hn and c0 -> cn by name."""
    states = list(getattr(spec, "states", None) or [])
    if states:
        return states
    names = {t.name: t for t in spec.inputs}
    return [{"input": i, "output": o, "shape": list(names[i].shape), "batch_axis": 1, "init": 0.0}
            for i, o in (("h0", "hn"), ("c0", "cn")) if i in names and o in spec.outputs]


def initial_state(state: dict, batch: int) -> np.ndarray:
    """A state's start value for `batch` streams (its declared init, the batch axis set)."""
    from rnnedge.spec import state_start

    shape = [batch if isinstance(d, str) else int(d) for d in state["shape"]]
    return state_start(shape, state.get("init", 0.0), int(state.get("batch_axis", 1)))


def whole_spec(spec: IOSpec) -> IOSpec:
    """The module's own inputs and outputs: the spec without the state pairs export added (what torch takes and
    returns); a state the module takes itself (forward(x, h0) -> (y, hn)) stays, fed its initial value."""
    states = [s for s in carried(spec) if not s.get("own")]
    ins, outs = {s["input"] for s in states}, {s["output"] for s in states}
    return dataclasses.replace(spec, inputs=[t for t in spec.inputs if t.name not in ins],
                               outputs=[o for o in spec.outputs if o not in outs], states=[])


def chunk_sizes(spec: IOSpec, example: int | None, quick: bool) -> list[int]:
    """Chunk lengths in frames (multiples of the spec's stride): 1, 7 and the example's length (quick) or 50."""
    stride = int(getattr(spec, "stride", 1) or 1)
    sizes = list(QUICK_CHUNKS) + ([example or 16] if quick else list(VERIFY_CHUNKS[2:]))
    out = []
    for n in sizes:
        n = -(-max(1, n) // stride) * stride
        if n not in out:
            out.append(n)
    return out


def check_chunked(module, onnx_path, spec: IOSpec, *, providers=("CPUExecutionProvider",), example: int | None = None,
                  quick: bool = True, batch: int = 2, frames: int | None = None, seed: int = 42, feeds: dict | None = None,
                  atol=None, rtol=None, allow_ill_conditioned: bool = True, label: str = "") -> ParityReport:
    """Every chunk size on every provider against torch on the whole sequence; never raises on a mismatch.
    `feeds`: the whole inputs to stream (a user's check input), else random ones of `batch` x `frames`."""
    from rnnedge.parity.runners import TorchRunner, float32_noise

    plain = whole_spec(spec)
    feeds, chunks = _whole_inputs(spec, plain, feeds, example, quick, batch, frames, seed)
    report = ParityReport(atol=atol, rtol=rtol, allow_ill_conditioned=allow_ill_conditioned)
    with TorchRunner(module, plain) as runner:
        ref, ref64 = runner.infer(feeds), runner.infer_float64(feeds)
        noise = float32_noise(runner, feeds, ref) if ref64 is None else None
        spread = runner.spread64(feeds, ref64)
    time_axes: dict[str, int | None] = {}
    for provider in providers:
        for case, name, got in _streamed(onnx_path, provider, spec, plain, feeds, chunks, label, report):
            joined = {k: join(parts, np.asarray(ref[k]), time_axes.get(k)) for k, parts in got.items() if k in ref}
            time_axes.update({k: a for k, (_, a) in joined.items() if len(got[k]) > 1})  # one call: as the chunked calls
            r, r64, joined = delayed(ref, ref64, joined, int(getattr(spec, "lookahead", 0) or 0))
            report.extend(compare(r, joined, atol, rtol, case, name, noise=noise, ref64=r64,
                                  allow_ill_conditioned=allow_ill_conditioned, spread=spread))
    return report


def _name(provider) -> str:
    return provider if isinstance(provider, str) else provider[0]


def _whole_inputs(spec, plain, feeds, example, quick, batch, frames, seed) -> tuple[dict, list[int]]:
    """(the whole inputs torch runs on, the chunk lengths to stream them in)."""
    stride = int(getattr(spec, "stride", 1) or 1)
    chunks = chunk_sizes(spec, example, quick)
    time = plain.time_axis
    if feeds is None:
        frames = frames or max(VERIFY_FRAMES if not quick else 2 * (example or 16), 3 * max(chunks) // 2, 21)
        frames = -(-frames // stride) * stride
        feeds = plain.make_inputs(plain.sizes_for(batch, frames), seed=seed)
        chunks += [] if quick else [frames]  # one call on the whole sequence too
    else:
        feeds = {t.name: np.asarray(feeds[t.name]) for t in plain.inputs if t.name in feeds}
        first = next(t for t in plain.inputs if time in t.shape)
        frames, batch = int(feeds[first.name].shape[first.shape.index(time)]), int(feeds[first.name].shape[0])
        chunks = [n for n in chunks if n < frames] + [frames]
    for s in carried(spec):
        if s.get("own"):  # the module's own state input: its start value, in torch as in the stream
            feeds[s["input"]] = initial_state(s, batch)
    lengths = plain.input("lengths")
    if lengths is not None:
        feeds[lengths.name] = np.full_like(feeds[lengths.name], frames)
    return feeds, chunks


def _streamed(onnx_path, provider, spec, plain, feeds, chunks, label, report):
    """(case, provider name, {output: chunk values}) per chunk length on one provider; failures are rows of `report`."""
    from rnnedge.errors import first_line
    from rnnedge.parity.runners import OrtRunner
    from rnnedge.runtime.providers import canonical_entry

    time = plain.time_axis
    first = next(t for t in plain.inputs if time in t.shape)
    frames, batch = feeds[first.name].shape[first.shape.index(time)], feeds[first.name].shape[0]
    try:
        name, options = canonical_entry(provider)
        ort = OrtRunner(onnx_path, [(name, options)]).__enter__()
    except Exception as exc:  # onnxruntime raises its own classes: a row of the report
        log.debug("%s cannot open a session", provider, exc_info=True)
        report.cases.append(CaseResult("open session", _name(provider), [], f"{_name(provider)} cannot open a session: {first_line(exc)}"))
        return
    for n in chunks:
        case = f"stream{label}: chunk {n} of {frames} steps, batch {batch}"
        try:
            got = stream(ort, spec, plain, feeds, time, n, batch)
        except Exception as exc:
            log.debug("%s on %s failed", case, name, exc_info=True)
            report.cases.append(CaseResult(case, name, [], f"onnxruntime failed: {first_line(exc)}"))
            continue
        yield case, name, got


def verify_stream(module, onnx_path, spec: IOSpec, *, providers, atol=None, rtol=None, cases: int = 0,
                  allow_ill_conditioned: bool = False, example: int | None = None) -> ParityReport:
    """`rnnedge verify` of a stream file: chunks of 1, 7 and 50 frames over 200 (batch 2), each check input streamed
    whole and in chunks, and `cases` more random batches; every provider."""
    options = dict(providers=providers, atol=atol, rtol=rtol, allow_ill_conditioned=allow_ill_conditioned, quick=False)
    report = check_chunked(module, onnx_path, spec, example=example, **options)
    for k, feeds in enumerate(getattr(spec, "check_feeds", None) or []):
        report.extend(check_chunked(module, onnx_path, spec, feeds=feeds, label=f" (check input #{k + 1})", **options))
    for k in range(cases):
        report.extend(check_chunked(module, onnx_path, spec, batch=1 + k % 3, seed=100 + k, label=f" (random #{k + 1})", **options))
    return report


def stream(ort, spec: IOSpec, plain: IOSpec, feeds: dict, time: str, n: int, batch: int) -> dict:
    """Feed `feeds` to the file in chunks of `n` frames along the time axis, states carried: {output: [chunk values]}."""
    states = carried(spec)
    state = {s["input"]: initial_state(s, batch) for s in states}
    total = next(int(feeds[t.name].shape[t.shape.index(time)]) for t in plain.inputs if time in t.shape)
    pieces: dict[str, list] = {}
    for start in range(0, total, n):
        chunk = {}
        for t in plain.inputs:
            if t.name in state:
                continue
            value = feeds[t.name]
            if time in t.shape:
                value = np.take(value, range(start, min(start + n, total)), axis=t.shape.index(time))
            elif t.role == "lengths":
                value = np.full_like(value, min(n, total - start))
            chunk[t.name] = value
        if plain.input("lengths") is not None:
            chunk[plain.input("lengths").name] = np.full_like(feeds[plain.input("lengths").name], min(n, total - start))
        out = ort.infer({**chunk, **state})
        state = {s["input"]: out[s["output"]] for s in states}
        for name in plain.outputs:
            pieces.setdefault(name, []).append(out[name])
    return pieces


def join(parts: list, whole: np.ndarray, axis: int | None = None) -> tuple[np.ndarray, int | None]:
    """(one output's chunk values as one, its time axis): joined along the axis where they add up to the whole's
    size; an output each chunk returns at the whole's shape (a last-step head) is the last chunk's (axis None).
    One part (the whole sequence in one call) keeps `axis`, the time axis found on chunked calls."""
    first = parts[0]
    if len(parts) == 1:
        return first, axis
    for a in range(whole.ndim):
        rest = whole.shape[:a] + whole.shape[a + 1:]
        if all(p.ndim == whole.ndim and p.shape[:a] + p.shape[a + 1:] == rest for p in parts) \
                and sum(p.shape[a] for p in parts) == whole.shape[a]:
            return np.concatenate(parts, axis=a), a
    return (parts[-1] if parts[-1].shape == whole.shape else first), None


def delayed(ref: dict, ref64: dict | None, joined: dict, lookahead: int):
    """With a declared lookahead N, stream frame i is whole frame i - N: (ref, ref64, streamed) cut to match."""
    if not lookahead:
        return ref, ref64, {k: v for k, (v, _) in joined.items()}
    r, r64, out = {}, ({} if ref64 is not None else None), {}
    for name, (value, axis) in joined.items():
        if axis is None:  # a per-sequence output of a delayed stream answers for frame T - 1 - N: not the whole's
            out[name], r[name] = value, ref[name]
        else:
            keep = range(value.shape[axis] - lookahead)
            out[name] = np.take(value, range(lookahead, value.shape[axis]), axis=axis)
            r[name] = np.take(ref[name], keep, axis=axis)
        if r64 is not None:
            r64[name] = ref64[name] if axis is None else np.take(ref64[name], range(value.shape[axis] - lookahead), axis=axis)
    return r, r64, out
