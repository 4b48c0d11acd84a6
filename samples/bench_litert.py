"""rnnedge.runtime against LiteRT's interpreter on the same files' work, one interleaved run, one thread.

Issue 14's call-overhead comparison: the one-step LSTM(8 -> 128) streaming call (W5) and the seed RNN
(W1, RNN(5 -> 8) + head over 10 steps), fp32 and int8. The .tflite and .onnx files come from the shared
measuring tool (its LiteRT venv converts the same seeded torch modules):

    python ../shared/tools/edge_peers.py prepare --out OUT            # rnnedge files (any venv with rnnedge)
    LITERT_PY ../shared/tools/edge_peers.py litert --out OUT --only W1 W5
    LITERT_PY samples/bench_litert.py --peers OUT [--repeats 60]     # needs ai-edge-litert and rnnedge

(`LITERT_PY`: a python with litert-torch and ai-edge-litert, plus `pip install --no-deps -e .` of this
checkout.) Per call, us (10th percentile of blocks, candidates interleaved): LiteRT through its signature
runner (what a Python user calls), through set_tensor/invoke/get_tensor, and invoke alone (no I/O);
rnnedge's StreamingSession.feed / Session.run (pre-bound); onnxruntime's own run; an Identity model
through onnxruntime (the floor every onnxruntime call pays).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_edge import timed  # noqa: E402

from rnnedge.bench.latency import identity_model  # noqa: E402
from rnnedge.files import save_onnx  # noqa: E402
from rnnedge.runtime import Session, StreamingSession  # noqa: E402
from rnnedge.runtime.providers import open_session  # noqa: E402

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
    session = Session(path, providers="cpu", threads=1)
    if stream:
        streaming = StreamingSession(session)
        call = {f"rnnedge{tag} StreamingSession.feed": lambda: streaming.feed(feeds[0][0])}
    else:
        call = {f"rnnedge{tag} Session.run": lambda: session.run(feeds[0])}
    raw = open_session(path, providers="cpu", threads=1)
    named = dict(zip([i.name for i in raw.get_inputs()], feeds))
    return {**call, f"onnxruntime{tag} run": lambda: raw.run(None, named)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peers", type=Path, required=True, help="edge_peers.py's --out folder (W1/W5 .onnx, .tflite, inputs)")
    ap.add_argument("--repeats", type=int, default=60)
    args = ap.parse_args()
    for wid, (title, seq) in WORK.items():
        data = np.load(args.peers / f"{wid}-inputs.npz")
        feeds = [data[f"s{seq}_{k}"] for k in range(3) if f"s{seq}_{k}" in data]
        calls = {}
        calls.update(litert_calls(args.peers / f"{wid}-litert-static.tflite", feeds, ""))
        calls.update(rnnedge_calls(args.peers / f"{wid}.onnx", feeds, "", stream=wid == "W5"))
        if (args.peers / f"{wid}-litert-ai_edge_quantizer.tflite").is_file():
            calls.update(litert_calls(args.peers / f"{wid}-litert-ai_edge_quantizer.tflite", feeds, " int8"))
        calls.update(rnnedge_calls(args.peers / f"{wid}-int8.onnx", feeds, " int8", stream=wid == "W5"))
        floor_path = args.peers / f"{wid}-identity.onnx"
        save_onnx(identity_model(feeds[0]), floor_path)
        floor = open_session(floor_path, providers="cpu", threads=1)
        calls["floor: Identity, onnxruntime run"] = lambda f=floor, x=feeds[0]: f.run(None, {"x": x})
        us = {k: v * 1e3 for k, v in timed(calls, args.repeats).items()}
        print(f"{wid}: {title}, us per call (1 thread, {args.repeats} interleaved rounds, 10th percentile)")
        lite = us["LiteRT signature runner"]
        for name, v in us.items():
            print(f"  {name:38s} {v:8.2f}  {v / lite:5.2f}x LiteRT signature  {v / us['floor: Identity, onnxruntime run']:5.2f}x floor")


if __name__ == "__main__":
    main()
