"""Listening to torch.export while it traces: the guards it adds (with the user's line) and the warnings it raises.

`watch_guards()` collects torch's "[guard added]" records from `torch.fx.experimental.symbolic_shapes` (torch's own
stderr handler muted meanwhile) and the constraint-violation messages torch.onnx drops when it refines the dynamic
shapes; `failed_at(exc)` names the user's line a torch.export failure came from; `pass_guard_warnings` lets torch's
Python warnings about guards through `capture.quiet_torch` as log warnings. rnnedge.exporting.guards judges what was collected.

Fail closed: the log is torch's internal format, so a reading is confirmed before it is trusted. `watch_guards(module,
canary=(input, axis))` plants one known guard (a comparison of a declared axis with CANARY_SIZE, in a forward pre-hook:
it changes nothing in the graph) and takes it out of the log again; `reading_problems` then says why the reading cannot
be trusted: the planted guard never came back, "[guard added]" records came in a shape it cannot read, or torch's range
constraints say nothing about a declared axis. Export then runs the full probes (rnnedge.parity.quick_check(full=True))
and says so, instead of trusting an empty reading.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
from dataclasses import dataclass, field

log = logging.getLogger("rnnedge.exporting.guards")  # one logger for everything about guards

GUARD_LOGGER = "torch.fx.experimental.symbolic_shapes"
CANARY_SIZE = 987_654_321  # the planted guard compares an axis with this size: no input has it, the graph stays the same


@dataclass
class Guard:
    expr: str  # torch's expression over its symbols, e.g. "s27 <= 100"
    where: str = ""  # "model.py:17 in forward", when torch says
    code: str = ""  # the source line, when Python can read it

    def describe(self) -> str:
        at = f" at {self.where}" if self.where else ""
        return f"{self.expr}{at}" + (f" (`{self.code}`)" if self.code else "")


@dataclass
class GuardLog:
    guards: list[Guard] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)  # torch's constraint-violation messages, refined away by torch.onnx
    unread: list[str] = field(default_factory=list)  # "[guard added]" records this reader could not make sense of
    canary: bool | None = None  # the planted guard came back (None: none was planted)

    def about(self, symbol: str) -> list[Guard]:
        pattern = re.compile(rf"\b{re.escape(symbol)}\b")
        return [g for g in self.guards if pattern.search(g.expr)]


class _GuardHandler(logging.Handler):
    def __init__(self, sink: GuardLog):
        super().__init__(logging.INFO)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._read(record)
        except Exception as exc:  # never let a logging detail break an export, but never drop a guard unheard either
            log.debug("unreadable torch guard record %r", record.msg, exc_info=True)
            self.sink.unread.append(f"{type(exc).__name__} reading {str(record.msg)[:80]!r}")

    def _read(self, record: logging.LogRecord) -> None:
        if "guard added" not in str(record.msg):
            return
        if "[guard added]" not in str(record.msg) or len(record.args or ()) < 3:
            self.sink.unread.append(f"a guard record of another shape: {str(record.msg)[:80]!r}")
            return
        expr, sloc = str(record.args[1]), record.args[2]
        if not expr.strip() or not _SYMBOLIC.search(expr):
            self.sink.unread.append(f"a guard without a size symbol: {expr[:80]!r}")
            return
        frame = _user_frame() or getattr(sloc, "framework_loc", None)
        where = code = ""
        if frame is not None and hasattr(frame, "filename"):
            where = f"{frame.filename}:{frame.lineno} in {frame.name}"
            code = (frame.line or "").strip()
        elif frame:
            where = str(frame)
        guard = Guard(expr, where, code)
        if guard not in self.sink.guards:  # torch.onnx exports twice when it refines the shapes
            self.sink.guards.append(guard)


_SYMBOLIC = re.compile(r"\b[a-z]\d+\b")  # torch's size symbols: s27, u0


def failed_at(exc: BaseException) -> str:
    """" at model.py:13 in forward (`if x.sum() > 0:`)": the user's line a torch.export failure came from, or ""."""
    chain, frames = [], []
    while exc is not None and exc not in chain and len(chain) < 8:  # torch.onnx re-raises torch.export's error from it
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    for err in reversed(chain):  # the root cause first
        tb = err.__traceback__
        while tb is not None:
            frames.append(tb.tb_frame)
            tb = tb.tb_next
        if any(_is_user_code(f) for f in frames):
            break
    frame = next((f for f in reversed(frames) if _is_user_code(f)), None)
    if frame is None:
        return ""
    import traceback

    summary = traceback.FrameSummary(frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name)
    code = (summary.line or "").strip()
    return f" at {summary.filename}:{summary.lineno} in {summary.name}" + (f" (`{code}`)" if code else "")


def _user_frame():
    """The innermost frame of the user's own code on the stack (not torch, the stdlib or rnnedge's export machinery)."""
    import sys
    import traceback

    frame = sys._getframe(1)
    while frame is not None and not _is_user_code(frame):
        frame = frame.f_back
    return traceback.FrameSummary(frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name) if frame is not None else None


def _is_user_code(frame) -> bool:
    import os

    own, torch_dir, stdlib = library_paths()
    name = os.path.abspath(frame.f_code.co_filename)
    library = name.startswith(torch_dir) or (name.startswith(stdlib) and "-packages" + os.sep not in name)
    return not library and name not in own and not frame.f_code.co_filename.startswith("<frozen")


@functools.lru_cache(maxsize=1)
def library_paths():
    """(rnnedge's own export files, torch's folder, the stdlib's folder): frames there are not the user's code."""
    import os
    import sys
    import sysconfig

    import torch

    here = os.path.dirname(os.path.abspath(__file__))
    own = {os.path.join(here, f) for f in os.listdir(here) if f.endswith(".py")}  # rnnedge.exporting: api, capture, guards, ...
    own.add(os.path.abspath(getattr(sys.modules.get("exporters.ops"), "__file__", None) or "-"))
    return frozenset(own), os.path.dirname(torch.__file__) + os.sep, sysconfig.get_paths()["stdlib"] + os.sep


@contextlib.contextmanager
def watch_guards(module=None, canary: tuple[int, int] | None = None):
    """Collect torch's guards (and the constraint violations torch.onnx refines away) during an export.

    With `module` and `canary` = (input index, axis) of a declared dynamic axis, plant one known guard there (see the
    module docstring); it is taken out of the log when the export ends and `GuardLog.canary` says whether it came back."""
    sink = GuardLog()
    with _collect(sink), _planted(sink, module, canary):
        yield sink


@contextlib.contextmanager
def _planted(sink: GuardLog, module, canary):
    if module is None or canary is None:
        yield
        return
    index, axis = canary

    def compare(_module, args):  # torch.export traces this like the forward: a guard Ne(s, CANARY_SIZE)
        if index < len(args) and hasattr(args[index], "shape") and args[index].shape[axis] == CANARY_SIZE:
            log.debug("an input of %d steps", CANARY_SIZE)

    handle = module.register_forward_pre_hook(compare)
    sink.canary = False
    try:
        yield
    finally:
        handle.remove()
        planted = [g for g in sink.guards if str(CANARY_SIZE) in g.expr]
        sink.canary = bool(planted)
        sink.guards[:] = [g for g in sink.guards if g not in planted]


@contextlib.contextmanager
def _collect(sink: GuardLog):
    import torch.export.dynamic_shapes as ds

    logger = logging.getLogger(GUARD_LOGGER)
    level, propagate, own = logger.level, logger.propagate, list(logger.handlers)
    handler = _GuardHandler(sink)
    original = getattr(ds, "refine_dynamic_shapes_from_suggested_fixes", None)

    def refine(msg, dynamic_shapes):  # torch.onnx calls this with the message it then drops
        sink.violations.append(str(msg))
        return original(msg, dynamic_shapes)

    for h in own:  # torch's own stderr handler would print every INFO line
        logger.removeHandler(h)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if original is not None:
        ds.refine_dynamic_shapes_from_suggested_fixes = refine
    try:
        yield
    finally:
        if original is not None:
            ds.refine_dynamic_shapes_from_suggested_fixes = original
        logger.removeHandler(handler)
        for h in own:
            logger.addHandler(h)
        logger.setLevel(level)
        logger.propagate = propagate


GUARD_WARNING = re.compile(r"guard|speciali[sz]|constrain|dynamic shape|symbolic shape|recompil", re.IGNORECASE)


def pass_guard_warnings(caught) -> None:
    """Of the Python warnings recorded during an export, log those about guards/specialisation; drop the noise."""
    said = set()
    for w in caught or ():
        text = str(getattr(w, "message", w)).strip().splitlines()
        if text and GUARD_WARNING.search(text[0]) and text[0] not in said:
            said.add(text[0])
            log.warning("torch: %s", text[0][:300])


def canary_axis(names: list[str], axes: dict, ties: dict | None = None) -> tuple[int, int] | None:
    """(input index, axis) of the first declared dynamic axis that is a free size (not tied to another), or None."""
    tied = set(ties or {})
    for i, name in enumerate(names):
        for ax, label in sorted(axes.get(name, {}).items()):
            if label not in tied:
                return i, ax
    return None


def reading_problems(program, names: list[str], axes: dict, seen: GuardLog) -> list[str]:
    """Why the guard reading of this export cannot be trusted ([] when it can): see the module docstring."""
    problems = []
    if seen.canary is False:
        problems.append(f"the guard rnnedge planted (an axis compared with {CANARY_SIZE}) never reached the log")
    if seen.unread:
        problems.append(f"{len(seen.unread)} guard record(s) it cannot read ({seen.unread[0]})")
    ep = getattr(program, "exported_program", program)
    ranges = getattr(ep, "range_constraints", None) if ep is not None else None
    if ep is not None and not isinstance(ranges, dict):
        problems.append("the exported program has no range constraints")
    elif ep is not None:
        missing = [f"'{label}'" for label, symbol in _declared_symbols(ep, names, axes) if symbol not in ranges]
        if missing:
            problems.append(f"torch's range constraints say nothing about {', '.join(missing)}")
    return problems


def _declared_symbols(ep, names: list[str], axes: dict) -> list[tuple[str, object]]:
    """(label, torch symbol) of each declared axis that came out as a free symbol of the program's inputs."""
    import torch

    nodes = {n.name: n for n in ep.graph.nodes if n.op == "placeholder"}
    found = []
    for name, user in zip(names, ep.graph_signature.user_inputs):
        shape = getattr(nodes[user].meta.get("val"), "shape", None) if user in nodes else None
        for ax, label in sorted(axes.get(name, {}).items()):
            dim = shape[ax] if shape is not None and ax < len(shape) else None
            if isinstance(dim, torch.SymInt) and dim.node.expr.is_Symbol:
                found.append((label, dim.node.expr))
    return found
