"""Building a candidate: a copy of the model with every unit in its chosen form (each form's `plan`), onnxruntime's
quantizers run on what the plans ask for, and the floor's int8 storage for every remaining weight. Pure graph code:
files only in a temp folder for onnxruntime's quantizers, which take paths."""

from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path

from rnnedge.quantizing.forms.registry import Plan, form_named
from rnnedge.quantizing.forms.units import DEFAULT_OP_TYPES, FLOOR, FP32, NBITS_BLOCK, find_units
from rnnedge.quantizing.forms.weights_int8 import store_weights_int8


def build(model, forms: dict[str, str], *, op_types=DEFAULT_OP_TYPES, per_channel: bool = False):
    """A copy of `model` (nodes named by `name_nodes`) with each unit in forms[unit name] (default the floor)."""
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    units = {u.name: u for u in find_units(out, op_types)}
    plan = Plan()
    for name, form in forms.items():
        unit = units.get(name)
        if unit is None or form == FLOOR:
            continue
        if form != FP32 and form not in unit.forms:
            raise ValueError(f"form {form!r} does not apply to {unit.op} unit {name!r}")
        form_named(form).plan(out, unit, units, plan)
    with tempfile.TemporaryDirectory(prefix="rnnedge-forms-") as tmp:
        if plan.dynamic:
            out = _dynamic(out, Path(tmp), plan.dynamic, op_types, per_channel)
        if plan.nbits:
            out = _nbits(out, plan.nbits)
    store_weights_int8(out, op_types, skip=plan.floats)
    return out


@contextlib.contextmanager
def quiet_ort():
    """onnxruntime.quantization logs advice ("consider pre-processing") on the root logger: hush it."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _dynamic(model, tmp: Path, nodes: list[str], op_types, per_channel: bool):
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, dst = tmp / "float.onnx", tmp / "dynamic.onnx"
    onnx.save(model, str(src))
    ops = [op for op in ("MatMul", "Gemm", "LSTM") if op in op_types or op == "LSTM"]
    with quiet_ort():
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=per_channel, nodes_to_quantize=nodes,
                         op_types_to_quantize=ops, extra_options={"EnableSubgraph": True, "MatMulConstBOnly": True})
    return onnx.load(str(dst))


def _nbits(model, nodes: list[str]):
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    with quiet_ort():
        q = MatMulNBitsQuantizer(model, bits=8, block_size=NBITS_BLOCK, is_symmetric=True, nodes_to_include=nodes)
        q.process()
    return q.model.model
