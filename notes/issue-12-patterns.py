"""Issue 12 figures: every guard / frozen-axis / cell / TorchScript pattern tried, exported or refused.

    python notes/issue-12-patterns.py            # prints one line per pattern (and a JSON summary at the end)

Exported files are compared with torch (onnxruntime CPU) at several shapes, beyond the export's own check.
The module classes come from tests/test_guards.py and tests/test_cells.py (the same ones the tests use).
"""

import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import test_cells as C  # noqa: E402
import test_guards as G  # noqa: E402

import rnnedge  # noqa: E402

logging.basicConfig(level=logging.ERROR)


class IntLength(nn.Module):
    """Branches through a Python int computed from the length (torch specialises it)."""

    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(5, 8, batch_first=True)

    def forward(self, x):
        n = int(x.shape[1] * 0.5)
        return self.gru(x[:, :n])[0]


class Halves(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(5, 8, batch_first=True)

    def forward(self, x):
        y = self.lstm(x)[0]
        return y.reshape(y.shape[0], y.shape[1] // 2, 16)


class ViewFromInput(nn.Module):
    """Legit: a reshape sized from the input (must export)."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(5, 8, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        y = self.lstm(x)[0]  # (B, T, 8)
        b, t = y.shape[0], y.shape[1]
        return self.head(y.reshape(b * t, 8)).reshape(b, t, 3)


def r(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def seq_feeds(names, features=5):
    return lambda b, t: {names[0]: r(b, t, features, seed=b * 1000 + t)}


def step_feeds(names, sizes):
    return lambda b, t: {n: r(b, s, seed=b + i) for i, (n, s) in enumerate(zip(names, sizes))}


def decoder_feeds(b, t):
    return {"token": torch.arange(b) % 12, "h": r(b, 8, seed=t), "memory": r(b, t, 8, seed=b), "mask": torch.ones(b, t)}


SEQ_SHAPES = [(1, 1), (4, 7), (16, 50), (2, 300)]
STEP_SHAPES = [(1, 0), (4, 0), (16, 0)]
PATTERNS = [  # name, module, example, input names, extra export kwargs, feeds(b, t), shapes
    ("branch T>100 (LSTM)", G.BranchOnLength(), (r(2, 10, 5),), ["x"], {}, None, None),
    ("branch T>100, allow_bounded", G.BranchOnLength(), (r(2, 10, 5),), ["x"], {"allow_bounded": True}, seq_feeds(["x"]), [(1, 1), (4, 7), (16, 100)]),
    ("biLSTM block, branch T>200", G.BiBlock(), (r(2, 10, 4),), ["x"], {}, None, None),
    ("branch T<5 (lower bound)", G.ShortOnly(), (r(2, 10, 5),), ["x"], {}, None, None),
    ("torch._check(T <= 50)", None, None, None, None, None, None),
    ("Python loop over time (LSTMCell)", G.LoopOverTime(), (r(2, 10, 5),), ["x"], {}, None, None),
    ("reshape to a constant", G.ReshapeToConstant(), (r(2, 10, 5),), ["x"], {}, None, None),
    ("reshape to T//2 (even T only)", Halves(), (r(2, 10, 5),), ["x"], {}, None, None),
    ("int(T * 0.5) slice", IntLength(), (r(2, 10, 5),), ["x"], {}, None, None),
    ("x + y with labels seq, seq2", G.AddsTwoInputs(), (r(2, 10, 5), r(2, 12, 5)), ["x", "y"],
     {"dynamic_axes": {"x": {0: "batch", 1: "seq"}, "y": {0: "batch", 1: "seq2"}}}, None, None),
    ("reshape sized from the input (legit)", ViewFromInput(), (r(2, 10, 5),), ["x"], {}, seq_feeds(["x"]), SEQ_SHAPES),
    ("TorchScript (torch.jit.script)", "script", None, None, None, None, None),
    ("TorchScript (torch.jit.trace)", "trace", None, None, None, None, None),
    ("RNNCell step + head", C.CellStep("RNNCell"), (r(2, 5), r(2, 8)), ["x", "h"], {}, step_feeds(["x", "h"], [5, 8]), STEP_SHAPES),
    ("GRUCell step + head", C.CellStep("GRUCell"), (r(2, 5), r(2, 8)), ["x", "h"], {}, step_feeds(["x", "h"], [5, 8]), STEP_SHAPES),
    ("LSTMCell step + head", C.CellStep("LSTMCell"), (r(2, 5), r(2, 8), r(2, 8)), ["x", "h", "c"], {},
     step_feeds(["x", "h", "c"], [5, 8, 8]), STEP_SHAPES),
    ("layer-norm LSTM step (hand-written)", C.FlatLNLSTM(), (r(2, 5), r(2, 8), r(2, 8)), ["x", "h", "c"], {},
     step_feeds(["x", "h", "c"], [5, 8, 8]), STEP_SHAPES),
    ("light GRU step (hand-written)", C.LightGRUStep(), (r(2, 5), r(2, 8)), ["x", "h"], {}, step_feeds(["x", "h"], [5, 8]), STEP_SHAPES),
    ("run_cell(LSTMCell) over T", C.Stepped(nn.LSTMCell(5, 8)), (r(2, 10, 5),), ["x"], {}, seq_feeds(["x"]), SEQ_SHAPES),
    ("run_cell(GRUCell) over T", C.Stepped(nn.GRUCell(5, 8)), (r(2, 10, 5),), ["x"], {}, seq_feeds(["x"]), SEQ_SHAPES),
    ("run_cell(RNNCell relu) over T", C.Stepped(nn.RNNCell(5, 8, nonlinearity="relu")), (r(2, 10, 5),), ["x"], {}, seq_feeds(["x"]), SEQ_SHAPES),
    ("run_cell(light GRU) over T (Scan)", C.Stepped(C.LightGRUStep()), (r(2, 10, 5),), ["x"], {}, seq_feeds(["x"]), SEQ_SHAPES),
    ("attention GRU decoder step", C.AttentionDecoderStep(), (torch.tensor([1, 5, 7]), r(3, 8), r(3, 7, 8), torch.ones(3, 7)),
     ["token", "h", "memory", "mask"], {}, decoder_feeds, [(1, 1), (4, 11), (16, 30)]),
]


class Check(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(5, 8, batch_first=True)

    def forward(self, x):
        torch._check(x.shape[1] <= 50)
        return self.lstm(x)[0]


def max_error(module, path, feeds):
    with torch.no_grad():
        want = module(*feeds.values())
    want = want if isinstance(want, tuple) else (want,)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {k: v.numpy() for k, v in feeds.items()})
    return max(float(np.abs(g - w.numpy()).max()) for g, w in zip(got, want))


def main():
    rows = []
    tmp = Path(tempfile.mkdtemp())
    for i, (name, module, example, names, kwargs, feeds, shapes) in enumerate(PATTERNS):
        if name.startswith("torch._check"):
            module, example, names, kwargs = Check(), (r(2, 10, 5),), ["x"], {}
        if module in ("script", "trace"):
            lin = nn.Linear(5, 3)
            module = torch.jit.script(lin) if module == "script" else torch.jit.trace(lin, r(2, 5))
            example, names, kwargs = (r(2, 5),), ["x"], {}
        start = time.perf_counter()
        try:
            path = tmp / f"p{i}.onnx"
            rnnedge.export(module.eval(), example, path, input_names=names, **kwargs)
            errs = {f"batch {b}" + (f", seq {t}" if t else ""): max_error(module, path, feeds(b, t)) for b, t in shapes}
            rows.append({"pattern": name, "outcome": "exported", "max_abs_error": errs, "seconds": round(time.perf_counter() - start, 1)})
            print(f"EXPORTED  {name}: worst {max(errs.values()):.2e} over {', '.join(errs)}")
        except rnnedge.RnnEdgeError as exc:
            rows.append({"pattern": name, "outcome": "refused", "why": str(exc)})
            print(f"REFUSED   {name}: {str(exc)[:260]}")
    print(json.dumps({"patterns": len(rows), "exported": sum(r["outcome"] == "exported" for r in rows),
                      "refused": sum(r["outcome"] == "refused" for r in rows)}))


if __name__ == "__main__":
    main()
