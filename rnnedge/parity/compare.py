"""Parity as data: `compare(ref, out)` -> `ParityReport`, and the tolerance policy.

Tolerance policy (float32 files, the default): every case is run by torch twice, in float32 and in
float64. Per output, torch's own float32 error there is `e = max |torch32 - torch64|`; onnxruntime's
float32 error is of the same order, so onnxruntime is compared with the float64 answer and passes when

    max |onnx - torch64|  <=  NOISE_K * noise,    noise = max(e, spread, NOISE_FLOOR * eps32 * scale, eps32)

where `scale` is the largest |torch64| of that output and eps32 = 2**-23. `spread` is
how far the float64 answer moves when every float weight, buffer and input moves by one float32 rounding
(two random-sign draws, `TorchRunner.spread64`): torch's float32 run is a single sample of the rounding
error, and on an output of a few elements (batch 1, seq 1, a sigmoid after a conv stack) it can land near
zero by luck while the output is sensitive to its inputs' last bits. The floor keeps
the bound from collapsing where torch happens to round exactly (e = 0 on a one-step case); it is a few
float32 rounding steps of the output's own scale, and never less than one rounding of 1 (ABS_FLOOR): onnxruntime's
Sigmoid and Tanh are approximations whose error is absolute, not relative (measured: up to 1.4e-7 and 3.3e-7
over [-20, 20]; a sigmoid output of 1e-3 carries the same ~1e-7 as one of 0.5), so a small-valued output of
a correct file (a voice-activity probability on silence) measures far more "noise" than torch's own
float32 error there. Still far below the old fixed 1e-4 + 1e-4|y|. Each output's
error is reported as `noise_ratio = max |onnx - torch64| / noise`: correct exports measure well below
NOISE_K (see notes/issue-13.md), a single trained weight moved by 1% measures tens to thousands.

Ill-conditioned outputs: where torch's float32 answer is already off its float64 answer by more than
ILL_CONDITIONED of the output's scale (chaotic recurrences, hundreds of steps), no float32 file can be
verified there. Such outputs are listed (`ill_conditioned`) and fail the report unless the caller allows
them explicitly (`allow_ill_conditioned=True`, `rnnedge verify --allow-ill-conditioned`).

Explicit tolerances (`atol`/`rtol` given, or the spec's fixed ones for float16 files) use the classic
rule |onnx - torch| <= atol + rtol * |torch| (+ NOISE_K * e where a float64 reference exists).
Elements where torch itself is NaN/Inf or beyond OVERFLOW are not compared (the report notes how many);
NaN/Inf from onnxruntime where torch has a number always fails. Outputs are matched by name: a declared
output the file lacks, or a file output nobody declared, fails and names both sides.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

EPS32 = float(np.finfo(np.float32).eps)  # 1.19e-7
NOISE_K = 16.0  # onnxruntime may be this many times torch's own float32 noise away from float64
NOISE_FLOOR = 4.0  # noise is at least this many float32 rounding steps of the output's scale
MIN_SCALE = 1e-3  # outputs that are all ~0 are judged against this scale (ill-conditioning)
ABS_FLOOR = EPS32  # the noise is never below one rounding of 1: onnxruntime's Sigmoid/Tanh errors are absolute (<= 3.3e-7)
ILL_CONDITIONED = 3e-4  # torch float32 off float64 by more than this x scale: float32 cannot be verified
NEAR_OVERFLOW = 1e25  # outputs this large: a failure may be float32 overflowing inside, judged ill-conditioned
OVERFLOW = 1e30  # |torch| beyond this is at the edge of float32's range (3.4e38): not compared


@dataclass(frozen=True)
class Tolerance:
    """A tolerance policy for float files. atol and rtol None: the noise-scaled policy (the default, see above);
    given: the classic |onnx - torch| <= atol + rtol |torch|. `name` says which in reports."""

    name: str = "noise"
    atol: float | None = None
    rtol: float | None = None

    @property
    def noise_scaled(self) -> bool:
        return self.atol is None and self.rtol is None


@dataclass(frozen=True)
class DriftTolerance:
    """int8 files: judged by how far their outputs move, relative to each output's range (not element by element)."""

    name: str = "int8-drift"
    max_relative: float = 0.05  # of the output's range (max - min) on the inputs judged

    def ok(self, worst_relative: float) -> bool:
        return worst_relative <= self.max_relative


NOISE = Tolerance()
FP16 = Tolerance("fp16", 2e-2, 2e-2)  # float16 files: their error is float16's, not float32's
INT8_DRIFT = DriftTolerance()
FP16_ATOL, FP16_RTOL = FP16.atol, FP16.rtol
QUANTIZATION_TOLERANCES = {"fp16": FP16}  # rnnedge.quantization metadata (what `quantize --mode` wrote) -> policy


def fixed(atol: float | None, rtol: float | None) -> Tolerance:
    """Explicit tolerances (a missing one is 0)."""
    return Tolerance("fixed", 0.0 if atol is None else atol, 0.0 if rtol is None else rtol)


def tolerance_for(meta: dict, atol: float | None = None, rtol: float | None = None) -> Tolerance:
    """The policy for a file: explicit atol/rtol when given, else its quantization's (fp16), else noise-scaled."""
    if atol is not None or rtol is not None:
        return fixed(atol, rtol)
    return QUANTIZATION_TOLERANCES.get(meta.get("rnnedge.quantization", ""), NOISE)


@dataclass
class OutputDiff:
    name: str
    max_abs: float  # max |onnx - reference| over compared elements
    mean_abs: float
    max_rel: float
    worst: tuple  # index of the worst element
    ok: bool
    note: str = ""  # shape mismatch, NaN, missing/extra output, ill-conditioned...
    noise: float = 0.0  # the noise level the bound scales (max(e, floor)); 0 with explicit tolerances only
    noise_ratio: float | None = None  # max_abs / noise
    bound: float = 0.0  # the largest error allowed on this output
    ill_conditioned: bool = False  # float32 itself has lost the answer here
    torch_error: float = 0.0  # e = max |torch32 - torch64| on this output (0 without a float64 reference)
    scale: float = 0.0  # max |torch| of this output

    def to_dict(self) -> dict:
        return {"name": self.name, "max_abs": self.max_abs, "mean_abs": self.mean_abs, "max_rel": self.max_rel,
                "worst": list(self.worst), "ok": self.ok, "note": self.note, "noise": self.noise,
                "noise_ratio": self.noise_ratio, "bound": self.bound, "ill_conditioned": self.ill_conditioned,
                "torch_error": self.torch_error, "scale": self.scale}


@dataclass
class CaseResult:
    case: str
    provider: str
    outputs: list[OutputDiff]
    error: str = ""  # the runner failed on this case (or the session did not open)
    skipped: str = ""  # why this case was not compared (torch itself refuses the shape: the module's own limit)

    @property
    def ok(self) -> bool:
        return not self.error and all(o.ok for o in self.outputs)

    def to_dict(self) -> dict:
        return {"case": self.case, "provider": self.provider, "ok": self.ok, "error": self.error, "skipped": self.skipped,
                "outputs": [o.to_dict() for o in self.outputs]}


@dataclass
class ParityReport:
    cases: list[CaseResult] = field(default_factory=list)
    atol: float | None = None  # None: the noise policy (module docstring)
    rtol: float | None = None
    allow_ill_conditioned: bool = False
    notes: list[str] = field(default_factory=list)  # e.g. "float64 reference unavailable: ..."

    def __bool__(self) -> bool:
        return bool(self.cases) and all(c.ok for c in self.cases)

    @property
    def failures(self) -> list[CaseResult]:
        return [c for c in self.cases if not c.ok]

    @property
    def ill_conditioned(self) -> list[tuple[str, str, str]]:
        """(case, provider, output) of every output float32 cannot be verified on."""
        return [(c.case, c.provider, o.name) for c in self.cases for o in c.outputs if o.ill_conditioned]

    @property
    def providers(self) -> list[str]:
        """The onnxruntime execution providers this report checked (each case's, in order), torch and the runtime's
        range probes left out."""
        return list(dict.fromkeys(c.provider for c in self.cases if c.provider and c.provider not in ("torch", "rnnedge.runtime")))

    @property
    def policy(self) -> str:
        if self.atol is None:
            return f"noise x{NOISE_K:g} (vs torch float64)"
        return f"atol {self.atol:g}, rtol {self.rtol:g}"

    def extend(self, other: ParityReport) -> ParityReport:
        self.cases.extend(other.cases)
        self.notes.extend(n for n in other.notes if n not in self.notes)
        return self

    def worst(self) -> OutputDiff | None:
        diffs = [o for c in self.cases for o in c.outputs if not o.ill_conditioned and np.isfinite(o.max_abs)]
        return max(diffs, key=lambda o: o.max_abs, default=None)

    def worst_ratio(self) -> float | None:
        ratios = [o.noise_ratio for c in self.cases for o in c.outputs if o.noise_ratio is not None and not o.ill_conditioned]
        return max(ratios, default=None)

    def to_dict(self) -> dict:
        worst = self.worst()
        return {"ok": bool(self), "providers": self.providers, "policy": self.policy, "atol": self.atol, "rtol": self.rtol, "noise_k": NOISE_K,
                "cases": len(self.cases), "failed": len(self.failures), "max_abs": worst.max_abs if worst else None,
                "max_noise_ratio": self.worst_ratio(), "allow_ill_conditioned": self.allow_ill_conditioned,
                "ill_conditioned": [{"case": c, "provider": p, "output": o} for c, p, o in self.ill_conditioned],
                "notes": list(self.notes), "results": [c.to_dict() for c in self.cases]}

    def summary(self) -> str:
        """One line per failed case and output (or one line saying all passed), ill-conditioned ones named."""
        ill = self.ill_conditioned
        ill_line = f"; {len(ill)} ill-conditioned output(s) not verifiable in float32 ({_names(ill)})" if ill else ""
        skipped = [c.case for c in self.cases if c.skipped]
        if skipped:
            ill_line += f"; {len(skipped)} case(s) torch itself refuses, not compared ({'; '.join(skipped[:3])})"
        if self:
            worst, ratio = self.worst(), self.worst_ratio()
            err = f"max abs error {worst.max_abs:.2e}" if worst else "no output compared"
            noise = f", {ratio:.1f}x noise" if ratio is not None else ""
            allowed = " (allowed)" if ill else ""
            return f"parity ok: {len(self.cases)} cases, {err}{noise} ({self.policy}){self._on()}{ill_line}{allowed}"
        lines = [f"parity FAILED: {len(self.failures)} of {len(self.cases)} cases ({self.policy}){self._on()}{ill_line}"]
        for c in self.failures:
            if c.error:
                lines.append(f"  {c.case} [{c.provider}]: {c.error}")
            for o in c.outputs:
                if not o.ok:
                    ratio = f", {o.noise_ratio:.1f}x noise" if o.noise_ratio is not None else ""
                    lines.append(f"  {c.case} [{c.provider}] {o.name}: max abs {o.max_abs:.3e} at {list(o.worst)}{ratio}, "
                                 f"max rel {o.max_rel:.3e} {o.note}".rstrip())
        return "\n".join(lines + [f"  note: {n}" for n in self.notes])


    def _on(self) -> str:
        return f" on {', '.join(self.providers)}" if self.providers else ""


def _names(ill) -> str:
    shown = sorted({f"{o} @ {c}" for c, _, o in ill})
    return "; ".join(shown[:3]) + (" ..." if len(shown) > 3 else "")


def compare(ref: dict, out: dict, atol: float | None = None, rtol: float | None = None, case: str = "", provider: str = "",
            noise: dict | None = None, ref64: dict | None = None, allow_ill_conditioned: bool = False,
            spread: dict | None = None) -> ParityReport:
    """Compare every reference output with the candidate's, by name; a report of one case.

    ref: torch float32 outputs; ref64: torch float64 outputs (the exact answer the noise is measured
    against); noise: per output, max |torch32 - torch64| where ref64 is not given (tests, older callers).
    atol/rtol None: the noise policy; given: the classic bound widened by NOISE_K x torch's own error.
    spread: per output, how far float64 moves under one float32 rounding of every weight and input
    (TorchRunner.spread64); the noise is at least that.
    """
    diffs = []
    for name, r in ref.items():
        if name not in out:
            note = f"missing output: the file has {sorted(out)}, torch has {sorted(ref)}"
            diffs.append(OutputDiff(name, float("inf"), float("inf"), float("inf"), (), False, note))
            continue
        r64 = None if ref64 is None else ref64.get(name)
        e = (noise or {}).get(name)
        diffs.append(compare_output(name, r, out[name], r64, e, atol, rtol, allow_ill_conditioned, (spread or {}).get(name, 0.0)))
    for name in out:
        if name not in ref:
            note = f"extra output: the file has {sorted(out)}, torch has {sorted(ref)}"
            diffs.append(OutputDiff(name, float("inf"), float("inf"), float("inf"), (), False, note))
    return ParityReport([CaseResult(case, provider, diffs)], atol, rtol, allow_ill_conditioned)


def compare_output(name, ref32, got, ref64=None, e=None, atol=None, rtol=None, allow_ill=False, spread=0.0) -> OutputDiff:
    """One output: error against the float64 answer (or float32 where there is none), as a multiple of the noise."""
    r32 = np.asarray(ref32, dtype=np.float64)
    o = np.asarray(got, dtype=np.float64)
    if o.shape != r32.shape:
        return OutputDiff(name, float("inf"), float("inf"), float("inf"), (), False, f"shape {o.shape} != torch's {r32.shape}")
    if r32.size == 0:
        return OutputDiff(name, 0.0, 0.0, 0.0, (), True)
    if r32.ndim == 0:  # a 0-d output (say torch's squeeze() at batch 1): compare it as one element
        r32, o = r32.reshape(1), o.reshape(1)
        ref64 = None if ref64 is None else np.asarray(ref64, dtype=np.float64).reshape(1)
    r = r32 if ref64 is None else np.asarray(ref64, dtype=np.float64)
    overflow = ~np.isfinite(r32) | (np.abs(r32) > OVERFLOW) | ~np.isfinite(r) | (np.abs(r) > OVERFLOW)  # torch itself (nearly) overflowed
    if e is None:
        e = float(np.abs(r32 - r)[~overflow].max(initial=0.0)) if ref64 is not None else 0.0
    scale = max(float(np.abs(r[~overflow]).max(initial=0.0)), MIN_SCALE)
    level = max(e, spread, NOISE_FLOOR * EPS32 * scale, ABS_FLOOR)  # torch's own float32 error or the rounding spread, floored
    ill = e > ILL_CONDITIONED * scale
    if e >= OVERFLOW:  # torch's own float32 answer is off by > 1e29: overflow anywhere is no export bug
        overflow |= ~np.isfinite(o)
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(o - r)
    err[overflow] = 0.0
    err[np.isnan(err)] = np.inf  # NaN/Inf from onnxruntime where torch has a number
    if atol is None:
        bound = np.full(err.shape, NOISE_K * level)
    else:
        bound = atol + (rtol or 0.0) * np.abs(np.nan_to_num(r)) + NOISE_K * e
    worst = np.unravel_index(int(np.argmax(err)), err.shape)
    rel = np.where(err == 0, 0.0, err / np.maximum(np.abs(np.nan_to_num(r)), 1e-12))
    max_abs = float(err.max())
    notes = [] if np.isfinite(err).all() else ["NaN/Inf where torch has a number"]
    if overflow.any():
        notes.append(f"(torch non-finite at {int(overflow.sum())} elements, not compared)")
    ok = bool(np.all(err <= bound))
    if not ok and scale > NEAR_OVERFLOW and not ill:  # within ~1e13 of float32's range: another evaluation order overflows
        ill = True
        notes.append(f"ill-conditioned: values near float32's range (max |torch| {scale:.1e}); float32 cannot be verified here")
    elif ill:
        notes.append(f"ill-conditioned: torch float32 is {e:.1e} off its float64 answer (scale {scale:.2g}); float32 cannot be verified here")
    if ill:
        ok = allow_ill
    return OutputDiff(name, max_abs, float(err.mean()), float(rel.max()), tuple(int(i) for i in worst), ok, " ".join(notes),
                      level, max_abs / level, float(bound.max()), ill, e, scale)
