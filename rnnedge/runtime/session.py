"""``Session``: one exported model in onnxruntime, with checked inputs (numpy and onnxruntime only)."""
from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np
import onnxruntime as ort

from rnnedge.errors import BadInputError
from rnnedge.runtime import inputs, known_wrong
from rnnedge.runtime.bound import BoundCall
from rnnedge.runtime.checks import check_model_path
from rnnedge.runtime.providers import open_session, ort_error, provider_entries, session_options, uses_iobinding
from rnnedge.runtime.signature import TensorInfo, find_roles, json_metadata, tensor_info

__all__ = ["Session"]

log = logging.getLogger(__name__)
FAST_SHAPES = 8  # input shapes per thread kept pre-bound by Session.run (others take the checked path)


def values_ok(sess, x: np.ndarray) -> bool:
    """The per-call value checks of the fast path: floats finite (one reduction), token ids in [0, vocab)."""
    if x.dtype.kind == "f":
        return math.isfinite(np.add.reduce(x, None))  # NaN/Inf (or a sum past float range) -> the checked path decides
    if sess.is_tokens and x.size:
        return int(x.min()) >= 0 and (sess.vocab is None or int(x.max()) < sess.vocab)
    return True


def _fixed(dim) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None


def time_axis(shape, target: str | None) -> int:
    """The main input's time axis: 1, or for a stream file whose axis 1 is fixed (channels first, ``(B, F, T)``) its
    first symbolic axis after that."""
    if target == "stream" and len(shape) >= 3 and _fixed(shape[1]):
        return next((i for i in range(2, len(shape)) if isinstance(shape[i], str)), 1)
    return 1


class Session:
    """An onnxruntime session for one exported model, with checked inputs.

    ``providers``: ``"auto"``, one name, or names and ``(name, {option: value})`` pairs as onnxruntime takes
    them (see ``provider_entries``). ``threads``: intra-op threads (None: onnxruntime's default). A provider
    known to be wrong for this file (``rnnedge.runtime.known_wrong``) is warned about at open, and the calls
    it would get wrong are refused. ``run`` may be called from many threads at once: the session keeps no
    mutable state besides the lazily cached ``node_placement``.
    """

    def __init__(self, path: str | os.PathLike, providers="auto", threads: int | None = None):
        self.path = check_model_path(path)
        self._wanted = provider_entries(providers, ort.get_available_providers())
        session_options(threads=threads)  # refuses a bad thread count before the file is opened
        self._threads = threads
        self._sess = self._open(profile_dir=None)
        self._placement: dict[str, int] | None = None
        self._lock = threading.Lock()
        self._local = threading.local()  # per thread: pre-bound calls of the fast path (rnnedge.runtime.bound)
        self._read_signature()
        self.known_wrong = known_wrong.findings(self.path, self.providers, self.inputs, self.metadata, self.lengths_name)
        for finding in self.known_wrong:
            if not finding.guarded:
                raise BadInputError(f"refused: {finding.message(self.path)}")
            log.warning("%s; rnnedge.runtime refuses calls with rows shorter than the sequence", finding.message(self.path))
        self.iobinding = uses_iobinding(self.providers)  # CUDA: bind numpy in, CPU out
        log.info("loaded %s on %s (target %s)", self.path, ", ".join(self.providers), self.target)

    def _read_signature(self) -> None:
        """Inputs, outputs, metadata and what follows from them (roles, fixed sizes, target)."""
        try:
            self.inputs: tuple[TensorInfo, ...] = tuple(tensor_info(a) for a in self._sess.get_inputs())
            self.outputs: tuple[TensorInfo, ...] = tuple(tensor_info(a) for a in self._sess.get_outputs())
            self.metadata: dict[str, str] = dict(self._sess.get_modelmeta().custom_metadata_map)
        except Exception as err:  # e.g. names or metadata strings that are not UTF-8 (a damaged file)
            raise BadInputError(f"{self.path}: unreadable model signature or metadata "
                                f"({type(err).__name__}); is the file damaged?") from None
        roles = find_roles(self.inputs, self.outputs, self.metadata, self.path)
        self.config = json_metadata(self.metadata, "rnnedge.config", dict, self.path)
        self.labels = json_metadata(self.metadata, "rnnedge.labels", list, self.path)
        names = [s.name for s in self.inputs]
        self._by_name = {s.name: s for s in self.inputs}
        self._main = roles.main
        self.input_name = self._main.name  # the data input: "x", "tokens", or a third-party name
        self.output_name = roles.output_name
        self.is_tokens = not isinstance(self._main.dtype, str) and np.dtype(self._main.dtype).kind in "iu"
        self.lengths_name = roles.lengths_name or "lengths"  # fed as "lengths" too (Session.run's lengths=)
        self.has_lengths = self.lengths_name in names
        self.state_names = roles.state_names
        self.state_pairs = roles.pairs  # StatePair per carried state (the spec's, or h0/c0 by name)
        self.is_streaming = bool(self.state_pairs)
        declared = json_metadata(self.metadata, "rnnedge.spec", dict, self.path) or {}
        self.stride = int(declared.get("stride", 1) or 1)  # stream chunks: a multiple of this many steps
        self.lookahead = int(declared.get("lookahead", 0) or 0)  # stream output i is the whole sequence's output i - lookahead
        shape = self._main.shape
        self.fixed_batch = _fixed(shape[0]) if len(shape) > 0 else None
        self.time_axis = time_axis(shape, self.metadata.get("rnnedge.target"))  # (B, T, F): 1; (B, F, T) stream: 2
        self.chunk = _fixed(shape[self.time_axis]) if len(shape) > 1 else None
        cfg = self.config or {}
        self.vocab = int(cfg["input_size"]) if self.is_tokens and isinstance(cfg.get("input_size"), int) else None
        self.target = self.metadata.get("rnnedge.target") or (
            "dynamic" if not self.is_streaming else "mobile" if self.chunk else "stream")

    def _open(self, profile_dir: str | None) -> ort.InferenceSession:
        opts = None
        if profile_dir is not None:
            opts = ort.SessionOptions()
            opts.enable_profiling = True
            opts.profile_file_prefix = os.path.join(profile_dir, "rnnedge")
        return open_session(self.path, providers=self._wanted, threads=self._threads, options=opts)

    @property
    def providers(self) -> list[str]:
        """The execution providers onnxruntime actually uses for this session."""
        return list(self._sess.get_providers())

    @property
    def provider_options(self) -> dict[str, dict[str, str]]:
        """The options of each provider in use, as onnxruntime reports them (``get_provider_options``)."""
        return dict(self._sess.get_provider_options())

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
                    except Exception as err:  # onnxruntime raises its own pybind classes
                        raise ort_error("profiling run failed", err) from err
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
            feeds[self.lengths_name] = np.full(feeds[self.lengths_name].shape, seq, dtype=feeds[self.lengths_name].dtype)
        return feeds

    # ---- running -------------------------------------------------------------------------

    def run(self, x, lengths=None) -> np.ndarray:
        """Run the model and return its main output (``logits`` or ``y``) as numpy.

        ``x``: an array ``(B, T, F)`` (``(B, T)`` token ids for token models) with optional
        ``lengths`` ``(B,)``; a list of ``(T_i, F)`` / ``(T_i,)`` sequences, padded to the
        longest and batched with ``lengths`` (sequences of equal length are stacked for a model
        without a ``lengths`` input; different lengths need one: a ``BadInputError`` says so); or a
        dict of input name -> array, as onnxruntime takes it (missing ``lengths`` is the full
        length, missing states are zeros; other missing or unknown names are a ``BadInputError``).
        Streaming models start from a zero state here.
        """
        if isinstance(x, Mapping):
            if lengths is not None:
                raise BadInputError("with a dict of inputs, pass lengths in it ('lengths': ...), not as an argument")
            return self._infer(self._check_feeds(dict(x)), [self.output_name])[self.output_name]
        if lengths is None and type(x) is np.ndarray:
            fast = self._fast_run(x)
            if fast is not None:
                return fast
        x, lengths = self._batch(x, lengths)
        feeds = {self._main.name: x}
        if lengths is not None:
            feeds["lengths"] = lengths
        return self._infer(self._check_feeds(feeds), [self.output_name])[self.output_name]

    __call__ = run

    def _fast_run(self, x: np.ndarray) -> np.ndarray | None:
        """The pre-bound path for an array of the input's own dtype: every check runs on a shape's first call, the
        value checks (finite floats, token ids in range) on every call; None sends the call down the checked path."""
        if self.iobinding or x.dtype != self._main_dtype:
            return None
        cache = self._local.__dict__.setdefault("bound", {})
        call = cache.get(x.shape)
        if call is None:
            if len(cache) >= FAST_SHAPES:
                return None
            feeds = self._check_feeds({self._main.name: x})  # every check, once for this shape
            try:
                call = cache[x.shape] = BoundCall(self._sess, feeds, [self.output_name])
            except Exception as err:  # onnxruntime raises its own pybind classes
                raise ort_error("inference failed", err) from err
        elif not values_ok(self, x):
            return None  # the checked path says what is wrong
        np.copyto(call.inputs[self._main.name], x)
        try:
            call.run()
        except Exception as err:
            raise ort_error("inference failed", err) from err
        return call.outputs[self.output_name].copy()

    @property
    def _main_dtype(self):
        return None if isinstance(self._main.dtype, str) else np.dtype(self._main.dtype)

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
        except Exception as err:  # onnxruntime raises its own pybind classes
            raise ort_error("inference failed", err) from err
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

    # ---- input checks (rnnedge.runtime.inputs) ---------------------------------------------

    def _batch(self, x, lengths):
        """A list of variable-length sequences -> (padded batch, lengths); arrays pass through."""
        return inputs.batch_sequences(self, x, lengths)

    def _check_feeds(self, feeds: dict) -> dict[str, np.ndarray]:
        """Validate and complete a feed dict; every problem is one BadInputError line."""
        return inputs.check_feeds(self, feeds)
