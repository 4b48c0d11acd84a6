"""THE onnxruntime session factory and provider policy (numpy and onnxruntime only, never torch).

    providers = select_providers("auto")          # best available first, CPU always last
    session = open_session("model.onnx", providers="cuda", threads=1)

Every onnxruntime session rnnedge opens (runtime, parity, quantize, mobile, bench, describe) comes from
``open_session``: onnxruntime's own log is quiet unless rnnedge logs at DEBUG (a damaged file makes it
print several lines that the one-line error already says), its silent provider fallback is off (it
prints to stdout, breaking ``--json``), and a requested accelerator that fails to start is retried on
CPU with a warning in the log (``fallback=True``). onnxruntime's exceptions become one-line
``BadInputError`` / ``UnsafeFileError`` / ``RnnEdgeError``.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import onnxruntime as ort

from rnnedge.errors import BadInputError, RnnEdgeError, UnsafeFileError
from rnnedge.runtime.checks import check_model_path
from rnnedge.runtime.provider_options import dropped_providers, is_single_entry, option_error, split_entry, unreported_options

__all__ = ["PROVIDER_ALIASES", "CPU", "available_providers", "canonical_entry", "provider_entries", "select_providers", "uses_iobinding",
           "session_options", "open_session", "ort_error"]

log = logging.getLogger(__name__)

PROVIDER_ALIASES = {  # short name -> onnxruntime execution provider
    "cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider", "coreml": "CoreMLExecutionProvider",
    "nnapi": "NnapiExecutionProvider", "xnnpack": "XnnpackExecutionProvider",
    "qnn": "QNNExecutionProvider", "dml": "DmlExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
}
CPU = PROVIDER_ALIASES["cpu"]
_AUTO_ORDER = ["tensorrt", "cuda", "coreml", "nnapi", "xnnpack", "qnn"]  # then CPU
NOT_COMPUTE = ("AzureExecutionProvider",)  # remote endpoints, not a local compute device
OPTIMIZATION = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}


def available_providers() -> list[str]:
    """The compute providers this onnxruntime has, in its own order (remote ones like Azure skipped)."""
    return [p for p in ort.get_available_providers() if p not in NOT_COMPUTE]


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
    raise BadInputError(f"unknown provider {name!r}; expected 'auto' or one of: " + ", ".join(PROVIDER_ALIASES))


def provider_entries(requested, available: Sequence[str] | None = None) -> list[tuple[str, dict[str, str]]]:
    """Choose execution providers with their options, best first, always ending with CPU as the fallback.

    ``requested``: ``"auto"`` (or None), one name, one ``(name, {option: value})`` pair, or a list of names and
    pairs exactly as onnxruntime takes them (``[("CUDAExecutionProvider", {"device_id": 0}),
    "CPUExecutionProvider"]``); rnnedge's short names (``"cuda"``, ``"cpu"``, ...) work everywhere. Returns
    ``[(full name, {option: str(value)})]``. ``"auto"`` takes TensorRT, CUDA, CoreML, NNAPI, XNNPACK and QNN,
    in that order, where ``available`` has them. One explicit name must be available. In a list, unavailable
    names are skipped (logged) as long as one remains. ``available`` defaults to
    ``ort.get_available_providers()``; pass a list to decide without onnxruntime (pure).
    """
    avail = list(ort.get_available_providers() if available is None else available)
    if is_single_entry(requested):
        requested = [requested]
    if not (requested is None or isinstance(requested, str) or (
            isinstance(requested, Sequence) and not isinstance(requested, (bytes, bytearray)))):
        raise BadInputError(f"providers must be 'auto', a name or a list of names and (name, options) pairs, "
                            f"got {type(requested).__name__}")
    if requested is None or (isinstance(requested, str) and requested.strip().lower() == "auto"):
        chosen = [(PROVIDER_ALIASES[k], {}) for k in _AUTO_ORDER if PROVIDER_ALIASES[k] in avail]
    elif isinstance(requested, str):
        chosen = [(_canonical(requested, avail), {})]
        if chosen[0][0] not in avail and chosen[0][0] != CPU:
            raise BadInputError(f"provider {requested!r} is not available in this onnxruntime; "
                                f"available: {', '.join(avail) or 'none'}")
    else:
        wanted = [(_canonical(name, avail), opts) for name, opts in map(split_entry, requested)]
        if not wanted:
            raise BadInputError("empty provider list; pass 'auto' or at least one provider")
        if len(wanted) == 1 and wanted[0][0] not in avail and wanted[0][0] != CPU:
            raise BadInputError(f"provider {wanted[0][0]!r} is not available in this onnxruntime; "
                                f"available: {', '.join(avail) or 'none'}")
        chosen = [(p, o) for p, o in wanted if p in avail or p == CPU]
        for p, _ in wanted:
            if p not in dict(chosen):
                log.warning("provider %s is not available; skipping it", p)
        if not chosen:
            raise BadInputError(f"none of the providers {', '.join(p for p, _ in wanted)} is available; "
                                f"available: {', '.join(avail) or 'none'}")
    unique: dict[str, dict[str, str]] = {}
    for p, o in chosen:
        if p in unique and o != unique[p]:
            raise BadInputError(f"provider {p} is given twice, with different options")
        unique.setdefault(p, o)
    unique.setdefault(CPU, {})
    return list(unique.items())


def canonical_entry(item) -> tuple[str, dict[str, str]]:
    """One provider as given (``"cuda"``, ``"CUDAExecutionProvider"``, ``("cuda", {"device_id": 0})``) -> (full name,
    options as strings), whether or not this onnxruntime has it (verify reports an unavailable one as a row)."""
    name, options = split_entry(item)
    return _canonical(name, ort.get_available_providers()), options


def select_providers(requested, available: Sequence[str] | None = None) -> list[str]:
    """The provider names of ``provider_entries`` (options dropped): best first, CPU always last."""
    return [name for name, _ in provider_entries(requested, available)]


def uses_iobinding(providers: Sequence[str]) -> bool:
    """True when a session on ``providers`` (as onnxruntime reports them) should run through
    IOBinding: inputs bound from numpy, outputs copied back to the CPU, which saves a device round
    trip per output on CUDA. Pure: pass ``session.providers`` or a fake list."""
    return bool(providers) and providers[0] in ("CUDAExecutionProvider", "TensorrtExecutionProvider")


def ort_error(what: str, err: Exception) -> RnnEdgeError:
    """Turn an onnxruntime exception into one readable line of the right class."""
    msg = " ".join(str(err).split()) or type(err).__name__
    msg = msg.split("] : ", 1)[-1] if msg.startswith("[ONNXRuntimeError]") else msg
    if "external data" in msg.lower() and ("escape" in msg or "outside" in msg or "Absolute path" in msg):
        return UnsafeFileError(f"{what}: unsafe external data: {msg}")
    kind = type(err).__name__
    cls = BadInputError if kind in ("InvalidArgument", "InvalidProtobuf", "NoSuchFile", "InvalidGraph",
                                    "NotImplemented", "Fail") else RnnEdgeError
    return cls(f"{what}: {msg}")


def session_options(*, threads: int | None = None, optimization: str | None = None,
                    options: ort.SessionOptions | None = None) -> ort.SessionOptions:
    """SessionOptions with onnxruntime's log quiet unless rnnedge logs at DEBUG.

    ``threads``: intra-op threads (None: onnxruntime's default). ``optimization``: one of
    ``OPTIMIZATION``'s keys (None: onnxruntime's default, all). ``options``: a SessionOptions to
    start from (profiling, an optimised-model path...); it is changed in place and returned.
    """
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise BadInputError(f"threads must be a positive integer or None, got {threads!r}")
    opts = options or ort.SessionOptions()
    # onnxruntime logs straight to stderr (a damaged file can print several lines); what it raises says the
    # same in our one line, so its log shows only with debug logging
    opts.log_severity_level = 2 if log.isEnabledFor(logging.DEBUG) else 4
    if threads is not None:
        opts.intra_op_num_threads = threads
    if optimization is not None:
        if optimization not in OPTIMIZATION:
            raise BadInputError(f"optimization must be one of {', '.join(OPTIMIZATION)}, got {optimization!r}")
        opts.graph_optimization_level = OPTIMIZATION[optimization]
    return opts


def _label(model) -> str:
    return f"<{len(model)} bytes>" if isinstance(model, (bytes, bytearray)) else os.fsdecode(model)


def open_session(model: str | os.PathLike | bytes, *, providers=None,
                 threads: int | None = None, options: ort.SessionOptions | None = None,
                 optimization: str | None = None, fallback: bool = True,
                 disabled_optimizers: Sequence[str] | None = None) -> ort.InferenceSession:
    """Open an onnxruntime session on ``model`` (a path, or the serialised model as bytes).

    ``providers``: ``"auto"`` (None), one name, or names and ``(name, {option: value})`` pairs as onnxruntime
    takes them, chosen by ``provider_entries`` (CPU always last). ``fallback``: when the requested
    accelerators fail to start, log a warning and retry on CPU alone (onnxruntime may also drop a provider
    itself, e.g. for an option value it refuses: logged too); with ``fallback=False`` either is raised
    (parity wants to know what it checked). An option onnxruntime rejects is a ``BadInputError`` naming it,
    never a silent CPU run. Errors are one line: ``BadInputError`` for a file onnxruntime refuses,
    ``UnsafeFileError`` for escaping external data.
    """
    if not isinstance(model, (bytes, bytearray)):
        model = check_model_path(model)  # missing, empty, foreign or pickled files: one line before onnxruntime
    entries = provider_entries(providers)
    opts = session_options(threads=threads, optimization=optimization, options=options)
    source = bytes(model) if isinstance(model, (bytes, bytearray)) else os.fspath(model)
    extra = {"disabled_optimizers": list(disabled_optimizers)} if disabled_optimizers else {}
    try:  # no onnxruntime fallback: it prints to stdout (breaking --json) and retries a broken file
        return _checked(_create(source, opts, entries, extra), entries, fallback, model)
    except RnnEdgeError:
        raise
    except Exception as err:  # onnxruntime raises its own pybind classes
        log.debug("onnxruntime cannot load the model on %s", [p for p, _ in entries], exc_info=True)
        first = err
    refused = option_error(entries, first)
    if refused is not None:  # an option onnxruntime rejects: the user's to fix, not a reason to run elsewhere
        raise refused from first
    if fallback and [p for p, _ in entries] != [CPU]:  # an accelerator that failed to start: say so, then CPU alone
        log.warning("providers %s failed (%s); retrying on CPU only", [p for p, _ in entries], " ".join(str(first).split())[:200])
        try:
            return _create(source, opts, [(CPU, dict(entries).get(CPU, {}))], extra)
        except Exception as err:
            log.debug("onnxruntime cannot load the model on CPU", exc_info=True)
            first = err
    raise ort_error(f"cannot load model {_label(model)}", first) from first


def _create(source, opts, entries, extra) -> ort.InferenceSession:
    return ort.InferenceSession(source, opts, providers=[p for p, _ in entries], provider_options=[o for _, o in entries],
                                enable_fallback=0, **extra)


def _checked(session: ort.InferenceSession, entries, fallback: bool, model) -> ort.InferenceSession:
    """A session onnxruntime opened on fewer providers than asked (it drops a provider whose device is missing or
    whose option value it refuses, and says so only on stderr): logged as a CPU fallback, or raised without
    fallback. Options an active provider does not report back are logged: onnxruntime may ignore them."""
    active = session.get_providers()
    dropped = [p for p in dropped_providers([p for p, _ in entries], active) if p != CPU]
    if dropped:
        why = f"onnxruntime did not start {', '.join(dropped)} for {_label(model)} (a device it cannot find, or an option value " \
              f"it refuses: {({p: o for p, o in entries if p in dropped})}); running on {', '.join(active)}"
        if not fallback:
            raise BadInputError(why)
        log.warning("%s", why)
    for name, keys in unreported_options(entries, session.get_provider_options(), active).items():
        log.warning("%s does not report the option(s) %s back: onnxruntime may ignore them", name, ", ".join(keys))
    return session
