"""weights-int8, the floor: int8-stored weights -> Cast -> Mul(per-row scale) -> the same float32 operator.

onnxruntime folds the dequantization at load: float32 speed at ~0.27 of the size, never slower than float32 beyond
noise, and it applies to every unit. `store_weights_int8` also gives this storage to every weight no other form made
int8, so every file is int8-sized whichever forms win.
"""

from __future__ import annotations

import numpy as np

from rnnedge.quantizing.forms.registry import Form, Plan, register
from rnnedge.quantizing.forms.units import DEFAULT_OP_TYPES, FLOOR, MIN_ROW, WEIGHT_INPUTS, subgraphs, weight_users


class WeightsInt8(Form):
    name = FLOOR
    ops = ("RNN", "GRU", "LSTM", "Scan", "REST")
    rank = 0

    def plan(self, model, unit, units: dict, plan: Plan) -> None:
        return None  # nothing beyond the int8 storage every remaining weight gets


register(WeightsInt8())


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
    A weight a Loop/Scan/If body reads from an enclosing graph (outer scope) is stored so where it is defined.
    """
    import onnx
    from onnx import helper, numpy_helper

    done = []
    for graph in reversed([model.graph, *subgraphs(model.graph)]):  # innermost first: rewriting a graph copies its nodes
        inits = {t.name: t for t in graph.initializer}
        picks: dict[str, tuple] = {}
        for node in weight_users(graph):
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
