"""int8 dynamic, int8 static (QDQ, calibrated) and float16 versions of an ONNX model.

    rnnedge.quantize("model.onnx", "model.int8.onnx")                       # dynamic int8
    rnnedge.quantize("model.onnx", "model.qdq.onnx", mode="int8-static", calibration="digits")
    rnnedge.quantize("model.onnx", "model.fp16.onnx", mode="fp16")           # for GPU providers

Built on `onnxruntime.quantization` and `onnxruntime.transformers.float16`; what rnnedge adds is
the graph form each quantizer can reach, chosen from the file alone (any ONNX file with standard
recurrent operators and constant weights, rnnedge's or not):

- int8: onnxruntime's dynamic quantizer leaves the `RNN` and `GRU` operators in float32, so those
  are re-lowered first to the hoisted-projection Scan (`exporters.scan.lower_to_scan`), whose
  MatMuls (`EnableSubgraph`: inside the Scan bodies too) become MatMulInteger with int8 weights.
  `LSTM` stays the standard operator, which the quantizer turns into `DynamicQuantizeLSTM`:
  measured with `python samples/bench_quantize.py` (onnxruntime 1.32, one thread, 2 shared x86
  cores, noisy: two runs), int8 latency / fp32 native latency, LSTM native-int8 vs scan-int8:
      H=128 T=8  B=64: 0.54-0.55 vs 0.87    H=128 T=50 B=64: 0.79-0.80 vs 0.81-0.89
      H=256 T=8  B=64: 0.19-0.25 vs 0.28-0.69    H=256 T=50 B=64: 0.44-0.49 vs 0.58-0.59
      B=8: native 0.16-0.59, scan 0.28-1.35
  so LSTM stays native (NATIVE_INT8). Per-tensor weights by default: per-channel made the files
  5-7% larger (H=128: RNN 0.337 -> 0.354, GRU 0.298 -> 0.315, LSTM 0.269 -> 0.287 of fp32) for
  no consistent error gain (max |diff| 5.5e-3/5.4e-3, 2.5e-3/3.0e-3, 1.6e-3/1.3e-3; B=64, T=50);
  pass per_channel=True to choose it.
- int8-static: `quantize_static` (QDQ) does not enter subgraphs in onnxruntime 1.32 (Scan bodies
  stay float32 even with EnableSubgraph) and has no int8 RNN/GRU/LSTM. So every recurrent node is
  re-lowered to Scan, everything outside the loop is calibrated QDQ, and the recurrent MatMuls in
  the Scan bodies then get dynamic int8 (a second `quantize_dynamic` pass, reported in `notes`).
- fp16: `convert_float_to_float16`, float32 inputs/outputs kept by default. `Transpose` nodes stay
  float32: onnxruntime 1.32 crashes (SIGSEGV) building a CPU session at ORT_ENABLE_ALL for the
  converted Scan models otherwise. Parity: within FP16_ATOL of float32 (outputs of order 1).

Every output keeps the input's metadata_props plus `rnnedge.quantization` = mode.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from exporters.graph import compact_names

from .errors import BadInputError, RnnEdgeError
from .files import load_arrays, load_onnx, save_onnx

log = logging.getLogger(__name__)

MODES = ("int8", "int8-static", "fp16")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
RECURRENT = ("RNN", "GRU", "LSTM")
NATIVE_INT8 = {"LSTM"}  # kept as the standard operator under int8 (DynamicQuantizeLSTM measured faster)
FP16_ATOL = 1e-2  # documented fp16 parity tolerance (absolute, for outputs of order 1)
INT8_ATOL = 0.1  # loose int8 tolerance used by the tests (absolute, small random models)
CALIBRATION_BATCH = 32  # rows per calibration batch
CALIBRATION_ROWS = 256  # at most this many rows of a task or file are used to calibrate
FP16_KEEP_FLOAT = ["Transpose"]  # see the module docstring (onnxruntime 1.32 CPU crash)
WEIGHT_OPS = {"MatMul", "Gemm", "Conv", "RNN", "GRU", "LSTM", "Attention", "Gather"}
WHY_FLOAT = {
    "RNN": "onnxruntime's quantizer has no int8 RNN",
    "GRU": "onnxruntime's quantizer has no int8 GRU",
    "LSTM": "this LSTM could not be quantized",
    "Gather": "embedding tables are not quantized",
    "Transpose": "kept float32 (onnxruntime 1.32 CPU crash with float16 here)",
}


@dataclass
class QuantizeResult:
    input_path: Path
    output_path: Path
    mode: str  # one of MODES
    input_bytes: int
    output_bytes: int
    size_ratio: float  # output_bytes / input_bytes
    stayed_float: list[str] = field(default_factory=list)  # "GRU node 'x' stays float32: why"
    relowered: bool = False  # recurrent nodes were re-lowered to the Scan form first
    per_channel: bool = False
    notes: list[str] = field(default_factory=list)  # what was done, in words
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_path"], d["output_path"] = str(self.input_path), str(self.output_path)
        d["size_ratio"] = round(self.size_ratio, 4)
        return d


def quantize(model_path, out_path, *, mode: str = "int8", calibration=None, calibration_method: str = "minmax",
             per_channel: bool | None = None, keep_io_types: bool = True) -> QuantizeResult:
    """Write a quantized copy of `model_path` to `out_path` (atomically). See the module docstring."""
    import onnx

    if mode not in MODES:
        raise BadInputError(f"unknown quantization mode {mode!r}: expected one of {', '.join(MODES)}")
    if calibration_method not in CALIBRATION_METHODS:
        raise BadInputError(f"unknown calibration method {calibration_method!r}: expected one of {', '.join(CALIBRATION_METHODS)}")
    if calibration is not None and mode != "int8-static":
        raise BadInputError(f"--calibration is for --mode int8-static, not {mode}")
    model = load_onnx(model_path)
    meta = {p.key: p.value for p in model.metadata_props}
    warns, notes = [], []
    if not any(k.startswith("rnnedge.") for k in meta):
        warns.append(f"{Path(model_path).name}: not an rnnedge export (no rnnedge metadata): quantizing with onnxruntime's generic path")
    per_channel = bool(per_channel)
    relowered = False
    with tempfile.TemporaryDirectory(prefix="rnnedge-quantize-") as tmp:
        src, dst = Path(tmp) / "float.onnx", Path(tmp) / "quant.onnx"
        if mode == "fp16":
            out = _to_fp16(model, keep_io_types)
        else:
            keep = NATIVE_INT8 if mode == "int8" else set()
            relowered = _relower(model, keep, notes, warns)
            onnx.save(model, str(src))
            if mode == "int8":
                try:
                    _dynamic(src, dst, per_channel)
                except Exception as exc:  # onnxruntime's quantizer refused the graph: one line, not a traceback
                    raise RnnEdgeError(f"onnxruntime could not quantize {Path(model_path).name}: {type(exc).__name__}: {exc}"[:400]) from None
            else:
                reader = _calibration_reader(calibration, model, meta, warns)
                _static(src, dst, reader, calibration_method, per_channel, notes)
            out = onnx.load(str(dst))
    stayed = stayed_float(out, mode)
    compact_names(out)  # the quantizer's long value names are ~10% of a small int8 file
    for line in stayed:
        warns.append(line)
    new_meta = dict(meta, **{"rnnedge.quantization": mode})
    if relowered and "rnnedge.lowering" in meta:
        new_meta["rnnedge.lowering"] = "scan"
    del out.metadata_props[:]
    onnx.helper.set_model_props(out, dict(sorted(new_meta.items())))
    size = save_onnx(out, out_path)
    in_size = Path(model_path).stat().st_size
    for w in warns:
        log.warning("%s", w)
    return QuantizeResult(Path(model_path), Path(out_path), mode, in_size, size, size / in_size, stayed, relowered,
                          per_channel, notes, warns)


# -- graph preparation ---------------------------------------------------------------------------


def _relower(model, keep: set[str], notes: list[str], warns: list[str]) -> bool:
    """Re-lower the recurrent nodes (except op types in `keep`) to hoisted-projection Scans, in place."""
    from exporters.scan import lower_to_scan

    todo = [n for n in model.graph.node if n.op_type in RECURRENT and n.op_type not in keep]
    if not todo:
        return False
    try:
        skipped = lower_to_scan(model, ops=tuple(op for op in RECURRENT if op not in keep))
    except Exception as exc:  # a graph the rewrite does not understand: quantize it as it is
        warns.append(f"could not re-lower the recurrent nodes to Scan ({type(exc).__name__}: {exc}); quantizing as is")
        return False
    warns.extend(f"left as is (stays float32): {s}" for s in skipped)
    done = len(todo) - len(skipped)
    if done:
        notes.append(f"re-lowered {done} recurrent node(s) to hoisted-projection Scan so their weights can be int8")
    return done > 0


@contextlib.contextmanager
def _quiet_ort():
    """onnxruntime.quantization logs advice ("consider pre-processing") on the root logger: hush it."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _dynamic(src: Path, dst: Path, per_channel: bool, nodes=None) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet_ort():
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=per_channel, nodes_to_quantize=nodes,
                         extra_options={"EnableSubgraph": True, "MatMulConstBOnly": True})


def _static(src: Path, dst: Path, reader, method: str, per_channel: bool, notes: list[str]) -> None:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile}
    qdq = src.with_name("qdq.onnx")
    try:
        with _quiet_ort():
            quantize_static(str(src), str(qdq), reader, quant_format=QuantFormat.QDQ, per_channel=per_channel,
                            calibrate_method=methods[method], extra_options={"EnableSubgraph": True})
    except BadInputError:
        raise
    except Exception as exc:  # onnxruntime failed on the calibration data: say so in one line
        raise BadInputError(f"calibration failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}") from None
    body = [n.name for g in _subgraphs(onnx.load(str(qdq)).graph) for n in g.node if n.op_type == "MatMul"]
    if body:
        _dynamic(qdq, dst, per_channel, nodes=body)
        notes.append(f"quantize_static does not enter Scan bodies: their {len(body)} recurrent MatMul(s) use dynamic int8")
    else:
        qdq.replace(dst)
    notes.append(f"calibrated QDQ ({method}) outside the recurrent loop")


def _to_fp16(model, keep_io_types: bool):
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    out = convert_float_to_float16(model, keep_io_types=keep_io_types, op_block_list=[*DEFAULT_OP_BLOCK_LIST, *FP16_KEEP_FLOAT])
    OnnxModel(out).topological_sort()  # the converter appends its Casts at the end
    return out


# -- reporting -----------------------------------------------------------------------------------


def _subgraphs(graph):
    """Every graph nested in `graph` (Scan/Loop/If bodies), recursively, not `graph` itself."""
    import onnx

    for node in graph.node:
        for attr in node.attribute:
            subs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
            for sub in subs:
                yield sub
                yield from _subgraphs(sub)


def stayed_float(model, mode: str = "int8") -> list[str]:
    """One line per node (top level and subgraphs) whose weight (a float32 initializer of rank >= 2) stayed float32."""
    import onnx

    lines = []
    for graph in [model.graph, *_subgraphs(model.graph)]:
        weights = {t.name: list(t.dims) for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT and len(t.dims) >= 2}
        for node in graph.node:
            if mode == "fp16" and node.op_type in FP16_KEEP_FLOAT:
                lines.append(f"{node.op_type} node {node.name or '?'!r} stays float32: {WHY_FLOAT['Transpose']}")
                continue
            held = [i for i in node.input if i in weights]
            if held and (node.op_type in WEIGHT_OPS or mode == "fp16"):
                why = WHY_FLOAT.get(node.op_type, "not quantized")
                lines.append(f"{node.op_type} node {node.name or '?'!r} stays float32: {why} (weight {held[0]} {weights[held[0]]})")
    return lines


def int8_weights(model) -> dict[str, list[str]]:
    """{graph name: int8 initializers of rank >= 2} for the top level and every subgraph (tests, reports)."""
    import onnx

    found = {}
    for graph in [model.graph, *_subgraphs(model.graph)]:
        names = [t.name for t in graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) >= 2]
        if names:
            found[graph.name] = names
    return found


# -- calibration ---------------------------------------------------------------------------------


def _calibration_reader(calibration, model, meta: dict, warns: list[str]):
    from onnxruntime.quantization import CalibrationDataReader

    inputs = _graph_inputs(model)
    if calibration is None:
        warns.append("no calibration data: calibrating on random inputs, which gives poor int8-static accuracy "
                     "(pass --calibration FILE.npz or a task name)")
        batches = _random_batches(inputs, meta)
    elif isinstance(calibration, str) and not calibration.endswith((".npz", ".npy")) and not Path(calibration).exists():
        if os.sep in calibration or "/" in calibration or Path(calibration).suffix:  # meant as a file
            raise BadInputError(f"{calibration}: no such calibration file (expected an .npz/.npy file or a task name)")
        batches = _task_batches(calibration, inputs)
    else:
        arrays = calibration if isinstance(calibration, Mapping) else load_arrays(calibration)
        batches = _array_batches(dict(arrays), inputs, str(calibration) if not isinstance(calibration, Mapping) else "calibration")

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(batches)

        def get_next(self):
            return next(self._it, None)

    return Reader()


def _graph_inputs(model) -> dict[str, tuple[int, list]]:
    """{name: (onnx elem type, shape with ints for fixed dims and None for symbolic)} of the real inputs."""
    inits = {t.name for t in model.graph.initializer}
    out = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        t = vi.type.tensor_type
        out[vi.name] = (t.elem_type, [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim])
    return out


def _array_batches(arrays: dict, inputs: dict, where: str) -> list[dict]:
    import onnx

    unknown = sorted(set(arrays) - set(inputs))
    missing = sorted(set(inputs) - set(arrays) - {"lengths"})
    if unknown or missing:
        raise BadInputError(f"{where}: calibration arrays {sorted(arrays)} do not match the model inputs {sorted(inputs)}")
    rows = None
    for name, arr in arrays.items():
        elem, shape = inputs[name]
        want = onnx.helper.tensor_dtype_to_np_dtype(elem)
        arr = np.asarray(arr)
        if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
            raise BadInputError(f"{where}: '{name}' has shape {list(arr.shape)}, the model takes {['?' if s is None else s for s in shape]}")
        if arr.dtype.kind != np.dtype(want).kind:
            raise BadInputError(f"{where}: '{name}' is {arr.dtype}, the model takes {np.dtype(want)}")
        if rows is not None and arr.shape[0] != rows:
            raise BadInputError(f"{where}: arrays have different numbers of rows ({rows} and {arr.shape[0]})")
        rows = arr.shape[0]
        arrays[name] = arr.astype(want)
    if not rows:
        raise BadInputError(f"{where}: calibration arrays are empty")
    if "lengths" in inputs and "lengths" not in arrays:  # full lengths
        first = next(a for a in arrays.values() if a.ndim >= 2)
        arrays["lengths"] = np.full(rows, first.shape[1], np.int64)
    rows = min(rows, CALIBRATION_ROWS)
    return [{k: v[s : s + CALIBRATION_BATCH] for k, v in arrays.items()} for s in range(0, rows, CALIBRATION_BATCH)]


def _task_batches(name: str, inputs: dict) -> list[dict]:
    from .tasks import get_task

    data = get_task(name).split("val")
    arrays = {}
    for feed in inputs:
        if feed == "lengths":
            if data.lengths is not None:
                arrays[feed] = data.lengths
        else:
            arrays[feed] = data.inputs
    return _array_batches(arrays, inputs, f"task {name}")


def _random_batches(inputs: dict, meta: dict) -> list[dict]:
    if "rnnedge.spec" in meta:
        from .spec import IOSpec

        spec = IOSpec.from_json(meta["rnnedge.spec"])
        fixed = {t.name: t.shape for t in spec.inputs}
        seq = next((s for shape in fixed.values() for s in shape[1:2] if isinstance(s, int)), 16)
        return [spec.make_inputs({"batch": CALIBRATION_BATCH, "seq": seq}, seed=k) for k in range(4)]
    if any(elem != 1 for elem, _ in inputs.values()):
        raise BadInputError("int8-static needs calibration data for a model with integer inputs and no rnnedge spec: "
                            "pass --calibration FILE.npz")
    rng = np.random.default_rng(0)
    shape = lambda s: [d if d else (CALIBRATION_BATCH if i == 0 else 16) for i, d in enumerate(s)]  # noqa: E731
    return [{n: rng.standard_normal(shape(s)).astype(np.float32) for n, (_, s) in inputs.items()} for _ in range(4)]


# -- comparison ----------------------------------------------------------------------------------


def compare_models(float_path, quant_path, task: str | None = None, threads: int = 1, batch: int = 64,
                   repeats: int = 20, seq: int = 50) -> dict:
    """Size ratio, latency ratio (`threads` threads, interleaved repeats, medians) and, with `task`, both metrics."""
    import time

    from .parity import ort_session

    def session(path):
        load_onnx(path, load_weights=False)  # the same checks and one-line errors as everywhere
        return ort_session(path, threads=threads)

    ref, quant = session(float_path), session(quant_path)
    if task is not None:
        from .tasks import get_task

        data = get_task(task).split("test").take(slice(0, batch))
        feeds = _feeds(ref, data.inputs, data.lengths)
    else:
        model = load_onnx(float_path, load_weights=False)
        meta = {p.key: p.value for p in model.metadata_props}
        if "rnnedge.spec" in meta:
            from .spec import IOSpec

            feeds = IOSpec.from_json(meta["rnnedge.spec"]).make_inputs({"batch": batch, "seq": seq})
        else:
            rng, inputs = np.random.default_rng(0), _graph_inputs(model)
            if any(elem != 1 for elem, _ in inputs.values()):
                raise BadInputError("comparing a model with integer inputs and no rnnedge spec needs --eval TASK")
            feeds = {n: rng.standard_normal([d or (batch if i == 0 else seq) for i, d in enumerate(s)]).astype(np.float32)
                     for n, (_, s) in inputs.items()}
    times: dict[str, list[float]] = {"float": [], "quant": []}
    outs = {}
    for k in range(repeats + 3):  # 3 warm-up rounds, then interleaved timed repeats
        for name, sess in (("float", ref), ("quant", quant)):
            f = _cast_feeds(sess, feeds)
            start = time.perf_counter()
            outs[name] = sess.run(None, f)[0]
            if k >= 3:
                times[name].append(time.perf_counter() - start)
    f_ms, q_ms = float(np.median(times["float"])) * 1e3, float(np.median(times["quant"])) * 1e3
    f_bytes, q_bytes = Path(float_path).stat().st_size, Path(quant_path).stat().st_size
    result = {
        "float_bytes": f_bytes, "quant_bytes": q_bytes, "size_ratio": q_bytes / f_bytes,
        "float_ms": f_ms, "quant_ms": q_ms, "latency_ratio": q_ms / f_ms, "threads": threads, "batch": batch,
        "max_abs_diff": float(np.abs(np.asarray(outs["float"], np.float64) - np.asarray(outs["quant"], np.float64)).max()),
    }
    if task is not None:
        from .tasks import get_task

        t = get_task(task)
        result["task"] = task
        result["float_metrics"] = t.evaluate(lambda x, lengths: ref.run(None, _feeds(ref, x, lengths))[0], split="test")
        result["quant_metrics"] = t.evaluate(lambda x, lengths: quant.run(None, _feeds(quant, x, lengths))[0], split="test")
    return result


def _feeds(sess, inputs: np.ndarray, lengths: np.ndarray | None) -> dict:
    """Task arrays -> the session's feeds: `x` (float) or `tokens` (int64), and `lengths` when it takes them."""
    feeds = {}
    for i in sess.get_inputs():
        if i.name == "lengths":
            feeds[i.name] = lengths.astype(np.int64) if lengths is not None else np.full(len(inputs), inputs.shape[1], np.int64)
        elif i.name in ("x", "tokens") or len(feeds) == 0:
            feeds[i.name] = inputs
        else:
            raise BadInputError(f"model input '{i.name}' cannot be fed from a task (expected x or tokens, and lengths)")
    return _cast_feeds(sess, feeds)


def _cast_feeds(sess, feeds: dict) -> dict:
    kinds = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64, "tensor(int32)": np.int32}
    return {i.name: np.asarray(feeds[i.name]).astype(kinds.get(i.type) or feeds[i.name].dtype) for i in sess.get_inputs() if i.name in feeds}
