"""Sizes and one-thread latencies of rnnedge.quantizing.api's int8 and fp16 models against float32.

    python samples/bench_quantize.py [--repeats 15]

Per cell (RNN, GRU, LSTM) at hidden 128 and 256, 8 input features, sequences of 8 steps (like
digits) and 50 steps, batch 64 and 8, onnxruntime CPU, one thread. The float32 reference is the
native lowering (standard ONNX ops); "int8" is what `quantize(mode="int8")` picks with its defaults
(forms measured at batch 1, see rnnedge.quantizing.forms); "int8 compute" forces the int8-compute form
(scan-int8 for RNN/GRU, lstm-int8 for LSTM), which is what `--for batch=B,seq=T` picks at large batches.
All of issue 14's figures in one run: samples/bench_edge.py.
Latencies are medians of interleaved repeats measured in the same run (`compare_models`).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import torch
from torch import nn

from rnnedge.exporting.api import export
from rnnedge.quantizing.api import compare_models, quantize


class Model(nn.Module):
    def __init__(self, cell: str, hidden: int, features: int = 8, classes: int = 10):
        super().__init__()
        self.rnn = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[cell](features, hidden, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x, lengths):
        if getattr(self.rnn, "accepts_lengths", False):
            _, h = self.rnn(x, None, lengths=lengths)
        else:
            _, h = self.rnn(nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
        h = h[0] if isinstance(h, tuple) else h  # (1, B, H)
        return self.head(h[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    torch.manual_seed(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for cell in ("rnn", "gru", "lstm"):
            for hidden in (128, 256):
                model, ex = Model(cell, hidden), (torch.randn(3, 8, 8), torch.tensor([8, 5, 3]))
                paths = {k: folder / f"{cell}{hidden}_{k}.onnx" for k in ("fp32", "int8", "fp16", "compute_int8")}
                export(model, ex, paths["fp32"], input_names=["x", "lengths"], lowering="native", verify=False)
                q = quantize(paths["fp32"], paths["int8"])
                h = quantize(paths["fp32"], paths["fp16"], mode="fp16")
                quantize(paths["fp32"], paths["compute_int8"], forms="lstm-int8" if cell == "lstm" else "scan-int8")
                for steps in (8, 50):
                    for batch in (64, 8):
                        r = compare_models(paths["fp32"], paths["int8"], batch=batch, seq=steps, repeats=args.repeats)
                        a = compare_models(paths["fp32"], paths["compute_int8"], batch=batch, seq=steps, repeats=args.repeats)
                        alt = f"{a['quant_ms']:.2f} ({a['latency_ratio']:.2f})"
                        rows.append((cell, hidden, steps, batch, q.size_ratio, h.size_ratio, r["float_ms"], r["quant_ms"],
                                     r["latency_ratio"], r["max_abs_diff"], ",".join(sorted(set(q.forms.values()))) or "fp32 kept", alt))
    head = ("cell", "H", "T", "B", "int8 size", "fp16 size", "fp32 ms", "int8 ms", "int8/fp32", "max|diff|", "int8 forms", "int8 compute ms (ratio)")
    print(" | ".join(head))
    print(" | ".join("---" for _ in head))
    for c, hd, t, b, qs, hs, fm, qm, lr, d, form, alt in rows:
        print(f"{c} | {hd} | {t} | {b} | {qs:.3f} | {hs:.3f} | {fm:.2f} | {qm:.2f} | {lr:.2f} | {d:.1e} | {form} | {alt}")


if __name__ == "__main__":
    main()
