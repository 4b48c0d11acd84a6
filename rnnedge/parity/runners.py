"""Runners: context managers with `infer(feeds) -> {output name: array}`, shared by verify and bench.

`Runner` is the base (Polygraphy's BaseRunner): `infer` for checks, `caller(feeds)` for timing (a zero-argument
call with the feeds prepared once, what `rnnedge bench` times). `TorchRunner` runs a module in eval mode (and a
float64 copy of it, the exact answer float32 is measured against); `OrtRunner` runs an ONNX file with onnxruntime
on a given provider list. Heavy imports (torch, onnxruntime) happen inside, never at import time.
"""

from __future__ import annotations

import copy
import logging

import numpy as np

from rnnedge.errors import first_line
from rnnedge.runtime.providers import available_providers, open_session  # noqa: F401  (available_providers: the providers verify runs on)
from rnnedge.spec import IOSpec

log = logging.getLogger(__name__)


class Runner:
    """Base of every runner: a context manager (enter before use) with `infer(feeds) -> {output name: array}`."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def infer(self, feeds: dict) -> dict:
        raise NotImplementedError

    def caller(self, feeds: dict):
        """A zero-argument call running `feeds` (what bench times); runners may prepare the feeds once here."""
        return lambda: self.infer(feeds)


class TorchRunner(Runner):
    """Runs a torch module on numpy feeds given in the spec's input order; outputs named by the spec.

    Integer inputs keep their declared dtype (int32 lengths stay int32). `infer_float64` runs a float64
    copy under torch's float64 default dtype, so state built inside forward (`torch.zeros(...)`) is float64
    too; `float64_error` says why it could not run, in which case callers fall back to a float32-only noise floor.
    """

    SPREAD_DRAWS = 2  # perturbed float64 copies whose outputs give the spread (the largest move counts)

    def __init__(self, module, spec: IOSpec):
        self.module, self.spec = module, spec
        self._double = None
        self._nudged: list = []
        self.float64_error = ""

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

    def _args(self, feeds: dict, float_dtype) -> list:
        args = []
        for t in self.spec.inputs:
            value = np.asarray(feeds[t.name])
            dtype = float_dtype if np.issubdtype(value.dtype, np.floating) else value.dtype  # (ints: declared dtype)
            args.append(self._torch.from_numpy(np.ascontiguousarray(value, dtype=dtype)))
        return args

    def infer(self, feeds: dict, module=None, float_dtype=np.float32) -> dict:
        from torch.utils._pytree import tree_leaves

        result = (module or self.module)(*self._args(feeds, float_dtype))
        leaves = [v for v in tree_leaves(result) if isinstance(v, self._torch.Tensor)]
        names = list(self.spec.outputs)
        if len(leaves) != len(names):  # named by position in torch's own output order, so count must agree
            extra = [f"torch output #{k}" for k in range(len(names), len(leaves))]
            names = (names + extra)[: len(leaves)]
            log.warning("torch returned %d tensors, the spec declares %d outputs", len(leaves), len(self.spec.outputs))
        return {name: v.detach().cpu().double().numpy() for name, v in zip(names, leaves)}

    def caller(self, feeds: dict):
        import torch

        self._torch = torch
        args = self._args(feeds, np.float32)

        def call():
            with torch.inference_mode():
                return self.module(*args)

        return call

    def infer_float64(self, feeds: dict) -> dict | None:
        """The float64 answer, or None (and `float64_error` set) when the module cannot run in float64."""
        if self.float64_error:
            return None
        torch = self._torch
        before = torch.get_default_dtype()
        try:
            if self._double is None:
                self._double = copy.deepcopy(self.module).double().eval()
            torch.set_default_dtype(torch.float64)  # state built inside forward comes out float64 as well
            return self.infer(feeds, self._double, np.float64)
        except Exception as exc:
            self.float64_error = f"float64 reference unavailable ({first_line(exc)}): noise estimated in float32 alone (inputs moved by one rounding)"
            log.warning("%s", self.float64_error)
            return None
        finally:
            torch.set_default_dtype(before)

    def spread64(self, feeds: dict, ref64: dict | None) -> dict | None:
        """Per output, how far the float64 answer moves when every float weight, buffer and input moves by one
        float32 rounding (x * (1 +- eps32), random signs; the largest move of SPREAD_DRAWS draws).

        Float32 arithmetic is the exact arithmetic of slightly moved operands, so this is the size of the error
        any float32 evaluation order may make, measured on this module and these inputs. torch's own float32 run
        is one sample of that error: on an output of a handful of elements (a sigmoid after a conv stack, batch 1
        seq 1) it can land near zero by luck, and a correct file would then measure as many times "the noise"."""
        if ref64 is None or self._double is None:
            return None
        torch = self._torch
        before = torch.get_default_dtype()
        try:
            torch.set_default_dtype(torch.float64)
            spread: dict[str, float] = {}
            for draw in range(self.SPREAD_DRAWS):
                if len(self._nudged) <= draw:
                    self._nudged.append(_nudged_copy(self._double, seed=draw + 1))
                rng = np.random.default_rng(100 + draw)
                moved = {k: (np.asarray(v, np.float64) * (1 + EPS32 * rng.choice([-1.0, 1.0], size=np.shape(v)))
                             if np.issubdtype(np.asarray(v).dtype, np.floating) else v) for k, v in feeds.items()}
                out = self.infer(moved, self._nudged[draw], np.float64)
                with np.errstate(invalid="ignore", over="ignore"):
                    for k, v in ref64.items():
                        if k in out and np.shape(out[k]) == np.shape(v):
                            move = float(np.nan_to_num(np.abs(out[k] - v), nan=0.0, posinf=0.0).max(initial=0.0))
                            spread[k] = max(spread.get(k, 0.0), move)
            return spread
        except Exception as exc:  # the spread only ever widens the bound: without it, torch's own error alone
            log.debug("no float64 spread: %s", first_line(exc))
            return None
        finally:
            torch.set_default_dtype(before)


EPS32 = float(np.finfo(np.float32).eps)


def _nudged_copy(module, seed: int):
    """A copy of a float64 module with every float parameter and buffer moved by one float32 rounding, random signs."""
    import torch

    copied = copy.deepcopy(module)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in [*copied.parameters(), *copied.buffers()]:
            if t.is_floating_point() and t.numel():
                signs = torch.randint(0, 2, t.shape, generator=gen, dtype=torch.int64).to(t.dtype) * 2 - 1
                t.mul_(1 + EPS32 * signs)
    return copied


def ort_session(path, providers=None, threads: int | None = None):
    """A quiet onnxruntime session on exactly these providers (no silent CPU fallback); one-line errors."""
    return open_session(str(path), providers=list(providers or ["CPUExecutionProvider"]), threads=threads, fallback=False)


class OrtRunner(Runner):
    """Runs an ONNX file with onnxruntime on the given providers (default: CPU); outputs by the file's names."""

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


def float32_noise(runner: TorchRunner, feeds: dict, ref: dict) -> dict:
    """Without a float64 answer: per output, how far torch's float32 answer moves when every float input moves by
    one rounding (x * (1 +- eps32)), a float32-only estimate of the rounding noise the recurrence amplifies."""
    rng = np.random.default_rng(0)
    nudged = {k: (v * (1 + np.float32(EPS32) * rng.choice([-1, 1], size=v.shape)).astype(v.dtype)
                  if np.issubdtype(np.asarray(v).dtype, np.floating) else v) for k, v in feeds.items()}
    try:
        other = runner.infer(nudged)
    except Exception as exc:  # the module refuses the nudged values: the scale floor alone
        log.debug("no float32 noise estimate: %s", first_line(exc))
        return {}
    with np.errstate(invalid="ignore", over="ignore"):
        return {k: float(np.nan_to_num(np.abs(other[k] - v), nan=0.0, posinf=0.0).max(initial=0.0)) for k, v in ref.items() if k in other}
