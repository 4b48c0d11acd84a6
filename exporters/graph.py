"""Small helpers shared by the lowerings: walk every graph, find initializers, make unique names, emit nodes.

The lowerings are ONNX-to-ONNX rewrites on `onnx.ModelProto`: they read weights from the
graph's initializers as numpy arrays, and replace one node by a few others in place.

`subgraphs` / `all_graphs` are THE graph walker of rnnedge (lowerings, quantize, inspect, file
checks): they reach every nested graph, through single-graph attributes (Scan/Loop/If bodies) and
graph-list attributes alike, in the protobuf itself so callers can edit in place.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import onnx
from onnx import helper, numpy_helper

log = logging.getLogger(__name__)


def subgraphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """Every graph nested in `graph`, recursively, parents before their children; not `graph` itself.

    Follows both GRAPH attributes (`attr.g`) and GRAPHS attributes (`attr.graphs`)."""
    for node in graph.node:
        for sub in node_graphs(node):
            yield sub
            yield from subgraphs(sub)


def node_graphs(node: onnx.NodeProto) -> list[onnx.GraphProto]:
    """The graphs a node holds itself (a Scan's body, an If's branches), not those nested deeper."""
    return [g for attr in node.attribute for g in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs)]


def all_graphs(graph: onnx.GraphProto) -> list[onnx.GraphProto]:
    """`graph` and every graph nested in it (see `subgraphs`)."""
    return [graph, *subgraphs(graph)]


def all_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every node of `graph` and of every graph nested in it."""
    for g in all_graphs(graph):
        yield from g.node


class RecurrentIO(NamedTuple):
    """The named inputs and outputs of a standard RNN/GRU/LSTM node ("" where absent): the one place that unpacks them."""

    x: str
    w: str
    r: str
    b: str
    sequence_lens: str
    initial_h: str
    initial_c: str
    peepholes: str  # LSTM P (standard ONNX)
    projection: str  # an LSTM's projection weights (rnnedge's own ninth input, for proj_size)
    y: str
    y_h: str
    y_c: str


def recurrent_io(node: onnx.NodeProto) -> RecurrentIO:
    """RecurrentIO of an ONNX RNN/GRU/LSTM node (its optional inputs and outputs padded with "")."""
    ins = list(node.input)[:9] + [""] * (9 - min(len(node.input), 9))
    outs = list(node.output)[:3] + [""] * (3 - min(len(node.output), 3))
    return RecurrentIO(*ins, *outs)


class GraphEditor:
    """Collects new nodes and initializers for one graph, with names that never clash."""

    def __init__(self, graph: onnx.GraphProto, prefix: str):
        self.graph = graph
        self.prefix = prefix
        self._taken = {i.name for i in graph.initializer} | {i.name for i in graph.input} | {o.name for o in graph.output}
        for node in graph.node:
            self._taken.update(node.output)
            self._taken.add(node.name)
        self._initializers = {i.name: i for i in graph.initializer}

    def name(self, hint: str) -> str:
        base = f"{self.prefix}/{hint}"
        candidate, k = base, 0
        while candidate in self._taken:
            k += 1
            candidate = f"{base}_{k}"
        self._taken.add(candidate)
        return candidate

    def constant(self, hint: str, array: np.ndarray) -> str:
        """A new initializer holding `array`; returns its name."""
        name = self.name(hint)
        tensor = numpy_helper.from_array(np.asarray(array, order="C"), name)  # (ascontiguousarray would make scalars 1-D)
        self.graph.initializer.append(tensor)
        self._initializers[name] = tensor
        return name

    def ints(self, hint: str, values) -> str:
        return self.constant(hint, np.asarray(values, dtype=np.int64))

    def array(self, name: str) -> np.ndarray | None:
        """The numpy value of an initializer (or a Constant node's output), or None if not constant."""
        if name in self._initializers:
            return numpy_helper.to_array(self._initializers[name])
        for node in self.graph.node:
            if node.op_type == "Constant" and node.output and node.output[0] == name:
                return numpy_helper.to_array(node.attribute[0].t)
        return None

    def node(self, op_type: str, inputs: list[str], n_outputs: int = 1, outputs: list[str] | None = None, domain: str = "", **attrs):
        """Make a node (not yet placed). Returns (node, output names)."""
        outs = outputs or [self.name(op_type.lower()) for _ in range(n_outputs)]
        node = helper.make_node(op_type, inputs, outs, name=self.name(op_type), domain=domain, **attrs)
        return node, outs


def rewrite_nodes(graph: onnx.GraphProto, match, rewrite) -> int:
    """Replace each node with match(node) true by rewrite(node, k) (a list of nodes, or None to keep it).

    New nodes go where the old one was, so a topological order is kept. Returns how many were replaced.
    """
    done, i = 0, 0
    while i < len(graph.node):
        node = graph.node[i]
        new_nodes = rewrite(node, done) if match(node) else None
        if new_nodes is None:
            i += 1
            continue
        nodes = list(graph.node)
        nodes[i : i + 1] = new_nodes
        del graph.node[:]
        graph.node.extend(nodes)
        i += len(new_nodes)
        done += 1
    return done


def drop_unused_initializers(graph: onnx.GraphProto) -> None:
    """Remove initializers no node (or subgraph) reads anymore (the weights in PyTorch layout, say)."""
    used = {o.name for o in graph.output}
    for node in all_nodes(graph):
        used.update(node.input)
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def unname_unused_outputs(graph: onnx.GraphProto, ops: tuple[str, ...] = ("RNN", "GRU", "LSTM")) -> int:
    """Blank the optional outputs of standard recurrent nodes that nothing reads (a classifier's per-step Y):
    onnxruntime then neither allocates nor writes them. Graph outputs and subgraphs' reads count as reads."""
    used = {o.name for g in all_graphs(graph) for o in g.output}
    for node in all_nodes(graph):
        used.update(node.input)
    blanked = 0
    for node in all_nodes(graph):
        if node.op_type in ops and node.domain in ("", "ai.onnx"):
            for i, out in enumerate(node.output):
                if out and out not in used:
                    node.output[i] = ""
                    blanked += 1
            while node.output and not node.output[-1]:
                node.output.pop()
    return blanked


def tidy_opsets(model: onnx.ModelProto) -> None:
    """Drop opset imports of domains no node uses anymore (the rnnedge placeholder domain)."""
    domains = {node.domain or "" for node in all_nodes(model.graph)}
    keep = [o for o in model.opset_import if (o.domain or "") in domains or (o.domain or "") == ""]
    del model.opset_import[:]
    model.opset_import.extend(keep)


def compact_names(model: onnx.ModelProto) -> None:
    """Short names for every intermediate value (not inputs, outputs or weights), no node names, in place.

    onnxruntime's quantizer writes names such as `scan0_d0/matmul2_output_quantized_cast_output`; in a
    small int8 model they are a tenth of the file. One map over every graph (Scan bodies included)
    keeps outer-scope references consistent.
    """
    keep = {v.name for v in [*model.graph.input, *model.graph.output]}

    for g in all_graphs(model.graph):  # weight names say what they are: kept
        keep.update(t.name for t in g.initializer)
    mapping: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in keep:
            return name
        if name not in mapping:
            mapping[name] = f"v{len(mapping)}"
        return mapping[name]

    for graph in all_graphs(model.graph):
        graph.ClearField("value_info")
        for tensor in graph.initializer:
            tensor.name = short(tensor.name)
        for value in [*graph.input, *graph.output]:
            value.name = short(value.name)
        for node in graph.node:
            node.ClearField("name")
            node.ClearField("doc_string")
            node.input[:] = [short(n) for n in node.input]
            node.output[:] = [short(n) for n in node.output]


FOLDABLE = {"Identity", "Cast", "Slice", "Concat", "Unsqueeze", "Squeeze", "Reshape", "Transpose", "Split", "Gather", "Flatten",
            "Expand", "Tile", "Mul", "Add", "Sub", "Div", "Neg", "Constant"}  # shape plumbing and arithmetic: deterministic
MAX_CONE = 64  # nodes; a weight computed by a longer chain is left as it is


def fold_constant_weights(model: onnx.ModelProto, weight_inputs: dict[str, tuple[int, ...]]) -> int:
    """Weights that a graph computes from initializers alone (torch.onnx's dynamo exporter builds an RNN's W/R/B
    with Slice/Concat/Unsqueeze at run time) become initializers, in place, every graph: the lowerings and int8
    forms read weights as initializers. `weight_inputs`: {op_type: input indices holding weights}. Returns the count."""
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    total = 0
    for graph in all_graphs(model.graph):
        folded = 0
        inits = {t.name for t in graph.initializer}
        made = {o: n for n in graph.node for o in n.output if o}
        for node in list(graph.node):
            for i in weight_inputs.get(node.op_type, ()) if node.domain in ("", "ai.onnx") else ():
                name = node.input[i] if i < len(node.input) else ""
                cone = _constant_cone(name, graph, made, inits) if name and name not in inits else None
                if not cone:
                    continue
                leaves = sorted({x for n in cone for x in n.input if x in inits})
                sub = helper.make_graph(cone, "fold", [], [helper.make_tensor_value_info(name, onnx.TensorProto.UNDEFINED, None)],
                                        [t for t in graph.initializer if t.name in leaves])
                try:
                    value = ReferenceEvaluator(helper.make_model(sub, opset_imports=model.opset_import, ir_version=model.ir_version)).run(None, {})[0]
                except Exception as exc:  # not evaluable here: leave the weight computed
                    log.debug("weight %s left computed: %s: %s", name, type(exc).__name__, exc)
                    continue
                folded_name = f"{name}/folded"
                if folded_name not in inits:
                    graph.initializer.append(numpy_helper.from_array(np.asarray(value), folded_name))
                    inits.add(folded_name)
                node.input[i] = folded_name
                folded += 1
        if folded:
            drop_dead_nodes(graph)
            drop_unused_initializers(graph)
            total += folded
    return total


def _constant_cone(name: str, graph: onnx.GraphProto, made: dict, inits: set[str]) -> list[onnx.NodeProto] | None:
    """The nodes computing `name` from initializers only, in graph order; None if it reads anything else."""
    cone, todo, seen = {}, [name], set()
    while todo:
        value = todo.pop()
        if value in seen or value in inits or not value:
            continue
        seen.add(value)
        node = made.get(value)
        if node is None or node.op_type not in FOLDABLE or node.domain not in ("", "ai.onnx") or len(cone) >= MAX_CONE:
            return None  # a graph input, an outer-scope value, or an op that is not plain plumbing
        cone[id(node)] = node
        todo.extend(node.input)
    order = {id(n): k for k, n in enumerate(graph.node)}
    return sorted(cone.values(), key=lambda n: order.get(id(n), 0))


def drop_dead_nodes(graph: onnx.GraphProto) -> None:
    """Remove nodes none of whose outputs is read (by any node, subgraphs included) or a graph output, repeatedly."""
    while True:
        used = {o.name for o in graph.output}
        for node in all_nodes(graph):
            used.update(node.input)
        keep = [n for n in graph.node if any(o in used for o in n.output if o)]
        if len(keep) == len(graph.node):
            return
        del graph.node[:]
        graph.node.extend(keep)
