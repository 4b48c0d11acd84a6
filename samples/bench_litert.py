"""rnnedge.runtime against LiteRT's interpreter on the same work, one interleaved run, one thread.

Issue 14's call-overhead comparison: the one-step LSTM(8 -> 128) streaming call (W5) and the seed RNN
(W1, RNN(5 -> 8) + head over 10 steps), fp32 and int8. The sample builds everything itself from seeded torch
modules: the .onnx files with rnnedge (export + quantize), the .tflite files with LiteRT Torch's converter,
and the inputs; nothing from outside this repository:

    python samples/bench_litert.py [--work DIR] [--repeats 60]

It needs a second runtime beside rnnedge: torch, `litert-torch` and `ai-edge-litert` in the same Python
(a LiteRT venv is about 2 GB: `python -m venv litert && litert/bin/pip install litert-torch ai-edge-litert`,
then `pip install -e .` of this checkout). Without them it says so and exits 0. Per call, us (10th
percentile of blocks, candidates interleaved): LiteRT through its signature runner (what a Python user
calls), through set_tensor/invoke/get_tensor, and invoke alone (no I/O); rnnedge's StreamingSession.feed /
Session.run (pre-bound); onnxruntime's own run; an Identity model through onnxruntime (the floor every
onnxruntime call pays).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

WORK = {"W5": ("LSTM(8->128) one step", 1), "W1": ("seed RNN(5->8)+head, 10 steps", 10)}


def litert_calls(path: Path, feeds: list[np.ndarray], tag: str) -> dict:
    from ai_edge_litert.interpreter import Interpreter

    signature = Interpreter(model_path=str(path), num_threads=1).get_signature_runner()
    names = sorted(signature.get_input_details(), key=lambda n: (len(n), n))
    raw = Interpreter(model_path=str(path), num_threads=1)
    raw.allocate_tensors()
    ins, outs = raw.get_input_details(), raw.get_output_details()

    def set_invoke_get():
        for d, f in zip(ins, feeds):
            raw.set_tensor(d["index"], f)
        raw.invoke()
        return [raw.get_tensor(d["index"]) for d in outs]

    bare = Interpreter(model_path=str(path), num_threads=1)
    bare.allocate_tensors()
    for d, f in zip(bare.get_input_details(), feeds):
        bare.set_tensor(d["index"], f)
    return {f"LiteRT{tag} signature runner": lambda: signature(**dict(zip(names, feeds))),
            f"LiteRT{tag} set/invoke/get": set_invoke_get, f"LiteRT{tag} invoke only": bare.invoke}


def rnnedge_calls(path: Path, feeds: list[np.ndarray], tag: str, stream: bool) -> dict:
    from rnnedge.runtime import Session, StreamingSession
    from rnnedge.runtime.providers import open_session

    session = Session(path, providers="cpu", threads=1)
    if stream:
        streaming = StreamingSession(session)
        call = {f"rnnedge{tag} StreamingSession.feed": lambda: streaming.feed(feeds[0][0])}
    else:
        call = {f"rnnedge{tag} Session.run": lambda: session.run(feeds[0])}
    raw = open_session(path, providers="cpu", threads=1)
    named = dict(zip([i.name for i in raw.get_inputs()], feeds))
    return {**call, f"onnxruntime{tag} run": lambda: raw.run(None, named)}


def build(work: Path, wid: str) -> list[np.ndarray]:
    """The seeded torch module of `wid` -> WID.onnx, WID-int8.onnx (rnnedge) and WID.tflite (LiteRT Torch); its inputs."""
    import litert_torch
    import torch
    from torch import nn

    import rnnedge

    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    if wid == "W1":  # the seed task's shapes: RNN(5, 8) over 10 steps, a head on the last step
        class Classify(nn.Module):
            def __init__(self):
                super().__init__()
                self.rnn, self.fc = nn.RNN(5, 8, batch_first=True), nn.Linear(8, 3)

            def forward(self, x):
                return self.fc(self.rnn(x)[0][:, -1])

        module, feeds = Classify().eval(), [rng.standard_normal((1, 10, 5)).astype(np.float32)]
        names, outs, axes = ["x"], ["logits"], {"x": {0: "batch", 1: "seq"}}
    else:  # one LSTM step with its state in and out: a streaming app's call
        class Step(nn.Module):
            def __init__(self):
                super().__init__()
                self.rnn = nn.LSTM(8, 128, batch_first=True)

            def forward(self, x, h0, c0):
                y, (h, c) = self.rnn(x, (h0, c0))
                return y, h, c

        module = Step().eval()
        feeds = [rng.standard_normal((1, 1, 8)).astype(np.float32), *(0.5 * rng.standard_normal((2, 1, 1, 128))).astype(np.float32)]
        names, outs, axes = ["x", "h0", "c0"], ["y", "hn", "cn"], {"x": {0: "batch", 1: "seq"}, "h0": {1: "batch"}, "c0": {1: "batch"}}
    examples = tuple(torch.from_numpy(f) for f in feeds)
    rnnedge.export(module, examples, work / f"{wid}.onnx", input_names=names, output_names=outs, dynamic_axes=axes)
    rnnedge.quantize(work / f"{wid}.onnx", work / f"{wid}-int8.onnx", mode="int8")
    litert_torch.convert(module, examples).export(str(work / f"{wid}.tflite"))
    return feeds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=None, help="folder for the built files (default: a temporary one)")
    ap.add_argument("--repeats", type=int, default=60)
    args = ap.parse_args()
    try:
        import ai_edge_litert  # noqa: F401
        import litert_torch  # noqa: F401
    except ImportError as exc:
        print(f"needs LiteRT beside rnnedge ({exc.name} is not installed): see this sample's docstring; nothing measured")
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_edge import timed

    from rnnedge.bench.latency import identity_model
    from rnnedge.files import save_onnx
    from rnnedge.runtime.providers import open_session

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-litert-"))
    work.mkdir(parents=True, exist_ok=True)
    for wid, (title, _) in WORK.items():
        feeds = build(work, wid)
        calls = {**litert_calls(work / f"{wid}.tflite", feeds, ""), **rnnedge_calls(work / f"{wid}.onnx", feeds, "", stream=wid == "W5"),
                 **rnnedge_calls(work / f"{wid}-int8.onnx", feeds, " int8", stream=wid == "W5")}
        save_onnx(identity_model(feeds[0]), work / f"{wid}-identity.onnx")
        floor = open_session(work / f"{wid}-identity.onnx", providers="cpu", threads=1)
        calls["floor: Identity, onnxruntime run"] = lambda f=floor, x=feeds[0]: f.run(None, {"x": x})
        us = {k: v * 1e3 for k, v in timed(calls, args.repeats).items()}
        print(f"{wid}: {title}, us per call (1 thread, {args.repeats} interleaved rounds, 10th percentile)")
        lite = us["LiteRT signature runner"]
        for name, v in us.items():
            print(f"  {name:38s} {v:8.2f}  {v / lite:5.2f}x LiteRT signature  {v / us['floor: Identity, onnxruntime run']:5.2f}x floor")


if __name__ == "__main__":
    main()
