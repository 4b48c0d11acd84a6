"""The app-facing API: run exported recurrent models with onnxruntime, no torch needed.

    sess = Session("model.onnx")            # .onnx or .ort; providers="auto"
    logits = sess.run(x)                    # x: (B, T, F) float, (B, T) token ids, or a list
    stream = StreamingSession("stream.onnx")
    out = stream.step({"mic-1": chunk1, "mic-2": chunk2})   # one batched call, state carried

This module imports numpy, onnxruntime and the standard library only, so an app can ship it
without torch or onnx. It configures itself from the model's ``rnnedge.*`` metadata where
present and otherwise from the input/output signature alone (third-party models work).

Input rules (each broken rule is a one-line ``BadInputError``, raised before onnxruntime runs):
rank, feature size, dtype (float64 is cast to float32, int32 token ids to int64; anything else
is refused), an empty batch or a zero-length sequence, ``lengths`` of the wrong shape, negative
or past the sequence, token ids outside ``[0, vocab)``, and a fixed-shape (mobile) model fed
another batch or chunk size. **NaN and Inf** in float inputs (and states) are refused, never
propagated silently (values that overflow float32 on the cast count as Inf).

Long inputs: ``run`` takes any sequence length and is not capped; it holds the whole input and the
per-step activations, so memory grows linearly with the length (measured: 100,000 steps of a
hidden-8 GRU in 1.5 s, +15 MiB resident). For unbounded or live input use ``StreamingSession``,
which keeps only the recurrent state: flat memory (0 MiB growth from 10,000 to 100,000 steps) and
the same answer (tests/test_reliability.py).

Files: a missing, empty, damaged or foreign file (a checkpoint, an array file) is a one-line
``BadInputError``; a pickle of any kind (``torch.save`` files, numpy object arrays) or external data
outside the model's folder is an ``UnsafeFileError``. Nothing in a model file is ever executed.

GPU: on CUDA (or TensorRT) ``run`` goes through IOBinding (numpy in, outputs bound to the CPU),
and float16 models (``rnnedge quantize --mode fp16``) take float32 inputs, cast on the way in.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort

from rnnedge.errors import BadInputError, RnnEdgeError, UnsafeFileError

__all__ = ["Session", "StreamingSession", "IOSpec", "select_providers", "uses_iobinding", "PROVIDER_ALIASES"]

log = logging.getLogger(__name__)

PROVIDER_ALIASES = {  # short name -> onnxruntime execution provider
    "cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider", "coreml": "CoreMLExecutionProvider",
    "nnapi": "NnapiExecutionProvider", "xnnpack": "XnnpackExecutionProvider",
    "qnn": "QNNExecutionProvider", "dml": "DmlExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
}
_AUTO_ORDER = ["tensorrt", "cuda", "coreml", "nnapi", "xnnpack", "qnn"]  # then CPU
_CPU = PROVIDER_ALIASES["cpu"]
_MAX_BYTES = 2 * 1024**3  # the protobuf limit; rnnedge models are one self-contained file below it
_STATE_OUT = {"h0": "hn", "c0": "cn"}  # state input -> the output that carries it to the next call
_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64,
               "tensor(float16)": np.float16, "tensor(int64)": np.int64,
               "tensor(int32)": np.int32, "tensor(int8)": np.int8, "tensor(uint8)": np.uint8,
               "tensor(bool)": np.bool_}
_TOKEN_KINDS = {np.dtype(t) for t in (np.int8, np.int16, np.int32, np.int64,
                                      np.uint8, np.uint16, np.uint32)}


def _canonical(name: str, available: Sequence[str]) -> str:
    """'cuda' / 'CUDA' / 'CUDAExecutionProvider' -> 'CUDAExecutionProvider'; unknown -> error.

    Full names of other providers this onnxruntime has (e.g. 'AzureExecutionProvider') pass too.
    """
    if not isinstance(name, str):
        raise BadInputError(f"provider must be a string, got {type(name).__name__}")
    key = name.strip().lower()
    if key in PROVIDER_ALIASES:
        return PROVIDER_ALIASES[key]
    for full in [*PROVIDER_ALIASES.values(), *available]:
        if key == full.lower():
            return full
    raise BadInputError(f"unknown provider {name!r}; expected 'auto' or one of: "
                        + ", ".join(PROVIDER_ALIASES))


def select_providers(requested: str | Sequence[str] | None, available: Sequence[str]) -> list[str]:
    """Choose execution providers, best first, always ending with CPU as the fallback.

    ``"auto"`` (or None) takes TensorRT, CUDA, CoreML, NNAPI, XNNPACK and QNN, in that order,
    where ``available`` has them. One explicit name (short like ``"cuda"`` or full like
    ``"CUDAExecutionProvider"``) must be available. In a list, unavailable names are skipped
    (logged) as long as one remains. Pure: pass ``ort.get_available_providers()`` as ``available``.
    """
    avail = list(available)
    if not (requested is None or isinstance(requested, str) or (
            isinstance(requested, Sequence) and not isinstance(requested, (bytes, bytearray)))):
        raise BadInputError(f"providers must be 'auto', a name or a list of names, got {type(requested).__name__}")
    if requested is None or (isinstance(requested, str) and requested.strip().lower() == "auto"):
        chosen = [PROVIDER_ALIASES[k] for k in _AUTO_ORDER if PROVIDER_ALIASES[k] in avail]
    elif isinstance(requested, str):
        chosen = [_canonical(requested, avail)]
        if chosen[0] not in avail and chosen[0] != _CPU:
            raise BadInputError(f"provider {requested!r} is not available in this onnxruntime; "
                                f"available: {', '.join(avail) or 'none'}")
    else:
        wanted = [_canonical(p, avail) for p in requested]
        if not wanted:
            raise BadInputError("empty provider list; pass 'auto' or at least one provider")
        chosen = [p for p in wanted if p in avail or p == _CPU]
        for p in wanted:
            if p not in chosen:
                log.warning("provider %s is not available; skipping it", p)
        if not chosen:
            raise BadInputError(f"none of the providers {', '.join(wanted)} is available; "
                                f"available: {', '.join(avail) or 'none'}")
    chosen = list(dict.fromkeys(chosen))
    return chosen if _CPU in chosen else chosen + [_CPU]


def uses_iobinding(providers: Sequence[str]) -> bool:
    """True when a session on ``providers`` (as onnxruntime reports them) should run through
    IOBinding: inputs bound from numpy, outputs copied back to the CPU, which saves a device round
    trip per output on CUDA. Pure: pass ``session.providers`` or a fake list."""
    return bool(providers) and providers[0] in ("CUDAExecutionProvider", "TensorrtExecutionProvider")


@dataclass(frozen=True)
class IOSpec:
    """One model input or output: name, numpy dtype, shape (ints, symbolic names, or None)."""

    name: str
    dtype: Any
    shape: tuple


def _ort_error(what: str, err: Exception) -> RnnEdgeError:
    """Turn an onnxruntime exception into one readable line of the right class."""
    msg = " ".join(str(err).split()) or type(err).__name__
    msg = msg.split("] : ", 1)[-1] if msg.startswith("[ONNXRuntimeError]") else msg
    if "external data" in msg.lower() and ("escape" in msg or "outside" in msg or "Absolute path" in msg):
        return UnsafeFileError(f"{what}: unsafe external data: {msg}")
    kind = type(err).__name__
    cls = BadInputError if kind in ("InvalidArgument", "InvalidProtobuf", "NoSuchFile", "InvalidGraph",
                                    "NotImplemented", "Fail") else RnnEdgeError
    return cls(f"{what}: {msg}")


def _check_path(path: str | os.PathLike) -> str:
    """Refuse missing, directory, empty and oversized model files before onnxruntime sees them."""
    try:
        p = os.fsdecode(path)  # bytes too: onnxruntime would read bytes as a serialised model, not a path
    except TypeError:
        raise BadInputError(f"model path must be a str or os.PathLike, got {type(path).__name__}") from None
    if not os.path.exists(p):
        raise BadInputError(f"model file not found: {p}")
    if os.path.isdir(p):
        raise BadInputError(f"model path is a directory, expected an .onnx or .ort file: {p}")
    size = os.path.getsize(p)
    if size == 0:
        raise BadInputError(f"model file is empty: {p}")
    if size > _MAX_BYTES:
        raise BadInputError(f"model file is {size} bytes, over the 2 GB limit: {p}")
    try:
        with open(p, "rb") as fh:
            head = fh.read(16)
            fh.seek(-1, os.SEEK_END)
            last = fh.read(1)
    except OSError as err:
        raise BadInputError(f"cannot read model file {p}: {err.strerror or err}") from None
    _refuse_foreign(p, head, last)
    return p


def _refuse_foreign(p: str, head: bytes, last: bytes) -> None:
    """Pickles (torch.save files included) are unsafe; a checkpoint or an array file is not a model."""
    import zipfile

    protocol_2_plus = head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")
    protocol_0_1 = head[:1] in (b"(", b"]", b"}", b"c") and last == b"."  # opener ... STOP
    if protocol_2_plus or protocol_0_1:
        raise UnsafeFileError(f"{p}: a pickle, refused: rnnedge never unpickles (expected an .onnx or .ort model)")
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        try:
            with zipfile.ZipFile(p) as z:
                pickled = any(n.endswith(".pkl") or (n.endswith(".npy") and _npy_objects(z.open(n).read(65536)))
                              for n in z.namelist())
        except Exception:  # a damaged zip is no model either
            pickled = False
        if pickled:
            raise UnsafeFileError(f"{p}: a zip of pickles (torch.save, or .npz of objects), refused: rnnedge "
                                  "never unpickles (expected an .onnx or .ort model)")
        raise BadInputError(f"{p}: a zip archive (.npz?), not a model: expected an .onnx or .ort file")
    if head.startswith(b"\x93NUMPY"):
        with open(p, "rb") as fh:
            if _npy_objects(fh.read(65536)):
                raise UnsafeFileError(f"{p}: a .npy of pickled objects, refused: rnnedge never unpickles "
                                      "(expected an .onnx or .ort model)")
        raise BadInputError(f"{p}: a .npy array file, not a model: expected an .onnx or .ort file")
    if len(head) >= 9 and head[8:10] == b'{"':
        raise BadInputError(f"{p}: a safetensors checkpoint, not a model: export it first (rnnedge export)")


def _npy_objects(raw: bytes) -> bool:
    """An .npy header whose dtype (or a field of it) is Python objects, which numpy stores as pickles."""
    if not raw.startswith(b"\x93NUMPY") or len(raw) < 10:
        return False
    start, size = (10, int.from_bytes(raw[8:10], "little")) if raw[6:7] == b"\x01" else (
        12, int.from_bytes(raw[8:12], "little"))
    return b"|O" in raw[start: start + size]


def _spec(arg) -> IOSpec:
    shape = tuple(d if isinstance(d, (int, str)) or d is None else str(d) for d in (arg.shape or ()))
    known = _ORT_DTYPES.get(arg.type)
    return IOSpec(arg.name, np.dtype(known) if known else arg.type, shape)


def _fixed(dim) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None


class Session:
    """An onnxruntime session for one exported model, with checked inputs.

    ``providers``: ``"auto"``, one name, or a list (see ``select_providers``). ``threads``:
    intra-op threads (None: onnxruntime's default). ``run`` may be called from many threads
    at once: the session keeps no mutable state besides the lazily cached ``node_placement``.
    """

    def __init__(self, path: str | os.PathLike, providers: str | Sequence[str] | None = "auto",
                 threads: int | None = None):
        self.path = _check_path(path)
        self._wanted = select_providers(providers, ort.get_available_providers())
        if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool)
                                    or threads < 1):
            raise BadInputError(f"threads must be a positive integer or None, got {threads!r}")
        self._threads = threads
        self._sess = self._open(profile_dir=None)
        self._placement: dict[str, int] | None = None
        self._lock = threading.Lock()
        try:
            self.inputs = tuple(_spec(a) for a in self._sess.get_inputs())
            self.outputs = tuple(_spec(a) for a in self._sess.get_outputs())
            self.metadata: dict[str, str] = dict(self._sess.get_modelmeta().custom_metadata_map)
        except Exception as err:  # e.g. names or metadata strings that are not UTF-8 (a damaged file)
            raise BadInputError(f"{self.path}: unreadable model signature or metadata "
                                f"({type(err).__name__}); is the file damaged?") from None
        if not self.outputs:
            raise BadInputError(f"{self.path}: the model has no outputs")
        self.config = self._json_meta("rnnedge.config", dict)
        self.labels = self._json_meta("rnnedge.labels", list)
        names = [s.name for s in self.inputs]
        self._by_name = {s.name: s for s in self.inputs}
        others = [s for s in self.inputs if s.name not in ("lengths", *_STATE_OUT)]
        main = [s for s in others if s.name in ("x", "tokens")] or others
        if not main:
            raise BadInputError(f"{self.path}: no data input found among inputs {names}")
        self._main = main[0]
        self.input_name = self._main.name  # the data input: "x", "tokens", or a third-party name
        self.iobinding = uses_iobinding(self.providers)  # CUDA: bind numpy in, CPU out
        outs = [s.name for s in self.outputs]
        self.output_name = next((n for n in ("logits", "y") if n in outs),
                                next((n for n in outs if n not in _STATE_OUT.values()), outs[0]))
        self.is_tokens = not isinstance(self._main.dtype, str) and np.dtype(self._main.dtype).kind in "iu"
        self.has_lengths = "lengths" in names
        self.state_names = tuple(n for n in _STATE_OUT if n in names)
        self.is_streaming = "h0" in names
        shape = self._main.shape
        self.fixed_batch = _fixed(shape[0]) if len(shape) > 0 else None
        self.chunk = _fixed(shape[1]) if len(shape) > 1 else None
        cfg = self.config or {}
        self.vocab = int(cfg["input_size"]) if self.is_tokens and isinstance(
            cfg.get("input_size"), int) else None
        self.target = self.metadata.get("rnnedge.target") or (
            "dynamic" if not self.is_streaming else "mobile" if self.chunk else "stream")
        log.info("loaded %s on %s (target %s)", self.path, ", ".join(self.providers), self.target)

    def _open(self, profile_dir: str | None) -> ort.InferenceSession:
        opts = ort.SessionOptions()
        # onnxruntime logs straight to stderr (a damaged file can print several lines); what it raises says the
        # same in our one line, so its log shows only with debug logging
        opts.log_severity_level = 2 if log.isEnabledFor(logging.DEBUG) else 4
        if self._threads is not None:
            opts.intra_op_num_threads = self._threads
        if profile_dir is not None:
            opts.enable_profiling = True
            opts.profile_file_prefix = os.path.join(profile_dir, "rnnedge")
        try:  # no onnxruntime fallback: it prints to stdout (breaking --json) and retries a broken file
            return ort.InferenceSession(self.path, opts, providers=self._wanted, enable_fallback=0)
        except Exception as err:  # onnxruntime raises its own pybind classes
            first = err
        if self._wanted != [_CPU]:  # an accelerator that failed to start: say so, then CPU alone
            log.warning("providers %s failed (%s); retrying on CPU only", self._wanted, " ".join(str(first).split())[:200])
            try:
                return ort.InferenceSession(self.path, opts, providers=[_CPU], enable_fallback=0)
            except Exception as err:
                first = err
        raise _ort_error(f"cannot load model {self.path}", first) from first

    def _json_meta(self, key: str, kind: type):
        raw = self.metadata.get(key)
        if raw is None:
            return None
        try:
            value = json.loads(raw)
        except ValueError:  # malformed JSON: treat like a missing key, but say so
            value = None
        if not isinstance(value, kind):
            log.warning("ignoring malformed metadata %s in %s", key, self.path)
            return None
        return value

    @property
    def providers(self) -> list[str]:
        """The execution providers onnxruntime actually uses for this session."""
        return list(self._sess.get_providers())

    def node_placement(self) -> dict[str, int]:
        """How many graph nodes each execution provider runs, e.g. ``{"CPUExecutionProvider": 7}``.

        Measured, not guessed: a second session with profiling on runs one inference on zero
        inputs (batch 1, one step or the fixed chunk), and the profile's node events
        (``args.provider``) are counted per distinct node. Counts are of the optimised graph
        onnxruntime runs (after fusions), including nodes inside loop bodies. Cached.
        """
        with self._lock:
            if self._placement is None:
                with tempfile.TemporaryDirectory(prefix="rnnedge-prof-") as tmp:
                    sess = self._open(profile_dir=tmp)
                    try:
                        sess.run(None, self._dummy_feeds())
                    except Exception as err:
                        raise _ort_error("profiling run failed", err) from err
                    with open(sess.end_profiling(), encoding="utf-8", errors="replace") as fh:  # damaged names
                        events = json.load(fh)
                nodes: dict[str, str] = {}
                for ev in events:
                    if ev.get("cat") == "Node" and "provider" in ev.get("args", {}):
                        nodes[ev["name"].removesuffix("_kernel_time")] = ev["args"]["provider"]
                self._placement = {}
                for prov in nodes.values():
                    self._placement[prov] = self._placement.get(prov, 0) + 1
            return dict(self._placement)

    def _dummy_feeds(self) -> dict[str, np.ndarray]:
        feeds = {}
        for s in self.inputs:
            shape = [d if isinstance(d, int) and d > 0 else 1 for d in s.shape]
            feeds[s.name] = np.zeros(shape, dtype=s.dtype if not isinstance(s.dtype, str) else np.float32)
        if self.has_lengths:
            seq = self.chunk or 1
            feeds["lengths"] = np.full(feeds["lengths"].shape, seq, dtype=np.int64)
        return feeds

    # ---- running -------------------------------------------------------------------------

    def run(self, x, lengths=None) -> np.ndarray:
        """Run the model and return its main output (``logits`` or ``y``) as numpy.

        ``x``: an array ``(B, T, F)`` (``(B, T)`` token ids for token models) with optional
        ``lengths`` ``(B,)``; or a list of ``(T_i, F)`` / ``(T_i,)`` sequences, padded to the
        longest and batched with ``lengths`` (needs a model with a ``lengths`` input unless all
        have equal length). Streaming models start from a zero state here.
        """
        x, lengths = self._batch(x, lengths)
        feeds = {self._main.name: x}
        if lengths is not None:
            feeds["lengths"] = lengths
        return self._infer(self._check_feeds(feeds), [self.output_name])[self.output_name]

    __call__ = run

    def run_all(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Run with named inputs (checked like ``run``) and return every output by name.

        Missing ``lengths`` defaults to the full sequence, missing ``h0``/``c0`` to zeros.
        """
        if not isinstance(feeds, Mapping):
            raise BadInputError(f"feeds must be a dict of input name -> array, got {type(feeds).__name__}")
        return self._infer(self._check_feeds(dict(feeds)), None)

    def _infer(self, feeds: dict, names: list[str] | None) -> dict[str, np.ndarray]:
        names = names or [s.name for s in self.outputs]
        try:
            values = self._run_bound(names, feeds) if self.iobinding else self._sess.run(names, feeds)
        except Exception as err:
            raise _ort_error("inference failed", err) from err
        return dict(zip(names, values))

    def _run_bound(self, names: list[str], feeds: dict) -> list[np.ndarray]:
        """One run through IOBinding (a fresh binding per call, so threads do not share one)."""
        binding = self._sess.io_binding()
        for name, arr in feeds.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(arr))
        for name in names:
            binding.bind_output(name, "cpu")
        self._sess.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()

    def _batch(self, x, lengths):
        """A list of variable-length sequences -> (padded batch, lengths); arrays pass through."""
        if not isinstance(x, (list, tuple)):
            return x, lengths
        if lengths is not None:
            raise BadInputError("lengths is computed from a list of sequences; do not pass it too")
        if not x:
            raise BadInputError("empty batch: got an empty list of sequences")
        rank = len(self._main.shape) - 1
        rows = []
        for i, row in enumerate(x):
            row = self._coerce(row, f"sequence {i}")
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
        return out, lens

    def _coerce(self, a, what: str, spec: IOSpec | None = None) -> np.ndarray:
        """Convert to an array of the input's dtype; refuse dtypes that would change meaning."""
        spec = spec or self._main
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

    def _check_feeds(self, feeds: dict) -> dict[str, np.ndarray]:
        """Validate and complete a feed dict; every problem is one BadInputError line."""
        unknown = set(feeds) - set(self._by_name) - {"lengths"}  # lengths is checked below
        if unknown:
            raise BadInputError(f"unknown input(s) {sorted(unknown)}; model inputs: {list(self._by_name)}")
        main = self._main
        if main.name not in feeds:
            raise BadInputError(f"missing input {main.name!r}")
        x = self._coerce(feeds[main.name], f"input {main.name!r}")
        if x.ndim != len(main.shape):
            raise BadInputError(f"input {main.name!r} has rank {x.ndim} {x.shape}; expected rank "
                                f"{len(main.shape)} {main.shape}")
        if x.ndim >= 1 and x.shape[0] == 0:
            raise BadInputError(f"empty batch: input {main.name!r} has shape {x.shape}")
        if x.ndim >= 2 and x.shape[1] == 0:
            raise BadInputError(f"zero-length sequence: input {main.name!r} has shape {x.shape}")
        self._check_static(x, main)
        self._check_values(x, main.name)
        feeds[main.name] = x
        batch = x.shape[0] if x.ndim else 1
        seq = x.shape[1] if x.ndim >= 2 else None
        self._check_lengths(feeds, batch, seq)
        for s in self.inputs:
            if s.name == main.name or s.name == "lengths":
                continue
            if s.name not in feeds and s.name in _STATE_OUT:
                shape = [d if isinstance(d, int) else batch if i == 1 else None
                         for i, d in enumerate(s.shape)]
                if len(shape) != 3 or None in shape:
                    raise BadInputError(f"cannot size a zero {s.name!r} from shape {s.shape}; pass it")
                feeds[s.name] = np.zeros(shape, dtype=s.dtype)
            elif s.name not in feeds:
                raise BadInputError(f"missing input {s.name!r} {s.shape}")
            arr = self._coerce(feeds[s.name], f"input {s.name!r}", s)
            if arr.ndim != len(s.shape) or (s.name in _STATE_OUT and arr.shape[1] != batch):
                raise BadInputError(f"input {s.name!r} has shape {arr.shape}; expected {s.shape} "
                                    f"with batch {batch}")
            self._check_static(arr, s)
            self._check_values(arr, s.name)
            feeds[s.name] = arr
        return feeds

    def _check_static(self, arr: np.ndarray, spec: IOSpec) -> None:
        cfg_features = (self.config or {}).get("input_size") if spec is self._main else None
        for axis, (got, want) in enumerate(zip(arr.shape, spec.shape)):
            if spec is self._main and axis == 2 and not isinstance(want, int):
                want = cfg_features if isinstance(cfg_features, int) and not self.is_tokens else want
            if isinstance(want, int) and want > 0 and got != want:
                if spec is self._main and axis < 2 and self.is_streaming:  # a mobile chunk model
                    raise BadInputError(
                        f"this fixed-shape model takes {spec.name!r} of batch {spec.shape[0]} and "
                        f"{spec.shape[1]} steps, got {arr.shape}; use StreamingSession to feed "
                        f"longer sequences in chunks of {spec.shape[1]}")
                what = {0: "batch", 1: "sequence length", 2: "feature size"}.get(axis, f"dim {axis}") \
                    if spec is self._main else f"dim {axis}"
                raise BadInputError(f"input {spec.name!r} has {what} {got} (shape {arr.shape}); "
                                    f"the model expects {want} (shape {spec.shape})")

    def _check_values(self, arr: np.ndarray, name: str) -> None:
        if arr.dtype.kind == "f" and arr.size and not np.isfinite(arr).all():
            raise BadInputError(f"input {name!r} contains NaN or Inf; refused (clean the data first)")
        if name == self._main.name and self.is_tokens and arr.size:
            lo, hi = int(arr.min()), int(arr.max())
            if lo < 0 or (self.vocab is not None and hi >= self.vocab):
                raise BadInputError(f"token ids must be in [0, {self.vocab or 'vocab'}); "
                                    f"got values in [{lo}, {hi}]")

    def _check_lengths(self, feeds: dict, batch: int, seq: int | None) -> None:
        lengths = feeds.pop("lengths", None)
        if lengths is None:
            if self.has_lengths:
                feeds["lengths"] = np.full((batch,), seq or 1, dtype=np.int64)
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
        if self.has_lengths:
            feeds["lengths"] = lengths.astype(np.int64)
        elif seq is not None and (lengths != seq).any():
            raise BadInputError(f"rows have different lengths ({int(lengths.min())}..{int(lengths.max())}) "
                                "but this model has no 'lengths' input: pass equal-length sequences")


class StreamingSession:
    """Carry recurrent state across calls for many concurrent streams of one streaming model.

    The model needs an ``h0`` input (``--target stream`` or ``mobile``); bidirectional models
    cannot stream. ``step`` runs every given stream in one batched call (states stacked along
    the batch axis, uneven chunks padded with ``lengths``). Fixed-shape (mobile) models take
    multiples of ``chunk`` steps per stream, run in groups of the model's fixed batch. Only the
    states are kept, so memory stays flat however long the streams run. ``step`` is serialised
    with a lock, so streams may be fed from several threads.
    """

    DEFAULT = "default"

    def __init__(self, path_or_session: str | os.PathLike | Session,
                 providers: str | Sequence[str] | None = "auto", threads: int | None = None):
        s = path_or_session if isinstance(path_or_session, Session) else Session(
            path_or_session, providers=providers, threads=threads)
        if not s.is_streaming:
            raise BadInputError(f"{s.path} has no 'h0' input: export it with --target stream to stream")
        if (s.config or {}).get("bidirectional"):
            raise BadInputError(f"{s.path} is bidirectional; bidirectional models cannot stream")
        self.session = s
        self._state_specs = {n: s._by_name[n] for n in s.state_names}
        missing = [_STATE_OUT[n] for n in s.state_names if _STATE_OUT[n] not in [o.name for o in s.outputs]]
        if missing:
            raise BadInputError(f"{s.path} takes {list(s.state_names)} but does not return {missing}")
        for name, spec in self._state_specs.items():
            if len(spec.shape) != 3 or not (_fixed(spec.shape[0]) and _fixed(spec.shape[2])):
                raise BadInputError(f"state input {name!r} needs static layers and hidden dims, "
                                    f"got shape {spec.shape}")
        out = next(o for o in s.outputs if o.name == s.output_name).shape
        seq_dim = s._main.shape[1] if len(s._main.shape) > 1 else None
        self._per_step = len(out) >= 3 or (len(out) == 2 and isinstance(out[1], str) and out[1] == seq_dim)
        self._states: dict[Hashable, dict[str, np.ndarray]] = {}  # stream -> name -> (L*D, H)
        self._lock = threading.Lock()

    @property
    def streams(self) -> list:
        """The ids of the streams that hold state."""
        with self._lock:
            return list(self._states)

    def _zeros(self) -> dict[str, np.ndarray]:
        return {n: np.zeros((sp.shape[0], sp.shape[2]), dtype=sp.dtype)
                for n, sp in self._state_specs.items()}

    def reset(self, stream_id: Hashable = DEFAULT) -> None:
        """Set one stream's state back to zeros; the other streams are untouched."""
        with self._lock:
            self._states[stream_id] = self._zeros()

    def close(self, stream_id: Hashable = DEFAULT) -> None:
        """Forget one stream entirely."""
        with self._lock:
            if self._states.pop(stream_id, None) is None:
                raise BadInputError(f"no stream {stream_id!r}; open streams: {list(self._states)}")

    def feed(self, x) -> np.ndarray:
        """Step the single default stream with ``x`` (``(T, F)`` features or ``(T,)`` tokens)."""
        return self.step({self.DEFAULT: x})[self.DEFAULT]

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
            if s.chunk and len(x) % s.chunk:
                raise BadInputError(f"stream {sid!r}: {len(x)} steps is not a multiple of this "
                                    f"model's fixed chunk of {s.chunk}; buffer the remaining "
                                    f"{len(x) % s.chunk} steps for the next call")
            n = s.chunk or len(x)
            pieces[sid] = [x[i: i + n] for i in range(0, len(x), n)]
        with self._lock:
            states = {sid: self._states.get(sid) or self._zeros() for sid in pieces}
            outs: dict[Hashable, list[np.ndarray]] = {sid: [] for sid in pieces}
            for k in range(max((len(p) for p in pieces.values()), default=0)):
                active = [sid for sid in pieces if k < len(pieces[sid])]
                group = s.fixed_batch or len(active)
                for g in range(0, len(active), group):
                    ids = active[g: g + group]
                    self._run_group(ids, [pieces[sid][k] for sid in ids], group, states, outs)
            self._states.update(states)  # commit only when every call succeeded
        return {sid: np.concatenate(o, axis=0) if self._per_step else o[-1] for sid, o in outs.items()}

    def _run_group(self, ids, xs, group, states, outs) -> None:
        """One batched call for streams ``ids``; pads the batch to ``group`` rows if fixed."""
        s = self.session
        rows = xs + [np.zeros_like(xs[0])] * (group - len(xs)) if s.fixed_batch else xs
        x, lens = s._batch(rows, None)
        feeds = {s._main.name: x, "lengths": lens}
        zero = self._zeros()
        for name in self._state_specs:  # (L*D, H) per stream -> (L*D, B, H)
            feeds[name] = np.stack([states[i][name] for i in ids]
                                   + [zero[name]] * (len(rows) - len(ids)), axis=1)
        wanted = [s.output_name] + [_STATE_OUT[n] for n in self._state_specs]
        result = s._infer(s._check_feeds(feeds), wanted)
        y = result[s.output_name]  # (B, T, C) per step, or (B, C) per sequence
        for row, sid in enumerate(ids):
            out = y[row, : len(xs[row])] if self._per_step else y[row]
            outs[sid].append(np.array(out))
            states[sid] = {n: np.array(result[_STATE_OUT[n]][:, row]) for n in self._state_specs}
