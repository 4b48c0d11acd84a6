"""The app-facing API: run exported recurrent models with onnxruntime, no torch needed.

    sess = Session("model.onnx")            # .onnx or .ort; providers="auto", or [("cuda", {"device_id": 0}), "cpu"]
    logits = sess.run(x)                    # x: (B, T, F) float, (B, T) token ids, or a list
    stream = StreamingSession("stream.onnx")
    out = stream.step({"mic-1": chunk1, "mic-2": chunk2})   # one batched call, state carried

This module imports numpy, onnxruntime and the standard library only, so an app can ship it
without torch or onnx. It configures itself from the model's ``rnnedge.*`` metadata where
present and otherwise from the input/output signature alone (third-party models work).

Input rules (each broken rule is a one-line ``BadInputError``, raised before onnxruntime runs):
rank, feature size, dtype (float64 is cast to float32, int32 token ids to int64; anything else
is refused), an empty batch or a zero-length sequence, ``lengths`` of the wrong shape, negative
or past the sequence, token ids outside ``[0, vocab)``, and a fixed-shape (mobile) model fed
another batch or chunk size. **NaN and Inf** in float inputs (and states) are refused, never
propagated silently (values that overflow float32 on the cast count as Inf).

Long inputs: ``run`` takes any sequence length and is not capped; it holds the whole input and the
per-step activations, so memory grows linearly with the length (measured: 100,000 steps of a
hidden-8 GRU in 1.5 s, +15 MiB resident). For unbounded or live input use ``StreamingSession``,
which keeps only the recurrent state: flat memory (0 MiB growth from 10,000 to 100,000 steps) and
the same answer (tests/test_reliability.py).

Files: a missing, empty, damaged or foreign file (a checkpoint, an array file) is a one-line
``BadInputError``; a pickle of any kind (``torch.save`` files, numpy object arrays) or external data
outside the model's folder is an ``UnsafeFileError``. Nothing in a model file is ever executed.

GPU: on CUDA (or TensorRT) ``run`` goes through IOBinding (numpy in, outputs bound to the CPU),
and float16 models (``rnnedge quantize --mode fp16``) take float32 inputs, cast on the way in.
"""
from __future__ import annotations

from typing import Any

from rnnedge.runtime.providers import (
    PROVIDER_ALIASES,
    available_providers,
    open_session,
    provider_entries,
    select_providers,
    uses_iobinding,
)
from rnnedge.runtime.session import Session
from rnnedge.runtime.signature import TensorInfo
from rnnedge.runtime.streaming import StreamingSession

__all__ = ["Session", "StreamingSession", "Seq2SeqSession", "TensorInfo", "open_session", "available_providers",
           "provider_entries", "select_providers", "uses_iobinding", "PROVIDER_ALIASES"]

_LAZY = {"Seq2SeqSession": "rnnedge.runtime.seq2seq"}  # imported on first use (rnnedge/runtime/seq2seq.py)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rnnedge.runtime' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
