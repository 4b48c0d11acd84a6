"""Named axes of an export: which input axes are dynamic, how they relate, what the example sizes are.

From the user's arguments (`input_names`, `dynamic_axes`, `tied_axes`, `fix_dims`, `check_inputs`) to
(a) the `dynamic_shapes` torch.export wants (a tied axis becomes a derived Dim: `256 * frames - 1024`),
(b) example inputs torch.export will not specialise (sizes >= 2, distinct, ties holding), and
(c) the input side of the declared spec (rnnedge/spec.py), integer dtypes kept as the example's.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from rnnedge.errors import BadInputError
from rnnedge.spec import IOSpec, TensorSpec, parse_tie

log = logging.getLogger(__name__)


def match_signature(module, shapes: list) -> tuple:
    """torch.export wants dynamic_shapes shaped like forward's signature: `*args` become one nested tuple."""
    import inspect

    params = list(inspect.signature(module.forward).parameters.values())
    out, i = [], 0
    for p in params:
        if p.kind == p.VAR_POSITIONAL:
            return tuple(out) + ((tuple(shapes[i:]),) if shapes[i:] else ())
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and i < len(shapes):
            out.append(shapes[i])
            i += 1
    return tuple(out)


def identifier(label: str) -> str:
    ident = "".join(c if c.isalnum() else "_" for c in str(label))
    return ident if ident and not ident[0].isdigit() else f"d_{ident}"


def normalise_axes(dynamic_axes, names, examples, batch_first, target, output_names=None) -> dict[str, dict[int, str]]:
    """{"name": {axis: label}} (a list of axes gets default labels); defaults when None. A name that is neither an
    input nor an output (output_names, or output / output_0, output_1, ... when none are given) is refused: a typo would
    otherwise leave the axis it meant fixed."""
    if target == "mobile":
        return {}
    if dynamic_axes is None:
        return default_axes(names, examples, batch_first)
    outputs = set(output_names or [])
    unknown = [n for n in dynamic_axes if n not in names and n not in outputs and not (not output_names and re.fullmatch(r"output(_\d+)?", str(n)))]
    if unknown:
        raise BadInputError(f"dynamic_axes names {unknown[0]!r}, which is no input ({', '.join(names)})"
                            + (f" nor output ({', '.join(output_names)})" if output_names else ""))
    axes = {}
    for name, spec in dynamic_axes.items():
        if isinstance(spec, (list, tuple)):
            spec = {int(a): f"{name}_dim{a}" for a in spec}
        if not isinstance(spec, dict):
            raise BadInputError(f"dynamic_axes['{name}'] must be a dict {{axis: label}} or a list of axes")
        axes[name] = {int(a): str(label) for a, label in spec.items()}
    for name, spec in axes.items():
        if name in names:
            rank = examples[names.index(name)].dim()
            bad = [a for a in spec if not 0 <= a < rank]
            if bad:
                raise BadInputError(f"dynamic_axes['{name}'] names axis {bad[0]}, but that input has rank {rank}")
    return complete_axes(axes, names, examples)


def complete_axes(axes, names, examples) -> dict[str, dict[int, str]]:
    """Inputs the user left out of dynamic_axes but that share a dynamic size: lengths [batch] and states
    (L*D, batch, H). Left fixed, they would freeze the batch (or contradict it) for the whole model."""
    by_size: dict[int, str] = {}
    for name, spec in axes.items():
        if name in names:
            for ax, label in spec.items():
                by_size.setdefault(int(examples[names.index(name)].shape[ax]), label)
    for name, ex in zip(names, examples):
        if name in axes:
            continue
        if ex.dim() == 1 and not ex.is_floating_point() and int(ex.shape[0]) in by_size:
            axes[name] = {0: by_size[int(ex.shape[0])]}
        elif ex.dim() == 3 and ex.is_floating_point() and int(ex.shape[1]) in by_size:
            axes[name] = {1: by_size[int(ex.shape[1])]}
            log.info("input '%s' taken as a recurrent state: axis 1 is '%s'", name, axes[name][1])
    return axes


def default_axes(names, examples, batch_first) -> dict[str, dict[int, str]]:
    """First input: batch and seq (by the layers' batch_first); int64 [batch]: lengths; (L*D, batch, H): state."""
    first = examples[0]
    b_ax, t_ax = (0, 1) if batch_first else (1, 0)
    batch = first.shape[b_ax] if first.dim() >= 2 else None
    axes = {names[0]: ({b_ax: "batch", t_ax: "seq"} if first.dim() >= 2 else {0: "seq"})}
    for name, ex in zip(names[1:], examples[1:]):
        if ex.dim() == 1 and ex.shape[0] == batch:
            axes[name] = {0: "batch"}
        elif ex.dim() == 3 and ex.shape[1] == batch:
            axes[name] = {1: "batch"}
        elif ex.dim() == 2 and not ex.is_floating_point():
            axes[name] = {b_ax: "batch", t_ax: "seq"}
    return axes


@dataclass
class Declared:
    """The export's axes once ties, pinned sizes and check inputs are applied (see `declare`)."""

    axes: dict  # {input: {axis: label}} of the axes that stay dynamic
    examples: tuple  # example inputs resized so torch.export keeps those axes (ties holding)
    dynamic_axes: dict | None  # the user's dynamic_axes without the pinned labels (outputs' too)
    ties: dict  # {label: tie} in the spec's form
    fixed: dict  # {label: size} pinned
    checks: list  # [{label: size}] of the check inputs
    feeds: list  # [{name: array}] the check inputs


def declare(names, examples, axes, dynamic_axes, *, tied_axes=None, fix_dims=None, check_inputs=None) -> Declared:
    """Apply the user's ties, pinned sizes and check inputs to the normalised axes and the examples."""
    ties = parse_ties(tied_axes, axes)
    checks, feeds = check_feeds(check_inputs, names, axes, examples)
    examples = resize_to(examples, names, axes, fix_dims or {})
    axes, fixed = pin_axes(axes, fix_dims)
    return Declared(axes, resize_examples(examples, names, axes, ties), without_labels(dynamic_axes, fixed), ties, fixed, checks, feeds)


def dynamic_shapes(module, names, axes, ties, bounds=None):
    """torch.export's dynamic_shapes for the named inputs (None when nothing is dynamic); `bounds` {label: [lo, hi]}
    narrows a label's Dim to the sizes of one piece (rnnedge.piecewise)."""
    if not any(axes.get(n) for n in names):
        return None
    dims = torch_dims(axes, ties, bounds)
    return match_signature(module, [{ax: dims[label] for ax, label in axes.get(n, {}).items()} or None for n in names])


def flatten_inputs(module, examples: tuple):
    """Nested example inputs (`model(x, (h0, c0), lengths)`) -> (a module taking the leaves, the leaves).

    torch.onnx names and feeds the leaves; a thin wrapper rebuilds the nesting for the user's forward, so
    the quick check and verify can feed flat inputs by name. Flat examples come back unchanged."""
    import torch
    from torch.utils import _pytree

    if all(isinstance(ex, torch.Tensor) for ex in examples):
        return module, examples
    leaves, tree = _pytree.tree_flatten(tuple(examples))
    bad = [type(leaf).__name__ for leaf in leaves if not isinstance(leaf, torch.Tensor)]
    if bad:
        raise BadInputError(f"an example input holds a {bad[0]}: pass tensors (tuples and lists of tensors are fine)")
    log.info("example inputs are nested: the file takes their %d tensors as separate inputs", len(leaves))
    return _nested(module, _pytree.treespec_dumps(tree)), tuple(leaves)


def nested_module(module, spec_json: str | None):
    """`module` as verify must call it for a file whose spec says its flat inputs rebuild nested arguments."""
    import json

    nesting = json.loads(spec_json).get("nesting") if spec_json else None
    if not nesting or getattr(module, "nesting", None) == nesting:
        return module
    return _nested(module, nesting)


def _nested(module, nesting: str):
    import torch
    from torch.utils import _pytree

    tree = _pytree.treespec_loads(nesting)

    class NestedInputs(torch.nn.Module):
        """forward(*leaves) -> the user's forward(*nested): the leaves are what the ONNX file takes."""

        def __init__(self, inner):
            super().__init__()
            self.inner, self.nesting = inner, nesting
            self.training = inner.training  # export restores the wrapper's mode, and with it the user's module's

        def forward(self, *leaves):
            return self.inner(*_pytree.tree_unflatten(list(leaves), tree))

    return NestedInputs(module)


def parse_ties(tied_axes, axes) -> dict:
    """{label: tie as users write it} -> the spec's form, checked against the dynamic axes' labels."""
    labels = {lab for spec in axes.values() for lab in spec.values()}
    ties = {}
    for label, text in (tied_axes or {}).items():
        try:
            tie = parse_tie(str(label), text)
        except ValueError as exc:
            raise BadInputError(str(exc)) from None
        missing = [a for a in (label, tie.get("of")) if a is not None and a not in labels]
        if missing:
            raise BadInputError(f"tied_axes names axis '{missing[0]}', which no dynamic axis is labelled (labels: {', '.join(sorted(labels))})")
        ties[str(label)] = tie
    roots = {t["of"] for t in ties.values() if "of" in t}
    chained = [lab for lab in roots if "of" in ties.get(lab, {})]
    if chained:
        raise BadInputError(f"axis '{chained[0]}' is tied to another axis and is itself a root: tie every axis to the same root")
    return ties


def torch_dims(axes, ties, bounds=None) -> dict:
    """label -> torch.export Dim (a tied axis: a derived Dim, `scale * root + offset`; a bounded one: its piece's sizes)."""
    import torch

    dims = {}
    for spec in axes.values():
        for label in spec.values():
            if label not in dims and "of" not in ties.get(label, {}):
                lo, hi = (bounds or {}).get(label) or (None, None)
                dims[label] = torch.export.Dim(identifier(label), min=max(_root_min(label, ties), lo or 0), max=hi)
    for label, tie in ties.items():
        if "of" in tie:
            root = dims[tie["of"]]
            dims[label] = root * int(tie["scale"]) + int(tie["offset"]) if (tie["scale"], tie["offset"]) != (1, 0) else root
    return dims


def _root_min(root: str, ties: dict) -> int:
    """The smallest size of `root` for which every axis tied to it is at least 1 (torch.export asks for it)."""
    low = 0
    for tie in ties.values():
        if tie.get("of") == root and int(tie["scale"]) > 0:
            low = max(low, -(-(1 - int(tie["offset"])) // int(tie["scale"])))
    return low


def resize_examples(examples, names, axes, ties=None):
    """Give every symbolic axis a size >= 2, distinct per label and from the fixed sizes, with every tie holding.

    torch.export specialises axes of size 0 or 1 and merges axes of equal size, so an example of
    batch 1 would freeze the batch. Rows are repeated (index i % n), which keeps values valid.
    """
    import torch

    ties = ties or {}
    fixed = {s for n, ex in zip(names, examples) for a, s in enumerate(ex.shape) if a not in axes.get(n, {})}
    given = {label: int(ex.shape[a]) for n, ex in zip(names, examples) for a, label in axes.get(n, {}).items()}
    want = _example_sizes(given, fixed, ties)
    out = []
    for n, ex in zip(names, examples):
        for a, label in axes.get(n, {}).items():
            if ex.shape[a] != want[label]:
                if ex.shape[a] == 0:
                    raise BadInputError(f"example input '{n}' has size 0 on axis {a}")
                index = torch.arange(want[label]) % ex.shape[a]
                ex = ex.index_select(a, index)
        out.append(ex)
    return tuple(out)


def _example_sizes(given: dict[str, int], fixed: set[int], ties: dict) -> dict[str, int]:
    """label -> example size: free labels first (>= 2, distinct), then tied labels from their roots."""
    want: dict[str, int] = {}
    taken = lambda size: size in fixed or size in want.values()  # noqa: E731
    for label, size in given.items():
        tie = ties.get(label, {})
        if "of" in tie or label in want:
            continue
        choices = tie.get("sizes")
        if choices:
            if size not in choices:
                raise BadInputError(f"the example's size {size} on axis '{label}' is not one of its valid sizes {choices}")
            size = next((s for s in [size, *choices] if s >= 2 and not taken(s)), size)
        else:
            size = max(size, 2)
            while taken(size):
                size += 1
        want[label] = size
    roots = {t["of"] for lab, t in ties.items() if "of" in t and lab in given}
    for root in sorted(roots):
        tied = [(lab, int(t["scale"]), int(t["offset"])) for lab, t in ties.items() if t.get("of") == root and lab in given]
        del want[root]
        base = given[root]

        while _clashes(base, [a * base + c for _, a, c in tied], taken) and base < given[root] + 10_000:
            base += 1
        want[root] = base
        want.update({lab: a * base + c for lab, a, c in tied})
    return want


def _clashes(base: int, sizes: list[int], taken) -> bool:
    return base < 2 or taken(base) or any(s < 2 or taken(s) or s == base for s in sizes) or len(set(sizes)) < len(sizes)


def make_spec(module, names, examples, axes, output_names, ties=None) -> IOSpec:
    """The input side of the spec: each input's dtype (the example's own), named shape and role."""
    import torch

    vocab = min((m.num_embeddings for m in module.modules() if isinstance(m, torch.nn.Embedding)), default=None)
    inputs, order = [], []
    time = _time_label(names, examples, axes)
    for n, ex in zip(names, examples):
        shape = [axes.get(n, {}).get(a, int(s)) for a, s in enumerate(ex.shape)]
        order += [d for d in shape if isinstance(d, str) and d not in order]
        dtype = str(ex.dtype).removeprefix("torch.")
        if ex.is_floating_point():
            # a state is (layers x directions, batch, hidden): a fixed first axis; a seq-first input has a symbolic one
            role = "state" if n in ("h0", "c0") or (ex.dim() == 3 and isinstance(shape[0], int) and shape[1] == "batch") else "features"
        elif ex.dim() == 1:
            role = "lengths"
        else:
            role = "tokens"
        spec = TensorSpec(n, dtype, shape, role, vocab if role == "tokens" else None)
        if role == "lengths" and time not in (None, "seq"):
            spec.seq_label = time
        inputs.append(spec)
    return IOSpec(inputs=inputs, outputs=list(output_names or []), axes=order, ties=dict(ties or {}))


def mark_sorted_lengths(spec: IOSpec, descending: bool) -> None:
    """The module packs with enforce_sorted=True: its lengths input takes only lengths sorted longest first."""
    lengths = spec.input("lengths")
    if descending and lengths is not None:
        lengths.descending = True
        log.info("input '%s' must be sorted longest first (pack_padded_sequence(enforce_sorted=True))", lengths.name)


def _time_label(names, examples, axes) -> str | None:
    """The label lengths count: "seq" if used, else the first input's non-batch dynamic axis."""
    labels = [lab for spec in axes.values() for lab in spec.values()]
    if "seq" in labels or not names:
        return "seq" if "seq" in labels else None
    return next((lab for a, lab in sorted(axes.get(names[0], {}).items()) if lab != "batch"), None)


def pin_axes(axes: dict, fix_dims: dict | None) -> tuple[dict, dict[str, int]]:
    """fix_dims {label: size}: those labels leave the dynamic axes (the file gets dim_value there)."""
    fixed = {}
    for label, size in (fix_dims or {}).items():
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise BadInputError(f"--fix-dim {label}={size}: the size must be a positive integer")
        if not any(label in spec.values() for spec in axes.values()):
            labels = sorted({lab for spec in axes.values() for lab in spec.values()})
            raise BadInputError(f"--fix-dim names axis '{label}', which no input has (dynamic axes: {', '.join(labels) or 'none'})")
        fixed[str(label)] = size
    kept = {n: {a: lab for a, lab in spec.items() if lab not in fixed} for n, spec in axes.items()}
    return {n: spec for n, spec in kept.items() if spec}, fixed


def without_labels(dynamic_axes: dict | None, fixed: dict[str, int]) -> dict | None:
    """The user's dynamic_axes without the pinned labels (dict form only; list form has no labels to pin)."""
    if not dynamic_axes or not fixed:
        return dynamic_axes
    out = {}
    for name, spec in dynamic_axes.items():
        out[name] = {a: lab for a, lab in spec.items() if str(lab) not in fixed} if isinstance(spec, dict) else spec
    return out


def resize_to(examples, names, axes, fixed: dict[str, int]):
    """Examples with each pinned axis set to its size (rows repeated or cut)."""
    import torch

    out = []
    for n, ex in zip(names, examples):
        for a, label in axes.get(n, {}).items():
            if label in fixed and ex.shape[a] != fixed[label]:
                ex = ex.index_select(a, torch.arange(fixed[label]) % ex.shape[a])
        out.append(ex)
    return tuple(out)


def check_feeds(check_inputs, names, axes, examples) -> tuple[list[dict], list[dict]]:
    """The user's check inputs -> ([{label: size}], [{name: numpy array}]), each checked against the example."""
    import torch

    sizes, feeds = [], []
    for k, inputs in enumerate(check_inputs or []):
        inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
        if len(inputs) != len(names):
            raise BadInputError(f"check input {k} has {len(inputs)} tensors, the module takes {len(names)} ({', '.join(names)})")
        seen: dict[str, int] = {}
        for n, ex, t in zip(names, examples, inputs):
            t = torch.as_tensor(t)
            if t.dim() != ex.dim() or t.dtype != ex.dtype:
                raise BadInputError(f"check input {k}, '{n}': {t.dtype} rank {t.dim()}, the example is {ex.dtype} rank {ex.dim()}")
            if 0 in t.shape:
                raise BadInputError(f"check input {k}, '{n}': an empty axis, shape {list(t.shape)}")
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise BadInputError(f"check input {k}, '{n}': holds NaN or Inf")
            for a, (s, e) in enumerate(zip(t.shape, ex.shape)):
                label = axes.get(n, {}).get(a)
                if label is None and s != e:
                    raise BadInputError(f"check input {k}, '{n}': axis {a} is {s}, but it is not dynamic (the example has {e})")
                if label is not None and seen.setdefault(label, int(s)) != s:
                    raise BadInputError(f"check input {k}: axis '{label}' is {seen[label]} in one input and {s} in '{n}'")
        sizes.append(seen)
        feeds.append({n: torch.as_tensor(t).detach().cpu().numpy() for n, t in zip(names, inputs)})
    return sizes, feeds
