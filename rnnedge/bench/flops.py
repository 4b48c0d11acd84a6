"""Work per call and the machine's peak, for `rnnedge bench`'s GFLOP/s and fraction of peak.

    flops = model_flops(model, batch=8, seq=50)           # multiply-adds x 2 of the recurrent layers and head
    peak = matmul_peak(threads=1)                          # GFLOP/s of onnxruntime's own fp32 MatMul, measured now

The work counts the matrix products only (what dominates a recurrent model): per step and direction
2 x batch x (input + hidden) x gates x hidden for each layer, and the head's product (per step for tag
and lm heads, once for classify/regress). From the `rnnedge.config` metadata where the file has it,
else from the weights of its standard RNN/GRU/LSTM (or DynamicQuantizeLSTM) nodes, subgraphs too (Scan
forms of foreign files are not counted: no figure rather than a wrong one). The peak is a square
PEAK_SIZE MatMul through onnxruntime on this machine with the same threads, timed in the same run
as the model, so the fraction is a ratio measured under the same load.
"""

from __future__ import annotations

import json
import time

import numpy as np

GATES = {"rnn": 1, "gru": 3, "lstm": 4}
PEAK_SIZE = 512  # the peak MatMul is (PEAK_SIZE x PEAK_SIZE) @ (PEAK_SIZE x PEAK_SIZE), fp32


def config_flops(config: dict, batch: int, seq: int) -> float | None:
    """2 x multiply-adds of the recurrent stack and head of an rnnedge model config, per call of (batch, seq)."""
    try:
        gates, hidden = GATES[config["cell"]], int(config["hidden"])
        dirs = 2 if config.get("bidirectional") else 1
        first = int(config.get("embed_dim") or hidden) if config.get("input_kind") == "tokens" else int(config["input_size"])
        layers, outputs = int(config.get("layers", 1)), int(config["num_outputs"])
    except (KeyError, TypeError, ValueError):
        return None
    total = 0.0
    for layer in range(layers):
        inp = first if layer == 0 else dirs * hidden
        total += 2.0 * batch * seq * dirs * gates * hidden * (inp + hidden)
    head_rows = batch * seq if config.get("head") in ("tag", "lm") else batch
    return total + 2.0 * head_rows * dirs * hidden * outputs


def weight_flops(model, batch: int, seq: int) -> float | None:
    """The same from the W and R weights of the standard recurrent nodes (foreign files); None if there are none."""
    from rnnedge.quantizing.forms import subgraphs

    total = 0.0
    for graph in [model.graph, *subgraphs(model.graph)]:
        dims = {t.name: int(np.prod(t.dims)) for t in graph.initializer}
        made = {o: n for n in graph.node for o in n.output}
        for node in graph.node:
            if node.op_type in ("RNN", "GRU", "LSTM", "DynamicQuantizeLSTM") and len(node.input) > 2:
                total += 2.0 * batch * seq * (_size(node.input[1], dims, made) + _size(node.input[2], dims, made))
    return total or None


def _size(name: str, dims: dict, made: dict, depth: int = 3) -> int:
    """Elements of a weight: an initializer, or what a dequantization chain (Cast/Mul/DequantizeLinear) starts from."""
    if name in dims or depth == 0:
        return dims.get(name, 0)
    node = made.get(name)
    if node is None or node.op_type not in ("Cast", "Mul", "DequantizeLinear") or not node.input:
        return 0
    return _size(node.input[0], dims, made, depth - 1)


def model_flops(model, batch: int, seq: int) -> float | None:
    """Work per call (see the module docstring), or None when it cannot be told."""
    meta = {p.key: p.value for p in model.metadata_props}
    if "rnnedge.config" in meta:
        try:
            flops = config_flops(json.loads(meta["rnnedge.config"]), batch, seq)
        except ValueError:
            flops = None
        if flops:
            return flops
    return weight_flops(model, batch, seq)


def peak_session(threads: int):
    """An onnxruntime session on a square fp32 MatMul, and its feed."""
    import onnx
    from onnx import helper, numpy_helper

    from rnnedge.runtime.providers import open_session

    n = PEAK_SIZE
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((n, n)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "w"], ["y"])], "peak",
                              [helper.make_tensor_value_info("a", onnx.TensorProto.FLOAT, [n, n])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [n, n])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    sess = open_session(model.SerializeToString(), providers="cpu", threads=threads, fallback=False)
    return sess, {"a": rng.standard_normal((n, n)).astype(np.float32)}


def peak_flops_per_call() -> float:
    return 2.0 * PEAK_SIZE**3


def matmul_peak(threads: int = 1, seconds: float = 0.5) -> float:
    """GFLOP/s of the peak MatMul alone (fastest quarter of the calls): for when no model is timed alongside."""
    sess, feed = peak_session(threads)
    sess.run(None, feed)
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 5:
        start = time.perf_counter()
        sess.run(None, feed)
        times.append(time.perf_counter() - start)
    return peak_flops_per_call() / float(np.percentile(times, 25)) / 1e9
