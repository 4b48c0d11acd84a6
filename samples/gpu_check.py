"""GPU check: rnnedge's files on onnxruntime's CUDA (and TensorRT, where present) providers against torch on CUDA.

    python samples/gpu_check.py [--cells rnn,gru,lstm] [--hidden 256] [--shapes 1x16,64x50] [--repeats 30]

Per cell and shape: onnxruntime CUDA fp32 and fp16 (rnnedge.quantizing.api mode fp16), TensorRT fp16 where the
provider is there, all through IOBinding with inputs and outputs on the device (no host copies timed),
and torch eager on CUDA in fp32 and fp16; latencies are medians of interleaved calls, each ended by a
device synchronisation. Prints one JSON object on stdout: ms per candidate and ratios to torch fp32.
Runs in well under 5 minutes. Without a CUDA provider (onnxruntime CPU build) it says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

CUDA, TRT = "CUDAExecutionProvider", "TensorrtExecutionProvider"


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", default="rnn,gru,lstm")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--features", type=int, default=64)
    ap.add_argument("--shapes", default="1x16,64x50", help="comma-separated BATCHxSTEPS")
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args(argv)
    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    if not cells or any(c not in ("rnn", "gru", "lstm") for c in cells):
        ap.error(f"--cells: expected some of rnn,gru,lstm, got {args.cells!r}")
    try:
        args.shapes = [tuple(int(v) for v in s.lower().split("x")) for s in args.shapes.split(",") if s.strip()]
    except ValueError:
        ap.error(f"--shapes: expected BATCHxSTEPS[,...], got {args.shapes!r}")
    if not args.shapes or any(len(s) != 2 or min(s) < 1 for s in args.shapes):
        ap.error(f"--shapes: expected BATCHxSTEPS[,...] of positive integers, got {args.shapes!r}")
    if args.repeats < 1 or args.hidden < 1 or args.features < 1:
        ap.error("--repeats, --hidden and --features must be positive")
    args.cells = cells
    return args


def plan(available: list[str], torch_cuda: bool) -> dict:
    """Which candidates run and why the others do not (pure: pass the provider list and torch's CUDA flag)."""
    skipped = {}
    runs = []
    if CUDA in available:
        runs += [("ort cuda fp32", [CUDA], "fp32"), ("ort cuda fp16", [CUDA], "fp16")]
    else:
        skipped["ort cuda"] = f"no {CUDA} in this onnxruntime (available: {', '.join(available) or 'none'}); pip install onnxruntime-gpu"
    if TRT in available and CUDA in available:
        runs.append(("ort tensorrt fp16", [TRT, CUDA], "fp16"))
    else:
        skipped["ort tensorrt"] = f"no {TRT} in this onnxruntime" if TRT not in available else f"{TRT} needs {CUDA} too"
    if torch_cuda:
        runs += [("torch cuda fp32", None, "fp32"), ("torch cuda fp16", None, "fp16")]
    else:
        skipped["torch cuda"] = "torch has no CUDA device here (torch.cuda.is_available() is False)"
    return {"runs": runs, "skipped": skipped, "ok": CUDA in available}


def provider_options(providers: list[str]) -> list:
    """onnxruntime provider entries: TensorRT with fp16 and an engine cache in the temp folder, CUDA as is."""
    out = []
    for p in providers:
        if p == TRT:
            out.append((TRT, {"trt_fp16_enable": True, "trt_engine_cache_enable": True,
                              "trt_engine_cache_path": tempfile.gettempdir()}))
        else:
            out.append(p)
    return out


def ratios(ms: dict, reference: str = "torch cuda fp32") -> dict:
    """Each candidate's ms over the reference's (None where the reference did not run)."""
    ref = ms.get(reference)
    return {k: (v / ref if ref else None) for k, v in ms.items() if k != reference}


def _export(folder: Path, cell: str, features: int, hidden: int):
    import torch
    from torch import nn

    from rnnedge.exporting.api import export
    from rnnedge.quantizing.api import quantize

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[cell](features, hidden, batch_first=True)
            self.head = nn.Linear(hidden, 10)

        def forward(self, x):
            y, _ = self.rnn(x)
            return self.head(y)

    torch.manual_seed(0)
    model = Model().eval()
    fp32, fp16 = folder / f"{cell}.onnx", folder / f"{cell}.fp16.onnx"
    export(model, (torch.randn(2, 5, features),), fp32, input_names=["x"], lowering="native", verify=False)
    quantize(fp32, fp16, mode="fp16", keep_io_types=False)
    return model, {"fp32": fp32, "fp16": fp16}


def _ort_call(path: Path, providers: list[str], x_host):
    """A no-argument call running `path` through IOBinding with the input and output on CUDA device 0."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=provider_options(providers))
    dtype = x_host.dtype if sess.get_inputs()[0].type == "tensor(float)" else x_host.astype("float16").dtype
    x_dev = ort.OrtValue.ortvalue_from_numpy(x_host.astype(dtype), "cuda", 0)
    binding = sess.io_binding()
    binding.bind_ortvalue_input(sess.get_inputs()[0].name, x_dev)
    binding.bind_output(sess.get_outputs()[0].name, "cuda", 0)

    def call():
        sess.run_with_iobinding(binding)
        binding.synchronize_outputs()

    return call, sess.get_providers()


def _torch_call(model, x_host, half: bool):
    import torch

    m = model.to("cuda").eval()
    x = torch.from_numpy(x_host).to("cuda")
    if half:
        m, x = m.half(), x.half()

    def call():
        with torch.inference_mode():
            m(x)
        torch.cuda.synchronize()

    return call


def _median_ms(calls: dict, repeats: int) -> dict:
    import numpy as np

    times = {k: [] for k in calls}
    for call in calls.values():  # warm-up (TensorRT builds its engine on the first calls)
        for _ in range(3):
            call()
    for _ in range(repeats):
        for k, call in calls.items():
            start = time.perf_counter()
            call()
            times[k].append(time.perf_counter() - start)
    return {k: float(np.median(v)) * 1e3 for k, v in times.items()}


def main(argv=None) -> int:
    args = parse_args(argv)
    import onnxruntime as ort

    try:
        import torch

        torch_cuda = bool(torch.cuda.is_available())
    except ImportError:
        torch_cuda = False
    p = plan(ort.get_available_providers(), torch_cuda)
    report = {"onnxruntime": ort.__version__, "skipped": p["skipped"], "results": {}}
    if not p["ok"]:
        print(f"gpu_check: {p['skipped']['ort cuda']}: nothing to check", file=sys.stderr)
        print(json.dumps(report))
        return 0
    import numpy as np

    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        for cell in args.cells:
            model, files = _export(Path(tmp), cell, args.features, args.hidden)
            for batch, steps in args.shapes:
                x = np.random.default_rng(0).standard_normal((batch, steps, args.features)).astype(np.float32)
                calls, used = {}, {}
                for label, providers, precision in p["runs"]:
                    if providers is None:
                        calls[label] = _torch_call(model, x, precision == "fp16")
                    else:
                        calls[label], used[label] = _ort_call(files[precision], providers, x)
                ms = _median_ms(calls, args.repeats)
                report["results"][f"{cell} {batch}x{steps}"] = {"ms": ms, "ratio_to_torch_fp32": ratios(ms), "providers": used}
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
