"""The declarative I/O spec that drives both export and verify (like optimum's OnnxConfig).

An `IOSpec` names each input, its dtype, its shape (ints are fixed, strings are symbolic axes
such as "batch" and "seq") and its role, which says how to make a valid value for it:

    features  float32 data                      tokens   int64 ids in [0, vocab)
    lengths   int64 [batch], 1 <= len <= seq    state    float32 initial state (h0 / c0)

The spec is stored in the exported file (`rnnedge.spec` metadata), so `verify` can generate
cases at shapes never used at export from the .onnx file alone. numpy only: no torch here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np

ROLES = ("features", "tokens", "lengths", "state")


@dataclass
class TensorSpec:
    name: str
    dtype: str  # "float32" | "int64"
    shape: list  # int for a fixed size, str for a symbolic axis ("batch", "seq")
    role: str = "features"  # one of ROLES
    vocab: int | None = None  # tokens only: ids are drawn from [0, vocab)

    def make(self, sizes: dict[str, int], rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
        """A random value of this spec with the symbolic axes set from `sizes`."""
        shape = [sizes[d] if isinstance(d, str) else d for d in self.shape]
        if self.role == "tokens":
            return rng.integers(0, self.vocab or 2, size=shape, dtype=np.int64)
        if self.role == "lengths":
            seq = sizes.get("seq", 1)
            lengths = rng.integers(1, seq + 1, size=shape, dtype=np.int64)
            if lengths.size:
                lengths[0] = seq  # one full row keeps the padded length meaningful
            return lengths
        return (rng.standard_normal(shape) * scale).astype(self.dtype)


@dataclass
class IOSpec:
    inputs: list[TensorSpec]
    outputs: list[str]
    atol: float = 1e-4  # float32 parity: absolute tolerance
    rtol: float = 1e-4  # and relative tolerance (|a-b| <= atol + rtol*|b|)
    axes: list[str] = field(default_factory=list)  # symbolic axis labels in order of first use

    def make_inputs(self, sizes: dict[str, int], seed: int = 0, scale: float = 1.0) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        return {t.name: t.make(sizes, rng, scale) for t in self.inputs}

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> IOSpec:
        data = json.loads(text)
        data["inputs"] = [TensorSpec(**t) for t in data["inputs"]]
        return cls(**data)

    def input(self, role: str) -> TensorSpec | None:
        return next((t for t in self.inputs if t.role == role), None)
