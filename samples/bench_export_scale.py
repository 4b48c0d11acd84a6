"""Export time against model size: a waveform source separator written the way published ones are (conv encoder and
decoder with skip connections, `math.ceil` padding to a valid length, center trims, a 2-layer BLSTM that windows
inputs longer than 200 bottleneck steps), from a few million to tens of millions of weights.

    python samples/bench_export_scale.py                  # channels 16 32 48 64
    python samples/bench_export_scale.py --channels 64    # one size

Per size: weights, export seconds split into torch capture (every piece), guard reading and joining, and the quick
check (rnnedge.export's own, at unseen sizes and each side of the window split), and the pieces. Not part of the
tests (minutes on 2 cores).

The windowing reshapes spell their sizes out (`reshape(B, n, C, width)`): with `-1` there, torch.export's own sympy
simplification of the FloorDiv over the nested `math.ceil` sizes ran past 10 minutes in the long-input piece (a stack
dump shows torch/utils/_sympy FloorDiv.eval -> sympy simplify), before rnnedge reads a single guard.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import rnnedge


class WindowedBLSTM(nn.Module):
    """BLSTM over (B, C, T); past max_steps, overlapping windows of max_steps (stride max_steps // 2) in one batch."""

    def __init__(self, dim: int, layers: int = 2, max_steps: int = 200):
        super().__init__()
        self.max_steps = max_steps
        self.lstm = nn.LSTM(dim, dim, num_layers=layers, bidirectional=True)
        self.linear = nn.Linear(2 * dim, dim)

    def forward(self, x):  # (B, C, T)
        B, C, T = x.shape
        width, stride = self.max_steps, self.max_steps // 2
        framed = self.max_steps < T
        if framed:
            n = math.ceil(T / stride)
            frames = F.pad(x, (0, (n - 1) * stride + width - T)).unfold(2, width, stride)  # (B, C, n, width)
            x = frames.permute(0, 2, 1, 3).reshape(-1, C, width)
        x = self.linear(self.lstm(x.permute(2, 0, 1))[0]).permute(1, 2, 0)  # (B', C, T')
        if framed:
            limit = stride // 2
            f = x.reshape(B, n, C, width)  # sizes spelled out, not -1: see the module docstring
            body = f[:, :, :, limit:width - limit].permute(0, 2, 1, 3).reshape(B, C, n * (width - 2 * limit))
            x = torch.cat([f[:, 0, :, :limit], body], -1)[..., :T]
        return x


def center_trim(tensor, reference):
    """Trim `tensor` to `reference`'s length (or the int given), as much on each side."""
    ref = reference.size(-1) if isinstance(reference, torch.Tensor) else reference
    delta = tensor.size(-1) - ref
    return tensor[..., delta // 2: tensor.size(-1) - (delta - delta // 2)]


class Separator(nn.Module):
    """mix (B, 2, samples) -> sources (B, 2, 2, samples)."""

    def __init__(self, channels: int = 64, depth: int = 5, kernel: int = 8, stride: int = 4, sources: int = 2):
        super().__init__()
        self.depth, self.kernel, self.stride, self.sources = depth, kernel, stride, sources
        self.encoder, self.decoder = nn.ModuleList(), nn.ModuleList()
        chin = 2
        for i in range(depth):
            self.encoder.append(nn.Sequential(nn.Conv1d(chin, channels, kernel, stride), nn.ReLU(),
                                              nn.Conv1d(channels, 2 * channels, 1), nn.GLU(1)))
            out = 2 * sources if i == 0 else chin
            tail = [nn.ReLU()] if i > 0 else []
            self.decoder.insert(0, nn.Sequential(nn.Conv1d(channels, 2 * channels, 3, padding=1), nn.GLU(1),
                                                 nn.ConvTranspose1d(channels, out, kernel, stride), *tail))
            chin, channels = channels, 2 * channels
        self.lstm = WindowedBLSTM(chin)

    def valid_length(self, length):
        for _ in range(self.depth):
            length = max(1, math.ceil((length - self.kernel) / self.stride) + 1)
        for _ in range(self.depth):
            length = (length - 1) * self.stride + self.kernel
        return length

    def forward(self, mix):  # (B, 2, samples)
        length = mix.shape[-1]
        x = F.pad(mix, (0, self.valid_length(length) - length))
        saved = []
        for encode in self.encoder:
            x = encode(x)
            saved.append(x)
        x = self.lstm(x)
        for decode in self.decoder:
            x = decode(x + center_trim(saved.pop(-1), x))
        x = center_trim(x, length)
        return x.view(x.size(0), self.sources, 2, x.size(-1))


def measure(channels: int, folder: Path) -> dict:
    torch.manual_seed(0)
    module = Separator(channels).eval()
    weights = sum(p.numel() for p in module.parameters())
    mix = torch.randn(1, 2, 44100)  # one second at 44.1 kHz
    start = time.perf_counter()
    result = rnnedge.export(module, mix, folder / f"sep{channels}.onnx", input_names=["mix"], output_names=["sources"],
                            dynamic_axes={"mix": {0: "batch", 2: "samples"}, "sources": {0: "batch", 3: "samples"}}, verify=False)
    built = time.perf_counter() - start
    from rnnedge.parity.verify import quick_check

    start = time.perf_counter()
    report = quick_check(module, folder / f"sep{channels}.onnx", result.spec, examples=(mix,))
    checked = time.perf_counter() - start
    return {"channels": channels, "weights": weights, "build_s": built, "check_s": checked, "pieces": result.spec.pieces,
            "ok": bool(report), "cases": len(report.cases), "mb": result.size_bytes / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, nargs="*", default=[16, 32, 48, 64])
    args = parser.parse_args()
    torch.set_num_threads(2)
    print("| channels | weights | file MB | capture + guards + join (s) | quick check (s) | total (s) | pieces | check |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for channels in args.channels:
            r = measure(channels, Path(tmp))
            pieces = "; ".join(", ".join(f"{k} {lo}..{hi or ''}" for k, (lo, hi) in p.items()) for p in r["pieces"]) or "one"
            print(f"| {r['channels']} | {r['weights'] / 1e6:.1f}M | {r['mb']:.0f} | {r['build_s']:.1f} | {r['check_s']:.1f} | "
                  f"{r['build_s'] + r['check_s']:.1f} | {pieces} | {'ok' if r['ok'] else 'FAILED'} ({r['cases']} cases) |", flush=True)


if __name__ == "__main__":
    main()
