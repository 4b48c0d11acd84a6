"""An independent check for the coverage tests: onnxruntime against eager torch, by hand.

Not rnnedge.verify: the inputs are built by the test, fed to plain onnxruntime by name, and every
output is compared in shape and value with what eager torch returns for the same (possibly nested) call.
"""

from __future__ import annotations

import zlib

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch.utils._pytree import tree_flatten, tree_leaves


def seed_of(name: str) -> int:
    return zlib.crc32(name.encode())


def session(path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def max_error_vs_torch(module, path, args, sess=None) -> float:
    """Run module(*args) in torch and the file in onnxruntime on the same leaves; shapes must match exactly."""
    module.eval()
    with torch.no_grad():
        ref = [t.numpy() for t in tree_leaves(module(*args)) if isinstance(t, torch.Tensor)]
    sess = sess or session(path)
    leaves, _ = tree_flatten(tuple(args))
    feeds = {i.name: leaf.numpy() for i, leaf in zip(sess.get_inputs(), leaves)}
    out = sess.run(None, feeds)
    assert len(ref) == len(out), f"torch returns {len(ref)} tensors, onnxruntime {len(out)}"
    worst = 0.0
    for k, (r, o) in enumerate(zip(ref, out)):
        assert r.shape == o.shape, f"output {k}: torch {r.shape}, onnxruntime {o.shape}"
        assert r.dtype == o.dtype, f"output {k}: torch {r.dtype}, onnxruntime {o.dtype}"
        if r.size:
            worst = max(worst, float(np.abs(r.astype(np.float64) - o.astype(np.float64)).max()))
    return worst


def dims(path) -> tuple[dict, dict]:
    """({input: [dim_param or dim_value]}, {output: [...]}) as written in the file."""
    model = onnx.load(str(path))
    read = lambda vis: {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in vis}  # noqa: E731
    return read(model.graph.input), read(model.graph.output)


def assert_symbolic(path, inputs: dict[str, list[int]], outputs: dict[str, list[int]] | None = None) -> None:
    """Each listed axis of each input (and output, by position when names are not given) is a dim_param."""
    ins, outs = dims(path)
    for name, axes in inputs.items():
        for a in axes:
            assert isinstance(ins[name][a], str) and ins[name][a], f"input {name} axis {a}: {ins[name]}"
    for key, axes in (outputs or {}).items():
        shape = outs[key] if isinstance(key, str) else list(outs.values())[key]
        for a in axes:
            assert isinstance(shape[a], str) and shape[a], f"output {key} axis {a}: {shape}"
