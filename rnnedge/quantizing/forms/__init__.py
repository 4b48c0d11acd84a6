"""The int8 graph forms `rnnedge quantize` chooses from, per recurrent unit, and how to build them.

A *unit* is one thing that loops: a standard `RNN`/`GRU`/`LSTM` node, or a `Scan` that an earlier
lowering made (its body holds the recurrent weights), plus one unit named `REST` for the MatMul/Gemm
nodes outside any loop (a classifier head). Each unit gets one form:

    weights-int8   int8-stored weights -> Cast -> Mul(per-row scale) -> the same fp32 operator.
                   onnxruntime folds the dequantization at load: fp32 speed at ~0.27 of the size.
                   The floor: always applicable, never slower than fp32 beyond noise.
    lstm-int8      onnxruntime's DynamicQuantizeLSTM (LSTM only): int8 weights and int8 products.
    scan-int8      the hoisted-projection Scan (`exporters.scan`) with int8 MatMuls (MatMulInteger),
                   inside the body too (RNN/GRU/LSTM nodes are lowered first; Scan units as they are).
    scan-nbits8    the same Scan with weight-only int8 MatMulNBits (blocks of 32, fp32 activations).
    matmul-int8    (REST only) dynamic int8 MatMul/Gemm outside the loop (MatMulInteger).
    float32        the unit's weights stay float32: never a speed candidate, the fallback where even the
                   floor's int8 weights move the outputs too far (an unstable ReLU recurrence, say).

One module per form, each registering itself (`registry`): weights_int8 (the floor), lstm_int8, scan (scan-int8,
scan-nbits8), matmul_int8, float32. `units` finds the units; `assembly.build(model, forms, ...)` returns a new ModelProto with
every unit in its form; the weights that no form turned into int8 (and that belong to an op type being quantized) get
`weights-int8` storage, so every file is int8-sized whichever forms win. A new form is a module with a `Form` subclass
and a `register(...)` call, imported below.
"""

from __future__ import annotations

# each form module registers its form on import (listed and measured in rank order, the floor first)
from rnnedge.quantizing.forms import (  # noqa: F401
    float32,
    lstm_int8,
    matmul_int8,
    scan,
    weights_int8,
)
from rnnedge.quantizing.forms.assembly import build, quiet_ort
from rnnedge.quantizing.forms.registry import Form, Plan, candidates, form_named, form_names, register
from rnnedge.quantizing.forms.units import (
    DEFAULT_OP_TYPES,
    FLOOR,
    FP32,
    MIN_ROW,
    NBITS_BLOCK,
    OTHER,
    RECURRENT,
    REST,
    WEIGHT_INPUTS,
    Unit,
    constants_to_initializers,
    find_units,
    name_nodes,
    subgraphs,
    unit_nodes,
)
from rnnedge.quantizing.forms.weights_int8 import quantize_array, store_weights_int8

FORMS = form_names()  # ("weights-int8", "lstm-int8", "scan-int8", "scan-nbits8", "matmul-int8", "float32")

__all__ = ["DEFAULT_OP_TYPES", "FLOOR", "FORMS", "FP32", "MIN_ROW", "NBITS_BLOCK", "OTHER", "RECURRENT", "REST", "WEIGHT_INPUTS",
           "Form", "Plan", "Unit", "build", "candidates", "constants_to_initializers", "find_units", "form_named", "form_names",
           "name_nodes", "quantize_array", "quiet_ort", "register", "store_weights_int8", "subgraphs", "unit_nodes"]
