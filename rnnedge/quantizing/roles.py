"""Roles of a foreign file's integer inputs read from the graph, where their names say nothing.

    roles = input_roles(model)   # {"n_frames": ("lengths", None), "tokens": ("ids", 50)}

An integer input that reaches a recurrent node's `sequence_lens` (directly or through Cast/Identity/Reshape/Squeeze/
Unsqueeze/Flatten) holds lengths: valid values are 1..the time size. One that reaches the indices of a Gather whose data
is a weight table (an embedding) holds ids: valid values are 0..rows-1 (onnxruntime refuses ids past the table).
An input declared with no shape at all that is a recurrent node's X gets that X's dims (`shape_from_use`); an input's
batch axis is its dim named like batch (`batch_axis`: 1 in a time-major foreign file's ("T", "B", F)).
"""

from __future__ import annotations

BATCH_WORDS = ("batch", "n", "b", "bs", "batch_size")  # a symbolic dim named so is the batch
PASS = ("Cast", "Identity", "Reshape", "Squeeze", "Unsqueeze", "Flatten")  # ops that carry the values through
RECURRENT = ("RNN", "GRU", "LSTM")


def input_roles(model) -> dict[str, tuple[str, int | None]]:
    """{graph input name: ("lengths", None) | ("ids", table rows)} for the integer inputs whose role the graph shows."""
    from exporters.graph import all_graphs

    graphs = all_graphs(model.graph)
    tables = {t.name: int(t.dims[0]) for g in graphs for t in g.initializer if len(t.dims) == 2}
    tables.update({n.output[0]: int(a.t.dims[0]) for g in graphs for n in g.node if n.op_type == "Constant"
                   for a in n.attribute if a.name == "value" and len(a.t.dims) == 2})
    users: dict[str, list] = {}
    for g in graphs:
        for node in g.node:
            for k, name in enumerate(node.input):
                users.setdefault(name, []).append((node, k))
    inits = {t.name for t in model.graph.initializer}
    roles = {}
    for vi in model.graph.input:
        if vi.name in inits or vi.type.tensor_type.elem_type in (1, 10, 11, 16):  # floats have no such role
            continue
        role = _follow(vi.name, users, tables, set())
        if role is not None:
            roles[vi.name] = role
    return roles


def _follow(name: str, users: dict, tables: dict, seen: set):
    if name in seen:
        return None
    seen.add(name)
    for node, k in users.get(name, []):
        if node.op_type in RECURRENT and node.domain in ("", "ai.onnx") and k == 4:
            return ("lengths", None)
        if node.op_type == "Gather" and k == 1 and node.input[0] in tables:
            return ("ids", tables[node.input[0]])
        if node.op_type in PASS and k == 0:
            role = _follow(node.output[0], users, tables, seen)
            if role is not None:
                return role
    return None


def shape_from_use(model, name: str) -> list:
    """Dims for an input declared without a shape: a recurrent node's X (directly or through Cast/Identity) is
    ["seq", "batch", features] (layout 1: batch first), features read from its W; else [] (unknown: as declared)."""
    inits = {t.name: list(t.dims) for t in model.graph.initializer}
    names = {name}
    for node in model.graph.node:  # in order: a Cast/Identity of the input passes it on
        if node.input and node.input[0] in names:
            if node.op_type in ("Cast", "Identity"):
                names.add(node.output[0])
            elif node.op_type in RECURRENT and len(node.input) > 1 and len(inits.get(node.input[1], ())) == 3:
                layout = next((a.i for a in node.attribute if a.name == "layout"), 0)
                features = inits[node.input[1]][2]
                return ["batch", "seq", features] if layout else ["seq", "batch", features]
    return []


def batch_like(dim: str) -> bool:
    """Whether a symbolic dim's name says batch ("?batch": an unnamed axis 0, as quantizing.inputs names it)."""
    low = dim.lower().lstrip("?")
    return dim == "?batch" or low in BATCH_WORDS or "batch" in low


def batch_axis(dims: list) -> int:
    """An input's batch axis: its dim named like batch (a time-major foreign file's ("T", "B", F): 1), else 0."""
    return next((i for i, d in enumerate(dims) if isinstance(d, str) and batch_like(d)), 0)
