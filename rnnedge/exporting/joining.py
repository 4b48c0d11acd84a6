"""Join exported pieces into one ONNX graph that chooses among them by input sizes (rnnedge.exporting.piecewise).

    sizes:    Shape(input) -> Gather(axis)                      one scalar per split axis, computed once
    choice:   Less(size, first size of the upper pieces) -> If  nested where there are more than two pieces
    branches: each piece's nodes, every value renamed `p<k>.<name>` (its inputs keep their names: a branch reads
              them from the outer graph); its initializers live in the outer graph, one copy per distinct tensor

Pure: takes and returns onnx.ModelProto; nothing is written.
"""

from __future__ import annotations

import hashlib

from rnnedge.errors import ExportError


def join_models(pieces, where: dict[str, tuple[str, int]]):
    """pieces [(region {label: [lo, hi]}, onnx.ModelProto)] (every size covered once) -> one ModelProto.
    `where` {label: (input name, axis)} says where each split label's size is read."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    base = pieces[0][1]
    names = [i.name for i in base.graph.input]
    for _, model in pieces[1:]:
        if [i.name for i in model.graph.input] != names or len(model.graph.output) != len(base.graph.output):
            raise ExportError("the pieces of a size branch have different inputs or outputs: cannot join them into one file")
    shared: dict[tuple, str] = {}  # tensor content -> its name in the outer graph
    outer_inits, branches = [], []
    for k, (region, model) in enumerate(pieces):
        branches.append((region, _as_branch(model, f"p{k}.", shared, outer_inits)))
    nodes = []
    for label, (name, axis) in sorted(where.items()):
        outer_inits.append(numpy_helper.from_array(np.array(axis, dtype=np.int64), f"rnnedge.axis.{label}"))
        nodes.append(helper.make_node("Shape", [name], [f"rnnedge.shape.{label}"]))
        nodes.append(helper.make_node("Gather", [f"rnnedge.shape.{label}", f"rnnedge.axis.{label}"], [f"rnnedge.size.{label}"]))
    outputs = [_merged_output(i, [m.graph.output[i] for _, m in pieces]) for i in range(len(base.graph.output))]
    counter = iter(range(10_000))
    nodes += _choose(branches, [o.name for o in outputs], outputs, outer_inits, counter, top=True)
    graph = helper.make_graph(nodes, base.graph.name or "rnnedge", list(base.graph.input), outputs, outer_inits)
    model = helper.make_model(graph, opset_imports=list(base.opset_import), ir_version=base.ir_version,
                              producer_name=base.producer_name, producer_version=base.producer_version)
    _merge_functions(model, [m for _, m in pieces])
    onnx.checker.check_model(model)
    return model


def _choose(branches, out_names, out_infos, inits, counter, top=False) -> list:
    """Nodes computing `out_names` from the branches: one piece's nodes, or an If between two halves."""
    import numpy as np
    from onnx import helper, numpy_helper

    if len(branches) == 1:
        graph = branches[0][1]
        return [helper.make_node("Identity", [o.name], [n]) for o, n in zip(graph.output, out_names)] if top else list(graph.node)
    label, value = _split(branches)
    low = [b for b in branches if _hi(b[0], label) is not None and _hi(b[0], label) < value]
    high = [b for b in branches if b not in low]
    k = next(counter)
    bound, cond = f"rnnedge.split{k}.at", f"rnnedge.split{k}.cond"
    inits.append(numpy_helper.from_array(np.array(value, dtype=np.int64), bound))
    sides = []
    for part, side in ((low, "then"), (high, "else")):
        if len(part) == 1:
            sides.append(part[0][1])
            continue
        names = [f"rnnedge.split{k}.{side}.{i}" for i in range(len(out_infos))]
        body = _choose(part, names, out_infos, inits, counter)
        sides.append(helper.make_graph(body, f"split{k}_{side}", [], [_renamed(o, n) for o, n in zip(out_infos, names)]))
    return [helper.make_node("Less", [f"rnnedge.size.{label}", bound], [cond]),
            helper.make_node("If", [cond], list(out_names), then_branch=sides[0], else_branch=sides[1], name=f"rnnedge.split{k}")]


def _hi(region, label):
    return region.get(label, [1, None])[1]


def _split(branches) -> tuple[str, int]:
    """(label, size) such that every piece lies wholly below or at/above the size on that label, both sides non-empty."""
    for region, _ in branches:
        for label, (lo, _) in sorted(region.items()):
            below = [r for r, _ in branches if _hi(r, label) is not None and _hi(r, label) < lo]
            above = [r for r, _ in branches if r.get(label, [1, None])[0] >= lo]
            if below and above and len(below) + len(above) == len(branches):
                return label, lo
    raise ExportError("the pieces of a size branch do not split along one axis: cannot choose among them with If nodes")


def _as_branch(model, prefix: str, shared: dict, outer_inits: list):
    """The piece's graph as an If branch: values renamed with `prefix`, initializers moved out (deduplicated)."""
    from onnx import helper

    graph = model.graph
    keep = {i.name for i in graph.input} | {""}
    moved = {}
    for init in graph.initializer:
        unnamed = type(init)()
        unnamed.CopyFrom(init)
        unnamed.name = ""
        key = hashlib.sha256(unnamed.SerializeToString(deterministic=True)).hexdigest()
        if key not in shared:
            shared[key] = prefix + init.name
            copy = type(init)()
            copy.CopyFrom(init)
            copy.name = shared[key]
            outer_inits.append(copy)
        moved[init.name] = shared[key]
    rename = lambda n: n if n in keep else moved.get(n, prefix + n)  # noqa: E731
    branch = helper.make_graph([], graph.name or "piece", [], [])
    branch.node.extend(graph.node)
    _rename_graph(branch, rename, prefix)
    produced = {o for node in branch.node for o in node.output}
    for out in graph.output:
        name = rename(out.name)
        if name not in produced:  # a branch output must be made inside the branch (an input or weight returned as is)
            branch.node.append(helper.make_node("Identity", [name], [prefix + "out." + out.name]))
            name = prefix + "out." + out.name
        branch.output.append(_renamed(out, name))
    return branch


def _rename_graph(graph, rename, prefix: str) -> None:
    """Every value name in `graph` and its subgraphs through `rename` (subgraph-local names get `prefix` too)."""
    for vi in [*graph.input, *graph.output, *graph.value_info]:
        vi.name = rename(vi.name)
    for init in graph.initializer:
        init.name = rename(init.name)
    for node in graph.node:
        node.input[:] = [rename(n) for n in node.input]
        node.output[:] = [rename(n) for n in node.output]
        if node.name:
            node.name = prefix + node.name
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                _rename_graph(sub, rename, prefix)


def _renamed(value_info, name: str):
    copy = type(value_info)()
    copy.CopyFrom(value_info)
    copy.name = name
    return copy


def _merged_output(i: int, infos):
    """Output i of the joined graph: the pieces' type, each dim kept where every piece agrees, else named anew."""
    out = _renamed(infos[0], infos[0].name)
    dims = out.type.tensor_type.shape.dim
    for ax, dim in enumerate(dims):
        same = all(len(o.type.tensor_type.shape.dim) > ax and o.type.tensor_type.shape.dim[ax] == dim for o in infos)
        if not same:
            dim.Clear()
            dim.dim_param = f"{out.name}_dim{ax}"
    if any(o.type.tensor_type.elem_type != out.type.tensor_type.elem_type or
           len(o.type.tensor_type.shape.dim) != len(dims) for o in infos):
        raise ExportError(f"the pieces of a size branch return output '{out.name}' with different types or ranks: "
                          "one ONNX graph cannot return both")
    return out


def _merge_functions(model, pieces) -> None:
    seen = {}
    for piece in pieces:
        for fn in piece.functions:
            key = (fn.domain, fn.name, getattr(fn, "overload", ""))
            if key in seen and seen[key] != fn.SerializeToString():
                raise ExportError(f"the pieces of a size branch define function {fn.name} differently: cannot join them")
            if key not in seen:
                seen[key] = fn.SerializeToString()
                model.functions.append(fn)
