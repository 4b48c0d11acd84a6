"""Planted exporter bugs, made in exported ONNX files themselves (initializers, attributes, wiring).

Each plant edits an `onnx.ModelProto` in place and works on both lowerings rnnedge writes:
`native` (standard RNN/GRU/LSTM nodes: W (D, G*H, I), R (D, G*H, H), B (D, 2*G*H)) and `scan`
(per layer and direction a MatMul with `scanK/Wt[_1]` (I, G*H) and an Add of `scanK/bias_x[_1]` in the
main graph; `Rt` (H, G*H) and, for GRU, `bias_h` inside each Scan body `scanK_dD`).
A plant returns False where its bug class does not apply to the file (e.g. directions on a
unidirectional model), so the caller can count applicable plants only.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}


def graphs(graph: onnx.GraphProto):
    """The graph and every subgraph under it (Scan/Loop/If bodies), depth first."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from graphs(attr.g)
            for g in attr.graphs:
                yield from graphs(g)


def initializers(model: onnx.ModelProto):
    return [init for g in graphs(model.graph) for init in g.initializer]


def get(model, name) -> np.ndarray:
    return numpy_helper.to_array(next(i for i in initializers(model) if i.name == name)).copy()


def put(model, name, array) -> None:
    init = next(i for i in initializers(model) if i.name == name)
    init.CopyFrom(numpy_helper.from_array(np.asarray(array, dtype=numpy_helper.to_array(init).dtype), name))


def recurrent_nodes(model):
    return [n for n in model.graph.node if n.op_type in GATES]


def scan_layer(model, layer: int = 0) -> dict:
    """Names of a scan-lowered layer's weights: Wt/bias_x per direction (main graph), Rt/bias_h per direction (bodies)."""
    names = {i.name for i in model.graph.initializer}
    prefix = f"scan{layer}/"
    dirs = [s for s in ("", "_1") if f"{prefix}Wt{s}" in names]
    bodies = {g.name: g for g in graphs(model.graph)}
    out = {"Wt": [f"{prefix}Wt{s}" for s in dirs], "bias_x": [f"{prefix}bias_x{s}" for s in dirs], "Rt": [], "bias_h": []}
    for d in range(len(dirs)):
        body = bodies[f"scan{layer}_d{d}_body"]
        out["Rt"].append(next(i.name for i in body.initializer if "/Rt" in i.name))
        out["bias_h"].append(next((i.name for i in body.initializer if "/bias_h" in i.name), None))
    return out


def lowering(model) -> str:
    return "native" if recurrent_nodes(model) else "scan"


def cell_of(model) -> str:
    nodes = recurrent_nodes(model)
    if nodes:
        return nodes[0].op_type
    s = scan_layer(model)
    gates = get(model, s["Rt"][0]).shape[1] // get(model, s["Rt"][0]).shape[0]
    return {1: "RNN", 3: "GRU", 4: "LSTM"}[gates]


def _swap_blocks(w: np.ndarray, axis: int, hidden: int, gates: int) -> np.ndarray:
    w = np.moveaxis(w.copy(), axis, 0)
    if gates > 1:  # the first two gate blocks trade places
        w[:hidden], w[hidden : 2 * hidden] = w[hidden : 2 * hidden].copy(), w[:hidden].copy()
    else:  # RNN: one block; two units trade input weights
        w[[0, 1]] = w[[1, 0]]
    return np.moveaxis(w, 0, axis)


def gate_blocks_swapped(model) -> bool:
    gates = GATES[cell_of(model)]
    if lowering(model) == "native":
        node = recurrent_nodes(model)[0]
        w = get(model, node.input[1])  # (D, G*H, I)
        put(model, node.input[1], _swap_blocks(w, 1, w.shape[1] // gates, gates))
    else:
        name = scan_layer(model)["Wt"][0]
        w = get(model, name)  # (I, G*H)
        put(model, name, _swap_blocks(w, 1, w.shape[1] // gates, gates))
    return True


def bias_dropped(model) -> bool:
    name = recurrent_nodes(model)[0].input[3] if lowering(model) == "native" else scan_layer(model)["bias_x"][0]
    put(model, name, np.zeros_like(get(model, name)))
    return True


def directions_swapped(model) -> bool:
    if lowering(model) == "native":
        node = recurrent_nodes(model)[0]
        if get(model, node.input[1]).shape[0] != 2:
            return False
        for k in (1, 2, 3):
            put(model, node.input[k], get(model, node.input[k])[::-1].copy())
        return True
    s = scan_layer(model)
    if len(s["Wt"]) != 2:
        return False
    for key in ("Wt", "bias_x", "Rt", "bias_h"):
        a, b = s[key]
        if a is not None:
            wa, wb = get(model, a), get(model, b)
            put(model, a, wb)
            put(model, b, wa)
    return True


def _largest(model, names) -> None:
    best = max(names, key=lambda n: float(np.abs(get(model, n)).max()))
    w = get(model, best)
    index = np.unravel_index(int(np.argmax(np.abs(w))), w.shape)
    w[index] *= 1.01
    put(model, best, w)


def largest_weight_nudged(model) -> bool:
    """The largest-magnitude weight of the whole file (recurrent, input or head) scaled by 1.01."""
    names = [i.name for i in initializers(model) if i.data_type == onnx.TensorProto.FLOAT and len(i.dims) >= 2]
    _largest(model, names)
    return True


def largest_recurrent_weight_nudged(model) -> bool:
    """The largest-magnitude recurrent weight (R / Rt) scaled by 1.01."""
    if lowering(model) == "native":
        names = [n.input[2] for n in recurrent_nodes(model)]
    else:
        names = [n for layer in range(8) if f"scan{layer}/Wt" in {i.name for i in model.graph.initializer}
                 for n in scan_layer(model, layer)["Rt"]]
    _largest(model, names)
    return True


def linear_before_reset_flipped(model) -> bool:
    """GRU only. native: the attribute flipped (onnxscript#2852). scan (no attribute there): the h-gate recurrent
    bias moved outside the reset gate, the part of linear_before_reset=0 the scan form can express."""
    if cell_of(model) != "GRU":
        return False
    if lowering(model) == "native":
        node = recurrent_nodes(model)[0]
        attr = next(a for a in node.attribute if a.name == "linear_before_reset")
        attr.i = 1 - attr.i
        return True
    s = scan_layer(model)
    bias_x, bias_h = s["bias_x"][0], s["bias_h"][0]
    put(model, bias_x, get(model, bias_x) + get(model, bias_h))
    put(model, bias_h, np.zeros_like(get(model, bias_h)))
    return True


def _rewire(model, name: str, nodes: list, new: str) -> None:
    """Every consumer of graph input `name` (in any subgraph) reads `new`; `nodes` computing `new` go first."""
    for g in graphs(model.graph):
        for node in g.node:
            for k, i in enumerate(node.input):
                if i == name:
                    node.input[k] = new
    for node in reversed(nodes):
        model.graph.node.insert(0, node)


def lengths_ignored(model) -> bool:
    """The lengths input is disconnected: every row runs over the whole padded length."""
    names = [i.name for i in model.graph.input]
    if "lengths" not in names:
        return False
    data = next(i.name for i in model.graph.input if i.name in ("x", "tokens"))
    dtype = next(i for i in model.graph.input if i.name == "lengths").type.tensor_type.elem_type
    nodes = [helper.make_node("Shape", [data], ["plant/T"], start=1, end=2),
             helper.make_node("Shape", ["lengths"], ["plant/B"]),
             helper.make_node("Expand", ["plant/T", "plant/B"], ["plant/full"]),
             helper.make_node("Cast", ["plant/full"], ["plant/lengths"], to=dtype)]
    _rewire(model, "lengths", nodes, "plant/lengths")
    return True


def state_not_carried(model) -> bool:
    """The initial state inputs are ignored (zeros): a stream restarts every chunk."""
    states = [i.name for i in model.graph.input if i.name in ("h0", "c0")]
    if not states:
        return False
    for name in states:
        zero = f"plant/{name}_zero"
        model.graph.initializer.append(numpy_helper.from_array(np.zeros((), np.float32), zero))
        _rewire(model, name, [helper.make_node("Mul", [name, zero], [f"plant/{name}"])], f"plant/{name}")
    return True


PLANTS = {
    "gate blocks swapped": gate_blocks_swapped,
    "bias dropped": bias_dropped,
    "directions swapped": directions_swapped,
    "largest weight x1.01": largest_weight_nudged,
    "largest recurrent weight x1.01": largest_recurrent_weight_nudged,
    "linear_before_reset flipped": linear_before_reset_flipped,
    "lengths ignored": lengths_ignored,
    "state not carried": state_not_carried,
}
