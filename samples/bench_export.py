"""Export time (cold: first export in the process; warm: the next ones) and graph size, against the stock exporter.

    python samples/bench_export.py            # five modules, both lowerings (about 40 s on a quiet 2-core machine)
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

import rnnedge


def stock_nodes(module, x) -> str:
    """What torch.onnx.export's default (dynamo) path gives, with a dynamic time axis asked for."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            t0 = time.perf_counter()
            program = torch.onnx.export(module, (x,), dynamo=True, verbose=False, dynamic_shapes=({0: torch.export.Dim("b"), 1: torch.export.Dim("t")},))
            proto = program.model_proto
            dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
            return f"{len(proto.graph.node)} nodes, {time.perf_counter() - t0:.1f} s, input {dims}"
        except Exception as exc:
            try:  # no dynamic axes at all
                t0 = time.perf_counter()
                program = torch.onnx.export(module, (x,), dynamo=True, verbose=False)
                return f"refused dynamic T ({type(exc).__name__}); static: {len(program.model_proto.graph.node)} nodes, {time.perf_counter() - t0:.1f} s"
            except Exception as exc2:
                return f"failed: {type(exc2).__name__}"


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    torch.manual_seed(0)
    tmp = Path(tempfile.mkdtemp())
    models = {
        "nn.RNN(5, 8, batch_first) [source]": nn.RNN(5, 8, batch_first=True),
        "nn.GRU(32, 64, 2 layers)": nn.GRU(32, 64, 2, batch_first=True),
        "nn.LSTM(32, 64, bidirectional)": nn.LSTM(32, 64, bidirectional=True, batch_first=True),
        "nn.LSTM(32, 64, proj_size=16)": nn.LSTM(32, 64, proj_size=16, batch_first=True),
        "nn.RNN(32, 64, relu, 3 layers)": nn.RNN(32, 64, 3, nonlinearity="relu", batch_first=True),
    }
    print(f"{'model':38} {'lowering':8} {'seconds':>8} {'nodes':>6}  stock torch.onnx (dynamo)")
    for k, (name, module) in enumerate(models.items()):
        x = torch.randn(2, 10, module.input_size)
        for lowering in ("native", "scan") if "proj" not in name else ("scan",):
            t0 = time.perf_counter()
            result = rnnedge.export(module, (x,), tmp / "m.onnx", lowering=lowering)
            seconds = time.perf_counter() - t0
            tag = "cold" if k == 0 and lowering == "native" else "warm"
            stock = stock_nodes(module, x) if lowering == "native" or "proj" in name else ""
            print(f"{name:38} {lowering:8} {seconds:7.2f}s {result.nodes:6}  {stock}  ({tag})")
    onnx.checker.check_model(str(tmp / "m.onnx"))


if __name__ == "__main__":
    main()
