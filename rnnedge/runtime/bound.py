"""Pre-bound calls: the per-call fast path of ``Session.run`` and ``StreamingSession.feed`` (numpy and onnxruntime only).

A small model's call is mostly overhead: building the feed dict, onnxruntime's Python-side checks,
allocating the outputs. ``BoundCall`` binds numpy buffers (inputs and outputs) once through IOBinding
and runs onnxruntime's C entry point on them, so a call is: copy the new input into its buffer, run,
copy the output out. ``BoundStream`` does the same for a stream, with the recurrent state in two sets
of buffers that swap roles each call (the state out of one call is the state into the next, with no
copy). Measured on the one-step LSTM(8->128) streaming call and the seed RNN: see notes/issue-14.md
(``python samples/bench_edge.py``).
"""
from __future__ import annotations

import numpy as np
import onnxruntime as ort

__all__ = ["BoundCall", "BoundStream"]


def _runner(sess: ort.InferenceSession, binding: ort.IOBinding, owner):
    """A no-argument callable running `binding`: onnxruntime's C entry point where it is there (the public
    wrapper re-checks graph-capture settings on every call), else the public method. The callable keeps
    `owner` (what holds the bound buffers) alive: a kept `run` never reads freed memory."""
    c_sess, c_binding = getattr(sess, "_sess", None), getattr(binding, "_iobinding", None)
    if c_sess is not None and c_binding is not None and hasattr(c_sess, "run_with_iobinding"):
        return lambda owner=owner: c_sess.run_with_iobinding(c_binding, None)
    return lambda owner=owner: sess.run_with_iobinding(binding)


class BoundCall:
    """One input signature of a session, bound once: `inputs` and `outputs` are numpy buffers.

    Write new values into ``inputs[name]`` (``np.copyto``), call ``run()``, read ``outputs[name]``
    (overwritten by the next call: copy what you keep). The output shapes are learnt from a first run
    on `feeds`, so they must follow from the input shapes alone (true of rnnedge's models).
    """

    def __init__(self, sess: ort.InferenceSession, feeds: dict[str, np.ndarray], names: list[str] | None = None):
        names = names or [o.name for o in sess.get_outputs()]
        first = sess.run(names, feeds)
        self.inputs = {n: np.array(a, copy=True, order="C") for n, a in feeds.items()}
        self.outputs = {n: np.empty_like(np.asarray(v), order="C") for n, v in zip(names, first)}
        self._binding = sess.io_binding()
        self._values = []  # the OrtValues must outlive the binding
        for n, a in self.inputs.items():
            self._values.append(ort.OrtValue.ortvalue_from_numpy(a))
            self._binding.bind_ortvalue_input(n, self._values[-1])
        for n, a in self.outputs.items():
            self._values.append(ort.OrtValue.ortvalue_from_numpy(a))
            self._binding.bind_ortvalue_output(n, self._values[-1])
        self.run = _runner(sess, self._binding, self._values)


class BoundStream:
    """One stream's calls of `chunk` steps (batch 1): data buffers bound once, states swapping between two sets.

    ``states[k]`` are the two state sets ({input name: batch-1 buffer, e.g. (L, 1, H)}); after ``step()``, the
    current state is ``states[self.current]``; ``views[k]`` are views of set k without the batch axis (what
    StreamingSession keeps per stream).
    """

    def __init__(self, sess: ort.InferenceSession, feeds: dict[str, np.ndarray], state_out: dict[str, str], main_out: str,
                 batch_axes: dict[str, int] | None = None):
        names = [main_out, *state_out.values()]
        first = dict(zip(names, sess.run(names, feeds)))
        data = {n: np.array(a, copy=True, order="C") for n, a in feeds.items() if n not in state_out}
        self.inputs = data
        self.output = np.empty_like(first[main_out], order="C")
        self.states = [{n: np.array(feeds[n], copy=True, order="C") for n in state_out} for _ in range(2)]
        axes = batch_axes or {}
        self.views = [{n: s[n][(slice(None),) * axes.get(n, 1) + (0,)] for n in state_out} for s in self.states]
        self.current = 0
        self._values, self._runs = [], []
        for k in range(2):  # call k reads states[k] and writes states[1 - k]
            binding = sess.io_binding()
            for n, a in [*data.items(), *self.states[k].items()]:
                self._bind(binding.bind_ortvalue_input, n, a)
            self._bind(binding.bind_ortvalue_output, main_out, self.output)
            for n, out in state_out.items():
                self._bind(binding.bind_ortvalue_output, out, self.states[1 - k][n])
            self._runs.append(_runner(sess, binding, self._values))
            self._values.append(binding)

    def _bind(self, bind, name: str, array: np.ndarray) -> None:
        value = ort.OrtValue.ortvalue_from_numpy(array)
        self._values.append(value)
        bind(name, value)

    def step(self) -> None:
        """Run on `inputs` and the current state; the new state becomes current."""
        self._runs[self.current]()
        self.current = 1 - self.current
