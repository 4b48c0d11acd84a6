"""The declarative I/O spec that drives both export and verify (like optimum's OnnxConfig).

An `IOSpec` names each input, its dtype, its shape (ints are fixed, strings are symbolic axes
such as "batch" and "seq") and its role, which says how to make a valid value for it:

    features  float32 data                      tokens   int64 ids in [0, vocab)
    lengths   int64 [batch], 1 <= len <= seq    state    float32 initial state (h0 / c0)

The spec is stored in the exported file (`rnnedge.spec` metadata), so `verify` can generate
cases at shapes never used at export from the .onnx file alone. numpy only: no torch here.

Integer inputs keep the example's dtype (`dtype` "int32" for int32 lengths); `make` returns that dtype.

How named axes relate (input side), all optional and absent from files written before them:

    ties      {"samples": {"of": "frames", "scale": 256, "offset": -1024}}   samples = 256 * frames - 1024
              {"mel2": {"of": "frames"}}                                     same size as frames
              {"frames": {"sizes": [10, 20, 40]}}                            only these sizes are valid
    fixed     {"batch": 1}      an axis pinned to a size in the file (`--fix-dim batch=1`)
    checks    [{"batch": 2, "frames": 9, "samples": 1280}, ...]  the sizes of the user's check inputs

A stream file of a user's module (`--target stream`, rnnedge.exporting.stream) declares what it carries:

    states    [{"input": "rnn.h0", "output": "rnn.hn", "shape": [2, "batch", 48], "batch_axis": 1, "init": 0.0,
                "layer": "rnn", "kind": "gru.h"}, {"input": "conv.ctx0", ...}]   fed back as input on the next call
    stride    4     chunks must be a multiple of this many steps (strided convs or pooling over time)
    lookahead 1     stream output i is whole output i - 1 (a centred conv with only per-frame layers after it)

Helpers for whoever makes inputs (parity, quantize --eval, benchmarks); never invent sizes around them:

    spec.sizes_for(batch, seq)   {axis: size} for every named axis: batch and the time axis as asked,
                                 tied axes computed from their root, listed sizes snapped to a valid one
    spec.resolve(sizes)          fills in / corrects the tied and fixed axes of a partial {axis: size}
    spec.valid(sizes)            whether a full {axis: size} satisfies every tie
    spec.time_axis               the label of the sequence axis ("seq", or the user's own, e.g. "frames")
    spec.make_inputs(sizes)      random inputs; `sizes` is resolved first, so ties always hold
    spec.check_feeds             (not stored in the file) the user's check inputs as numpy arrays, by name
    tensor.arrange(lengths)      lengths values as the input takes them (dtype; longest first when `descending`)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

import numpy as np

ROLES = ("features", "tokens", "lengths", "state")


@dataclass
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name: "float32", "int64", "int32" (the example's own dtype)
    shape: list  # int for a fixed size, str for a symbolic axis ("batch", "seq")
    role: str = "features"  # one of ROLES
    vocab: int | None = None  # tokens only: ids are drawn from [0, vocab)
    seq_label: str | None = None  # lengths only: the axis they count steps of (None: "seq")
    descending: bool = False  # lengths only: must be sorted longest first (pack_padded_sequence(enforce_sorted=True))

    def make(self, sizes: dict[str, int], rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
        """A random value of this spec with the symbolic axes set from `sizes`."""
        shape = [sizes[d] if isinstance(d, str) else d for d in self.shape]
        if self.role == "tokens":
            return rng.integers(0, self.vocab or 2, size=shape, dtype=np.int64).astype(self.dtype)
        if self.role == "lengths":
            seq = sizes.get(self.seq_label or "seq", sizes.get("seq", 1))
            lengths = rng.integers(1, seq + 1, size=shape, dtype=np.int64)
            if lengths.size:
                lengths[0] = seq  # one full row keeps the padded length meaningful
            return self.arrange(lengths)
        return (rng.standard_normal(shape) * scale).astype(self.dtype)


    def arrange(self, lengths) -> np.ndarray:
        """Lengths values as this input takes them: its dtype, and sorted longest first where the module requires it."""
        lengths = np.asarray(lengths)
        if self.descending:
            lengths = np.sort(lengths)[::-1]
        return np.ascontiguousarray(lengths).astype(self.dtype)


@dataclass
class IOSpec:
    inputs: list[TensorSpec]
    outputs: list[str]
    atol: float = 1e-4  # float32 parity: absolute tolerance
    rtol: float = 1e-4  # and relative tolerance (|a-b| <= atol + rtol*|b|)
    axes: list[str] = field(default_factory=list)  # symbolic axis labels in order of first use
    ranges: dict = field(default_factory=dict)  # {axis: [lo, hi]} sizes an axis is valid for (hi None: unbounded); export --allow-bounded

    ties: dict = field(default_factory=dict)  # {axis: {"of": root, "scale": a, "offset": b} | {"sizes": [...]}} (docstring)
    fixed: dict = field(default_factory=dict)  # {axis: size} pinned in the file (--fix-dim)
    checks: list = field(default_factory=list)  # [{axis: size}] of the user's check inputs
    nesting: str | None = None  # forward's nested arguments (torch pytree spec JSON) the flat inputs rebuild; None: flat
    states: list = field(default_factory=list)  # stream: [{"input", "output", "shape", "batch_axis", "init", "layer", "kind"}]
    stride: int = 1  # stream: chunks must be a multiple of this many frames (strided convs/pooling over time)
    lookahead: int = 0  # stream: output i of the stream is output i - lookahead of the whole sequence
    pieces: list = field(default_factory=list)  # [{axis: [lo, hi]}] the size ranges joined with If nodes (a size branch)
    check_feeds: list = field(default_factory=list, repr=False, compare=False)  # [{name: array}], never stored

    def make_inputs(self, sizes: dict[str, int], seed: int = 0, scale: float = 1.0) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        sizes = self.resolve(sizes)
        return {t.name: t.make(sizes, rng, scale) for t in self.inputs}

    @property
    def time_axis(self) -> str | None:
        """The sequence axis: "seq" if named so, else what the lengths count, else the first input's non-batch axis."""
        if "seq" in self.axes:
            return "seq"
        lengths = self.input("lengths")
        if lengths is not None and lengths.seq_label:
            return lengths.seq_label
        first = self.inputs[0].shape if self.inputs else []
        return next((d for d in first if isinstance(d, str) and d != "batch"), None)

    def sizes_for(self, batch: int, seq: int, other: int = 3) -> dict[str, int]:
        """{axis: size} for every named axis, with the batch and time axes as asked and every tie holding."""
        time = self.time_axis
        return self.resolve({a: batch if a == "batch" else seq if a == time else other for a in self.axes})

    def resolve(self, sizes: dict[str, int]) -> dict[str, int]:
        """`sizes` with fixed axes set, listed sizes snapped to the nearest valid one and tied axes computed from
        their roots (a root too small for its tie to give a size >= 1 is raised until it does)."""
        out = {**sizes, **self.fixed}
        for axis, tie in self.ties.items():
            if "sizes" in tie and axis in out:
                out[axis] = min(tie["sizes"], key=lambda s: (abs(s - out[axis]), s))
        for axis, tie in self.ties.items():
            root = tie.get("of")
            if root is None:
                continue
            scale, offset = int(tie.get("scale", 1)), int(tie.get("offset", 0))
            base = out.get(root, 1)
            while scale * base + offset < 1 and scale > 0:
                base += 1
            out[root] = base
            out[axis] = scale * base + offset
        return out

    def valid(self, sizes: dict[str, int]) -> bool:
        """Whether a full {axis: size} satisfies every declared tie and pinned size."""
        return sizes == self.resolve(sizes) and all(v >= 1 for v in sizes.values())

    def to_json(self) -> str:
        data = asdict(self)
        data.pop("check_feeds")
        for t in data["inputs"]:  # optional tensor fields only when set: files stay as they were
            for key, unset in (("seq_label", None), ("descending", False)):
                if t.get(key) == unset:
                    t.pop(key)
        for key, unset in (("stride", 1), ("lookahead", 0)):
            if data[key] == unset:
                data.pop(key)
        for key in ("ties", "fixed", "checks", "nesting", "states", "pieces"):  # files stay as they were when nothing relates the axes
            if not data[key]:
                data.pop(key)
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> IOSpec:
        """The spec stored as `rnnedge.spec`; BadInputError (a ValueError) when the metadata is not one."""
        try:
            data = json.loads(text)
            data["inputs"] = [TensorSpec(**{k: v for k, v in t.items() if k in _TENSOR_KEYS}) for t in data["inputs"]]
            return cls(**{k: v for k, v in data.items() if k in _SPEC_KEYS})
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            from rnnedge.errors import BadInputError

            raise BadInputError(f"malformed rnnedge.spec metadata ({type(exc).__name__}: {str(exc)[:80]})") from None

    def split_sizes(self) -> dict[str, list[int]]:
        """{axis: sizes} on both sides of every split point of the pieces: the first size of a piece and one on each
        side of it, the last size of the piece below (what the checks probe)."""
        out: dict[str, set] = {}
        for region in self.pieces:
            for axis, (lo, hi) in region.items():
                for first in ([lo] if lo > 1 else []) + ([hi + 1] if hi is not None else []):
                    out.setdefault(axis, set()).update((first - 1, first, first + 1))
        return {axis: sorted(sizes) for axis, sizes in out.items()}

    def input(self, role: str) -> TensorSpec | None:
        return next((t for t in self.inputs if t.role == role), None)


def state_start(shape: list, init, batch_axis: int, dtype="float32") -> np.ndarray:
    """A state's value at a stream's start, `shape` with the batch set: `init` is one number for every element, or
    the module's own start without its batch axis (a learned initial state), repeated along `batch_axis`."""
    if isinstance(init, (int, float)):
        return np.full(shape, init, dtype=dtype)  # zeros (a recurrent layer), the padding value (a conv's context)
    one = np.expand_dims(np.asarray(init, dtype=dtype), batch_axis)
    return np.ascontiguousarray(np.broadcast_to(one, shape))


_TENSOR_KEYS = {f.name for f in fields(TensorSpec)}
_SPEC_KEYS = {f.name for f in fields(IOSpec)} - {"check_feeds"}


def parse_tie(axis: str, text) -> dict:
    """A tie as users write it -> the spec's form. `text` is another axis ("frames"), an affine formula of one
    axis ("(frames - 4) * 256", "2*seq+1"), or a list of valid sizes ([10, 20, 40])."""
    if isinstance(text, (list, tuple)):
        if not text or not all(isinstance(s, int) and s >= 1 for s in text):
            raise ValueError(f"axis '{axis}': valid sizes must be a non-empty list of positive ints, got {text!r}")
        return {"sizes": sorted(set(text))}
    if isinstance(text, dict):
        return dict(text)
    import ast

    try:
        tree = ast.parse(str(text), mode="eval").body
        root, scale, offset = _affine(tree)
    except (SyntaxError, ValueError) as exc:
        raise ValueError(f"axis '{axis}': cannot read {text!r} as a size tie ({exc}); write e.g. '(frames - 4) * 256'") from None
    if root is None or scale == 0:
        raise ValueError(f"axis '{axis}': {text!r} names no other axis")
    if root == axis:
        raise ValueError(f"axis '{axis}' cannot be tied to itself")
    return {"of": root, "scale": scale, "offset": offset}


def _affine(node) -> tuple[str | None, int, int]:
    """(root axis, a, b) for an expression a*root + b built from one name, ints, +, - and *."""
    import ast

    if isinstance(node, ast.Name):
        return node.id, 1, 0
    if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
        return None, 0, node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        r, a, b = _affine(node.operand)
        return r, -a, -b
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult)):
        (r1, a1, b1), (r2, a2, b2) = _affine(node.left), _affine(node.right)
        if r1 and r2 and r1 != r2:
            raise ValueError("ties name one other axis")
        if isinstance(node.op, ast.Mult):
            if r1 and r2:
                raise ValueError("not affine")
            return (r1 or r2), a1 * b2 + a2 * b1, b1 * b2
        sign = 1 if isinstance(node.op, ast.Add) else -1
        return (r1 or r2), a1 + sign * a2, b1 + sign * b2
    raise ValueError("only ints, one axis name, +, - and * are allowed")
