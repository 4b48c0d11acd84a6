"""Latency, throughput, size and memory of exported models, against PyTorch eager, as ratios.

    report = bench("model.onnx", against="model.safetensors", threads=1, batch=1, seq=10)
    report.onnx["p50_ms"], report.ratios["p50"]           # onnxruntime / torch eager

Every figure comes from one run: the candidates (onnxruntime through `rnnedge.runtime.Session`,
an Identity model through the same call path as the "floor", torch eager when asked) are timed
in interleaved repeats on the same inputs, so machine noise hits them alike and ratios are fair.
Absolute milliseconds depend on the machine; ratios measured in one run are what to compare.

Peak memory is the resident-set high-water mark (Linux ``/proc/self/status`` VmHWM, reset via
``/proc/self/clear_refs`` where allowed; ``resource.getrusage`` elsewhere) minus the resident set
before the session was created: what loading and running the model cost this process.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rnnedge.bench.flops import model_flops, peak_flops_per_call, peak_session
from rnnedge.errors import BadInputError, first_line
from rnnedge.files import model_bytes

log = logging.getLogger(__name__)

# the sequence length a task's data has, used when --seq is not given (else DEFAULT_SEQ)
TASK_SEQ = {"seed": 10, "digits": 8, "fillblank": 12, "charlm": 128}
DEFAULT_SEQ = 50
PLOT_SEQS = (1, 5, 10, 25, 50, 100)  # sequence lengths of the latency plot


# -- measuring ----------------------------------------------------------------------------------


def _status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def rss_mb() -> float:
    """This process's resident set now, in MiB (0.0 where it cannot be read)."""
    kb = _status_kb("VmRSS")
    return (kb or 0) / 1024


def reset_peak_rss() -> bool:
    """Reset the resident high-water mark (Linux: write 5 to /proc/self/clear_refs); True if done."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """This process's resident high-water mark, in MiB."""
    kb = _status_kb("VmHWM")
    if kb is not None:
        return kb / 1024
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def latency_stats(seconds: list[float], batch: int) -> dict[str, float]:
    """p50/p90/p99/mean in ms and sequences per second from per-call wall times."""
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    if ms.size == 0:
        raise BadInputError("no timed repeats: --repeats must be at least 1")
    mean = float(ms.mean())
    return {"p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99)), "mean_ms": mean, "min_ms": float(ms.min()),
            "throughput_seq_s": batch * 1e3 / mean if mean > 0 else float("inf"), "repeats": int(ms.size)}


def time_interleaved(calls: dict[str, Callable[[], Any]], repeats: int, warmup: int = 3,
                     block: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each candidate: `warmup` untimed rounds, then rounds until `repeats` timed calls.

    Each round calls every candidate in turn, `block` times in a row (after one untimed call that
    warms its caches back up), so machine noise hits every candidate alike. block=1 alternates
    call by call; at microsecond scale that measures each call with caches cooled by the others,
    so small models are timed with blocks (steady state, as timeit does).
    """
    times: dict[str, list[float]] = {name: [] for name in calls}
    block = max(1, block)
    for _ in range(warmup):
        for call in calls.values():
            call()
    while any(len(t) < repeats for t in times.values()):
        for name, call in calls.items():
            n = min(block, repeats - len(times[name]))
            if n <= 0:
                continue
            if block > 1:
                call()
            for _ in range(n):
                start = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - start)
    return times


# -- inputs and models --------------------------------------------------------------------------


def make_inputs(session, batch: int, seq: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random main input for `session` ((B, T, F) float32 or (B, T) token ids) and full lengths (B,)."""
    batch, seq = session.fixed_batch or batch, session.chunk or seq
    rng = np.random.default_rng(seed)
    if session.is_tokens:
        x = rng.integers(0, session.vocab or 1, size=(batch, seq), dtype=np.int64)  # (B, T)
    else:
        shape = session.inputs[[s.name for s in session.inputs].index(session.input_name)].shape
        feats = shape[2] if len(shape) > 2 and isinstance(shape[2], int) else (session.config or {}).get("input_size")
        if not isinstance(feats, int):
            raise BadInputError(f"{session.path}: cannot tell the feature size of input {session.input_name!r}")
        x = rng.standard_normal((batch, seq, feats)).astype(np.float32)  # (B, T, F)
    return x, np.full((batch,), seq, dtype=np.int64)


def identity_model(example: np.ndarray):
    """An ONNX model computing y = Identity(x) for inputs shaped like `example`: the onnxruntime floor."""
    import onnx
    from onnx import helper

    elem = onnx.helper.np_dtype_to_tensor_dtype(example.dtype)
    dims = ["batch", "seq", *example.shape[2:]]
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "floor",
                              [helper.make_tensor_value_info("x", elem, dims)],
                              [helper.make_tensor_value_info("y", elem, dims)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)


MATCHED = ("cell", "hidden", "layers", "bidirectional", "input_size", "num_outputs", "input_kind", "head")


def _torch_call(checkpoint, threads: int, x: np.ndarray, file_config: dict | None = None,
                meta: dict | None = None) -> Callable[[], Any]:
    """torch eager on `x` (all rows full length, so no packing), with `threads` intra-op threads, through the same
    TorchRunner verify uses, on the module the checkpoint's family says the file computes. The checkpoint must be the
    file's model: its config agrees with the file's `rnnedge.config` and it runs on the file's inputs (exit 2 else)."""
    import torch

    from rnnedge.checkpoint import load_checkpoint
    from rnnedge.families.registry import family_for_config
    from rnnedge.parity.runners import TorchRunner
    from rnnedge.spec import IOSpec, TensorSpec

    model = load_checkpoint(checkpoint)
    model.eval()
    mine = model.config.to_dict() if hasattr(model.config, "to_dict") else dict(vars(model.config))
    differ = [k for k in MATCHED if file_config and k in file_config and k in mine and file_config[k] != mine[k]]
    if differ:
        k = differ[0]
        raise BadInputError(f"--against {checkpoint} is not this file's model: {k} {mine[k]!r} in the checkpoint, {file_config[k]!r} in the file")
    family = family_for_config(model.config)
    module = family.torch_module(model, {**(meta or {}), "rnnedge.target": "dynamic"}) if family.torch_module else model
    torch.set_num_threads(threads)
    call = TorchRunner(module.eval(), IOSpec(inputs=[TensorSpec("x", str(x.dtype), ["batch", "seq"])], outputs=[])).caller({"x": x})
    try:
        call()
    except Exception as exc:  # a checkpoint of another task or shape: the user's mismatch, not a bug
        raise BadInputError(f"--against {checkpoint} cannot run on this file's inputs {list(x.shape)}: "
                            f"{type(exc).__name__}: {first_line(exc, 160)}") from None
    return call


# -- the report ---------------------------------------------------------------------------------


@dataclass
class BenchReport:
    model: str
    threads: int
    batch: int
    seq: int
    model_bytes: int
    providers: list[str]
    onnx: dict[str, float]  # latency_stats of the model
    floor: dict[str, float]  # latency_stats of the Identity model through the same Session.run
    torch: dict[str, float] | None = None  # latency_stats of torch eager (with `against`)
    memory: dict[str, float] = field(default_factory=dict)  # rss_before_mb, peak_rss_mb, rss_growth_mb
    ratios: dict[str, float] = field(default_factory=dict)  # onnx / torch (p50, p90, p99, mean), floor
    plot: dict | None = None  # seqs and p50 ms per candidate, and the PNG path
    work: dict = field(default_factory=dict)  # flops per call, gflops, peak_gflops (MatMul, same run), peak_fraction
    quantization: dict | None = None  # int8/fp16 files: mode and the forms chosen per unit (rnnedge.quantization*)

    def to_dict(self) -> dict:
        return {"model": self.model, "threads": self.threads, "batch": self.batch, "seq": self.seq,
                "model_bytes": self.model_bytes, "providers": self.providers, "onnx": self.onnx,
                "floor": self.floor, "torch": self.torch, "memory": self.memory, "ratios": self.ratios,
                "plot": self.plot, "work": self.work, "quantization": self.quantization}


def bench(model, *, against=None, threads: int = 1, batch: int = 1, seq: int | None = None, repeats: int = 100,
          warmup: int = 5, block: int = 10, providers="cpu", plot=None) -> BenchReport:
    """Time `model` (.onnx/.ort) through rnnedge.runtime.Session; with `against` (a checkpoint), torch eager too.

    `providers`: as rnnedge.runtime.Session takes them (names or (name, {option: value}) pairs); the report lists
    those onnxruntime used. `plot`: a PNG path for latency against sequence length (torch eager with `against`, onnx fp32,
    onnx int8 quantized on the fly); needs matplotlib (`pip install rnnedge[plot]`). `block`: calls in a
    row per candidate and round (see `time_interleaved`).
    """
    from rnnedge.runtime import Session

    for name, value in (("threads", threads), ("batch", batch), ("repeats", repeats)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BadInputError(f"{name} must be a positive integer, got {value!r}")
    if seq is not None and (not isinstance(seq, int) or seq < 1):
        raise BadInputError(f"seq must be a positive integer, got {seq!r}")
    if plot is not None:
        require_matplotlib()
    path = Path(model)
    rss_before = rss_mb()
    reset_peak_rss()
    session = Session(path, providers=providers, threads=threads)
    seq = session.chunk or seq or TASK_SEQ.get(session.metadata.get("rnnedge.task", ""), DEFAULT_SEQ)
    x, lengths = make_inputs(session, batch, seq)
    batch = x.shape[0]
    calls = {"onnx": lambda: session.run(x, lengths)}
    session.run(x, lengths)  # the first call allocates; counted in memory, not in latency
    with tempfile.TemporaryDirectory(prefix="rnnedge-bench-") as tmp:
        from rnnedge.files import save_onnx

        floor_path = Path(tmp) / "identity.onnx"
        save_onnx(identity_model(x), floor_path)
        floor = Session(floor_path, providers="cpu", threads=threads)
        calls["floor"] = lambda: floor.run(x)
        if against is not None:
            calls["torch"] = _torch_call(against, threads, x, session.config)
        peak_sess, peak_feed = peak_session(threads)
        calls["peak"] = lambda: peak_sess.run(None, peak_feed)
        times = time_interleaved(calls, repeats, warmup, block)
    peak = peak_rss_mb()
    stats = {name: latency_stats(t, batch) for name, t in times.items()}
    report = BenchReport(str(path), threads, batch, seq, model_bytes(path), session.providers, stats["onnx"],
                         stats["floor"], stats.get("torch"),
                         {"rss_before_mb": rss_before, "peak_rss_mb": peak, "rss_growth_mb": max(0.0, peak - rss_before)})
    report.ratios["floor"] = stats["onnx"]["p50_ms"] / stats["floor"]["p50_ms"]  # "within Nx of the floor"
    report.work = work_figures(path, batch, seq, stats["onnx"]["min_ms"], stats["peak"]["min_ms"])
    report.quantization = quantization_record(session.metadata)
    if report.torch:
        for k in ("p50", "p90", "p99", "mean"):
            report.ratios[k] = stats["onnx"][f"{k}_ms"] / stats["torch"][f"{k}_ms"]
    if plot is not None:
        report.plot = plot_latency(path, plot, against=against, threads=threads, batch=batch,
                                   repeats=max(5, repeats // 5), warmup=min(warmup, 3))
    return report


def bench_many(models: dict, *, against=None, threads: int = 1, batch: int = 1, seq: int = DEFAULT_SEQ,
               repeats: int = 50, warmup: int = 5, block: int = 10) -> dict:
    """Several ONNX models (name -> path) and torch eager, interleaved on the same inputs.

    Returns {"latency": {name: latency_stats}, "ratios": {name: p50 / torch p50}} (ratios with `against`).
    """
    from rnnedge.runtime import Session

    sessions = {name: Session(path, providers="cpu", threads=threads) for name, path in models.items()}
    first = next(iter(sessions.values()))
    x, lengths = make_inputs(first, batch, seq)
    calls = {name: (lambda s=s, x=x, lengths=lengths: s.run(x, lengths)) for name, s in sessions.items()}
    if against is not None:
        calls["torch"] = _torch_call(against, threads, x, first.config)
    stats = {name: latency_stats(t, x.shape[0]) for name, t in time_interleaved(calls, repeats, warmup, block).items()}
    ratios = {name: stats[name]["p50_ms"] / stats["torch"]["p50_ms"] for name in sessions} if against is not None else {}
    return {"threads": threads, "batch": int(x.shape[0]), "seq": int(x.shape[1]), "latency": stats, "ratios": ratios}


def work_figures(path, batch: int, seq: int, model_ms: float, peak_ms: float) -> dict:
    """GFLOP/s of the model and of the peak MatMul and their ratio, from the fastest call of each in one interleaved
    run (a shared machine only ever adds time: the fastest calls are the least disturbed, for both alike)."""
    from rnnedge.files import load_onnx

    out = {"peak_gflops": peak_flops_per_call() / peak_ms / 1e6}
    flops = model_flops(load_onnx(path, load_weights=False), batch, seq) if str(path).endswith(".onnx") else None
    if flops:
        out.update(flops=flops, gflops=flops / model_ms / 1e6)
        out["peak_fraction"] = out["gflops"] / out["peak_gflops"]
    return out


def quantization_record(meta: dict) -> dict | None:
    """{"mode", "forms", ...} from a quantized file's metadata (rnnedge.quantization, rnnedge.quantization.forms)."""
    import json

    if "rnnedge.quantization" not in meta:
        return None
    record = {"mode": meta["rnnedge.quantization"]}
    try:
        record.update(json.loads(meta.get("rnnedge.quantization.forms", "{}")))
    except ValueError:
        record["forms_unreadable"] = True
    return record


# -- plot ---------------------------------------------------------------------------------------


def require_matplotlib():
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, never a window
        import matplotlib.pyplot as plt
    except ImportError:
        raise BadInputError("--plot needs matplotlib: pip install rnnedge[plot]") from None
    return plt


def latency_by_seq(model, *, against=None, threads: int = 1, batch: int = 1, seqs=PLOT_SEQS, repeats: int = 20,
                   warmup: int = 3) -> dict:
    """p50 ms per sequence length for onnx fp32, onnx int8 (quantized now) and torch eager (with `against`)."""
    from rnnedge.quantizing.api import quantize
    from rnnedge.runtime import Session

    with tempfile.TemporaryDirectory(prefix="rnnedge-plot-") as tmp:
        int8 = Path(tmp) / "int8.onnx"
        quantize(model, int8, mode="int8")
        sessions = {"onnx fp32": Session(model, providers="cpu", threads=threads),
                    "onnx int8": Session(int8, providers="cpu", threads=threads)}
        if sessions["onnx fp32"].chunk:
            raise BadInputError(f"{model}: a fixed-chunk (mobile) model has one sequence length; nothing to plot")
        curves: dict[str, list[float]] = {name: [] for name in (["torch eager"] if against else []) + list(sessions)}
        for seq in seqs:
            x, lengths = make_inputs(sessions["onnx fp32"], batch, seq)
            calls = {name: (lambda s=s, x=x, lengths=lengths: s.run(x, lengths)) for name, s in sessions.items()}
            if against is not None:
                calls = {"torch eager": _torch_call(against, threads, x, sessions["onnx fp32"].config), **calls}
            for name, t in time_interleaved(calls, repeats, warmup, block=5).items():
                curves[name].append(latency_stats(t, batch)["p50_ms"])
    return {"seqs": list(seqs), "p50_ms": curves, "threads": threads, "batch": batch}


def plot_latency(model, png, **kwargs) -> dict:
    """Measure `latency_by_seq` and draw it into `png` (written atomically); returns the data and path."""
    from rnnedge.files import atomic_path

    plt = require_matplotlib()
    data = latency_by_seq(model, **kwargs)
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for name, ys in data["p50_ms"].items():
        ax.plot(data["seqs"], ys, marker="o", label=name)
    ax.set_xlabel("sequence length (steps)")
    ax.set_ylabel("latency p50 (ms)")
    ax.set_title(f"{Path(model).name}: batch {data['batch']}, {data['threads']} thread(s)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(png) as tmp, open(tmp, "wb") as fh:
        fig.savefig(fh, format="png")
    plt.close(fig)
    data["png"] = str(png)
    return data


def runtime_footprint(model, timeout: float = 60.0) -> dict[str, float]:
    """`import rnnedge.runtime` seconds and resident MiB with `model` loaded, in a fresh interpreter."""
    import json
    import subprocess
    import sys

    code = (
        "import time, json, sys\n"
        "t = time.perf_counter()\n"
        "import rnnedge.runtime as rt\n"
        "t = time.perf_counter() - t\n"
        "s = rt.Session(sys.argv[1], providers='cpu', threads=1)\n"
        "import numpy as np\n"
        "f = [i.shape for i in s.inputs if i.name == s.input_name][0][2:] or [(s.config or {}).get('input_size')]\n"
        "x = np.zeros((1, 10), np.int64) if s.is_tokens else np.zeros((1, 10, f[0] if isinstance(f[0], int) else s.config['input_size']), np.float32)\n"
        "s.run(x)\n"
        "print(json.dumps({'import_s': t, 'torch_loaded': 'torch' in sys.modules,"
        " 'rss_mb': int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0]) / 1024}))\n"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code, str(model)], capture_output=True, text=True, timeout=timeout, env=env)
    if out.returncode != 0:
        raise BadInputError(f"footprint subprocess failed: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])
