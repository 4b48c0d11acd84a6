"""Units: what quantize chooses a form for. A unit is one thing that loops: a standard `RNN`/`GRU`/`LSTM` node, or a
`Scan` that an earlier lowering made (its body holds the recurrent weights), plus REST (the MatMul/Gemm nodes outside any
loop, a classifier head) and OTHER (every other node whose weights become int8). Which forms apply to a unit is asked
of the form registry (`rnnedge.quantizing.forms.registry`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from rnnedge.quantizing.forms.registry import candidates

log = logging.getLogger(__name__)

RECURRENT = ("RNN", "GRU", "LSTM")
REST = "(outside loops)"  # the unit name of the MatMul/Gemm nodes outside any loop
OTHER = "(other weights)"  # every other node whose weights become int8 (Conv when asked, Gather, MatMuls in If branches)
FLOOR = "weights-int8"
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


def weight_users(graph):
    """The nodes that can read `graph`'s initializers: its own, and those of the graphs nested in it (Loop/Scan/If
    bodies read outer-scope values by name) where the body has no initializer of its own by that name."""
    yield from graph.node
    for sub in subgraphs(graph):
        local = {t.name for t in sub.initializer}
        for node in sub.node:
            if not local.intersection(node.input):
                yield node
            else:  # a body's own initializer of the same name shadows the outer one: only its other inputs count
                shadowed = type(node)()
                shadowed.CopyFrom(node)
                shadowed.input[:] = ["" if i in local else i for i in node.input]
                yield shadowed


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
            units.append(Unit(node.name, node.op_type, candidates(node.op_type)))
        elif node.op_type == "Scan" and _has_body_weights(node):
            units.append(Unit(node.name, "Scan", candidates("Scan")))
        elif node.op_type in ("MatMul", "Gemm") and len(node.input) > 1 and node.input[1] in inits:
            has_rest = True
    if has_rest:
        units.append(Unit(REST, "REST", candidates("REST")))
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
        names += [n.name for n in weight_users(graph) if n.op_type in op_types
                  and any(i < len(n.input) and n.input[i] in inits for i in WEIGHT_INPUTS.get(n.op_type, ()))]
    return list(dict.fromkeys(names))  # a body's node reading outer-scope weights is met from its own graph too


def unit_nodes(model, unit: Unit) -> set[str]:
    """Names of the nodes whose weights belong to `unit` (a Scan's body nodes, all levels, included)."""
    from exporters.graph import all_nodes, node_graphs

    if unit.op == "REST":
        return set(rest_matmuls(model, {}))
    if unit.op == "OTHER":
        return set(unit.nodes)
    node = next(n for n in all_nodes(model.graph) if n.name == unit.name)
    return {unit.name} | {n.name for body in node_graphs(node) for n in all_nodes(body)}


def rest_matmuls(model, units: dict) -> list[str]:
    inits = {t.name for t in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type in ("MatMul", "Gemm") and len(n.input) > 1 and n.input[1] in inits]
