"""Parity: does the ONNX model compute what the PyTorch model computes, on shapes never used at export?

    report = rnnedge.verify("model.safetensors", "model.onnx")   # or a module and its example spec
    if not report: print(report.summary())

Runners are context managers with `infer(feeds) -> outputs` (`TorchRunner`, `OrtRunner` for any
provider list). Cases come from the model's `IOSpec` (stored in the file): batch 1 / odd / larger,
sequence 1 / short / long (512), ragged lengths, inputs large enough to saturate the gates,
token ids covering the whole vocabulary, given and default (zero) initial state. Streaming
models are also fed in chunks with the state carried over and compared with the whole sequence.
`compare(ref, out, atol, rtol)` turns outputs into data; every failure is collected, none raised.

Tolerance policy (float32): an element passes when |onnx - torch| <= atol + rtol * |torch| + 10 * e,
with atol = 1e-4, rtol = 1e-4 and e = torch's own float32 error on that case and output (max |torch
float32 - torch float64|, measured on a float64 copy of the module). For ordinary (contracting)
recurrent models e is ~1e-7 and the tolerance is simply atol/rtol; chaotic ones (large recurrent
weights, hundreds of steps) amplify any rounding difference, and there e widens the tolerance
instead of raising a false alarm. Where torch's float32 answer is off its own float64 answer by more
than 1e-3 of the output's scale (chaos, or overflow on the way), float32 cannot be verified at that
length at all: the output is skipped for that case and the report says so. Short cases stay
well-conditioned for any model, so a real export bug is still caught there. Correct exports measured here stay below 3e-6 even at 512 steps with
saturated gates (see tests/test_parity.py's sweep), so the default sits ~30x above that noise while
a single recurrent weight moved by 1% already shows up (measured sensitivity in the README).
Elements where torch itself is NaN/Inf or beyond 1e30 (a model that overflows float32) are not compared, and
the report notes how many; NaN/Inf from onnxruntime where torch has a number always fails.
float16 models: atol = rtol = 2e-2. int8 models are judged by their task metric (`quantize.compare_models`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .spec import IOSpec, TensorSpec

log = logging.getLogger(__name__)

ATOL, RTOL = 1e-4, 1e-4  # float32 (see the module docstring)
FP16_ATOL, FP16_RTOL = 2e-2, 2e-2
OVERFLOW = 1e30  # |torch| beyond this is at the edge of float32's range (3.4e38): not compared
ILL_CONDITIONED = 1e-3  # torch float32 off its float64 answer by more than this (relative): the case is skipped
NOISE_FACTOR = 10.0  # how far beyond torch's own float32 rounding error (against float64) onnxruntime may be
COMPUTE_PROVIDERS_SKIPPED = ("AzureExecutionProvider",)  # remote endpoints, not a local compute device


# ------------------------------------------------------------------------------------ reports


@dataclass
class OutputDiff:
    name: str
    max_abs: float
    mean_abs: float
    max_rel: float
    worst: tuple  # index of the worst element
    ok: bool
    note: str = ""  # shape mismatch, NaN, missing output...

    def to_dict(self) -> dict:
        return {"name": self.name, "max_abs": self.max_abs, "mean_abs": self.mean_abs, "max_rel": self.max_rel,
                "worst": list(self.worst), "ok": self.ok, "note": self.note}


@dataclass
class CaseResult:
    case: str
    provider: str
    outputs: list[OutputDiff]
    error: str = ""  # the runner failed on this case

    @property
    def ok(self) -> bool:
        return not self.error and all(o.ok for o in self.outputs)

    def to_dict(self) -> dict:
        return {"case": self.case, "provider": self.provider, "ok": self.ok, "error": self.error,
                "outputs": [o.to_dict() for o in self.outputs]}


@dataclass
class ParityReport:
    cases: list[CaseResult] = field(default_factory=list)
    atol: float = ATOL
    rtol: float = RTOL

    def __bool__(self) -> bool:
        return bool(self.cases) and all(c.ok for c in self.cases)

    @property
    def failures(self) -> list[CaseResult]:
        return [c for c in self.cases if not c.ok]

    def extend(self, other: ParityReport) -> ParityReport:
        self.cases.extend(other.cases)
        return self

    def worst(self) -> OutputDiff | None:
        diffs = [o for c in self.cases for o in c.outputs]
        return max(diffs, key=lambda o: o.max_abs, default=None)

    def to_dict(self) -> dict:
        worst = self.worst()
        return {"ok": bool(self), "atol": self.atol, "rtol": self.rtol, "cases": len(self.cases),
                "failed": len(self.failures), "max_abs": worst.max_abs if worst else None,
                "results": [c.to_dict() for c in self.cases]}

    def summary(self) -> str:
        """One line per failed case and output (or one line saying all passed)."""
        if self:
            worst = self.worst()
            return f"parity ok: {len(self.cases)} cases, max abs error {worst.max_abs:.2e} (atol {self.atol:g}, rtol {self.rtol:g})"
        lines = [f"parity FAILED: {len(self.failures)} of {len(self.cases)} cases (atol {self.atol:g}, rtol {self.rtol:g})"]
        for c in self.failures:
            if c.error:
                lines.append(f"  {c.case} [{c.provider}]: {c.error}")
            for o in c.outputs:
                if not o.ok:
                    lines.append(f"  {c.case} [{c.provider}] {o.name}: max abs {o.max_abs:.3e} at {list(o.worst)}, "
                                 f"max rel {o.max_rel:.3e} {o.note}".rstrip())
        return "\n".join(lines)


def compare(ref: dict, out: dict, atol: float = ATOL, rtol: float = RTOL, case: str = "", provider: str = "",
            noise: dict | None = None) -> ParityReport:
    """Compare every reference output with the candidate's; a report of one case.

    `noise` (per output: max |torch float32 - torch float64|) widens the tolerance by NOISE_FACTOR
    times torch's own rounding error, for models whose dynamics amplify rounding (chaotic RNNs).
    """
    diffs = []
    for name, r in ref.items():
        r = np.asarray(r, dtype=np.float64)
        if name not in out:
            diffs.append(OutputDiff(name, float("inf"), float("inf"), float("inf"), (), False, "missing output"))
            continue
        o = np.asarray(out[name], dtype=np.float64)
        if o.shape != r.shape:
            diffs.append(OutputDiff(name, float("inf"), float("inf"), float("inf"), (), False, f"shape {o.shape} != {r.shape}"))
            continue
        if r.size == 0:
            diffs.append(OutputDiff(name, 0.0, 0.0, 0.0, (), True))
            continue
        with np.errstate(invalid="ignore", over="ignore"):
            err = np.abs(o - r)
        slack = NOISE_FACTOR * float((noise or {}).get(name, 0.0))
        finite_ref = r[np.isfinite(r) & (np.abs(r) <= OVERFLOW)]
        scale = max(float(np.abs(finite_ref).max(initial=0.0)), 1.0)
        if slack / NOISE_FACTOR > ILL_CONDITIONED * scale:  # float32 itself has lost the answer: nothing to verify
            note = f"ill-conditioned here: torch float32 is {slack / NOISE_FACTOR:.1e} off its float64 answer; not compared"
            diffs.append(OutputDiff(name, 0.0, 0.0, 0.0, (), True, note))
            continue
        overflow = ~np.isfinite(r) | (np.abs(r) > OVERFLOW)  # torch itself (nearly) overflowed: nothing to compare
        if slack >= OVERFLOW:  # torch's own float32 answer is off by > 1e29: overflow anywhere is no export bug
            overflow |= ~np.isfinite(o)
        err[overflow] = 0.0
        err[np.isnan(err)] = np.inf  # NaN/Inf from onnxruntime where torch has a number
        worst = np.unravel_index(int(np.argmax(err)), err.shape)
        rel = np.where(err == 0, 0.0, err / np.maximum(np.abs(np.nan_to_num(r)), 1e-12))
        ok = bool(np.all(err <= atol + slack + rtol * np.abs(np.nan_to_num(r))))
        note = "" if np.isfinite(err).all() else "NaN/Inf where torch has a number"
        if slack > atol:
            note = f"{note} (tolerance widened by torch's own float32 error {slack / NOISE_FACTOR:.1e})".strip()
        if overflow.any():
            note = f"{note} (torch non-finite at {int(overflow.sum())} elements, not compared)".strip()
        diffs.append(OutputDiff(name, float(err.max()), float(err.mean()), float(rel.max()), tuple(int(i) for i in worst), ok, note))
    return ParityReport([CaseResult(case, provider, diffs)], atol, rtol)


# ------------------------------------------------------------------------------------ runners


class TorchRunner:
    """Runs a torch module in eval mode on numpy feeds (in the spec's input order).

    `infer_float64` runs a float64 copy of the module: the exact answer float32 rounding is measured against.
    """

    def __init__(self, module, spec: IOSpec):
        self.module, self.spec = module, spec
        self._double = None

    def __enter__(self):
        import torch

        self._torch = torch
        self._grad = torch.is_grad_enabled()
        torch.set_grad_enabled(False)
        self._was_training = self.module.training
        self.module.eval()
        return self

    def __exit__(self, *exc):
        self.module.train(self._was_training)
        self._torch.set_grad_enabled(self._grad)

    def infer(self, feeds: dict, module=None, float_dtype=np.float32) -> dict:
        from torch.utils._pytree import tree_leaves

        args = [self._torch.from_numpy(np.ascontiguousarray(feeds[t.name], dtype=float_dtype if t.dtype == "float32" else None))
                for t in self.spec.inputs]
        leaves = [v for v in tree_leaves((module or self.module)(*args)) if isinstance(v, self._torch.Tensor)]
        return {name: v.detach().cpu().double().numpy() for name, v in zip(self.spec.outputs, leaves)}

    def infer_float64(self, feeds: dict) -> dict:
        import copy

        if self._double is None:
            self._double = copy.deepcopy(self.module).double().eval()
        return self.infer(feeds, self._double, np.float64)

    def noise(self, feeds: dict, ref32: dict) -> dict:
        """Per output: max |float32 - float64| of torch itself on these inputs."""
        ref64 = self.infer_float64(feeds)
        with np.errstate(invalid="ignore"):
            return {k: float(np.nan_to_num(np.abs(ref32[k] - ref64[k]), nan=0.0, posinf=0.0).max(initial=0.0)) for k in ref32}


class OrtRunner:
    """Runs an ONNX file with onnxruntime on the given providers (default: CPU)."""

    def __init__(self, path, providers=None, threads: int | None = None):
        self.path, self.providers, self.threads = str(path), list(providers or ["CPUExecutionProvider"]), threads

    def __enter__(self):
        self.session = ort_session(self.path, self.providers, self.threads)
        self.input_types = {i.name: i.type for i in self.session.get_inputs()}
        self.output_names = [o.name for o in self.session.get_outputs()]
        return self

    def __exit__(self, *exc):
        self.session = None

    def infer(self, feeds: dict) -> dict:
        cast = {k: (v.astype(np.float16) if self.input_types.get(k) == "tensor(float16)" else v) for k, v in feeds.items()}
        outs = self.session.run(None, {k: v for k, v in cast.items() if k in self.input_types})
        return {n: np.asarray(v, dtype=np.float32) for n, v in zip(self.output_names, outs)}


def ort_session(path, providers=None, threads: int | None = None):
    """A quiet onnxruntime session on these providers (default CPU; no CPU fallback); one-line errors.

    Delegates to rnnedge.runtime.sessions.open_session, the one session factory."""
    from .runtime.sessions import open_session

    return open_session(path, providers=list(providers or ["CPUExecutionProvider"]), threads=threads, fallback=False)


def available_providers() -> list[str]:
    from .runtime.sessions import available_providers as compute_providers

    return compute_providers()


# ------------------------------------------------------------------------------------ cases


def generate_cases(spec: IOSpec, extra: int = 0, seed: int = 0) -> list[tuple[str, dict]]:
    """Named input sets covering the shapes and values exports get wrong."""
    fixed = not spec.axes
    cases: list[tuple[str, dict]] = []
    add = lambda name, sizes, scale=1.0, s=0: cases.append((name, spec.make_inputs(sizes, seed=seed + s, scale=scale)))  # noqa: E731
    sizes = lambda b, t: {a: (b if a == "batch" else t if a == "seq" else 3) for a in spec.axes}  # noqa: E731
    if fixed:
        add("fixed shape", {})
        add("saturated (x10)", {}, 10.0, 1)
    else:
        add("batch 1, seq 1", sizes(1, 1))
        add("batch 3, seq 7", sizes(3, 7), s=1)
        add("batch 16, seq 33", sizes(16, 33), s=2)
        add("batch 2, seq 512", sizes(2, 512), s=3)
        add("saturated (x10), batch 4, seq 20", sizes(4, 20), 10.0, 4)
    if spec.input("lengths") is not None and not fixed:
        name, feeds = "ragged lengths, batch 6, seq 25", spec.make_inputs(sizes(6, 25), seed=seed + 5)
        feeds["lengths"] = np.array([25, 1, 13, 24, 2, 7], dtype=np.int64)[: len(feeds["lengths"])]
        cases.append((name, feeds))
    tokens = spec.input("tokens")
    if tokens is not None and tokens.vocab:
        vocab = tokens.vocab
        name, feeds = "every token id", spec.make_inputs(sizes(-(-vocab // 64), 64) if not fixed else {}, seed=seed + 6)
        ids = feeds[tokens.name]
        flat = np.resize(np.arange(vocab, dtype=np.int64), ids.size)  # 0..vocab-1, as many as fit
        feeds[tokens.name] = flat.reshape(ids.shape)
        cases.append((name, feeds))
    if any(t.role == "state" for t in spec.inputs):
        for name, feeds in list(cases[:2]):
            zeros = {t.name: np.zeros_like(feeds[t.name]) for t in spec.inputs if t.role == "state"}
            cases.append((f"{name}, zero state", {**feeds, **zeros}))
    for k in range(extra):
        rng = np.random.default_rng(seed + 100 + k)
        add(f"random #{k + 1}", sizes(int(rng.integers(1, 9)), int(rng.integers(1, 80))) if not fixed else {}, s=100 + k)
    return cases


# ------------------------------------------------------------------------------------ verify


def spec_of(onnx_path) -> tuple[IOSpec, dict]:
    """(IOSpec, metadata) of a file: the spec rnnedge stored, or one read from the graph's inputs for any other model."""
    from .files import load_onnx

    load_onnx(onnx_path, load_weights=False)  # missing, pickled, corrupt, external data leaving its folder: one line
    session = ort_session(onnx_path)
    meta = dict(session.get_modelmeta().custom_metadata_map)
    if "rnnedge.spec" in meta:
        spec = IOSpec.from_json(meta["rnnedge.spec"])
        spec.outputs = [o.name for o in session.get_outputs()]
        if "float16" in meta.get("rnnedge.quantization", ""):
            spec.atol, spec.rtol = FP16_ATOL, FP16_RTOL
        return spec, meta
    inputs, axes = [], []
    for i in session.get_inputs():
        shape = [d if isinstance(d, int) else str(d or "dim") for d in i.shape]
        axes += [d for d in shape if isinstance(d, str) and d not in axes]
        dtype = "int64" if "int" in i.type else "float32"
        role = ("lengths" if len(shape) == 1 else "tokens") if dtype == "int64" else ("state" if i.name in ("h0", "c0") else "features")
        inputs.append(TensorSpec(i.name, dtype, shape, role, None))
    return IOSpec(inputs, [o.name for o in session.get_outputs()], axes=axes), meta


def torch_module_for(model_or_ckpt, meta: dict):
    """The torch side: a module as given, or the contract wrapper of a checkpoint for the file's target."""
    if isinstance(model_or_ckpt, (str, Path)):
        from .checkpoint import load_checkpoint
        from .contract import contract

        model = load_checkpoint(model_or_ckpt)
        target = meta.get("rnnedge.target", "dynamic")
        return contract(model, target, chunk=int(meta.get("rnnedge.chunk", 16))).module
    return model_or_ckpt


def verify(model_or_ckpt, onnx_path, *, atol: float | None = None, rtol: float | None = None, cases: int = 0,
           providers: list[str] | None = None, spec: IOSpec | None = None, stream: bool = True) -> ParityReport:
    """Compare torch and onnxruntime on generated cases, on every available provider. Never raises on a mismatch."""
    stored_spec, meta = spec_of(onnx_path)
    spec = spec or stored_spec
    atol = spec.atol if atol is None else atol
    rtol = spec.rtol if rtol is None else rtol
    module = torch_module_for(model_or_ckpt, meta)
    report = ParityReport(atol=atol, rtol=rtol)
    all_cases = generate_cases(spec, extra=cases)
    with TorchRunner(module, spec) as torch_runner:
        refs = []
        for name, feeds in all_cases:
            try:
                ref = torch_runner.infer(feeds)
            except Exception as exc:  # torch refuses the case: report it, do not crash
                report.cases.append(CaseResult(name, "torch", [], f"torch failed: {str(exc).strip().splitlines()[0][:200]}"))
                continue
            refs.append((name, feeds, ref, torch_runner.noise(feeds, ref)))
        for provider in providers or available_providers():
            with OrtRunner(onnx_path, [provider]) as ort_runner:
                for name, feeds, ref, noise in refs:
                    try:
                        out = ort_runner.infer(feeds)
                    except Exception as exc:
                        report.cases.append(CaseResult(name, provider, [], f"onnxruntime failed: {str(exc).splitlines()[0][:200]}"))
                        continue
                    report.extend(compare(ref, out, atol, rtol, name, provider, noise))
                if stream and _streams(spec):
                    report.extend(check_streaming(torch_runner, ort_runner, spec, atol, rtol, provider))
    return report


def _streams(spec: IOSpec) -> bool:
    return spec.input("state") is not None and "hn" in spec.outputs


def check_streaming(torch_runner, ort_runner, spec: IOSpec, atol, rtol, provider, chunk: int = 7, chunks: int = 5) -> ParityReport:
    """Feed a sequence in chunks with hn/cn carried back as h0/c0; compare with torch on the whole sequence."""
    first = next(t for t in spec.inputs if t.role in ("features", "tokens"))
    fixed_seq = next((d for d in first.shape[1:2] if isinstance(d, int)), None) if not spec.axes else None
    step = fixed_seq or chunk
    sizes = {a: (2 if a == "batch" else step * chunks if a == "seq" else 3) for a in spec.axes}
    whole = spec.make_inputs(sizes, seed=42)
    if fixed_seq:  # mobile: fixed chunk, feed the torch side the whole sequence at once
        long = spec.make_inputs({}, seed=43)
        whole[first.name] = np.concatenate([long[first.name]] + [spec.make_inputs({}, seed=44 + k)[first.name] for k in range(chunks - 1)], axis=1)
    if "lengths" in whole:
        whole["lengths"] = np.full_like(whole["lengths"], whole[first.name].shape[1])  # every row runs through all chunks
    ref = torch_runner.infer(whole)
    noise = torch_runner.noise(whole, ref)
    state = {t.name: whole[t.name] for t in spec.inputs if t.role == "state"}
    pieces: dict[str, list] = {}
    out = {}
    for k in range(chunks):
        feeds = {first.name: whole[first.name][:, k * step : (k + 1) * step], **state}
        if spec.input("lengths") is not None:
            feeds["lengths"] = np.full(feeds[first.name].shape[0], step, dtype=np.int64)
        out = ort_runner.infer(feeds)
        state = {"h0": out["hn"], **({"c0": out["cn"]} if "cn" in out else {})}
        for name, value in out.items():
            pieces.setdefault(name, []).append(value)
    joined = {}
    for name, r in ref.items():
        parts = pieces[name]
        joined[name] = np.concatenate(parts, axis=1) if r.ndim == 3 and name not in ("hn", "cn") else out[name]
    return compare(ref, joined, atol, rtol, f"stream: {chunks} chunks of {step} vs whole", provider, noise)


def quick_check(module, onnx_path, spec: IOSpec) -> ParityReport:
    """The check export runs: two shapes not used at export, CPU only; raises ParityError on failure."""
    from .errors import ParityError

    cases = generate_cases(spec)[1:3] if spec.axes else generate_cases(spec)[:1]
    report = ParityReport()
    from .errors import ExportError

    with TorchRunner(module, spec) as t, OrtRunner(onnx_path) as o:
        for name, feeds in cases:
            try:
                ref = t.infer(feeds)
            except Exception as exc:  # the module itself refuses shapes its own export claims to take
                raise ExportError(f"the module fails on {name} (dynamic axes it cannot take?): {str(exc).strip().splitlines()[0][:200]}") from exc
            report.extend(compare(ref, o.infer(feeds), spec.atol, spec.rtol, name, "CPUExecutionProvider", t.noise(feeds, ref)))
    if not report:
        raise ParityError("the exported model differs from torch: " + report.summary().splitlines()[-1].strip(), report)
    return report
