"""Listening to torch.export while it traces: the guards it adds (with the user's line) and the warnings it raises.

`watch_guards()` collects torch's "[guard added]" records from `torch.fx.experimental.symbolic_shapes` (torch's own
stderr handler muted meanwhile) and the constraint-violation messages torch.onnx drops when it refines the dynamic
shapes; `failed_at(exc)` names the user's line a torch.export failure came from; `pass_guard_warnings` lets torch's
Python warnings about guards through `capture.quiet_torch` as log warnings. rnnedge.exporting.guards judges what was collected.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
from dataclasses import dataclass, field

log = logging.getLogger("rnnedge.exporting.guards")  # one logger for everything about guards

GUARD_LOGGER = "torch.fx.experimental.symbolic_shapes"


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

    def about(self, symbol: str) -> list[Guard]:
        pattern = re.compile(rf"\b{re.escape(symbol)}\b")
        return [g for g in self.guards if pattern.search(g.expr)]


class _GuardHandler(logging.Handler):
    def __init__(self, sink: GuardLog):
        super().__init__(logging.INFO)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if "[guard added]" not in str(record.msg) or len(record.args or ()) < 3:
                return
            expr, sloc = str(record.args[1]), record.args[2]
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
        except Exception:  # never let a logging detail break an export
            pass


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

    own, torch_dir, stdlib = _library_paths()
    name = os.path.abspath(frame.f_code.co_filename)
    library = name.startswith(torch_dir) or (name.startswith(stdlib) and "-packages" + os.sep not in name)
    return not library and name not in own and not frame.f_code.co_filename.startswith("<frozen")


@functools.lru_cache(maxsize=1)
def _library_paths():
    """(rnnedge's own export files, torch's folder, the stdlib's folder): frames there are not the user's code."""
    import os
    import sys
    import sysconfig

    import torch

    here = os.path.dirname(os.path.abspath(__file__))
    own = {os.path.join(here, f) for f in ("__init__.py", "guards.py", "guardlog.py", "export.py", "recurrence.py")}
    own.add(os.path.abspath(getattr(sys.modules.get("exporters.ops"), "__file__", None) or "-"))
    return frozenset(own), os.path.dirname(torch.__file__) + os.sep, sysconfig.get_paths()["stdlib"] + os.sep


@contextlib.contextmanager
def watch_guards():
    """Collect torch's guards (and the constraint violations torch.onnx refines away) during an export."""
    import torch.export.dynamic_shapes as ds

    sink = GuardLog()
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
        yield sink
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
