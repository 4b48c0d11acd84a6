"""Capture strategies, tried in turn: the first whose file passes rnnedge's checks is the one written.

torch.onnx has this shape inside (`torch/onnx/_internal/exporter/_capture_strategies.py`): non-strict
torch.export, then strict. rnnedge runs the strategies itself, so that every candidate file goes through
its own guard reading, lowering and quick check at unseen sizes, and the export result says which one
made the file (`ExportResult.strategy`) and why the earlier ones did not (`ExportResult.attempts`):

1. `torch.export` (non-strict) and 2. `torch.export strict` (dynamo): rnnedge's recurrent custom op keeps
   batch and time symbolic; torch's guards are read (rnnedge.exporting.guards). A value read from data
   (`.item()`, a mask's sum) is an unbacked size there: `int(horizon.sum())` repeats, `x[:, :t]` slices.
3. `torchscript`: torch.onnx.export(dynamo=False) (deprecated, still shipped in torch 2.13), which emits
   the standard ONNX RNN/GRU/LSTM operators that rnnedge then lowers as chosen; it takes code torch.export
   cannot trace. The tracer records one run: every value the user's code turned into a Python number or
   bool (`if mask.sum() == 0:`, `range(int(n.item()))`, `int(length / hop)`) is frozen in the file, and
   torch says so with a TracerWarning at that line. Such a candidate is refused whatever the check says.

Which failures move on to the next strategy: torch failing to capture or convert, onnx rejecting the graph,
the quick check failing. rnnedge's own refusals (a bounded or specialised axis read from torch's guards,
bad input) are final: the module branches on a size there, and a tracer would freeze one side of it.
torch.export.draft_export is no strategy: it specialises every value it cannot read to the example's
(a runtime assertion `Eq(u0, 4)` that the ONNX conversion drops), so its file is frozen by construction.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from dataclasses import dataclass, field

from rnnedge.errors import ExportError, RnnEdgeError, first_line

log = logging.getLogger(__name__)


@dataclass
class Attempt:
    strategy: str
    ok: bool
    reason: str = ""  # why this strategy's file was not written ("" when it was)
    seconds: float = 0.0

    def describe(self) -> str:
        return f"{self.strategy}: " + ("ok" if self.ok else self.reason) + f" ({self.seconds:.1f} s)"


class CaptureFailed(Exception):
    """A strategy could not produce a candidate file (torch failed, onnx rejected the graph): try the next one."""


@dataclass
class Job:
    """What every strategy captures from, prepared once by rnnedge.exporting.api."""

    module: object
    examples: tuple
    names: list[str]
    output_names: list[str] | None
    axes: dict  # {input: {axis: label}}
    dynamic_axes: dict  # what the user declared (outputs included)
    dynamic_shapes: object
    ties: dict
    spec: object  # IOSpec template: each candidate gets a copy
    chosen: str  # the lowering
    target: str = "dynamic"
    opset: int = 18
    allow_bounded: bool = False
    eager_failure: Exception | None = None
    bounds: dict | None = None  # {label: [lo, hi]}: one piece of a size branch (rnnedge.exporting.piecewise)
    split: bool = False  # ranges torch's guards bound an axis to are returned in spec.ranges, for piecewise, not refused
    attempts: list[Attempt] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)


class Strategy:
    name = ""
    refusals_final = True  # rnnedge's refusals of its graph (a frozen axis) end the export: no other strategy is tried

    def capture(self, job: Job):
        """(raw onnx.ModelProto, IOSpec) or CaptureFailed; rnnedge's own refusals raise as they are."""
        raise NotImplementedError


class TorchExport(Strategy):
    def __init__(self, strict: bool):
        self.strict = strict
        self.name = "torch.export strict" if strict else "torch.export"

    def capture(self, job: Job):
        import torch
        from torch.onnx._internal.exporter import _capture_strategies as torch_strategies

        from exporters import ops
        from rnnedge.exporting import axes as axes_
        from rnnedge.exporting import capture, guardlog, guards, relations, translations

        kind = torch_strategies.TorchExportStrictStrategy if self.strict else torch_strategies.TorchExportNonStrictStrategy
        spec = copy.deepcopy(job.spec)
        module = job.module
        was_training = module.training
        module.eval()
        try:
            canary = guardlog.canary_axis(job.names, job.axes, job.ties)  # a known guard: is torch's log still read right?
            with ops.swapped_recurrent(module), ops.packing_as_lengths() as packing, torch.no_grad(), capture.quiet_torch(), \
                    translations.max_pool1d_kept_dynamic(), translations.unfold_kept_dynamic(), \
                    guardlog.watch_guards(module, canary) as seen:
                shapes = job.dynamic_shapes if not job.bounds else axes_.dynamic_shapes(module, job.names, job.axes, job.ties, job.bounds)
                result = kind(verbose=False)(module, job.examples, None, dynamic_shapes=shapes)
                if result.exported_program is None:
                    raise _failed(result.exception, job)
                program = _convert(result.exported_program, job)
        finally:
            module.train(was_training)
        spec.guard_reading = guardlog.reading_problems(program, job.names, job.axes, seen)  # non-empty: full probes
        adopted = relations.adopt_relations(program, job.names, job.axes, seen, job.ties)  # samples == 64 * frames: a tie
        spec.ties.update(adopted)
        spec.ranges = guards.check_program(program, job.names, job.axes, seen, allow_bounded=job.allow_bounded,
                                           ties={**job.ties, **adopted}, bounds=job.bounds, split=job.split)
        spec.must_probe = guards.size_one_guards(program, job.names, job.axes, seen, job.bounds)  # 'not 1' guards: probed even with verify=False
        axes_.mark_sorted_lengths(spec, packing.lengths_descending)  # enforce_sorted=True: checks feed lengths longest first
        if job.eager_failure is not None:  # torch.export got through, but the module cannot run on the user's own examples
            raise job.eager_failure
        return program.model_proto, spec


def _failed(exc: BaseException, job: Job) -> BaseException:
    """torch's capture failure as CaptureFailed, or what to raise at once: rnnedge's own refusal raised inside torch's
    tracing, or the module failing on the user's own examples (no other strategy can run it either)."""
    from rnnedge.exporting import capture, guards

    own = capture.own_error(exc)
    if own is not None:
        return own
    if job.eager_failure is not None:
        return job.eager_failure
    failure = CaptureFailed(f"{first_line(exc)}{guards.failed_at(exc)}")
    failure.__cause__ = exc
    return failure


def _convert(program, job: Job):
    """ExportedProgram -> ONNXProgram with rnnedge's registry (the recurrent custom op, complex pad)."""
    from torch.onnx._internal.exporter import _core

    from rnnedge.exporting import capture

    try:
        return _core.export(program, job.examples, {}, registry=capture.registry(job.opset), input_names=job.names,
                            output_names=job.output_names, verbose=False, optimize=False, opset_version=job.opset)
    except Exception as exc:
        raise _failed(exc, job) from exc


class TorchScript(Strategy):
    name = "torchscript"
    refusals_final = False  # the last resort: its frozen axis says less than the first strategy's failure

    def capture(self, job: Job):
        import io
        import warnings

        import onnx
        import torch

        from rnnedge.exporting import capture

        if job.target == "stream":  # the stream rewrite carries rnnedge's recurrent op's state, which this graph has not
            raise CaptureFailed("makes no --target stream file")
        buffer = io.BytesIO()
        module = job.module
        was_training = module.training
        module.eval()
        try:
            with torch.no_grad(), capture.quiet_torch(), warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.onnx.export(module, tuple(job.examples), buffer, dynamo=False, input_names=job.names,
                                  output_names=job.output_names, opset_version=job.opset,
                                  dynamic_axes={name: dict(spec) for name, spec in job.axes.items()})
        except RnnEdgeError:
            raise
        except Exception as exc:
            raise _failed(exc, job) from exc
        finally:
            module.train(was_training)
        frozen = frozen_values(caught)
        if frozen:
            raise CaptureFailed(f"the tracer froze a value computed from a tensor at {frozen[0]}")
        spec = copy.deepcopy(job.spec)
        spec.ranges, spec.must_probe = {}, {}
        return onnx.load_from_string(buffer.getvalue()), spec


def frozen_values(caught) -> list[str]:
    """'model.py:13 (`if mask.sum() == 0:`)' for each TracerWarning raised at a line of the user's code (a tensor
    turned into a Python number or bool: the trace holds the example's value from then on)."""
    import linecache
    import os

    from rnnedge.exporting.guardlog import library_paths

    own, torch_dir, stdlib = library_paths()
    found = []
    for w in caught or ():
        if type(w.message).__name__ != "TracerWarning":
            continue
        name = os.path.abspath(w.filename)
        if name.startswith(torch_dir) or name in own or (name.startswith(stdlib) and "-packages" + os.sep not in name):
            continue
        code = linecache.getline(w.filename, w.lineno).strip()
        where = f"{w.filename}:{w.lineno}" + (f" (`{code}`)" if code else "")
        if where not in found:
            found.append(where)
    return found


STRATEGIES: tuple[Strategy, ...] = (TorchExport(strict=False), TorchExport(strict=True), TorchScript())


def candidates(job: Job, strategies=None):
    """Yield (strategy name, finished onnx.ModelProto, IOSpec) for each strategy that captures the module, in turn.
    The consumer checks each and calls `rejected` for one that fails; `give_up` raises when none is left."""
    from rnnedge.exporting import capture

    for strategy in strategies or STRATEGIES:
        start = time.perf_counter()
        try:
            with capture.kept_state(job.module):  # a trace assigns fake or traced tensors to a lazily sized cache
                raw, spec = strategy.capture(job)
            with contextlib.nullcontext() if strategy.refusals_final else _refusal_fails(strategy):
                model = finish(raw, job, spec)
        except CaptureFailed as exc:
            _record(job, strategy.name, exc, start)
            continue
        job.attempts.append(Attempt(strategy.name, True, seconds=time.perf_counter() - start))
        yield strategy.name, model, spec


def rejected(job: Job, exc: BaseException) -> None:
    """The last candidate failed the quick check: recorded, and the next strategy is tried."""
    attempt = job.attempts[-1]
    attempt.ok, attempt.reason = False, f"its file failed the quick check: {first_line(exc)}"
    job.errors.append(exc)
    log.warning("%s: %s; trying the next capture strategy", attempt.strategy, attempt.reason)


def give_up(job: Job) -> None:
    """No strategy made a file that checks out: raise the first failure (a failed check before a capture error), with
    what the other strategies said."""
    from rnnedge.errors import ParityError

    failed_checks = [e for e in job.errors if isinstance(e, ParityError)]
    first = failed_checks[0] if failed_checks else (job.errors[0] if job.errors else None)
    others = "; ".join(a.describe() for a in job.attempts if a.reason != str(first) and not a.reason.endswith(str(first)))
    also = f" (also tried: {others})" if others else ""
    if failed_checks:
        raise ParityError(f"{first}{also}", getattr(first, "report", None)) from first
    raise ExportError(f"torch.onnx could not export the module: {first or 'no capture strategy'}{also}") from first


def _record(job: Job, name: str, exc: BaseException, start: float) -> None:
    job.attempts.append(Attempt(name, False, str(exc), time.perf_counter() - start))
    job.errors.append(exc)
    log.info("capture strategy %s failed: %s", name, exc)


def finish(model, job: Job, spec):
    """A captured graph -> the file's graph: torch.onnx quirks repaired, recurrent layers lowered, labels, checks."""
    from exporters import native
    from exporters.graph import unname_unused_outputs
    from rnnedge.exporting import fixups, guards

    fixups.repair(model, job.axes)  # torch.onnx quirks that are no-ops in torch (Squeeze of a non-1 axis, ...)
    if job.target == "stream" and not getattr(job.module, "rnnedge_contract", False):  # a user's module: state made explicit
        from rnnedge.exporting.stream import stream_rewrite

        stream_rewrite(model, spec, job.names, job.axes)
    native.lower_torch_recurrent(model)
    model = optimize(model)  # after lowering: onnxscript's optimizer cannot type the placeholder
    apply_lowering(model, job.chosen)
    unname_unused_outputs(model.graph)  # a classifier's per-step Y is neither allocated nor written
    with _onnx_rejects():
        fixups.finish(model, job.axes, spec, job.dynamic_axes or {})
    fixups.restore_input_names(model, job.names)
    guards.check_frozen(model, job.axes, job.dynamic_axes or {})
    spec.outputs = [o.name for o in model.graph.output]
    return model


def optimize(model):
    """Constant folding and dead-code removal (onnxscript's optimizer), on standard operators only."""
    import onnxscript.optimizer

    from rnnedge.exporting import capture

    with capture.quiet_torch():
        return onnxscript.optimizer.optimize(model)


def apply_lowering(model, lowering: str) -> None:
    if lowering == "scan":
        from exporters import scan

        scan.lower_to_scan(model)
    elif lowering == "unrolled":
        from exporters import unrolled

        left = unrolled.lower_to_unrolled(model)
        if left:  # a recurrent operator left in a mobile model would keep NNAPI/CoreML off it
            raise ExportError(f"the unrolled (mobile) lowering cannot rewrite {left[0]}")


@contextlib.contextmanager
def _refusal_fails(strategy):
    try:
        yield
    except ExportError as exc:
        raise CaptureFailed(str(exc)) from exc


@contextlib.contextmanager
def _onnx_rejects():
    """onnx's checker or shape inference rejecting a candidate graph is a capture failure: the next strategy may
    translate the module differently."""
    try:
        yield
    except ExportError as exc:
        cause = exc.__cause__
        if cause is not None and type(cause).__module__.startswith("onnx"):
            raise CaptureFailed(str(exc)) from exc
        raise
