"""The raw graph a stream rewrite reads (rnnedge.exporting.stream): shapes with torch's symbols, producers and
consumers, constants (folded where torch.onnx computes them from constants), layer names, and the commit of
new nodes, inputs, outputs and initializers in graph order."""

from __future__ import annotations

import logging
import re

log = logging.getLogger(__name__)

PAIRWISE = -2  # time_axis_of: two axes are time, (B, T, T): every step against every other
FOLDABLE = ("Cast", "Reshape", "Concat", "Unsqueeze", "Squeeze", "Identity", "Neg", "Add", "Sub", "Mul", "Gather", "Constant")


class GraphReading:
    """The raw graph with what the rewrite needs to know of it: shapes, producers, consumers, constants."""

    def __init__(self, model, time_input, time_axis, batch_symbol):
        from onnx import numpy_helper

        self.model, self.graph = model, model.graph
        self.shapes = {}
        try:  # onnx's own inference fills values torch.onnx left undescribed (a Linear's MatMul), keeping torch's symbols
            from onnx import shape_inference

            inferred = shape_inference.infer_shapes(model).graph.value_info
        except Exception as exc:  # a graph onnx cannot infer: torch's shapes alone
            log.debug("onnx shape inference failed on the raw graph: %s", exc)
            inferred = []
        for vi in [*inferred, *self.graph.input, *self.graph.value_info, *self.graph.output]:
            t = vi.type.tensor_type
            if t.HasField("shape"):
                self.shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]
        dims = self.shapes.get(time_input) or []
        symbol = dims[time_axis] if time_axis < len(dims) else None
        if not isinstance(symbol, str):
            from rnnedge.errors import ExportError

            raise ExportError(f"input '{time_input}' has no symbolic time axis {time_axis}: nothing to stream over")
        self.time = re.compile(rf"(?<![\w]){re.escape(symbol)}(?![\w])")
        self.batch = batch_symbol
        self.producer = {o: n for n in self.graph.node for o in n.output}
        self.consumers: dict[str, list] = {}
        for n in self.graph.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.outputs = {o.name for o in self.graph.output}
        self.consts = {i.name: numpy_helper.to_array(i) for i in self.graph.initializer}
        for n in self.graph.node:
            if n.op_type == "Constant" and n.attribute:
                a = n.attribute[0]
                if a.name == "value":
                    self.consts[n.output[0]] = numpy_helper.to_array(a.t)
                elif a.name in ("value_ints", "value_int", "value_float", "value_floats"):
                    import numpy as np

                    self.consts[n.output[0]] = np.array(list(a.ints) or list(a.floats) or [a.i or a.f])
        self.before: dict[int, list] = {}  # id(node) -> new nodes to insert before it
        self.after: dict[int, list] = {}
        self.new_inputs, self.new_outputs, self.new_inits, self.dropped = [], [], [], set()
        self.names = set(self.producer) | {i.name for i in self.graph.input} | set(self.consts)

    # -- reading ------------------------------------------------------------------------------------------------

    def layer(self, node) -> str:
        """The torch module a node comes from ('frontend.0'), for messages and state names."""
        scopes = next((p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), "")
        parts = [s.strip(" '\"") for s in scopes.strip("[]").split(",")]
        parts = [p for p in parts if p][:-1]  # full module paths, outermost first; the last one is the aten call
        if parts:
            return parts[-1]
        trace = next((p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.stack_trace"), "")
        found = re.search(r'File "([^"]+)", line (\d+), in \w+\n\s*(.+)', trace)
        if found:  # a function called in forward (torch.softmax, x.mean): where, in the user's code
            return f"`{found.group(3).strip()[:80]}` ({found.group(1).rsplit('/', 1)[-1]}:{found.group(2)})"
        return node.name or node.op_type

    def value(self, name: str, depth: int = 0):
        """The value of `name` if it is computed from constants alone (torch.onnx builds slice bounds from
        Constant -> Cast -> Reshape chains), else None."""
        if not name or name in self.consts:
            return self.consts.get(name)
        node = self.producer.get(name)
        if node is None or depth > 12 or node.op_type not in FOLDABLE:
            return None
        ins = [self.value(i, depth + 1) for i in node.input]
        if any(v is None for i, v in zip(node.input, ins) if i):
            return None
        from onnx.reference import ReferenceEvaluator

        try:
            outs = ReferenceEvaluator(node).run(None, {i: v for i, v in zip(node.input, ins) if i})
        except Exception as exc:  # a node the reference runtime cannot run: not a constant, for this purpose
            log.debug("cannot fold %s: %s", node.op_type, exc)
            return None
        import numpy as np

        for out, v in zip(node.output, outs):
            self.consts[out] = np.asarray(v)
        return self.consts.get(name)

    def time_axis_of(self, name: str) -> int | None:
        """The axis of `name` that is the time axis (its size mentions the input's time symbol); None: no time axis;
        -1: unknown (no shape; a constant has none); PAIRWISE: two time axes (attention scores)."""
        dims = self.shapes.get(name)
        if dims is None:
            return None if self.value(name) is not None else -1
        hits = [a for a, d in enumerate(dims) if isinstance(d, str) and self.time.search(d)]
        if not hits:
            return None
        return hits[0] if len(hits) == 1 else PAIRWISE

    def attr(self, node, name, default=None):
        from onnx import helper

        a = next((a for a in node.attribute if a.name == name), None)
        return default if a is None else helper.get_attribute_value(a)

    def fresh(self, base: str) -> str:
        name, k = base, 2
        while name in self.names:
            name, k = f"{base}_{k}", k + 1
        self.names.add(name)
        return name

    # -- refusals -------------------------------------------------------------------------------------------------

    def _slice_bounds(self, node, rank):
        """{axis: (start, end or None for 'to the end', step)} of a Slice with constant bounds, else None."""
        import numpy as np

        vals = [self.value(i) if i else None for i in node.input[1:5]]
        if any(v is None for v in vals[:2]) or (len(node.input) > 3 and node.input[3] and vals[2] is None):
            return None
        starts, ends = vals[0].reshape(-1), vals[1].reshape(-1)
        axes = vals[2].reshape(-1) if len(node.input) > 3 and node.input[3] else np.arange(len(starts))
        steps = vals[3].reshape(-1) if len(node.input) > 4 and node.input[4] and vals[3] is not None else np.ones(len(starts))
        return {int(ax) % rank: (int(st), None if int(e) >= 2**31 - 1 else int(e), int(sp))
                for st, e, ax, sp in zip(starts, ends, axes, steps)}

    def commit(self) -> None:
        """Write the new nodes (in order), inputs, outputs and initializers into the graph."""
        nodes = []
        for n in self.graph.node:
            nodes += self.before.get(id(n), [])
            if id(n) not in self.dropped:
                nodes.append(n)
            nodes += self.after.get(id(n), [])
        del self.graph.node[:]
        self.graph.node.extend(nodes)
        self.graph.input.extend(self.new_inputs)
        self.graph.output.extend(self.new_outputs)
        self.graph.initializer.extend(self.new_inits)
