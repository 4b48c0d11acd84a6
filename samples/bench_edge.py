"""Every figure of issue 14, as ratios measured in one run (interleaved, one thread).

    python samples/bench_edge.py [--repeats 30] [--cells rnn,gru,lstm] [--json out.json]

1. int8 / fp32 latency and size per cell at the four shapes: batch 1 x 1 step with state in/out
   (`--target stream`), batch 1 x 16, batch 64 x 8, batch 8 x 50 at hidden 256 (hidden 128 otherwise),
   each file made with `rnnedge.exporting.api` (checkpoint route) + `rnnedge.quantizing.api` defaults; also the int8
   file quantized `--for` that shape (forms measured there), and fp32 / torch.
2. The seed task's model (RNN(5 -> 8) + head): int8 size and latency against fp32.
3. Call overhead: us per call of rnnedge.runtime's Session.run / StreamingSession.feed on the one-step
   LSTM(8 -> 128) streaming call and the seed RNN, against onnxruntime's own run and an Identity model
   (the floor, same call path). LiteRT is not measured here (samples need no second runtime).
4. fp32 throughput at batch 8 x 50 x hidden 256: GFLOP/s and the fraction of onnxruntime's fp32 MatMul
   peak (512^3, same thread count) timed in the same interleaved run; and the ceiling of any recurrent
   form in onnxruntime there: the per-step recurrent products alone (50 chained (8 x 256) @ (256 x G*256)
   MatMuls, nothing else), as a fraction of the same peak.

Latencies: the 10th percentile of blocks of calls, candidates interleaved, so a shared,
noisy machine hits them alike; what matters are the ratios. Prints a table and (with --json) writes JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from rnnedge.bench.flops import GATES, config_flops, peak_flops_per_call, peak_session
from rnnedge.checkpoint import save_checkpoint
from rnnedge.exporting.api import export_checkpoint
from rnnedge.families.sequence.model import ModelConfig, SequenceModel
from rnnedge.quantizing.api import quantize
from rnnedge.runtime import Session, StreamingSession
from rnnedge.runtime.providers import open_session

SHAPES = {"1x1 stream": (1, 1, 128), "1x16": (1, 16, 128), "64x8": (64, 8, 128), "8x50 h256": (8, 50, 256)}
FEATURES, CLASSES = 8, 10
QUANTILE = 10  # other processes only ever add time: on a shared machine the fast blocks are the undisturbed ones


def timed(calls: dict, repeats: int, budget_ms: float = 2.0) -> dict:
    """ms per call (QUANTILE-th percentile of blocks of ~budget_ms), candidates interleaved block by block."""
    sizes = {}
    for name, call in calls.items():
        call()
        start = time.perf_counter()
        call()
        sizes[name] = max(1, int(budget_ms / 1e3 / max(time.perf_counter() - start, 1e-7)))
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            call()
            start = time.perf_counter()
            for _ in range(sizes[name]):
                call()
            times[name].append((time.perf_counter() - start) / sizes[name])
    return {name: float(np.percentile(t, QUANTILE)) * 1e3 for name, t in times.items()}


def make(folder: Path, cell: str, hidden: int, features: int = FEATURES, classes: int = CLASSES):
    """Checkpoint -> fp32 dynamic + stream exports and their int8 (quantize defaults). Returns paths and the model."""
    torch.manual_seed(0)
    model = SequenceModel(ModelConfig(input_size=features, cell=cell, hidden=hidden, num_outputs=classes)).eval()
    ckpt = folder / f"{cell}{hidden}.safetensors"
    save_checkpoint(ckpt, model)
    paths = {}
    for target in ("dynamic", "stream"):
        fp32 = folder / f"{cell}{hidden}_{target}.onnx"
        export_checkpoint(ckpt, fp32, target=target, verify=False, lengths=False)
        int8 = folder / f"{cell}{hidden}_{target}.int8.onnx"
        result = quantize(fp32, int8)
        paths[target] = {"fp32": fp32, "int8": int8, "forms": result.forms, "kept_fp32": result.kept_fp32}
    return paths, model


def product_chain(batch: int, seq: int, hidden: int, gates: int, threads: int):
    """A session running only the recurrence's products: `seq` chained (batch x hidden) @ (hidden x gates*hidden)
    MatMuls (a Slice back to hidden columns between them), and its feed and work (2 x multiply-adds)."""
    import onnx
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array((rng.standard_normal((hidden, gates * hidden)) / np.sqrt(hidden)).astype(np.float32), "w")  # no under/overflow
    cuts = [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in (("zero", [0]), ("h", [hidden]), ("axis", [1]))]
    nodes, cur = [], "h0"
    for t in range(seq):
        nodes.append(helper.make_node("MatMul", [cur, "w"], [f"g{t}"]))
        cur = f"g{t}"
        if gates > 1 and t < seq - 1:
            nodes.append(helper.make_node("Slice", [cur, "zero", "h", "axis"], [f"s{t}"]))
            cur = f"s{t}"
    graph = helper.make_graph(nodes, "products", [helper.make_tensor_value_info("h0", onnx.TensorProto.FLOAT, [batch, hidden])],
                              [helper.make_tensor_value_info(cur, onnx.TensorProto.FLOAT, None)], [w, *cuts])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    sess = open_session(model.SerializeToString(), providers="cpu", threads=threads)
    return sess, {"h0": rng.standard_normal((batch, hidden)).astype(np.float32)}, 2.0 * batch * hidden * gates * hidden * seq


def feeds_for(sess, batch: int, seq: int, rng) -> dict:
    out = {}
    for i in sess.get_inputs():
        if i.name in ("h0", "c0"):
            out[i.name] = np.zeros((i.shape[0], batch, i.shape[2]), np.float32)
        else:
            out[i.name] = rng.standard_normal((batch, seq, FEATURES if isinstance(i.shape[2], str) else i.shape[2])).astype(np.float32)
    return out


def shape_figures(cell: str, folder: Path, repeats: int, threads: int) -> dict:
    rng, rows, built = np.random.default_rng(0), {}, {}
    for label, (batch, seq, hidden) in SHAPES.items():
        if hidden not in built:
            built[hidden] = make(folder, cell, hidden)
        paths, model = built[hidden]
        files = paths["stream" if "stream" in label else "dynamic"]
        chosen = folder / f"{cell}{hidden}_{batch}x{seq}.int8.onnx"  # quantize --for batch=B,seq=T: chosen for this shape
        for_shape = quantize(files["fp32"], chosen, deploy={"batch": batch, "seq": seq})
        sessions = {k: open_session(files[k], providers="cpu", threads=threads) for k in ("fp32", "int8")}
        sessions["int8 --for"] = open_session(chosen, providers="cpu", threads=threads)
        feeds = feeds_for(sessions["fp32"], batch, seq, rng)
        xt = torch.from_numpy(feeds["x"])
        torch.set_num_threads(threads)
        calls = {k: (lambda s=s, f=feeds: s.run(None, f)) for k, s in sessions.items()}
        calls["torch"] = lambda m=model, x=xt: m(x)
        if hidden == 256:
            peak, peak_feed = peak_session(threads)
            calls["peak"] = lambda p=peak, f=peak_feed: p.run(None, f)
            chain, chain_feed, chain_flops = product_chain(batch, seq, hidden, GATES[cell], threads)
            calls["products"] = lambda c=chain, f=chain_feed: c.run(None, f)
        with torch.inference_mode():
            ms = timed(calls, repeats)
        row = {"fp32_ms": ms["fp32"], "int8_ms": ms["int8"], "torch_ms": ms["torch"], "int8/fp32": ms["int8"] / ms["fp32"],
               "fp32/torch": ms["fp32"] / ms["torch"], "fp32_bytes": files["fp32"].stat().st_size,
               "int8_bytes": files["int8"].stat().st_size, "forms": files["forms"], "kept_fp32": bool(files["kept_fp32"]),
               "int8 --for/fp32": ms["int8 --for"] / ms["fp32"], "forms --for": for_shape.forms, "size --for": for_shape.size_ratio}
        row["size_ratio"] = row["int8_bytes"] / row["fp32_bytes"]
        if "peak" in ms:
            flops = config_flops(model.config.to_dict() if hasattr(model.config, "to_dict") else vars(model.config), batch, seq)
            row["fp32_gflops"] = flops / ms["fp32"] / 1e6
            row["peak_gflops"] = peak_flops_per_call() / ms["peak"] / 1e6
            row["fp32_peak_fraction"] = row["fp32_gflops"] / row["peak_gflops"]
            row["products_peak_fraction"] = chain_flops / ms["products"] / 1e6 / row["peak_gflops"]
        rows[label] = row
    return rows


def seed_figures(folder: Path, repeats: int, threads: int) -> dict:
    paths, _ = make(folder, "rnn", 8, features=5, classes=3)
    files = paths["dynamic"]
    sessions = {k: open_session(files[k], providers="cpu", threads=threads) for k in ("fp32", "int8")}
    feeds = {"x": np.random.default_rng(1).standard_normal((1, 10, 5)).astype(np.float32)}
    ms = timed({k: (lambda s=s: s.run(None, feeds)) for k, s in sessions.items()}, repeats)
    return {"fp32_bytes": files["fp32"].stat().st_size, "int8_bytes": files["int8"].stat().st_size,
            "size_ratio": files["int8"].stat().st_size / files["fp32"].stat().st_size, "int8/fp32": ms["int8"] / ms["fp32"],
            "kept_fp32": bool(files["kept_fp32"]), "forms": files["forms"]}


def overhead_figures(folder: Path, repeats: int, threads: int) -> dict:
    """us per one-step call: Session.run, StreamingSession.feed, onnxruntime's run, and the Identity floor."""
    from rnnedge.bench.latency import identity_model
    from rnnedge.files import save_onnx

    out = {}
    for name, (cell, hidden, features) in {"LSTM(8->128) stream step": ("lstm", 128, 8), "seed RNN step": ("rnn", 8, 5)}.items():
        paths, _ = make(folder, cell, hidden, features=features, classes=3)
        path = paths["stream"]["fp32"]
        x = np.random.default_rng(2).standard_normal((1, 1, features)).astype(np.float32)
        floor_path = folder / f"identity{features}.onnx"
        save_onnx(identity_model(x), floor_path)
        session, floor = Session(path, providers="cpu", threads=threads), Session(floor_path, providers="cpu", threads=threads)
        stream = StreamingSession(Session(path, providers="cpu", threads=threads))
        raw = open_session(path, providers="cpu", threads=threads)
        raw_feeds = feeds_for(raw, 1, 1, np.random.default_rng(2))
        raw_floor = open_session(floor_path, providers="cpu", threads=threads)
        checked = StreamingSession(Session(path, providers="cpu", threads=threads))  # the checked path: what every call took before
        x64 = x.astype(np.float64)  # float64 is cast, so it never takes the pre-bound path
        ms = timed({"StreamingSession.feed": lambda st=stream, v=x[0]: st.feed(v), "Session.run": lambda se=session, v=x: se.run(v),
                    "step (checked path)": lambda st=checked, v={"s": x64[0]}: st.step(v),
                    "run_all (checked path)": lambda se=session, f={"x": x64}: se.run_all(f),
                    "onnxruntime run": lambda r=raw, f=raw_feeds: r.run(None, f), "floor Session.run": lambda fl=floor, v=x: fl.run(v),
                    "floor onnxruntime run": lambda r=raw_floor, f={"x": x}: r.run(None, f)}, repeats)
        us = {k: v * 1e3 for k, v in ms.items()}
        out[name] = {"us": us, "feed/floor": us["StreamingSession.feed"] / us["floor onnxruntime run"],
                     "run/floor": us["Session.run"] / us["floor onnxruntime run"],
                     "feed/onnxruntime run": us["StreamingSession.feed"] / us["onnxruntime run"]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cells", default="rnn,gru,lstm")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    report = {"threads": args.threads, "repeats": args.repeats, "shapes": {}}
    with tempfile.TemporaryDirectory(prefix="bench-edge-") as tmp:
        for cell in args.cells.split(","):
            report["shapes"][cell] = shape_figures(cell, Path(tmp), args.repeats, args.threads)
        report["seed"] = seed_figures(Path(tmp), args.repeats, args.threads)
        report["overhead"] = overhead_figures(Path(tmp), args.repeats, args.threads)
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))


def print_report(r: dict) -> None:
    print(f"one run, {r['threads']} thread(s), {r['repeats']} interleaved rounds, {QUANTILE}th percentile; ratios are what to read")
    print(f"{'cell':5} {'shape':11} {'int8/fp32':>9} {'--for':>6} {'fp32/torch':>10} {'size':>6}  forms (defaults | --for the shape)")
    for cell, rows in r["shapes"].items():
        for label, row in rows.items():
            forms = "fp32 kept" if row["kept_fp32"] else ", ".join(sorted(set(row["forms"].values())))
            forms += " | " + (", ".join(sorted(set(row["forms --for"].values()))) or "fp32 kept")
            peak = f"  fp32 {row['fp32_gflops']:.1f} GFLOP/s = {row['fp32_peak_fraction']:.0%} of peak {row['peak_gflops']:.0f}" \
                f" (the step products alone: {row['products_peak_fraction']:.0%})" if "fp32_peak_fraction" in row else ""
            print(f"{cell:5} {label:11} {row['int8/fp32']:9.2f} {row['int8 --for/fp32']:6.2f} {row['fp32/torch']:10.2f} "
                  f"{row['size_ratio']:6.3f}  {forms}{peak}")
    s = r["seed"]
    print(f"seed RNN(5->8): int8 size {s['size_ratio']:.3f} of fp32 ({s['int8_bytes']} / {s['fp32_bytes']} bytes), "
          f"latency {s['int8/fp32']:.2f}x" + (" (fp32 kept)" if s["kept_fp32"] else ""))
    for name, o in r["overhead"].items():
        us = ", ".join(f"{k} {v:.1f}" for k, v in o["us"].items())
        print(f"{name}: us per call: {us}; feed / floor {o['feed/floor']:.2f}x, Session.run / floor {o['run/floor']:.2f}x")


if __name__ == "__main__":
    main()
