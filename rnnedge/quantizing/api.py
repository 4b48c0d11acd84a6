"""int8 (forms measured per recurrent unit), int8 static (QDQ, calibrated) and float16 versions of an ONNX model.

    rnnedge.quantize("model.onnx", "model.int8.onnx")                        # int8, chosen for batch 1
    rnnedge.quantize("model.onnx", "model.int8.onnx", deploy="batch=64,seq=8") # chosen for that shape
    rnnedge.quantize("model.onnx", "model.qdq.onnx", mode="int8-static", calibration="digits")
    rnnedge.quantize("model.onnx", "model.fp16.onnx", mode="fp16")            # for GPU providers

int8: every weight is stored as int8 whatever happens (about 0.27 of the float32 size at hidden 128);
what runs is chosen per recurrent unit by measuring, at the deployment shape (`deploy`, CLI `--for`;
default batch 1 and a small chunk: the edge case), the forms of `rnnedge.quantizing.forms`:
weights-int8 (the same fp32 operator fed by int8-stored weights, dequantized once at load: fp32
speed, the floor), lstm-int8 (DynamicQuantizeLSTM), scan-int8 (hoisted-projection Scan with int8
MatMuls), scan-nbits8 (weight-only MatMulNBits), and matmul-int8 for MatMul/Gemm outside loops.
The choice and the figures are in `QuantizeResult.forms` / `.measured` and in the file's metadata
(`rnnedge.quantization.forms`). A model whose int8 file would not be smaller (a few hundred weights:
the seed task's nn.RNN(5, 8)) keeps float32 and says so. Measured (`python samples/bench_edge.py`,
notes/issue-14.md): int8 / fp32 latency within noise of 1.0 or below at batch 1, lower from batch 8.

Accuracy guard: op types whose int8 hurts accuracy stay float unless asked (Conv: dynamic int8 of
the Conv layers of a voice-activity model moved its output by up to 0.5; `quantize_conv=True` or
`op_types=` to include them); a candidate form whose outputs drift past CANDIDATE_DRIFT of the
output range on the deployment inputs is never chosen; `rnnedge.quantizing.drift.drift` reports drift.

Foreign files: Constant weights in any subgraph (If/Loop/Scan bodies) become initializers first, so
the quantizers see them; recurrent nodes inside subgraphs get int8-stored weights where they are.

int8-static: `quantize_static` (QDQ) does not enter subgraphs in onnxruntime 1.32 and has no int8
RNN/GRU/LSTM, so every recurrent node is re-lowered to Scan, everything outside the loop is
calibrated QDQ, and the recurrent MatMuls in the Scan bodies get dynamic int8 (reported in `notes`).
fp16: `convert_float_to_float16`, float32 inputs/outputs kept by default. `Transpose` nodes stay
float32: onnxruntime 1.32 crashes (SIGSEGV) building a CPU session at ORT_ENABLE_ALL for the
converted Scan models otherwise. Parity: within rnnedge.parity.FP16 (atol = rtol = 2e-2) of float32, as verify judges fp16 files.

Every output keeps the input's metadata_props plus `rnnedge.quantization` = mode.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from exporters.graph import compact_names, fold_constant_weights
from rnnedge.errors import BadInputError, first_line
from rnnedge.files import load_onnx, save_onnx
from rnnedge.quantizing.drift import compare_models, drift  # noqa: F401  (public here too)
from rnnedge.quantizing.forms import (
    DEFAULT_OP_TYPES,
    FORMS,
    RECURRENT,
    WEIGHT_INPUTS,
    constants_to_initializers,
    name_nodes,
)
from rnnedge.quantizing.forms import quiet_ort as _quiet_ort
from rnnedge.quantizing.forms import subgraphs as _subgraphs
from rnnedge.quantizing.int8 import QuantizeFailure, as_given, does_not_pay, nothing_to_quantize, quantize_int8  # noqa: F401  (QuantizeFailure: public here too)

log = logging.getLogger(__name__)

MODES = ("int8", "int8-static", "fp16")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
FP16_KEEP_FLOAT = ["Transpose"]  # see the module docstring (onnxruntime 1.32 CPU crash)
WEIGHT_OPS = {"MatMul", "Gemm", "Conv", "RNN", "GRU", "LSTM", "Attention", "Gather"}
WHY_FLOAT = {
    "RNN": "onnxruntime's quantizer has no int8 RNN",
    "GRU": "onnxruntime's quantizer has no int8 GRU",
    "LSTM": "this LSTM could not be quantized",
    "Conv": "int8 Conv can hurt accuracy: kept float32 (pass --quantize-conv or --op-types to include it)",
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
    deploy: dict = field(default_factory=dict)  # int8: the deployment shape the forms were chosen for {batch, seq}
    forms: dict = field(default_factory=dict)  # int8: {unit (node name): form}; {} when float32 was kept
    measured: dict = field(default_factory=dict)  # int8: {unit: {form: ms}} as measured at `deploy`
    fp32_ms: float | None = None  # int8: float32 and chosen int8 latency at `deploy`, one interleaved run
    int8_ms: float | None = None
    kept_fp32: str | None = None  # int8: why the float32 model was written instead (int8 does not pay)
    judged_on: str = ""  # int8: the inputs forms were timed and drift judged on, in words ("" when none ran)
    judged_drift: dict = field(default_factory=dict)  # int8: {output: worst drift / its range} on judged_on; None: unjudged
    float_reasons: dict = field(default_factory=dict, repr=False)  # {node name: why its weights stayed float32}

    @property
    def latency_ratio(self) -> float | None:
        return self.int8_ms / self.fp32_ms if self.int8_ms and self.fp32_ms else None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_path"], d["output_path"] = str(self.input_path), str(self.output_path)
        d["size_ratio"] = round(self.size_ratio, 4)
        d["latency_ratio"] = round(self.latency_ratio, 4) if self.latency_ratio else None
        return d


def quantize(model_path, out_path, *, mode: str = "int8", calibration=None, calibration_method: str = "minmax",
             per_channel: bool | None = None, keep_io_types: bool = True, deploy=None, forms=None, op_types=None,
             quantize_conv: bool = False, threads: int = 1, data=None, examples=None, providers=None) -> QuantizeResult:
    """Write a quantized copy of `model_path` to `out_path` (atomically). See the module docstring.

    int8 only: `deploy` ("batch=B,seq=T" or a dict) is the shape the forms are measured at; `forms` (one
    form name for every unit it applies to, or {node name: form}) skips measuring; `op_types` (default
    DEFAULT_OP_TYPES, Conv added by `quantize_conv`) are the op types whose weights become int8; `data` (a task
    name, an .npz path or a dict of arrays by input name; `calibration` serves too) is what drift is judged on,
    `examples` ({name: "16000" | "float32[1,512]"}) fix inputs the file cannot describe (rnnedge.quantizing.inputs);
    `providers` is where the file will run: forms are timed there and a form it cannot run is never chosen.
    """
    from rnnedge.families.registry import family_for_path
    from rnnedge.quantizing.select import parse_for

    family = family_for_path(model_path)  # a seq2seq folder: encoder.onnx and decoder.onnx, each with these options
    if family is not None and family.quantize_path is not None:
        return family.quantize_path(model_path, out_path, mode=mode, calibration=calibration, calibration_method=calibration_method,
                               per_channel=per_channel, keep_io_types=keep_io_types, deploy=deploy, forms=forms,
                               op_types=op_types, quantize_conv=quantize_conv, threads=threads)
    if mode not in MODES:
        raise BadInputError(f"unknown quantization mode {mode!r}: expected one of {', '.join(MODES)}")
    if calibration_method not in CALIBRATION_METHODS:
        raise BadInputError(f"unknown calibration method {calibration_method!r}: expected one of {', '.join(CALIBRATION_METHODS)}")
    if calibration is not None and mode == "fp16":
        raise BadInputError(f"--calibration is for --mode int8-static (or int8's drift check), not {mode}")
    if mode != "int8" and (deploy is not None or forms is not None or examples or providers is not None):
        raise BadInputError(f"--for, --form, --example and --provider are for --mode int8, not {mode}")
    if mode == "int8":
        data = calibration if data is None else data
        if providers is not None:
            from rnnedge.runtime.providers import select_providers

            select_providers(providers)  # an unknown or absent provider: one line before any work
    shape = parse_for(deploy)
    ops = _op_types(op_types, quantize_conv)
    _check_forms(forms)
    model = load_onnx(model_path)
    meta = {p.key: p.value for p in model.metadata_props}
    # float32 size: the model with its weights, external data files included (what the int8 file must beat)
    result = QuantizeResult(Path(model_path), Path(out_path), mode, model.ByteSize(), 0, 0.0, per_channel=bool(per_channel))
    if not any(k.startswith("rnnedge.") for k in meta):
        result.warnings.append(f"{Path(model_path).name}: not an rnnedge export (no rnnedge metadata): quantizing as a foreign file")
    moved = constants_to_initializers(model)
    if moved:
        result.notes.append(f"{moved} Constant weight(s) (subgraphs included) turned into initializers so they can be int8")
    already = nothing_to_quantize(model, ops) if mode == "int8" else None  # before folding turns int8 weights float
    folded = fold_constant_weights(model, {**WEIGHT_INPUTS, **{op: (1, 2, 3) for op in RECURRENT}})
    if folded:
        result.notes.append(f"{folded} weight(s) computed from constants in the graph (Slice/Concat/...) folded into initializers")
    name_nodes(model)
    new_meta = dict(meta, **{"rnnedge.quantization": mode})
    if mode == "fp16":
        out = _to_fp16(model, keep_io_types)
    elif mode == "int8-static":
        out = _int8_static(model, meta, calibration, calibration_method, result)
    elif already:  # an int8 or float16 file given again: nothing to measure or make int8, the file as it is
        out, result.kept_fp32 = as_given(model_path), already
        result.notes.append(already)
    else:
        out = quantize_int8(model, meta, shape, forms, ops, threads, result, data=data, examples=examples, providers=providers)
        record = {"for": result.deploy, "forms": result.forms, "fp32_ms": result.fp32_ms, "int8_ms": result.int8_ms}
        new_meta["rnnedge.quantization.forms"] = '{"kept_fp32":1}' if result.kept_fp32 else json.dumps(record, sort_keys=True)
    if result.relowered and "rnnedge.lowering" in meta and not any(n.op_type in RECURRENT for n in out.graph.node):
        new_meta["rnnedge.lowering"] = "scan"
    result.stayed_float = stayed_float(out if result.kept_fp32 is None or already else model, mode, ops, _reasons(result))
    compact_names(out)  # the quantizer's long value names are ~10% of a small int8 file
    result.warnings.extend(result.stayed_float)
    del out.metadata_props[:]
    import onnx

    onnx.helper.set_model_props(out, dict(sorted(new_meta.items())))
    result.output_bytes = save_onnx(out, out_path)
    why = does_not_pay(result.output_bytes, result.input_bytes) if mode == "int8" else None
    if why:  # int8 (with its record) does not pay: the file as it was
        save_onnx(load_onnx(model_path), out_path)  # self-contained: external data of the input comes along
        result.kept_fp32 = result.kept_fp32 or why
        result.output_bytes, result.forms, result.relowered = result.input_bytes, {}, False
        result.stayed_float = stayed_float(model, mode, ops, _reasons(result))
        result.notes.append("written unchanged (no rnnedge.quantization record): float32 kept, never larger")
    result.size_ratio = result.output_bytes / result.input_bytes
    for w in result.warnings:
        log.warning("%s", w)
    return result


def _op_types(op_types, quantize_conv: bool) -> tuple[str, ...]:
    if op_types is None:
        ops = list(DEFAULT_OP_TYPES)
    else:
        ops = [o.strip() for o in (op_types.split(",") if isinstance(op_types, str) else op_types) if o.strip()]
        unknown = sorted(set(ops) - WEIGHT_OPS)
        if unknown or not ops:
            raise BadInputError(f"--op-types {','.join(ops)}: expected some of {', '.join(sorted(WEIGHT_OPS - {'Attention'}))}")
    if quantize_conv and "Conv" not in ops:
        ops.append("Conv")
    return tuple(ops)


def _check_forms(forms) -> None:
    if forms is None:
        return
    values = [forms] if isinstance(forms, str) else list(forms.values()) if isinstance(forms, dict) else None
    if values is None or any(f not in FORMS for f in values):
        raise BadInputError(f"--form {forms!r}: expected one of {', '.join(FORMS)}")


# -- int8-static and fp16 ------------------------------------------------------------------------


def _int8_static(model, meta: dict, calibration, method: str, result: QuantizeResult):
    import onnx

    from rnnedge.quantizing.calibration import calibration_reader

    result.relowered = _relower(model, result.notes, result.warnings, result.float_reasons)
    for graph in _subgraphs(model.graph):  # the re-lowering and quantize_static stay at the top level
        result.float_reasons.update({n.name: "int8-static re-lowers top-level recurrent nodes only; this one is in a "
                                     "Loop/Scan/If body (--mode int8 makes its weights int8)" for n in graph.node if n.op_type in RECURRENT})
    with tempfile.TemporaryDirectory(prefix="rnnedge-quantize-") as tmp:
        src, dst = Path(tmp) / "float.onnx", Path(tmp) / "quant.onnx"
        onnx.save(model, str(src))
        reader = calibration_reader(calibration, model, meta, result.warnings)
        _static(src, dst, reader, method, result.per_channel, result.notes)
        return onnx.load(str(dst))


def _relower(model, notes: list[str], warns: list[str], reasons: dict) -> bool:
    """Re-lower every recurrent node to a hoisted-projection Scan, in place; why one is not goes to `reasons`."""
    from exporters.scan import lower_to_scan

    todo = [n for n in model.graph.node if n.op_type in RECURRENT]
    if not todo:
        return False
    try:
        skipped = lower_to_scan(model, ops=RECURRENT)
    except Exception as exc:  # a graph the rewrite does not understand: quantize it as it is
        log.debug("re-lowering to Scan failed", exc_info=True)
        warns.append(f"could not re-lower the recurrent nodes to Scan ({type(exc).__name__}: {exc}); quantizing as is")
        return False
    for line in skipped:  # "name: why": the stayed-float line says it
        name, _, why = line.partition(": ")
        reasons[name] = f"int8-static could not re-lower it to Scan ({why})"
    done = len(todo) - len(skipped)
    if done:
        notes.append(f"re-lowered {done} recurrent node(s) to hoisted-projection Scan so their weights can be int8")
    return done > 0


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
        raise BadInputError(f"calibration failed: {type(exc).__name__}: {first_line(exc)}") from None
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


def _reasons(result: QuantizeResult) -> dict:
    """{node name: why} for stayed_float: the whole model's reason where float32 was kept, else each unit's own."""
    if result.kept_fp32:
        return {**result.float_reasons, "*": result.kept_fp32.removesuffix("; float32 kept")}
    return result.float_reasons


def stayed_float(model, mode: str = "int8", op_types=DEFAULT_OP_TYPES, reasons: dict | None = None) -> list[str]:
    """One line per node (top level and subgraphs) whose weight (a float32 initializer of rank >= 2) stayed float32,
    with one reason: `reasons[node name]` (or `reasons["*"]` for every node) where quantize decided so."""
    import onnx

    from rnnedge.quantizing.forms.units import weight_users

    lines = {}  # node name -> its line (a body's node reading outer-scope weights is met from the outer graph too)
    for graph in [model.graph, *_subgraphs(model.graph)]:
        weights = {t.name: list(t.dims) for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT and len(t.dims) >= 2}
        for node in weight_users(graph):
            if node.name in lines:
                continue
            if mode == "fp16" and node.op_type in FP16_KEEP_FLOAT:
                lines[node.name or len(lines)] = f"{node.op_type} node {node.name or '?'!r} stays float32: {WHY_FLOAT['Transpose']}"
                continue
            slots = WEIGHT_INPUTS.get(node.op_type) if mode != "fp16" else None  # int8: weights, not biases
            held = [i for k, i in enumerate(node.input) if i in weights and (slots is None or k in slots)]
            if held and (node.op_type in WEIGHT_OPS or mode == "fp16"):
                why = WHY_FLOAT.get(node.op_type, "not quantized")
                if mode == "int8" and node.op_type not in op_types:
                    why = WHY_FLOAT["Conv"] if node.op_type == "Conv" else f"{node.op_type} is not in --op-types"
                elif reasons and (node.name in reasons or "*" in reasons):
                    why = reasons.get(node.name) or reasons["*"]
                lines[node.name or len(lines)] = f"{node.op_type} node {node.name or '?'!r} stays float32: {why} (weight {held[0]} {weights[held[0]]})"
    return list(lines.values())


def int8_weights(model) -> dict[str, list[str]]:
    """{graph name: int8 initializers of rank >= 2} for the top level and every subgraph (tests, reports)."""
    import onnx

    found = {}
    for graph in [model.graph, *_subgraphs(model.graph)]:
        names = [t.name for t in graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) >= 2]
        if names:
            found[graph.name] = names
    return found
