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

__all__ = ["PROVIDER_ALIASES", "CPU", "available_providers", "select_providers", "uses_iobinding",
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


def select_providers(requested: str | Sequence[str] | None, available: Sequence[str] | None = None) -> list[str]:
    """Choose execution providers, best first, always ending with CPU as the fallback.

    ``"auto"`` (or None) takes TensorRT, CUDA, CoreML, NNAPI, XNNPACK and QNN, in that order,
    where ``available`` has them. One explicit name (short like ``"cuda"`` or full like
    ``"CUDAExecutionProvider"``) must be available. In a list, unavailable names are skipped
    (logged) as long as one remains. ``available`` defaults to ``ort.get_available_providers()``;
    pass a list to decide without onnxruntime (pure).
    """
    avail = list(ort.get_available_providers() if available is None else available)
    if not (requested is None or isinstance(requested, str) or (
            isinstance(requested, Sequence) and not isinstance(requested, (bytes, bytearray)))):
        raise BadInputError(f"providers must be 'auto', a name or a list of names, got {type(requested).__name__}")
    if requested is None or (isinstance(requested, str) and requested.strip().lower() == "auto"):
        chosen = [PROVIDER_ALIASES[k] for k in _AUTO_ORDER if PROVIDER_ALIASES[k] in avail]
    elif isinstance(requested, str):
        chosen = [_canonical(requested, avail)]
        if chosen[0] not in avail and chosen[0] != CPU:
            raise BadInputError(f"provider {requested!r} is not available in this onnxruntime; "
                                f"available: {', '.join(avail) or 'none'}")
    else:
        wanted = [_canonical(p, avail) for p in requested]
        if not wanted:
            raise BadInputError("empty provider list; pass 'auto' or at least one provider")
        chosen = [p for p in wanted if p in avail or p == CPU]
        for p in wanted:
            if p not in chosen:
                log.warning("provider %s is not available; skipping it", p)
        if not chosen:
            raise BadInputError(f"none of the providers {', '.join(wanted)} is available; "
                                f"available: {', '.join(avail) or 'none'}")
    chosen = list(dict.fromkeys(chosen))
    return chosen if CPU in chosen else chosen + [CPU]


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


def open_session(model: str | os.PathLike | bytes, *, providers: str | Sequence[str] | None = None,
                 threads: int | None = None, options: ort.SessionOptions | None = None,
                 optimization: str | None = None, fallback: bool = True,
                 disabled_optimizers: Sequence[str] | None = None) -> ort.InferenceSession:
    """Open an onnxruntime session on ``model`` (a path, or the serialised model as bytes).

    ``providers``: ``"auto"`` (None), one name or a list, chosen by ``select_providers`` (CPU always
    last). ``fallback``: when the requested accelerators fail to start, log a warning and retry on CPU
    alone; with ``fallback=False`` the failure is raised (parity wants to know). Errors are one line:
    ``BadInputError`` for a file onnxruntime refuses, ``UnsafeFileError`` for escaping external data.
    """
    if not isinstance(model, (bytes, bytearray)):
        model = check_model_path(model)  # missing, empty, foreign or pickled files: one line before onnxruntime
    wanted = select_providers(providers)
    opts = session_options(threads=threads, optimization=optimization, options=options)
    source = bytes(model) if isinstance(model, (bytes, bytearray)) else os.fspath(model)
    extra = {"disabled_optimizers": list(disabled_optimizers)} if disabled_optimizers else {}
    try:  # no onnxruntime fallback: it prints to stdout (breaking --json) and retries a broken file
        return ort.InferenceSession(source, opts, providers=wanted, enable_fallback=0, **extra)
    except Exception as err:  # onnxruntime raises its own pybind classes
        log.debug("onnxruntime cannot load the model on %s", wanted, exc_info=True)
        first = err
    if fallback and wanted != [CPU]:  # an accelerator that failed to start: say so, then CPU alone
        log.warning("providers %s failed (%s); retrying on CPU only", wanted, " ".join(str(first).split())[:200])
        try:
            return ort.InferenceSession(source, opts, providers=[CPU], enable_fallback=0, **extra)
        except Exception as err:
            log.debug("onnxruntime cannot load the model on CPU", exc_info=True)
            first = err
    raise ort_error(f"cannot load model {_label(model)}", first) from first
