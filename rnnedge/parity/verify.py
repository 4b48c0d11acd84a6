"""Orchestration: `verify` (every case, every provider) and `quick_check` (what export runs).

Outputs are matched by name: torch's outputs are named by the declared spec (in torch's own return
order), onnxruntime's by the file. A provider that cannot open a session, or fails a case, is a row of
the report and the other providers still run. Nothing here raises on a mismatch except `quick_check`,
which raises ParityError naming the case.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from rnnedge.errors import BadInputError, ParityError, first_line
from rnnedge.parity.cases import case_sizes, check_cases, generate_cases, sweep_cases, time_axis
from rnnedge.parity.compare import CaseResult, ParityReport, compare, tolerance_for
from rnnedge.parity.runners import OrtRunner, TorchRunner, available_providers, float32_noise, ort_session
from rnnedge.runtime.provider_options import is_single_entry, split_entry
from rnnedge.runtime.providers import canonical_entry
from rnnedge.spec import IOSpec, TensorSpec

log = logging.getLogger(__name__)
CPU = "CPUExecutionProvider"


def spec_of(onnx_path) -> tuple[IOSpec, dict]:
    """(IOSpec, metadata) of a file: the spec rnnedge stored (outputs as declared), or one read from the graph."""
    from rnnedge.files import load_onnx

    load_onnx(onnx_path, load_weights=False)  # missing, pickled, corrupt, external data leaving its folder: one line
    session = ort_session(onnx_path)
    meta = dict(session.get_modelmeta().custom_metadata_map)
    if "rnnedge.spec" in meta:
        try:
            spec = IOSpec.from_json(meta["rnnedge.spec"])
        except BadInputError as exc:
            raise BadInputError(f"{onnx_path}: {exc}") from None
        if not spec.outputs:  # a spec that never named its outputs: the file's own
            spec.outputs = [o.name for o in session.get_outputs()]
        return spec, meta
    inputs, axes = [], []
    for i in session.get_inputs():
        shape = [d if isinstance(d, int) else str(d or "dim") for d in i.shape]
        axes += [d for d in shape if isinstance(d, str) and d not in axes]
        dtype = {"tensor(int32)": "int32", "tensor(int64)": "int64"}.get(i.type, "float32")
        role = ("lengths" if len(shape) == 1 else "tokens") if dtype != "float32" else ("state" if i.name in ("h0", "c0") else "features")
        inputs.append(TensorSpec(i.name, dtype, shape, role, None))
    return IOSpec(inputs, [o.name for o in session.get_outputs()], axes=axes), meta


def torch_module_for(model_or_ckpt, meta: dict):
    """The torch side: a module as given, or what a checkpoint's family says a file of it computes."""
    if isinstance(model_or_ckpt, (str, Path)):
        from rnnedge.checkpoint import load_checkpoint
        from rnnedge.families.registry import family_for_config

        model = load_checkpoint(model_or_ckpt)
        family = family_for_config(model.config)
        if family.torch_module is None:
            raise BadInputError(f"{model_or_ckpt} is a {family.name} checkpoint that exports to a folder: verify it against "
                                "its exported folder (e.g. encoder.onnx + decoder.onnx), not one .onnx file")
        return family.torch_module(model, meta)
    from rnnedge.exporting.axes import nested_module

    return nested_module(model_or_ckpt, meta.get("rnnedge.spec"))  # model(x, (h0, c0)): fed the file's flat inputs


class LazySpread:
    """TorchRunner.spread64 of one case, measured on the first call only (each measure runs the float64 module
    SPREAD_DRAWS more times: most of the quick check's torch time on a large model)."""

    def __init__(self, runner: TorchRunner, feeds: dict, ref64: dict | None):
        self.runner, self.feeds, self.ref64, self.value, self.done = runner, feeds, ref64, None, False

    def __call__(self) -> dict | None:
        if not self.done:
            self.value, self.done = self.runner.spread64(self.feeds, self.ref64), True
        return self.value


def reference(runner: TorchRunner, cases, report: ParityReport) -> list[tuple]:
    """(name, feeds, torch32, torch64, None) per case, or (..., None, float32 noise estimate) where float64 cannot run.

    A shape torch itself refuses (a module with a minimum length, a table of 200 positions) is a skipped row,
    not compared; a user's check input torch refuses, or torch refusing every case, is a failure row."""
    refs = []
    for name, feeds in cases:
        try:
            ref = runner.infer(feeds)
        except Exception as exc:  # torch refuses the shape: the module's own limit (a user's check input must run)
            why = f"torch failed: {first_line(exc)}"
            log.debug("%s: %s", name, why)
            user = name.startswith("check input")
            report.cases.append(CaseResult(name, "torch", [], why if user else "", "" if user else f"torch itself refuses this shape ({why})"))
            continue
        ref64 = runner.infer_float64(feeds)
        noise = float32_noise(runner, feeds, ref) if ref64 is None else None
        refs.append((name, feeds, ref, ref64, noise, LazySpread(runner, feeds, ref64)))
    if cases and not refs:
        report.cases.append(CaseResult("every case", "torch", [], "torch refuses every generated case: nothing was compared"))
    if runner.float64_error and runner.float64_error not in report.notes:
        report.notes.append(runner.float64_error)
    return refs


def output_names_row(spec: IOSpec, file_outputs: list[str], provider: str) -> CaseResult | None:
    """A failure row when the file's outputs and the declared ones differ (both sides listed)."""
    missing = [n for n in spec.outputs if n not in file_outputs]
    extra = [n for n in file_outputs if n not in spec.outputs]
    if not missing and not extra:
        return None
    detail = "; ".join(p for p in (f"missing {missing}" if missing else "", f"extra {extra}" if extra else "") if p)
    return CaseResult("outputs by name", provider, [], f"the file's outputs {file_outputs} != declared {list(spec.outputs)}: {detail}")


def run_provider(onnx_path, provider, refs, report: ParityReport, spec: IOSpec, torch_runner, stream: bool) -> None:
    """Every case on one provider (a name, or a (name, options) pair); a session that does not open is one row, not the
    end of verify. A combination rnnedge.runtime knows to be wrong here is run all the same, and noted."""
    atol, rtol, allow = report.atol, report.rtol, report.allow_ill_conditioned
    try:
        provider, options = canonical_entry(provider)  # an unknown name is a row too
        runner = OrtRunner(onnx_path, [(provider, options)]).__enter__()
    except Exception as exc:
        provider = provider if isinstance(provider, str) else split_entry(provider)[0]
        log.debug("%s cannot open a session", provider, exc_info=True)
        report.cases.append(CaseResult("open session", provider, [], f"{provider} cannot open a session: {first_line(exc)}"))
        return
    note_known_wrong(onnx_path, runner.session, report)
    try:
        row = output_names_row(spec, runner.output_names, provider)
        if row is not None:
            report.cases.append(row)
        for name, feeds, ref, ref64, noise, spread in refs:
            try:
                out = runner.infer(feeds)
            except Exception as exc:
                log.debug("%s on %s: onnxruntime failed: %s", name, provider, first_line(exc))
                report.cases.append(CaseResult(name, provider, [], f"onnxruntime failed: {first_line(exc)}"))
                continue
            case = compare(ref, out, atol, rtol, name, provider, noise=noise, ref64=ref64, allow_ill_conditioned=allow)
            if not case:  # the rounding spread only raises the noise: measured where the case does not pass without it
                case = compare(ref, out, atol, rtol, name, provider, noise=noise, ref64=ref64, allow_ill_conditioned=allow, spread=spread())
            report.extend(case)
        if stream and state_pairs(spec):
            try:
                report.extend(check_streaming(torch_runner, runner, spec, report, provider))
            except Exception as exc:
                log.debug("streaming check failed on %s", provider, exc_info=True)
                report.cases.append(CaseResult("stream", provider, [], f"streaming check failed: {first_line(exc)}"))
    finally:
        runner.__exit__(None, None, None)


def note_known_wrong(onnx_path, session, report: ParityReport) -> None:
    """A note per entry of rnnedge.runtime's known-wrong table that applies to this file on this session's providers."""
    from rnnedge.runtime.known_wrong import findings
    from rnnedge.runtime.signature import tensor_info

    meta = dict(session.get_modelmeta().custom_metadata_map)
    for finding in findings(onnx_path, session.get_providers(), [tensor_info(a) for a in session.get_inputs()], meta):
        note = f"known wrong: {finding.message(onnx_path)}"
        if note not in report.notes:
            report.notes.append(note)


def verify(model_or_ckpt, onnx_path, *, atol: float | None = None, rtol: float | None = None, cases: int = 0,
           providers: list | None = None, spec: IOSpec | None = None, stream: bool = True,
           allow_ill_conditioned: bool = False, example_seq: int | None = None) -> ParityReport:
    """Compare torch and onnxruntime on generated cases, on every available provider. Never raises on a mismatch.

    atol/rtol None: the noise policy (see rnnedge.parity.compare); given: fixed tolerances. ``providers``: each is
    checked on its own; names or ``(name, {option: value})`` pairs as onnxruntime takes them (default: every
    available one); the report's ``providers`` lists those it checked.
    A path a model family owns (a seq2seq folder: encoder.onnx + decoder.onnx) is checked by that family's verify.
    """
    from rnnedge.families.registry import family_for_path

    if isinstance(providers, str) or is_single_entry(providers):
        providers = [providers]
    family = family_for_path(onnx_path)
    if family is not None and family.verify_path is not None:
        return family.verify_path(model_or_ckpt, onnx_path, atol=atol, rtol=rtol, cases=cases, providers=providers,
                                  allow_ill_conditioned=allow_ill_conditioned)
    stored_spec, meta = spec_of(onnx_path)
    spec = spec or stored_spec
    policy = tolerance_for(meta, atol, rtol)
    atol, rtol = policy.atol, policy.rtol
    module = torch_module_for(model_or_ckpt, meta)
    if getattr(spec, "states", None):  # a user module's stream file: streamed in chunks against torch on the whole
        from rnnedge.parity.stream import verify_stream

        report = verify_stream(module, onnx_path, spec, providers=providers or available_providers(), atol=atol, rtol=rtol,
                               cases=cases, allow_ill_conditioned=allow_ill_conditioned, example=example_seq)
        report.cases.extend(range_probes(onnx_path, spec))
        return report
    stream = stream and meta.get("rnnedge.bidirectional") != "1"  # a bidirectional chunk is a whole sequence: never chained
    report = ParityReport(atol=atol, rtol=rtol, allow_ill_conditioned=allow_ill_conditioned)
    with TorchRunner(module, spec) as torch_runner:
        refs = reference(torch_runner, generate_cases(spec, extra=cases, example_seq=example_seq), report)
        for provider in providers or available_providers():
            run_provider(onnx_path, provider, refs, report, spec, torch_runner, stream)
    report.cases.extend(range_probes(onnx_path, spec))
    return report


def range_probes(onnx_path, spec: IOSpec) -> list[CaseResult]:
    """Per bounded axis (a range recorded at export): a size just past it must be refused by rnnedge.runtime."""
    rows = []
    for axis, span in (getattr(spec, "ranges", None) or {}).items():
        hi = (list(span) + [None, None])[1]
        if hi is None:
            continue
        sizes = {**case_sizes(spec, 1, 1), axis: int(hi) + 1}
        name = f"outside the recorded range: {axis} {int(hi) + 1} (valid {span[0]}..{hi})"
        try:
            from rnnedge.runtime import Session

            Session(onnx_path, providers="cpu").run_all(spec.make_inputs(sizes, seed=9))
        except Exception as exc:  # refused, as it must be (any one-line error of the runtime)
            log.debug("%s: refused (%s)", name, first_line(exc))
            rows.append(CaseResult(name, "rnnedge.runtime", []))
            continue
        rows.append(CaseResult(name, "rnnedge.runtime", [], "accepted a size outside the range the file is valid for"))
    return rows


def state_pairs(spec: IOSpec) -> list[tuple[str, str]]:
    """(state output, state input) pairs, e.g. ("hn", "h0"), ("cn", "c0"): what a stream carries over."""
    roles = getattr(spec, "output_roles", None) or {}
    outs = [n for n in spec.outputs if roles.get(n, "state" if n in ("hn", "cn") else "output") == "state"]
    ins = [t.name for t in spec.inputs if t.role == "state"]
    return list(zip(outs, ins)) if outs and len(outs) == len(ins) else []


def check_streaming(torch_runner, ort_runner, spec: IOSpec, report: ParityReport, provider, chunk: int = 7, chunks: int = 5) -> ParityReport:
    """Feed a sequence in chunks with hn/cn carried back as h0/c0; compare with torch on the whole sequence."""
    first = next(t for t in spec.inputs if t.role in ("features", "tokens"))
    state_in = next((t for t in spec.inputs if t.role == "state"), None)
    # where the time axis is: 1 for (batch, seq, ...), 0 for a sequence-first (seq, batch, ...) input
    seq_first = len(first.shape) >= 3 and (first.shape[1] == "batch" or (
        state_in is not None and first.shape[0] != state_in.shape[1] and first.shape[1] == state_in.shape[1]))
    t_ax, b_ax = (0, 1) if seq_first else (1, 0)
    fixed_seq = (first.shape[t_ax] if isinstance(first.shape[t_ax], int) else None) if not spec.axes else None
    step = fixed_seq or chunk
    sizes = case_sizes(spec, 2, step * chunks) if spec.axes else {}
    whole = spec.make_inputs(sizes, seed=42)
    if fixed_seq:  # mobile: fixed chunk, feed the torch side the whole sequence at once
        parts = [spec.make_inputs({}, seed=43 + k)[first.name] for k in range(chunks)]
        whole[first.name] = np.concatenate(parts, axis=t_ax)
    lengths = spec.input("lengths")
    if lengths is not None:  # every row runs through all chunks
        whole[lengths.name] = np.full_like(whole[lengths.name], whole[first.name].shape[t_ax])
    ref, ref64 = torch_runner.infer(whole), torch_runner.infer_float64(whole)
    noise = float32_noise(torch_runner, whole, ref) if ref64 is None else None
    spread = torch_runner.spread64(whole, ref64)
    pairs = state_pairs(spec)
    state = {i: whole[i] for _, i in pairs}
    pieces: dict[str, list] = {}
    out = {}
    for k in range(chunks):
        feeds = {first.name: np.take(whole[first.name], range(k * step, (k + 1) * step), axis=t_ax), **state}
        if lengths is not None:
            feeds[lengths.name] = np.full(feeds[first.name].shape[b_ax], step, dtype=whole[lengths.name].dtype)
        out = ort_runner.infer(feeds)
        state = {i: out[o] for o, i in pairs if o in out}
        for name, value in out.items():
            pieces.setdefault(name, []).append(value)
    carried = {o for o, _ in pairs}
    joined = {name: (np.concatenate(parts, axis=t_ax) if parts[0].ndim == 3 and name not in carried else parts[-1])
              for name, parts in pieces.items()}
    return compare(ref, joined, report.atol, report.rtol, f"stream: {chunks} chunks of {step} vs whole", provider,
                   noise=noise, ref64=ref64, allow_ill_conditioned=report.allow_ill_conditioned, spread=spread)


def example_length(spec: IOSpec, examples) -> int | None:
    """The export example's sequence length, read from the example tensors by the spec's time axis."""
    axis = time_axis(spec)
    for t, ex in zip(spec.inputs, examples or ()):
        if axis in t.shape and hasattr(ex, "shape"):
            return int(ex.shape[t.shape.index(axis)])
    return None


def quick_check(module, onnx_path, spec: IOSpec, examples=None, only_checks: bool = False, full: bool = False) -> ParityReport:
    """The check export runs (CPU): seq 1, small, the example's +-1, past 256; raises ParityError naming the case.

    `examples`: the export's example inputs (their time length gives the +-1 probes). `only_checks`: run the
    user's check inputs (spec.check_feeds) alone, at exactly their shapes, under the same noise policy. `full`: verify's
    cases and a sweep of sizes along every axis (export runs these when it could not read torch's guards).

    Outputs float32 cannot verify at a probe (ill-conditioned) are listed in the report and logged, not
    raised: the export cannot prove anything there, and `rnnedge verify` makes that call explicitly.
    """
    if getattr(spec, "states", None):  # a user module's stream file: chunked == whole, at 1, 7 and the example's length
        from rnnedge.parity.stream import check_chunked

        report = check_chunked(module, onnx_path, spec, example=example_length(spec, examples))
        return _raise_on_failure(report)
    report = ParityReport(allow_ill_conditioned=True)
    cases = check_cases(spec) if only_checks else generate_cases(spec, quick=not full, example_seq=example_length(spec, examples))
    if full:
        cases += sweep_cases(spec)
    with TorchRunner(module, spec) as torch_runner:
        refs = reference(torch_runner, cases, report)
        run_provider(onnx_path, CPU, refs, report, spec, torch_runner, stream=False)
    return _raise_on_failure(report)


def _raise_on_failure(report: ParityReport) -> ParityReport:
    if report.ill_conditioned:
        log.warning("parity: %s", report.summary().splitlines()[0])
    if not report:
        failed = report.failures[0]
        raise ParityError(f"the exported model differs from torch ({failed.case}): " + report.summary().splitlines()[1].strip(), report)
    return report
