"""Module -> ONNX: swap the recurrent layers, capture (strategies tried in turn), lower, fix up, check, save.

    rnnedge.export(module, example_inputs, "model.onnx", dynamic_axes={"x": {0: "batch", 1: "seq"}})

1. `exporters.ops.swapped_recurrent` replaces each nn.RNN/GRU/LSTM by a wrapper around one
   custom op, so `torch.onnx.export(dynamo=True)` keeps batch and sequence symbolic and emits
   one `rnnedge.TorchRecurrent` placeholder per recurrent stack.
2. `exporters.native` lowers the placeholders to the standard ONNX operators; `exporters.scan`
   (hoisted projection + Scan) or `exporters.unrolled` (fixed chunk, mobile) then rewrite those.
3. Symbolic dims get the user's labels, metadata is attached, `onnx.checker` and strict shape
   inference run, the file is written atomically, and a quick parity check runs on shapes that
   were not used for export (the full suite is `rnnedge.verify`).
4. When torch.export cannot capture the module, or its file fails those checks, the next capture
   strategy is tried (strict torch.export, then TorchScript: rnnedge.exporting.strategies); the
   result names the strategy that made the file and why the others did not.

Lowering choice (`lowering="auto"`): onnxruntime 1.32, one thread, batch 8, 50 steps, input = hidden,
median ms native / scan, measured in one interleaved run on this project's 2-core x86 machine:

    hidden      16            32            64            128           256 (samples/bench_targets.py)
    RNN     0.072/0.074   0.128/0.091   0.344/0.162   1.988/0.524   2.69/1.16    -> scan from hidden 32
    GRU     0.102/0.406   0.167/0.418   0.384/0.900   1.904/2.153   4.27/4.64    -> native
    LSTM    0.161/0.622   0.206/0.652   0.382/0.653   1.354/1.943   8.60/9.29    -> native

ORT's own RNN kernel is the slow one; its GRU and LSTM kernels beat a Scan loop of small ops. Scan
stays the choice for LSTM projections (no standard operator) and is what `quantize --mode int8`
re-lowers RNN and GRU to, since their standard operators stay float under ORT's quantizer.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from rnnedge import __version__
from rnnedge.errors import BadInputError, ExportError, ParityError
from rnnedge.exporting import axes as axes_
from rnnedge.exporting import capture, naming, piecewise, strategies
from rnnedge.exporting.axes import make_spec as _make_spec
from rnnedge.exporting.axes import normalise_axes as _normalise_axes
from rnnedge.files import atomic_path, onnx_bytes
from rnnedge.spec import IOSpec

log = logging.getLogger(__name__)

TARGETS = ("dynamic", "stream", "mobile")
LOWERINGS = ("auto", "native", "scan", "unrolled")
# lowering="auto": per cell, the faster of native/scan in onnxruntime (see the module docstring).
LOWERING_AUTO = {"rnn": "scan", "gru": "native", "lstm": "native"}
SCAN_RNN_MIN_HIDDEN = 32  # below this, ORT's RNN kernel is as fast as the Scan loop (0.072 vs 0.074 ms at 16)


@dataclass
class ExportResult:
    path: Path
    lowering: str  # the lowering used ("native", "scan", "unrolled")
    target: str
    inputs: list[str]
    outputs: list[str]
    nodes: int  # top-level graph nodes
    size_bytes: int
    seconds: float  # wall time of the whole export
    parity: object = None  # ParityReport of the quick check, or None with verify=False
    spec: IOSpec | None = field(default=None, repr=False)
    notes: list[str] = field(default_factory=list)  # what the export did beyond the usual, in words (full probes, ...)
    strategy: str = ""  # the capture strategy that made the file ("torch.export", "torch.export strict", "torchscript")
    attempts: list = field(default_factory=list)  # strategies.Attempt of each strategy tried, in turn (why earlier ones failed)
    io: dict = field(default_factory=dict)  # {"inputs"|"outputs": [{"name", "dtype", "shape"}]} as the file states them

    def to_dict(self) -> dict:
        return {
            "path": str(self.path), "lowering": self.lowering, "target": self.target, "inputs": self.inputs,
            "outputs": self.outputs, "nodes": self.nodes, "size_bytes": self.size_bytes, "seconds": round(self.seconds, 3),
            "strategy": self.strategy, "attempts": [a.describe() for a in self.attempts],
            "parity": self.parity.to_dict() if self.parity is not None else None, "notes": self.notes, "io": self.io,
            "valid": {label: f"{lo}..{'' if hi is None else hi}" for label, (lo, hi) in sorted((getattr(self.spec, "ranges", None) or {}).items())},
        }


def export(
    module,
    example_inputs,
    path,
    *,
    dynamic_axes: dict | None = None,
    target: str = "dynamic",
    lowering: str = "auto",
    input_names: list[str] | None = None,
    output_names: list[str] | None = None,
    opset: int = 18,
    verify: bool = True,
    metadata: dict | None = None,
    allow_bounded: bool = False,
    tied_axes: dict | None = None,
    fix_dims: dict | None = None,
    check_inputs: list | None = None,
    default_axes: bool = False,
) -> ExportResult:
    """Export any nn.Module containing nn.RNN/GRU/LSTM layers to one self-contained ONNX file.

    allow_bounded: a dynamic axis torch.export found valid only in a range (`if x.shape[1] > 100:`) is refused
    unless this is True; then the range is written to the spec and metadata and rnnedge.runtime enforces it.
    tied_axes: {label: "(frames - 4) * 256" | "other_label" | [valid sizes]}: how a named axis relates to others.
    fix_dims: {label: size}: pin a named axis to a concrete size in the file (runtimes that refuse symbolic dims).
    check_inputs: [example input tuples]: the quick check runs on exactly these (no invented sizes).
    input_names: default forward's parameter names (``<name>_<k>`` for a nested argument's tensors); output_names:
    default ``output`` (one) or ``output_0``, ``output_1``, ... default_axes: True adds ``dynamic_axes`` to the
    default ones (batch and seq of the first input, lengths' and states' batch) instead of replacing them."""
    start = time.perf_counter()
    if target not in TARGETS:
        raise BadInputError(f"unknown target '{target}': expected one of {', '.join(TARGETS)}")
    if lowering not in LOWERINGS:
        raise BadInputError(f"unknown lowering '{lowering}': expected one of {', '.join(LOWERINGS)}")
    examples = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    input_names = input_names or naming.default_input_names(module, examples)  # forward's own names
    module, examples = axes_.flatten_inputs(module, examples)  # (x, (h0, c0), lengths) -> x, h0, c0, lengths
    job = prepare(module, examples, dynamic_axes=dynamic_axes, target=target, lowering=lowering, input_names=input_names,
                  output_names=output_names, opset=opset, allow_bounded=allow_bounded, tied_axes=tied_axes, fix_dims=fix_dims,
                  check_inputs=check_inputs, default_axes=default_axes)
    with atomic_path(path) as tmp:  # an existing file is replaced only once a candidate checks out
        for _, model, spec in piecewise.candidates(job):  # a size branch: its pieces joined into one candidate
            try:
                data, report, notes = _write_checked(job, model, spec, tmp, verify, metadata)
            except ParityError as exc:
                strategies.rejected(job, exc)
                continue
            break
        else:
            strategies.give_up(job)
    strategy = job.attempts[-1].strategy
    if len(job.attempts) > 1:
        log.warning("exported by the %s capture strategy after: %s", strategy, "; ".join(a.describe() for a in job.attempts[:-1]))
    return ExportResult(Path(path), job.chosen, target, [t.name for t in spec.inputs], spec.outputs, len(model.graph.node),
                        len(data), time.perf_counter() - start, report, spec, notes, strategy, job.attempts,
                        naming.io_dims(model))


def _write_checked(job, model, spec, tmp, verify: bool, metadata):
    """Metadata on one candidate, written to `tmp` and quick-checked (ParityError when it differs from torch)."""
    module, examples = job.module, job.examples
    spec.nesting = getattr(module, "nesting", None)  # verify rebuilds the user's nested call from the flat inputs
    meta = {"rnnedge.version": __version__, "rnnedge.lowering": job.chosen, "rnnedge.target": job.target, "rnnedge.spec": spec.to_json()}
    if getattr(spec, "bidirectional", False):  # a mobile chunk of a bidirectional layer is one whole sequence: never chained
        meta["rnnedge.bidirectional"] = "1"
    meta.update(_range_metadata(spec))
    if getattr(spec, "lookahead", 0):  # a stream's declared delay, for apps that read metadata alone
        meta["rnnedge.stream.lookahead"] = str(spec.lookahead)
    if spec.fixed:
        meta["rnnedge.fixed_dims"] = json.dumps(spec.fixed, sort_keys=True)
    meta.update({k: (v if isinstance(v, str) else json.dumps(v)) for k, v in (metadata or {}).items()})
    notes = _unread_guards(spec, meta)
    set_metadata(model, meta)
    data = onnx_bytes(model)
    tmp.write_bytes(data)
    report = None
    probe = getattr(spec, "must_probe", None)
    if verify or probe or notes:
        from rnnedge.parity import quick_check

        if not verify and probe and not notes:  # a branch on size 1 may make the file wrong there: never write it unchecked
            log.warning("torch guarded %s against size 1: running the quick check despite verify=False", ", ".join(probe))
        with capture.kept_state(module):  # the user's module comes back as it was given (a cache the checks fill)
            report = quick_check(module, tmp, spec, examples=examples, only_checks=verify and bool(spec.check_feeds) and not notes,
                                 full=bool(notes))
    return data, report, notes


def _unread_guards(spec, meta: dict) -> list[str]:
    """Fail closed: where torch's guard log could not be read (rnnedge.exporting.guardlog.reading_problems), say so
    (a log warning, ExportResult.notes, `rnnedge.guard_log` metadata) and have the full probes run, even with verify=False."""
    problems = getattr(spec, "guard_reading", None) or []
    if not problems:
        return []
    note = (f"torch's guard log could not be read ({'; '.join(problems)}): ran the full probes "
            "(every size up to 64, powers of two and decades up to 1025) instead of trusting it")
    log.warning("%s", note)
    meta["rnnedge.guard_log"] = "unread: " + "; ".join(problems)
    return [note]


def export_checkpoint(checkpoint, path, *, target: str = "dynamic", lowering: str = "auto", chunk: int = 16,
                      batch: int = 1, opset: int = 18, verify: bool = True, lengths: bool | None = None,
                      fix_dims: dict | None = None):
    """Export an rnnedge checkpoint as its model family says: one file with the contract's I/O (x|tokens, [lengths],
    h0/c0 -> logits|y, hn/cn) for a SequenceModel (rnnedge.families.sequence.export), a folder for a seq2seq model.

    lengths: None takes `lengths` as an input only when the checkpoint's task has sequences of varying length
    (every built-in classification/LM task has fixed lengths); True/False force it. fix_dims pins named axes."""
    from rnnedge.checkpoint import load_checkpoint
    from rnnedge.families.registry import family_for_config

    model = load_checkpoint(checkpoint)
    return family_for_config(model.config).export_checkpoint(model, path, target=target, lowering=lowering, chunk=chunk,
                                                             batch=batch, opset=opset, verify=verify, lengths=lengths,
                                                             fix_dims=fix_dims)


def build_onnx(module, examples, **options):
    """The pure core of export: (onnx.ModelProto, IOSpec, lowering used) of the first capture strategy that makes a
    graph, unchecked. Writes nothing."""
    job = prepare(module, examples, **options)
    for _, model, spec in piecewise.candidates(job):
        return model, spec, job.chosen
    strategies.give_up(job)


def prepare(module, examples, *, dynamic_axes=None, target="dynamic", lowering="auto", input_names=None,
            output_names=None, opset=18, allow_bounded=False, tied_axes=None, fix_dims=None, check_inputs=None,
            default_axes=False) -> strategies.Job:
    """Everything the capture strategies share: the declared axes and spec, the lowering, the module run once."""
    import torch

    from exporters import ops
    from rnnedge.exporting import guards, recurrence

    guards.refuse_torchscript(module)
    if not isinstance(module, torch.nn.Module):
        raise BadInputError(f"expected a torch.nn.Module, got {type(module).__name__}")
    if isinstance(module, ops.RECURRENT_TYPES):
        module = capture.bare_module()(module)
    layers = ops.find_recurrent(module)
    if target == "stream" and any(layer.bidirectional for _, layer in layers):
        raise BadInputError("a bidirectional layer cannot stream (--target stream): its backward direction needs the whole "
                            "sequence, so chunks fed one after another would give other answers; export --target dynamic")
    for i, ex in enumerate(examples):
        if not isinstance(ex, torch.Tensor):
            raise BadInputError(f"example input {i} is a {type(ex).__name__}: pass tensors")
    _refuse_float64(layers, examples)
    eager_failure = capture.run_eagerly(module, examples)  # raised below, unless rnnedge's own checks say more
    names = list(input_names or [f"input_{i}" for i in range(len(examples))])
    if len(names) != len(examples):
        raise BadInputError(f"{len(names)} input names for {len(examples)} example inputs")
    batch_first = all(layer.batch_first for _, layer in layers)
    if default_axes and dynamic_axes is not None and target != "mobile":  # --axis adds to batch/seq, unless told otherwise
        base = axes_.default_axes(names, examples, batch_first) if layers else recurrence.default_axes(names, examples)
        dynamic_axes = naming.with_default_axes(dynamic_axes, base)
    if layers or dynamic_axes is not None or target == "mobile":
        axes = _normalise_axes(dynamic_axes, names, examples, batch_first, target, output_names)
        if not layers:
            axes = recurrence.complete_axes(axes, names, examples)  # a step module's h, c follow x_t's batch
    else:
        axes = recurrence.default_axes(names, examples)
    declared = axes_.declare(names, examples, axes, dynamic_axes, tied_axes=tied_axes, fix_dims=fix_dims, check_inputs=check_inputs)
    axes, examples, dynamic_axes, ties = declared.axes, declared.examples, declared.dynamic_axes, declared.ties
    chosen = _choose_lowering(lowering, target, layers) if layers else recurrence.choose_lowering(lowering, target)
    spec = _make_spec(module, names, examples, axes, output_names, ties)
    spec.bidirectional = any(layer.bidirectional for _, layer in layers)
    spec.fixed, spec.checks, spec.check_feeds = declared.fixed, declared.checks, declared.feeds
    if not layers:
        recurrence.adjust_spec(spec, module)

    return strategies.Job(module, examples, names, output_names, axes, dynamic_axes or {}, axes_.dynamic_shapes(module, names, axes, ties),
                          ties, spec, chosen, target=target, opset=opset, allow_bounded=allow_bounded, eager_failure=eager_failure)


def _choose_lowering(lowering: str, target: str, layers) -> str:
    if target == "mobile":
        if lowering not in ("auto", "unrolled"):
            raise BadInputError("--target mobile uses the unrolled lowering (fixed-size chunk of plain operators)")
        return "unrolled"
    if lowering == "unrolled":
        raise BadInputError("the unrolled lowering needs fixed shapes: use --target mobile --chunk N")
    has_proj = any(getattr(layer, "proj_size", 0) for _, layer in layers)
    if lowering == "native" and has_proj:
        raise BadInputError("LSTM projections (proj_size) have no standard ONNX operator: use --lowering scan")
    if lowering != "auto":
        return lowering
    if has_proj:
        return "scan"
    from exporters.ops import recurrent_mode

    picks = set()
    for _, layer in layers:
        cell = recurrent_mode(layer).split("_")[0]  # by isinstance: a subclass of nn.LSTM (class BLSTM(nn.LSTM)) is an LSTM
        small_rnn = cell == "rnn" and layer.hidden_size < SCAN_RNN_MIN_HIDDEN
        picks.add("native" if small_rnn else LOWERING_AUTO[cell])
    return picks.pop() if len(picks) == 1 else "scan"


def set_metadata(model, meta: dict[str, str]) -> None:
    """Replace the model's metadata_props with `meta`, in sorted order (byte-identical files)."""
    from onnx import helper

    existing = {p.key: p.value for p in model.metadata_props}
    existing.update(meta)
    del model.metadata_props[:]
    helper.set_model_props(model, dict(sorted(existing.items())))


def _range_metadata(spec) -> dict:
    from rnnedge.exporting.guards import range_metadata

    return range_metadata(getattr(spec, "ranges", None) or {})


def _refuse_float64(layers, examples) -> None:
    """The lowerings write float32 recurrent weights (onnxruntime's RNN/GRU/LSTM kernels are float32): say so up front."""
    import torch

    wide = [name for name, layer in layers if any(p.dtype == torch.float64 for p in layer.parameters())]
    if wide or (layers and any(ex.dtype == torch.float64 for ex in examples)):
        where = f"layer '{wide[0]}'" if wide else "an example input"
        raise ExportError(f"{where} is float64; rnnedge exports recurrent layers in float32 (onnxruntime's RNN/GRU/LSTM kernels): "
                          "call module.float() and pass float32 inputs")
