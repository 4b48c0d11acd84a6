"""Capture: what surrounds the torch.onnx calls (the module run once eagerly on its examples, torch's logging
quieted, a bare recurrent layer given a container, rnnedge's own refusals found inside torch's errors) and the one
operator registry per opset with rnnedge's translations. The strategies that call torch (torch.export, strict,
TorchScript), tried in turn, are rnnedge.exporting.strategies.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings

from rnnedge.errors import BadInputError, RnnEdgeError, first_line

log = logging.getLogger(__name__)


@contextlib.contextmanager
def kept_state(module):
    """The module's tensor attributes and buffers as they were: a cache a forward call sizes lazily (`if self.hidden is
    None: self.hidden = x.new_zeros(1, x.shape[0], H)`) is not left filled by rnnedge's own calls (the eager run, a
    trace), which would freeze the batch of every capture after it at the example's."""
    import torch

    saved = []
    for sub in module.modules():
        slots = {k: v for k, v in vars(sub).items() if not k.startswith("_") and (v is None or isinstance(v, torch.Tensor))}
        saved.append((sub, slots, dict(sub._buffers)))
    try:
        yield
    finally:
        for sub, slots, buffers in saved:
            for key, value in list(vars(sub).items()):
                if key.startswith("_") or not (value is None or isinstance(value, torch.Tensor)):
                    continue
                if key not in slots:
                    delattr(sub, key)  # a tensor attribute the call created
                elif value is not slots[key]:
                    setattr(sub, key, slots[key])
            for key, value in buffers.items():
                if sub._buffers.get(key) is not value:
                    sub._buffers[key] = value


def run_eagerly(module, examples) -> BadInputError | None:
    """Run the module once on the examples (eval mode, no grad) before torch.export. Examples it cannot take
    (wrong rank, wrong feature size) are the user's input error: the one line to raise, unless rnnedge's own
    refusals (a guard tying two declared axes, say) explain more; None when the module runs."""
    import torch

    was_training = module.training
    module.eval()
    try:
        with torch.no_grad(), kept_state(module):
            module(*examples)
    except RnnEdgeError:
        raise
    except Exception as exc:
        log.debug("the module fails on its example inputs", exc_info=True)
        said = first_line(exc)
        what = type(exc).__name__ + (f": {said}" if said != type(exc).__name__ else "")
        failure = BadInputError(f"the module fails on the example inputs: {what}")
        failure.__cause__ = exc
        return failure
    finally:
        module.train(was_training)
    return None


# torch.onnx/torch.export log through loggers under 'torch' with their own stderr handlers (propagate=False), at
# levels up to ERROR ("failed while attempting to run meta ...", with a traceback): none of it is for the user.
_QUIET = ("torch", "onnxscript", "onnx_ir")


def _noisy_loggers() -> list[logging.Logger]:
    """'torch', 'onnxscript' and every logger under them that has a level of its own (the rest inherit it)."""
    from rnnedge.exporting.guardlog import GUARD_LOGGER  # watch_guards manages this one (it collects torch's guards from it)

    names = [n for n in list(logging.root.manager.loggerDict) if n != GUARD_LOGGER and any(n == q or n.startswith(q + ".") for q in _QUIET)]
    loggers = [logging.getLogger(n) for n in names]
    return [lg for lg in loggers if lg.name in _QUIET or lg.level != logging.NOTSET]


@contextlib.contextmanager
def quiet_torch():
    """torch.onnx logs and warns a lot (torchvision missing, deprecations, fake-tensor tracebacks at ERROR when a
    shape does not fit) and torch.export prints a failed trace's partial graph straight to stderr; keep the user's terminal
    clean (what was printed is logged at DEBUG). Loggers created during the export inherit 'torch''s level."""
    loggers = list({lg.name: lg for lg in [logging.getLogger(n) for n in _QUIET] + _noisy_loggers()}.values())
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    caught: list = []
    printed = io.StringIO()
    try:
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stderr(printed):
            warnings.simplefilter("always")
            yield
    finally:
        if printed.getvalue().strip():
            log.debug("torch printed during the export:\n%s", printed.getvalue())
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
        from rnnedge.exporting.guards import pass_guard_warnings

        pass_guard_warnings(caught)  # torch's warnings about guards and specialisations still reach the user (as log warnings)


def bare_module():
    """A one-child container, so that a bare nn.LSTM (say) can be swapped like any other layer."""
    import torch

    class Bare(torch.nn.Module):
        def __init__(self, layer):
            super().__init__()
            self.layer = layer

        def forward(self, x, hx=None):
            return self.layer(x, hx)

    return Bare


_REGISTRIES: dict[int, object] = {}


def registry(opset: int):
    """torchlib's operator registry with rnnedge's translations (the recurrent custom op, pad of a complex tensor),
    built once per opset: torch.onnx's public call rebuilds it every time (about 1.3 s of a ~2 s warm export)."""
    from torch.onnx._internal.exporter import _constants, _registration

    from exporters import ops
    from rnnedge.exporting import translations

    registry_opset = max(opset, _constants.TORCHLIB_OPSET)
    if registry_opset not in _REGISTRIES:
        built = _registration.ONNXRegistry().from_torchlib(opset_version=registry_opset)
        for torch_op, onnx_op in ops.translation_table().items():
            built.register_op(torch_op, onnx_op, is_complex=False)
        for torch_op, onnx_op in translations.complex_table().items():
            built.register_op(torch_op, onnx_op, is_complex=True)
        _REGISTRIES[registry_opset] = built
    return _REGISTRIES[registry_opset]


def own_error(exc: BaseException) -> RnnEdgeError | None:
    """rnnedge's own refusal raised inside torch's tracing (torch.onnx wraps it): re-raised as it was."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, RnnEdgeError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None
