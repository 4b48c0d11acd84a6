"""Repairs of torch.onnx output that change nothing torch computes but break the ONNX file.

Each repair runs on the graph torch.onnx returns (before lowering), reads the shapes torch itself
recorded in `value_info`, logs what it changed, and returns a list of one-line notes.

- `Squeeze(axes)` on an axis whose size is not 1: torch's `x.squeeze(1)` is then a no-op, but
  torch.onnx writes an ONNX Squeeze that the checker and onnxruntime reject. When torch's own
  output shape kept the axis, the axis is dropped from the Squeeze (an Identity when none is left).
  A symbolic axis kept this way is refused: torch.export assumed its size is not 1, but at size 1
  torch does drop it, and one ONNX graph cannot return both ranks.
- Data-dependent sizes (torch's unbacked symbols `u0`, `u1`, e.g. `pad_packed_sequence` without
  `total_length` returns max(lengths) steps) get a readable name: `max_length`.
"""

from __future__ import annotations

import logging
import re

log = logging.getLogger(__name__)

_UNBACKED = re.compile(r"^u\d+$")


def repair(model, axes: dict | None = None) -> list[str]:
    """Apply every repair to `model` (an onnx.ModelProto, edited in place); return what was done.
    `axes` ({input: {axis: label}}) names torch's symbols in messages."""
    notes = drop_noop_squeezes(model, _labels(model, axes or {}))
    notes += name_data_dependent_dims(model)
    for note in notes:
        log.info("repaired: %s", note)
    return notes


def _shapes(graph) -> dict[str, list]:
    """name -> [int | str | None per axis] for every value torch described."""
    out = {}
    for vi in [*graph.input, *graph.value_info, *graph.output]:
        t = vi.type.tensor_type
        if t.HasField("shape"):
            out[vi.name] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]
    return out


def _constant_ints(graph) -> dict[str, tuple[list[int], object]]:
    """name -> (values, the Constant node or initializer holding them) for small int tensors."""
    from onnx import numpy_helper

    found = {}
    for init in graph.initializer:
        if init.data_type == 7 and len(init.dims) <= 1:  # INT64
            found[init.name] = ([int(v) for v in numpy_helper.to_array(init).reshape(-1)], init)
    for node in graph.node:
        if node.op_type == "Constant" and len(node.output) == 1:
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type == 7 and len(attr.t.dims) <= 1:
                    found[node.output[0]] = ([int(v) for v in numpy_helper.to_array(attr.t).reshape(-1)], node)
                elif attr.name == "value_ints":
                    found[node.output[0]] = (list(attr.ints), node)
    return found


def _labels(model, axes: dict) -> dict[str, str]:
    """torch's symbol ("s53") -> the user's label ("seq"), read off the graph inputs."""
    labels = {}
    for vi in model.graph.input:
        dims = vi.type.tensor_type.shape.dim
        for ax, label in axes.get(vi.name, {}).items():
            if ax < len(dims) and dims[ax].HasField("dim_param"):
                labels[dims[ax].dim_param] = label
    return labels


def drop_noop_squeezes(model, labels: dict[str, str] | None = None) -> list[str]:
    """Squeeze axes that torch left in place (size not 1) are dropped; see the module docstring.

    A symbolic axis is refused instead: torch.export assumed it is not 1, but at size 1 torch's squeeze does
    drop it, and one ONNX graph cannot return both ranks."""
    import numpy as np
    from onnx import helper, numpy_helper

    graph = model.graph
    shapes, consts = _shapes(graph), _constant_ints(graph)
    notes = []
    for i, node in enumerate(list(graph.node)):
        if node.op_type != "Squeeze" or len(node.input) < 2 or node.input[1] not in consts:
            continue
        src, dst = shapes.get(node.input[0]), shapes.get(node.output[0])
        if src is None or dst is None:
            continue
        axes = [a % len(src) for a in consts[node.input[1]][0]] if src else []
        keep = [a for a in axes if src[a] == 1]
        if len(src) - len(dst) != len(keep) or keep == axes:
            continue
        dropped = [a for a in axes if a not in keep]
        symbolic = [(labels or {}).get(src[a], src[a]) for a in dropped if not isinstance(src[a], int)]
        if symbolic:
            from rnnedge.errors import ExportError

            raise ExportError(
                f"squeeze() of the dynamic axis '{symbolic[0]}' (value '{node.input[0]}'): torch drops that axis when its size is 1 "
                "and keeps it otherwise, and an ONNX graph cannot change its rank with a size. Way out: squeeze only axes whose "
                "size is always 1 (or index them: x[:, 0]), or pin the axis (fix_dims / --fix-dim)")
        notes.append(f"Squeeze of axes {dropped} of '{node.input[0]}' (sizes {[src[a] for a in dropped]}) is a no-op in torch: dropped")
        if keep:
            name = f"{node.name or node.output[0]}_axes"
            graph.initializer.append(numpy_helper.from_array(np.array(keep, dtype=np.int64), name))
            new = helper.make_node("Squeeze", [node.input[0], name], list(node.output), name=node.name)
        else:
            new = helper.make_node("Identity", [node.input[0]], list(node.output), name=node.name)
        graph.node.remove(node)
        graph.node.insert(i, new)
    return notes


def name_data_dependent_dims(model) -> list[str]:
    """torch's unbacked size symbols (u0, u1, ...) -> max_length, max_length_1, ..."""
    graph = model.graph
    names: dict[str, str] = {}
    for vi in [*graph.output, *graph.value_info]:
        for dim in vi.type.tensor_type.shape.dim:
            if dim.HasField("dim_param") and _UNBACKED.match(dim.dim_param):
                new = names.setdefault(dim.dim_param, "max_length" if not names else f"max_length_{len(names)}")
                dim.dim_param = new
    return [f"data-dependent size {old} named '{new}' (torch returns max(lengths) steps there)" for old, new in names.items()]


def restore_input_names(model, names: list[str]) -> list[str]:
    """Graph inputs under the names the user gave. torch.onnx renames an input that is also returned as it is
    (`pad_packed_sequence` hands sorted int64 lengths straight back) to `<name>_orig`; feeds go by the user's names."""
    graph = model.graph
    taken = {v.name for v in [*graph.input, *graph.output]} | {o for n in graph.node for o in n.output}
    notes = []
    for vi, want in zip(graph.input, names):
        if vi.name == want or want in taken:
            continue
        notes.append(f"input '{vi.name}' renamed back to '{want}'")
        rename_everywhere(graph, vi.name, want)
    for note in notes:
        log.info("repaired: %s", note)
    return notes


def rename_everywhere(graph, old: str, new: str) -> None:
    """Rename a value in a graph and in every subgraph that refers to it (Scan/Loop/If bodies see outer values)."""
    for vi in [*graph.input, *graph.output, *graph.value_info]:
        if vi.name == old:
            vi.name = new
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                rename_everywhere(sub, old, new)


def outputs_from_nodes(graph) -> list[str]:
    """Every graph output made by a node. A returned parameter (a CRF tagger's transition matrix) is an initializer:
    the initializer takes a name of its own and an Identity makes the output, which keeps its name. A returned input
    gets an Identity to an output of its own. (Renamed as they stood, an initializer output lost its value and an
    input output took the input's name with it.)"""
    from onnx import helper

    made = {o for node in graph.node for o in node.output}
    taken = made | {v.name for v in [*graph.input, *graph.output, *graph.initializer, *graph.value_info]}
    inputs = {v.name for v in graph.input}

    def fresh(base: str) -> str:
        name, n = base, 1
        while name in taken:
            name, n = f"{base}_{n}", n + 1
        taken.add(name)
        return name

    notes = []
    for out in graph.output:
        if out.name in made:
            continue
        if out.name in inputs:  # the input keeps its name; the output is a copy of it
            source, target = out.name, fresh(f"{out.name}_out")
            out.name = target
        else:  # an initializer (or a dangling name the checker reports): its value moves under a new name
            target, source = out.name, fresh(f"{out.name}_value")
            for init in graph.initializer:
                if init.name == target:
                    init.name = source
            for node in graph.node:
                node.input[:] = [source if name == target else name for name in node.input]
        graph.node.append(helper.make_node("Identity", [source], [target], name=f"{target}_identity"))
        made.add(target)
        notes.append(f"output '{target}' is {source!r} as it is (a returned parameter or input): an Identity node makes it")
    for note in notes:
        log.info("repaired: %s", note)
    return notes


def finish(model, axes: dict, spec, user_axes: dict) -> None:
    """Labels on symbolic dims, no torch-internal metadata, checker and strict shape inference."""
    import onnx

    from rnnedge import __version__
    from rnnedge.exporting.axes import identifier
    from rnnedge.exporting.naming import output_name

    labels = {identifier(lab): lab for spec_axes in axes.values() for lab in spec_axes.values()}
    for vi in model.graph.input:  # whatever torch called the symbols ("s77"), inputs say which label each is
        dims = vi.type.tensor_type.shape.dim
        for ax, label in axes.get(vi.name, {}).items():
            if ax < len(dims) and dims[ax].HasField("dim_param"):
                labels[dims[ax].dim_param] = label

    def relabel(value_info):
        for dim in value_info.type.tensor_type.shape.dim:
            if dim.HasField("dim_param") and dim.dim_param in labels:
                dim.dim_param = labels[dim.dim_param]

    for vi in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        relabel(vi)
    outputs_from_nodes(model.graph)  # a returned parameter or input: renamed below like any other output
    if not spec.outputs:  # torch's own names ("getitem_1") say nothing: output (one), or output_0, output_1, ...
        carried = {s["output"] for s in getattr(spec, "states", None) or []}  # stream state outputs keep their names
        plain = [o for o in model.graph.output if o.name not in carried]
        for i, out in enumerate(plain):
            rename_everywhere(model.graph, out.name, output_name(i, len(plain)))
    for out in model.graph.output:
        for ax, label in user_axes.get(out.name, {}).items() if isinstance(user_axes.get(out.name), dict) else []:
            dims = out.type.tensor_type.shape.dim
            if int(ax) < len(dims) and dims[int(ax)].HasField("dim_param"):
                dims[int(ax)].dim_param = str(label)
    for node in model.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    for vi in [*model.graph.input, *model.graph.output]:
        del vi.metadata_props[:]
    del model.graph.value_info[:]
    model.producer_name, model.producer_version = "rnnedge", __version__
    del model.metadata_props[:]
    try:
        onnx.checker.check_model(model)
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as exc:
        from rnnedge.errors import ExportError, first_line
        raise ExportError(f"the exported graph failed onnx's checks: {first_line(exc)}") from exc
