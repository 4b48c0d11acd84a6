"""Model-file checks before onnxruntime sees a file: missing, empty, oversized, foreign or unsafe.

A missing, empty, damaged or foreign file (a checkpoint, an array file) is a one-line ``BadInputError``;
a pickle of any kind (``torch.save`` files, numpy object arrays) is an ``UnsafeFileError``. Nothing in a
model file is ever executed. Standard library only.
"""
from __future__ import annotations

import logging
import os

from rnnedge.errors import BadInputError, UnsafeFileError

log = logging.getLogger(__name__)

__all__ = ["MAX_BYTES", "check_model_path", "refuse_foreign", "npy_holds_objects"]

MAX_BYTES = 2 * 1024**3  # the protobuf limit; rnnedge models are one self-contained file below it


def check_model_path(path: str | os.PathLike) -> str:
    """Refuse missing, directory, empty and oversized model files before onnxruntime sees them."""
    try:
        p = os.fsdecode(path)  # bytes too: onnxruntime would read bytes as a serialised model, not a path
    except TypeError:
        raise BadInputError(f"model path must be a str or os.PathLike, got {type(path).__name__}") from None
    if not os.path.exists(p):
        raise BadInputError(f"model file not found: {p}")
    if os.path.isdir(p):
        raise BadInputError(f"model path is a directory, expected an .onnx or .ort file: {p}")
    size = os.path.getsize(p)
    if size == 0:
        raise BadInputError(f"model file is empty: {p}")
    if size > MAX_BYTES:
        raise BadInputError(f"model file is {size} bytes, over the 2 GB limit: {p}")
    try:
        with open(p, "rb") as fh:
            head = fh.read(16)
            fh.seek(-1, os.SEEK_END)
            last = fh.read(1)
    except OSError as err:
        raise BadInputError(f"cannot read model file {p}: {err.strerror or err}") from None
    refuse_foreign(p, head, last)
    return p


def refuse_foreign(p: str, head: bytes, last: bytes) -> None:
    """Pickles (torch.save files included) are unsafe; a checkpoint or an array file is not a model."""
    import zipfile  # lazily: keeps `import rnnedge.runtime` light

    protocol_2_plus = head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")
    protocol_0_1 = head[:1] in (b"(", b"]", b"}", b"c") and last == b"."  # opener ... STOP
    if protocol_2_plus or protocol_0_1:
        raise UnsafeFileError(f"{p}: a pickle, refused: rnnedge never unpickles (expected an .onnx or .ort model)")
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        try:
            with zipfile.ZipFile(p) as z:
                pickled = any(n.endswith(".pkl") or (n.endswith(".npy") and npy_holds_objects(z.open(n).read(65536)))
                              for n in z.namelist())
        except Exception as exc:  # a damaged zip is no model either
            log.debug("%s: damaged zip (%s: %s)", p, type(exc).__name__, exc)
            pickled = False
        if pickled:
            raise UnsafeFileError(f"{p}: a zip of pickles (torch.save, or .npz of objects), refused: rnnedge "
                                  "never unpickles (expected an .onnx or .ort model)")
        raise BadInputError(f"{p}: a zip archive (.npz?), not a model: expected an .onnx or .ort file")
    if head.startswith(b"\x93NUMPY"):
        with open(p, "rb") as fh:
            if npy_holds_objects(fh.read(65536)):
                raise UnsafeFileError(f"{p}: a .npy of pickled objects, refused: rnnedge never unpickles "
                                      "(expected an .onnx or .ort model)")
        raise BadInputError(f"{p}: a .npy array file, not a model: expected an .onnx or .ort file")
    if len(head) >= 9 and head[8:10] == b'{"':
        raise BadInputError(f"{p}: a safetensors checkpoint, not a model: export it first (rnnedge export)")


def npy_holds_objects(raw: bytes) -> bool:
    """An .npy header whose dtype (or a field of it) is Python objects, which numpy stores as pickles."""
    if not raw.startswith(b"\x93NUMPY") or len(raw) < 10:
        return False
    start, size = (10, int.from_bytes(raw[8:10], "little")) if raw[6:7] == b"\x01" else (
        12, int.from_bytes(raw[8:12], "little"))
    return b"|O" in raw[start: start + size]

