"""Reading and writing files safely: atomic writes, checked ONNX loads, arrays without pickles.

Every output rnnedge writes goes to a temporary file in the target folder and is renamed into
place only once complete, so a failed or interrupted command never leaves a half-written file
and never damages an existing one.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

from rnnedge.errors import BadInputError, UnsafeFileError, first_line

log = logging.getLogger(__name__)

PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip with files, an empty zip
MAX_ARRAY_BYTES = 4 * 1024**3  # load_arrays refuses an .npz that unpacks to more


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it onto `path`, else delete it."""
    target = Path(path)
    if target.is_dir():
        raise BadInputError(f"{target}: is a folder, expected a file path to write")
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.exists():
        raise BadInputError(f"{folder}: folder does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; a written file gets the usual permissions
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically, flushed to disk before the rename."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def check_readable(path: str | os.PathLike, what: str = "file") -> Path:
    """A path that exists, is a file and is not empty; else a one-line BadInputError."""
    p = Path(path)
    if not p.exists():
        raise BadInputError(f"{p}: no such {what}")
    if p.is_dir():
        raise BadInputError(f"{p}: is a folder, expected a {what}")
    if p.stat().st_size == 0:
        raise BadInputError(f"{p}: empty file, expected a {what}")
    return p


def refuse_pickle(path: Path, head: bytes | None = None) -> None:
    """Refuse pickles (any protocol, numpy object arrays, torch's zip-of-pickles) whatever the file is called."""
    if holds_pickle(path):
        raise UnsafeFileError(f"{path}: a pickle, refused: rnnedge never unpickles (use safetensors or .npy/.npz)")


def holds_pickle(source: str | os.PathLike | bytes) -> bool:
    """True for a pickle of any protocol, a .npy of objects, or a zip (torch.save, .npz) holding either.

    ``source``: a path, or the file's bytes."""
    if isinstance(source, (bytes, bytearray)):
        head, last, path = bytes(source[:_NPY_HEADER_MAX]), bytes(source[-1:]), io.BytesIO(source)
    else:
        try:
            with open(source, "rb") as fh:
                head = fh.read(_NPY_HEADER_MAX)
                fh.seek(-1, os.SEEK_END)
                last = fh.read(1)
        except OSError:
            return False
        path = source
    if head.startswith(PICKLE_MAGIC) or (head[:1] in (b"(", b"]", b"}", b"c") and last == b"."):  # protocol 2+, 0/1
        return True
    if head.startswith(b"\x93NUMPY"):
        return _npy_holds_objects(head)
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as z:
                for info in z.infolist():
                    if info.filename.endswith(".pkl"):
                        return True
                    if info.filename.endswith(".npy"):
                        with z.open(info) as member:
                            if _npy_holds_objects(member.read(_NPY_HEADER_MAX)):
                                return True
        except Exception as exc:  # a damaged zip: the loader reports it
            log.debug("%s: unreadable zip (%s)", path, first_line(exc))
            return False
    return False


_NPY_HEADER_MAX = 65536


def _npy_holds_objects(head: bytes) -> bool:
    """An .npy header whose dtype (or a field of it) is Python objects, stored as a pickle."""
    if not head.startswith(b"\x93NUMPY") or len(head) < 10:
        return False
    if head[6:7] == b"\x01":  # version 1: 2-byte header length; 2 and 3: 4 bytes
        start, size = 10, int.from_bytes(head[8:10], "little")
    else:
        start, size = 12, int.from_bytes(head[8:12], "little")
    return b"|O" in head[start: start + size]


def load_onnx(path: str | os.PathLike, *, load_weights: bool = True):
    """Load an .onnx file: not missing, not a pickle, parses, and no external data outside its folder."""
    import onnx

    p = check_readable(path, "ONNX model")
    head = p.open("rb").read(16)
    refuse_pickle(p, head)
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError and friends
        raise BadInputError(f"{p}: not a readable ONNX model ({type(exc).__name__})") from None
    if not model.graph.node and not model.graph.output:
        raise BadInputError(f"{p}: not an ONNX model (no graph)")
    bad_text = _first_non_utf8(model)
    if bad_text:
        raise BadInputError(f"{p}: corrupt ONNX model ({bad_text} is not UTF-8 text)")
    folder = p.resolve().parent
    for tensor in _external_tensors(model):
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        target = (folder / location).resolve()
        if os.path.isabs(location) or folder not in target.parents:
            raise UnsafeFileError(f"{p}: external data '{location}' points outside the model's folder, refused")
        if not target.is_file():
            raise BadInputError(f"{p}: external data file '{location}' is missing")
    if load_weights and any(True for _ in _external_tensors(model)):
        from onnx.external_data_helper import load_external_data_for_model

        load_external_data_for_model(model, str(folder))
    return model


def _first_non_utf8(model) -> str | None:
    """Where a damaged file's string field came back as bytes (protobuf does that for invalid UTF-8), else None."""
    for prop in model.metadata_props:
        if isinstance(prop.key, bytes) or isinstance(prop.value, bytes):
            return "a metadata entry"
    if any(isinstance(o.domain, bytes) for o in model.opset_import):
        return "an opset domain"
    from exporters.graph import all_graphs

    for g in all_graphs(model.graph):
        names = [v.name for v in (*g.input, *g.output, *g.value_info)] + [t.name for t in g.initializer]
        if any(isinstance(n, bytes) for n in names):
            return f"a value name in graph {g.name!r}"
        for node in g.node:
            texts = [node.op_type, node.domain, node.name, *node.input, *node.output, *(a.name for a in node.attribute)]
            if any(isinstance(t, bytes) for t in texts):
                return "a node's name, type or inputs"
    return None


def model_bytes(path: str | os.PathLike) -> int:
    """Bytes of an .onnx file and of the external data files it names (its whole weight, as loaded)."""
    import onnx

    p = Path(path)
    total = p.stat().st_size
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as exc:  # not parseable: the file's own size (the caller reports the real problem)
        log.debug("%s: not parseable (%s): its own size", p, first_line(exc))
        return total
    locations = {next((e.value for e in t.external_data if e.key == "location"), "") for t in _external_tensors(model)}
    folder = p.resolve().parent
    for location in sorted(locations - {""}):
        target = (folder / location).resolve()
        if folder in target.parents and target.is_file():
            total += target.stat().st_size
    return total


def _external_tensors(model) -> Iterator:
    import onnx

    from_graph = onnx.external_data_helper._get_all_tensors(model)
    for tensor in from_graph:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            yield tensor


def onnx_bytes(model) -> bytes:
    """The serialised model, refused when it cannot be one self-contained file (2 GB protobuf limit)."""
    if model.ByteSize() >= 2**31:
        raise BadInputError("model is 2 GB or larger: a single self-contained .onnx file cannot hold it")
    return model.SerializeToString()


def save_onnx(model, path: str | os.PathLike) -> int:
    """Write one self-contained .onnx file atomically; returns its size in bytes."""
    data = onnx_bytes(model)
    write_bytes_atomic(path, data)
    return len(data)


def load_arrays(path: str | os.PathLike) -> dict:
    """Read a .npy (as {"x": array}) or .npz file, never unpickling object arrays."""
    import numpy as np

    p = check_readable(path, ".npy/.npz file")
    head = p.open("rb").read(16)
    refuse_pickle(p, head)  # raw pickles and torch.save zips, whatever the name
    try:
        if head.startswith(b"\x93NUMPY"):
            return {"x": np.load(p, allow_pickle=False)}
        if head.startswith(ZIP_MAGIC):
            with np.load(p, allow_pickle=False) as data:
                odd = [n for n in data.zip.namelist() if not n.endswith(".npy")]
                if odd:
                    raise BadInputError(f"{p}: not an .npz of arrays (holds {odd[0]!r}, expected only .npy members)")
                unpacked = sum(i.file_size for i in data.zip.infolist())
                if unpacked > MAX_ARRAY_BYTES:  # a zip bomb, or simply more than one call should take
                    raise BadInputError(f"{p}: unpacks to {unpacked:,} bytes, over the {MAX_ARRAY_BYTES:,}-byte limit")
                return {k: data[k] for k in data.files}
    except BadInputError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise UnsafeFileError(f"{p}: holds pickled objects, refused: rnnedge never unpickles") from None
        raise BadInputError(f"{p}: corrupt or truncated array file ({first_line(exc)})") from None
    except Exception as exc:  # OSError, EOFError, BadZipFile, zlib.error, ...: whatever a damaged file raises
        raise BadInputError(f"{p}: corrupt or truncated array file ({type(exc).__name__}: {first_line(exc)})") from None
    raise BadInputError(f"{p}: not a .npy or .npz file")


def save_arrays(path: str | os.PathLike, arrays: dict, main: str) -> Path:
    """Write `arrays[main]` to an .npy file, or every array to an .npz file (by the suffix), atomically, no pickles."""
    import numpy as np

    target = Path(path)
    with atomic_path(target) as tmp, open(tmp, "wb") as fh:  # np.save to a handle: no ".npy" appended
        if target.suffix.lower() == ".npz":
            np.savez(fh, **arrays)
        else:
            np.save(fh, arrays[main], allow_pickle=False)
    return target
