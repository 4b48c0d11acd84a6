"""int8: every unit's form forced (`forms`) or measured on the inputs the file is made for (quantizing.inputs).

    out = quantize_int8(model, meta, shape, forms, ops, threads, result, data="digits")   # fills `result` in

The measuring and the accuracy guard are rnnedge.quantizing.select's; this module decides what is written:
the chosen forms, the floor where the greedy steps did not hold up, the default form (weights-int8,
unmeasured) where no input runs, and float32 where int8 does not pay or moves the outputs too far.
"""

from __future__ import annotations

import logging

from exporters.graph import compact_names
from rnnedge.errors import BadInputError
from rnnedge.files import load_onnx
from rnnedge.quantizing.forms import FLOOR, FP32, RECURRENT, build, find_units, unit_nodes
from rnnedge.quantizing.select import CANDIDATE_DRIFT, MARGIN

log = logging.getLogger(__name__)


class QuantizeFailure(RuntimeError):
    """onnxruntime's quantizer failed on a valid model: not the user's input (CLI: internal error, not exit 2)."""


def quantize_int8(model, meta: dict, shape, forms, ops, threads: int, result, data=None, examples=None, providers=None):
    """The int8 model: forms forced or measured (see quantizing.select); float32 kept where int8 does not pay."""
    from rnnedge.quantizing.select import default_shape

    units = find_units(model, ops)
    result.deploy = default_shape(meta, model, shape)
    if forms is not None:  # forced: no measuring
        chosen = _forced(units, forms)
        timer = None
        for unit in (u for u in units if chosen[u.name] == FP32):
            result.float_reasons.update(dict.fromkeys(unit_nodes(model, unit), "float32 as asked (--form)"))
    else:
        timer = _timer(model, meta, ops, threads, result, data, examples, providers)
        chosen = _choose(units, timer, result) if timer is not None else {u.name: FLOOR for u in units}
        if chosen is None:
            return as_given(result.input_path)
    out = _build(model, chosen, ops, bool(result.per_channel))
    if timer is None and forms is not None and providers is not None:  # forced: refused where it cannot run
        from rnnedge.quantizing.select import runs_on

        refused = runs_on(out, providers)
        if refused:
            raise BadInputError(f"--form {forms}: {refused}")
    if timer is not None:
        floor = {u.name: (FP32 if chosen[u.name] == FP32 else FLOOR) for u in units}
        result.fp32_ms, result.int8_ms, floor_ms, confirmed = timer.final(out, None if chosen == floor else _build(model, floor, ops, False))
        if not confirmed:  # the greedy steps did not hold up in a second, separate run: the floor
            result.notes.append(f"forms {chosen} measured {result.int8_ms:.3f} ms against the floor's {floor_ms:.3f} "
                                f"(not {MARGIN:.0%} faster in two separate runs): floor kept")
            chosen, out, result.int8_ms = floor, _build(model, floor, ops, bool(result.per_channel)), floor_ms
        result.judged_drift = timer.judge(timer._session(out))[1]
    result.forms = chosen
    if timer is not None and result.deploy["batch"] < 8 and any(len(u.forms) > 1 and chosen[u.name] == FLOOR for u in units):
        result.notes.append(f"forms chosen for batch {result.deploy['batch']} x {result.deploy['seq']} steps; at batch 8 and more the "
                            "int8-compute forms (scan-int8, lstm-int8) often win: pass --for batch=B,seq=T for your shape")
    result.relowered = any(f.startswith("scan") and u.op in RECURRENT for u in units for n, f in chosen.items() if n == u.name)
    plain = as_given(result.input_path)

    probe = type(out)()
    probe.CopyFrom(out)
    compact_names(probe)  # as it will be written (node names stay on `out` for the stayed_float report)
    float_bytes, int8_bytes = plain.ByteSize(), probe.ByteSize()
    why = does_not_pay(int8_bytes, float_bytes, strict=False)
    if why:
        result.kept_fp32 = why
        result.notes.append(why)
        result.forms, result.relowered = {}, False
        return plain
    return out


def nothing_to_quantize(model, ops) -> str | None:
    """Why no weight of this model can become int8 (none is a float32 weight of `ops`, and it is a file already
    quantized or a float16 file), or None. Asked before weights computed from constants are folded (that would turn
    an int8 file's Cast/Mul-dequantized weights into float32 ones)."""
    import onnx

    from exporters.graph import all_graphs, all_nodes
    from rnnedge.quantizing.forms import WEIGHT_INPUTS
    from rnnedge.quantizing.forms.units import weight_users

    kinds = set()
    for graph in all_graphs(model.graph):
        inits = {t.name: t.data_type for t in graph.initializer if len(t.dims) >= 2}
        for node in weight_users(graph):
            for k in WEIGHT_INPUTS.get(node.op_type, ()) if node.op_type in ops else ():
                kind = inits.get(node.input[k]) if k < len(node.input) else None
                if kind == onnx.TensorProto.FLOAT:
                    return None
                kinds.add(kind)
    int8 = sorted({n.op_type for n in all_nodes(model.graph) if n.op_type in QUANTIZED_OPS})
    if int8 or any(t.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8) and len(t.dims) >= 2
                   for g in all_graphs(model.graph) for t in g.initializer):
        what = f" ({', '.join(int8)})" if int8 else ""
        return f"nothing to quantize: the model is already int8{what}; written unchanged"
    wide = {onnx.TensorProto.FLOAT16: "float16", onnx.TensorProto.BFLOAT16: "bfloat16", onnx.TensorProto.DOUBLE: "float64"}
    for kind, name in wide.items():
        if kind in kinds:
            return f"nothing to quantize: its weights are {name} (int8 is made from a float32 model); written unchanged"
    return None  # weights computed in the graph (a dynamo export's Slice/Concat): folding may find them


QUANTIZED_OPS = ("DynamicQuantizeLSTM", "MatMulInteger", "ConvInteger", "QLinearMatMul", "QLinearConv", "DequantizeLinear",
                 "MatMulNBits", "DynamicQuantizeMatMul", "QAttention", "GatherBlockQuantized")


def does_not_pay(int8_bytes: int, float_bytes: int, strict: bool = True) -> str | None:
    """The one "int8 does not pay" rule: why float32 is kept when the int8 model would be larger (`strict`) or no smaller
    than the float32 one (too few weights: scales and dequantize nodes outweigh what int8 saves), else None."""
    if int8_bytes > float_bytes or (not strict and int8_bytes == float_bytes):
        return (f"int8 does not pay for this model: the int8 file would be {int8_bytes:,} bytes, "
                f"float32 {float_bytes:,} (too few weights); float32 kept")
    return None


def _forced(units, forms) -> dict:
    chosen = {u.name: (forms if isinstance(forms, str) else forms.get(u.name, FLOOR)) for u in units}
    # float32 applies to every unit (forms list their int8 candidates only); another form that does not apply: the floor
    chosen = {name: (f if f == FP32 or f in next(u.forms for u in units if u.name == name) else FLOOR) for name, f in chosen.items()}
    if isinstance(forms, dict) and set(forms) - set(chosen):
        raise BadInputError(f"--form: no unit named {sorted(set(forms) - set(chosen))[0]!r}; units: {sorted(chosen)}")
    return chosen


def _timer(model, meta: dict, ops, threads: int, result, data, examples, providers):
    """The Timer on the inputs the file is made for (quantizing.inputs), or None, said in one line, when none run:
    then every unit keeps the default form (weights-int8), unmeasured and unjudged."""
    from rnnedge.quantizing.inputs import find_inputs, ort_reason
    from rnnedge.quantizing.select import Timer, open_on

    def run(feeds):
        return ref.run(None, feeds)

    ref = open_on(model, providers, threads)
    found = find_inputs(model, meta, result.deploy, data=data, examples=examples, run=run)
    if found.timing is not None:
        try:
            timer = Timer(model, found, ops, bool(result.per_channel), threads, result.notes, providers=providers)
        except Exception as exc:  # the model refuses the spec's / the user's inputs: the default form, said so
            log.debug("float model does not run on %s", found.source, exc_info=True)
            found.timing, found.why = None, f"the float model does not run on {found.source}: {ort_reason(exc)}"
    if found.timing is None:
        result.warnings.append(f"forms not measured and drift not judged: {found.why}; every unit keeps the default form "
                               f"({FLOOR}); pass --eval INPUTS.npz or --example NAME=VALUE")
        return None
    result.deploy, result.judged_on = found.deploy, found.source
    return timer


def _choose(units, timer, result) -> dict | None:
    """The measured forms; None (float32 kept for the whole model, said why) when no unit can be int8 accurately."""
    from rnnedge.quantizing.select import choose_forms

    chosen, result.measured = choose_forms(units, timer, accurate=timer.accurate)
    for unit in units:
        why = timer.drift.get(unit.name)
        if chosen.get(unit.name) == FP32 and why:
            for name in unit_nodes(timer.model, unit):
                whose = "its int8 weights" if unit.op != "OTHER" else "the int8 weights of the non-recurrent weight nodes together"
                result.float_reasons[name] = (f"{whose} move the outputs too far ({why} on {timer.source}; "
                                          f"the limit is {CANDIDATE_DRIFT:.0%} of the range)")
    if not all(f == FP32 for f in chosen.values()) and not timer.accurate(chosen):  # each alone fine, together not
        why = f"int8 forms {chosen} together move the outputs by more than {CANDIDATE_DRIFT:.0%} of their range on {timer.source}"
        chosen = {u.name: FP32 for u in units}
        result.kept_fp32 = why + "; float32 kept"
    elif all(f == FP32 for f in chosen.values()):
        result.kept_fp32 = "every unit's int8 weights move this model's outputs too far; float32 kept"
    if result.kept_fp32:
        result.forms = {}
        return None
    return chosen


def as_given(path):
    """The float32 model as the user wrote it (no node names added), names compacted as a written file's are."""
    plain = load_onnx(path)
    compact_names(plain)
    return plain


def _build(model, forms: dict, ops, per_channel: bool):
    try:
        return build(model, forms, op_types=ops, per_channel=per_channel)
    except Exception as exc:  # onnxruntime's quantizer (or a lowering) failed on a valid model: a bug, not bad input
        raise QuantizeFailure(f"quantizing with forms {forms} failed: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}") from exc
