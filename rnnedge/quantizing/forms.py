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

`build(model, forms, ...)` returns a new ModelProto with every unit in its form; the weights that
no form turned into int8 (and that belong to an op type being quantized) get `weights-int8` storage,
so every file is int8-sized whichever forms win. Pure graph code: files only in a temp folder for
onnxruntime's quantizers, which take paths.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

RECURRENT = ("RNN", "GRU", "LSTM")
REST = "(outside loops)"  # the unit name of the MatMul/Gemm nodes outside any loop
OTHER = "(other weights)"  # every other node whose weights become int8 (Conv when asked, Gather, MatMuls in If branches)
FLOOR = "weights-int8"
FORMS = ("weights-int8", "lstm-int8", "scan-int8", "scan-nbits8", "matmul-int8", "float32")
FP32 = "float32"  # a unit that keeps float32 weights (applies to every unit; chosen only when int8 drifts)
DEFAULT_OP_TYPES = ("MatMul", "Gemm", "RNN", "GRU", "LSTM", "Gather")  # Conv: only when asked (accuracy, see quantize.py)
# which input of a node holds a weight that `weights-int8` stores as int8, per op type
WEIGHT_INPUTS = {"MatMul": (1,), "Gemm": (1,), "RNN": (1, 2), "GRU": (1, 2), "LSTM": (1, 2), "Conv": (1,), "Gather": (0,)}
MIN_ROW = 16  # rows shorter than this share one scale per tensor (per-row scales would cost more than they save)
NBITS_BLOCK = 32  # MatMulNBits block size (weights per scale)


@dataclass
class Unit:
    name: str  # node name (unique after `name_nodes`), or REST / OTHER
    op: str  # "RNN" | "GRU" | "LSTM" | "Scan" | "REST" | "OTHER"
    forms: tuple[str, ...]  # forms that apply, the floor first
    nodes: tuple[str, ...] = ()  # OTHER: the nodes it stands for


def subgraphs(graph):
    """Every graph nested in `graph` (Scan/Loop/If bodies, graph lists too), recursively: exporters.graph's walker."""
    from exporters.graph import subgraphs as nested

    return nested(graph)


def name_nodes(model) -> None:
    """Give every node (subgraphs too) a unique name, in place: forms are chosen by node name."""
    seen: set[str] = set()
    for graph in [model.graph, *subgraphs(model.graph)]:
        for k, node in enumerate(graph.node):
            if not node.name or node.name in seen:
                base = f"{graph.name or 'g'}/{node.op_type}{k}"
                name, j = base, 0
                while name in seen:
                    j += 1
                    name = f"{base}_{j}"
                node.name = name
            seen.add(node.name)


def constants_to_initializers(model) -> int:
    """Constant nodes holding a tensor of rank >= 1 become initializers of their graph (subgraphs too), in place.

    onnxruntime's quantizer fails on weights held as Constant nodes inside If/Loop/Scan bodies, and the
    lowerings read initializers; this makes both work on such files. Returns how many were moved.
    """
    import onnx

    moved = 0
    for graph in reversed([model.graph, *subgraphs(model.graph)]):  # innermost first: rewriting a graph copies its nodes
        keep = []
        for node in graph.node:
            attr = node.attribute[0] if node.op_type == "Constant" and len(node.attribute) == 1 else None
            if attr is not None and attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR and len(attr.t.dims) >= 1:
                tensor = onnx.TensorProto()
                tensor.CopyFrom(attr.t)
                tensor.name = node.output[0]
                graph.initializer.append(tensor)
                moved += 1
            else:
                keep.append(node)
        if len(keep) != len(graph.node):
            del graph.node[:]
            graph.node.extend(keep)
    return moved


def _has_body_weights(node) -> bool:
    import onnx

    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            inits = {t.name for t in attr.g.initializer if len(t.dims) >= 2}
            if any(n.op_type == "MatMul" and len(n.input) > 1 and n.input[1] in inits for n in attr.g.node):
                return True
    return False


def find_units(model, op_types=None) -> list[Unit]:
    """The units of the model, each with the forms that apply to it (see the module docstring). With `op_types`, one
    more unit, OTHER (floor only), stands for the remaining nodes of those types that hold a weight, so that each
    int8 weight belongs to a unit that can keep float32 alone."""
    units = []
    has_rest = False
    inits = {t.name for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type in RECURRENT and node.domain in ("", "ai.onnx"):
            extra = ("lstm-int8",) if node.op_type == "LSTM" else ()
            units.append(Unit(node.name, node.op_type, (FLOOR, *extra, "scan-int8", "scan-nbits8")))
        elif node.op_type == "Scan" and _has_body_weights(node):
            units.append(Unit(node.name, "Scan", (FLOOR, "scan-int8", "scan-nbits8")))
        elif node.op_type in ("MatMul", "Gemm") and len(node.input) > 1 and node.input[1] in inits:
            has_rest = True
    if has_rest:
        units.append(Unit(REST, "REST", (FLOOR, "matmul-int8")))
    for graph in subgraphs(model.graph):  # recurrent nodes in If/Loop bodies: the floor, or float32 where it drifts
        units += [Unit(n.name, n.op_type, (FLOOR,)) for n in graph.node if n.op_type in RECURRENT and n.domain in ("", "ai.onnx")]
    if op_types is not None:
        claimed = set().union(set(), *(unit_nodes(model, u) for u in units))
        other = tuple(n for n in _weight_nodes(model, op_types) if n not in claimed)
        if other:
            units.append(Unit(OTHER, "OTHER", (FLOOR,), other))
    return units


def _weight_nodes(model, op_types) -> list[str]:
    """Names of the nodes (every graph) of `op_types` with a weight initializer of rank >= 2 in a WEIGHT_INPUTS slot."""
    from exporters.graph import all_graphs

    names = []
    for graph in all_graphs(model.graph):
        inits = {t.name for t in graph.initializer if len(t.dims) >= 2}
        names += [n.name for n in graph.node if n.op_type in op_types
                  and any(i < len(n.input) and n.input[i] in inits for i in WEIGHT_INPUTS.get(n.op_type, ()))]
    return names


# -- building a candidate ------------------------------------------------------------------------


def build(model, forms: dict[str, str], *, op_types=DEFAULT_OP_TYPES, per_channel: bool = False):
    """A copy of `model` (nodes named by `name_nodes`) with each unit in forms[unit name] (default the floor)."""
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    units = {u.name: u for u in find_units(out, op_types)}
    dynamic, nbits, floats = [], [], set()  # node names for onnxruntime's dynamic quantizer, for MatMulNBits, kept float32
    for name, form in forms.items():
        unit = units.get(name)
        if unit is None or form == FLOOR:
            continue
        if form == FP32:
            floats.update(unit_nodes(out, unit))
            continue
        if form not in unit.forms:
            raise ValueError(f"form {form!r} does not apply to {unit.op} unit {name!r}")
        if form == "lstm-int8":
            dynamic.append(name)
        elif form == "matmul-int8":
            dynamic.extend(_rest_matmuls(out, units))
        else:  # scan-int8 / scan-nbits8
            matmuls = _scan_matmuls(out, unit)
            (dynamic if form == "scan-int8" else nbits).extend(matmuls)
    with tempfile.TemporaryDirectory(prefix="rnnedge-forms-") as tmp:
        if dynamic:
            out = _dynamic(out, Path(tmp), dynamic, op_types, per_channel)
        if nbits:
            out = _nbits(out, nbits)
    store_weights_int8(out, op_types, skip=floats)
    return out


def unit_nodes(model, unit: Unit) -> set[str]:
    """Names of the nodes whose weights belong to `unit` (a Scan's body nodes, all levels, included)."""
    from exporters.graph import all_nodes, node_graphs

    if unit.op == "REST":
        return set(_rest_matmuls(model, {}))
    if unit.op == "OTHER":
        return set(unit.nodes)
    node = next(n for n in all_nodes(model.graph) if n.name == unit.name)
    return {unit.name} | {n.name for body in node_graphs(node) for n in all_nodes(body)}


def _rest_matmuls(model, units: dict) -> list[str]:
    inits = {t.name for t in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type in ("MatMul", "Gemm") and len(n.input) > 1 and n.input[1] in inits]


def _scan_matmuls(model, unit: Unit) -> list[str]:
    """Lower `unit` to the Scan form if it is a standard node; the names of its MatMuls (projection and body)."""
    from exporters.scan import lower_to_scan

    before = {n.name for n in model.graph.node}
    if unit.op in RECURRENT:
        skipped = lower_to_scan(model, ops=(unit.op,), names={unit.name})
        if skipped:
            raise ValueError(f"cannot lower {unit.name!r} to Scan: {skipped[0]}")
        new = [n for n in model.graph.node if n.name not in before]
    else:
        new = [n for n in model.graph.node if n.name == unit.name]
    name_nodes(model)
    names = [n.name for n in new if n.op_type == "MatMul"]
    for node in new:
        if node.op_type == "Scan":
            for attr in node.attribute:
                if attr.name == "body":
                    inits = {t.name for t in attr.g.initializer}
                    names += [b.name for b in attr.g.node if b.op_type == "MatMul" and b.input[1] in inits]
    return names


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


# -- weights-int8: int8 storage, fp32 compute ----------------------------------------------------


def _scale_axes(op: str, index: int, node, rank: int) -> tuple[int, ...]:
    """Axes reduced to one scale (so one scale per output channel), for a weight of `rank` at node input `index`."""
    if op == "MatMul":
        return (rank - 2,) if rank >= 2 else ()  # (K, N): per column N
    if op == "Gemm":
        trans = any(a.name == "transB" and a.i for a in node.attribute)
        return (1,) if trans else (0,)
    return (rank - 1,)  # RNN/GRU/LSTM (D, G*H, K): per gate row; Conv (M, C, kh, kw) is handled below; Gather: per row


def quantize_array(w: np.ndarray, axes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8: w ~= q * scale, one scale per slice along `axes` (all axes if the slices are short)."""
    row = int(np.prod([w.shape[a] for a in axes])) if axes else w.size
    if row < MIN_ROW or not axes:
        axes = tuple(range(w.ndim))
    amax = np.max(np.abs(w), axis=axes, keepdims=True).astype(np.float32)
    scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
    if scale.size == 1:
        scale = scale.reshape(())
    return q, scale


def store_weights_int8(model, op_types=DEFAULT_OP_TYPES, skip: set[str] = frozenset()) -> list[str]:
    """Every float32 weight (rank >= 2) of a node of `op_types` (not named in `skip`), in every graph: int8 + Cast +
    Mul(scale), in place. Returns the names of the weights stored so. onnxruntime folds Cast/Mul of constants at load.
    """
    import onnx
    from onnx import helper, numpy_helper

    done = []
    for graph in reversed([model.graph, *subgraphs(model.graph)]):  # innermost first: rewriting a graph copies its nodes
        inits = {t.name: t for t in graph.initializer}
        picks: dict[str, tuple] = {}
        for node in graph.node:
            for idx in WEIGHT_INPUTS.get(node.op_type, ()) if node.op_type in op_types and node.name not in skip else ():
                name = node.input[idx] if idx < len(node.input) else ""
                t = inits.get(name)
                if t is not None and t.data_type == onnx.TensorProto.FLOAT and len(t.dims) >= 2 and name not in picks:
                    axes = (1, 2, 3)[: len(t.dims) - 1] if node.op_type == "Conv" else _scale_axes(node.op_type, idx, node, len(t.dims))
                    picks[name] = axes
        if not picks:
            continue
        front, keep = [], [t for t in graph.initializer if t.name not in picks]
        graph_inputs = [i for i in graph.input if i.name not in picks]
        for name, axes in picks.items():
            w = numpy_helper.to_array(inits[name])
            if w.size < MIN_ROW:
                keep.append(inits[name])
                continue
            q, scale = quantize_array(w, axes)
            keep += [numpy_helper.from_array(q, f"{name}_int8"), numpy_helper.from_array(scale, f"{name}_scale")]
            front += [helper.make_node("Cast", [f"{name}_int8"], [f"{name}_f"], name=f"{name}/dequantize_cast", to=onnx.TensorProto.FLOAT),
                      helper.make_node("Mul", [f"{name}_f", f"{name}_scale"], [name], name=f"{name}/dequantize_mul")]
            done.append(name)
        nodes = front + list(graph.node)
        del graph.node[:], graph.initializer[:], graph.input[:]
        graph.node.extend(nodes)
        graph.initializer.extend(keep)
        graph.input.extend(graph_inputs)
    return done
