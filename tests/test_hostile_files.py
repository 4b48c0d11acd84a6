"""Hostile and broken files: nothing a file holds is ever executed, and every loader says no in one line.

Proves, for every loader of the Python API and every command of the CLI:
- pickles carrying a payload (a ``__reduce__`` that creates a marker file), of every protocol,
  ``torch.save`` zips, and numpy object arrays (``.npy`` / ``.npz`` saved with ``allow_pickle``),
  whatever they are called (``.pt``, ``.ckpt``, ``.safetensors``, ``.npy``, ``.npz``, ``.onnx``),
  are refused as ``UnsafeFileError`` (exit 2 in the CLI) and the marker is never created;
- ONNX external data that leaves the model's folder (``../secret.bin``, an absolute path, a symlink
  out) is refused by every command that loads ONNX;
- ``FILE.py:FACTORY`` is the only route by which user code runs: a ``.py`` file given as a model,
  checkpoint or input is never imported;
- arbitrary bytes, truncations and bit flips of real files make ``load_arrays``, ``load_onnx`` and
  ``read_checkpoint`` raise ``RnnEdgeError`` subclasses only (hypothesis).
"""

from __future__ import annotations

import pickle
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rnnedge
from rnnedge.checkpoint import read_checkpoint
from rnnedge.cli import cli
from rnnedge.errors import BadInputError, RnnEdgeError, UnsafeFileError
from rnnedge.files import load_arrays, load_onnx
from rnnedge.runtime import Session, StreamingSession

sys.path.insert(0, str(Path(__file__).parent))
import runtime_models as rm  # noqa: E402
from file_slots import cli_file_slots  # noqa: E402


class Payload:
    """Unpickling this creates the marker file: the proof that a pickle ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def good(seed_checkpoint, tmp_path_factory):
    """A real checkpoint, its dynamic ONNX export, and a matching input .npy."""
    from rnnedge.exporting.api import export_checkpoint

    folder = tmp_path_factory.mktemp("good")
    onnx_path = folder / "seed.onnx"
    export_checkpoint(seed_checkpoint[0], onnx_path, verify=False)
    x = folder / "x.npy"
    np.save(x, np.random.default_rng(0).normal(size=(2, 10, 5)).astype(np.float32))
    return {"ckpt": seed_checkpoint[0], "onnx": onnx_path, "x": x}


# ---- the hostile files --------------------------------------------------------------------------

def _write_pickle(path, marker, protocol=None):
    path.write_bytes(pickle.dumps(Payload(marker), protocol=protocol))


def _write_torch(path, marker):
    import torch

    torch.save({"w": torch.zeros(2), "payload": Payload(marker)}, path)
    assert zipfile.is_zipfile(path)


def _write_npy_objects(path, marker):
    with open(path, "wb") as fh:  # a handle: np.save would append .npy
        np.save(fh, np.array([Payload(marker), 1], dtype=object), allow_pickle=True)


def _write_npz_objects(path, marker):
    with open(path, "wb") as fh:
        np.savez(fh, x=np.array([Payload(marker)], dtype=object))


HOSTILE = {  # file name -> writer(path, marker)
    "evil.pt": _write_pickle,
    "evil.ckpt": _write_pickle,
    "evil.safetensors": _write_pickle,
    "evil.npy": _write_pickle,
    "evil.npz": _write_pickle,
    "evil.onnx": _write_pickle,
    "evil-p0.ckpt": lambda p, m: _write_pickle(p, m, protocol=0),
    "evil-p0.onnx": lambda p, m: _write_pickle(p, m, protocol=0),
    "evil-p1.npy": lambda p, m: _write_pickle(p, m, protocol=1),
    "torchsave.pt": _write_torch,
    "torchsave.safetensors": _write_torch,
    "torchsave.onnx": _write_torch,
    "torchsave.npz": _write_torch,
    "objects.npy": _write_npy_objects,
    "objects.npz": _write_npz_objects,
    "objects-npy.onnx": _write_npy_objects,
    "objects-npz.safetensors": _write_npz_objects,
}


@pytest.fixture
def hostile(tmp_path, request):
    """(path of a hostile file, marker path that must never appear)."""
    marker = tmp_path / "PWNED"
    path = tmp_path / request.param
    HOSTILE[request.param](path, marker)
    assert not marker.exists()
    return path, marker


def _out(path: Path) -> Path:
    folder = path.parent / "out"
    folder.mkdir(exist_ok=True)
    return folder


API = {  # name -> call(hostile path, good files)
    "load_checkpoint": lambda p, g: rnnedge.load_checkpoint(p),
    "read_checkpoint": lambda p, g: read_checkpoint(p),
    "export_checkpoint": lambda p, g: rnnedge.export_checkpoint(p, _out(p) / "o.onnx", verify=False),
    "verify(ckpt)": lambda p, g: rnnedge.verify(p, g["onnx"]),
    "verify(onnx)": lambda p, g: rnnedge.verify(g["ckpt"], p),
    "quantize": lambda p, g: rnnedge.quantize(p, _out(p) / "q.onnx"),
    "Session": lambda p, g: Session(p),
    "StreamingSession": lambda p, g: StreamingSession(p),
    "load_arrays": lambda p, g: load_arrays(p),
    "load_onnx": lambda p, g: load_onnx(p),
    "prepare_mobile": lambda p, g: __import__("rnnedge.mobile", fromlist=["x"]).prepare_mobile(p, _out(p) / "mob"),
}


@pytest.mark.parametrize("hostile", sorted(HOSTILE), indirect=True)
@pytest.mark.parametrize("call", sorted(API))
def test_api_refuses_pickles_unsafe_and_never_runs_them(hostile, call, good):
    path, marker = hostile
    with pytest.raises(UnsafeFileError, match="pickle") as info:
        API[call](path, good)
    assert "\n" not in str(info.value)
    assert not marker.exists(), f"{call} executed {path.name}"
    assert not (path.parent / "out").exists() or not any((path.parent / "out").iterdir())


def _cli_slots(p: Path, g: dict) -> dict:
    """Every place a CLI command takes a file, with the hostile file in it."""
    return cli_file_slots(p, g, _out(p))


def one_error_line(result, code=2):
    """Exit `code`, nothing on stdout, exactly one `error: ...` line on stderr, no traceback."""
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert "Traceback" not in result.stderr
    return lines[0]


SLOTS = list(_cli_slots(Path("x"), {"onnx": "m", "ckpt": "c", "x": "i"}))


@pytest.mark.parametrize("hostile", sorted(HOSTILE), indirect=True)
@pytest.mark.parametrize("slot", SLOTS)
def test_cli_refuses_pickles_everywhere_exit_2(hostile, slot, good):
    path, marker = hostile
    args = [str(a) for a in _cli_slots(path, good)[slot]]
    line = one_error_line(CliRunner().invoke(cli, args))
    assert "pickle" in line, line
    assert not marker.exists(), f"{slot} executed {path.name}"
    assert not any((path.parent / "out").iterdir())


# ---- external data outside the model's folder -----------------------------------------------------

def _escaping_models(tmp_path) -> dict[str, Path]:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.full(3, 7.0, np.float32).tobytes())
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "link.bin").symlink_to(secret)
    models = {}
    for label, location in (("dotdot", "../secret.bin"), ("absolute", str(secret)), ("symlink", "link.bin"),
                            ("nested", "sub/../../secret.bin")):
        path = folder / f"{label}.onnx"
        path.write_bytes(rm.external_data_model(location).SerializeToString())
        models[label] = path
    return models


def test_external_data_escape_refused_by_every_onnx_loader(tmp_path, good):
    loaders = {"load_onnx": load_onnx, "Session": Session, "StreamingSession": StreamingSession,
               "quantize": lambda p: rnnedge.quantize(p, tmp_path / "q.onnx"),
               "verify": lambda p: rnnedge.verify(good["ckpt"], p)}
    for label, path in _escaping_models(tmp_path).items():
        for name, load in loaders.items():
            with pytest.raises(UnsafeFileError, match="external data") as info:
                load(path)
            assert "\n" not in str(info.value), (label, name)
    assert not (tmp_path / "q.onnx").exists()


@pytest.mark.parametrize("command", ["inspect", "evaluate", "verify", "quantize", "mobile", "run", "bench"])
def test_external_data_escape_refused_by_every_command(tmp_path, good, command):
    out = tmp_path / "out"
    out.mkdir()
    for label, path in _escaping_models(tmp_path).items():
        args = {"inspect": ["inspect", path], "evaluate": ["evaluate", path, "--task", "seed"],
                "verify": ["verify", good["ckpt"], path], "quantize": ["quantize", path, "-o", out / "q.onnx"],
                "mobile": ["mobile", path, "-o", out / "mob"], "run": ["run", path, "--input", good["x"]],
                "bench": ["bench", path, "--repeats", "2"]}[command]
        line = one_error_line(CliRunner().invoke(cli, [str(a) for a in args]))
        assert "external data" in line, (label, line)
    assert not any(out.iterdir())


# ---- only FILE.py:FACTORY runs user code ----------------------------------------------------------

def test_python_files_are_never_imported_unless_named_as_factory(tmp_path, good):
    marker = tmp_path / "IMPORTED"
    code = f"open({str(marker)!r}, 'w').close()\n"
    names = ["model.py", "model.onnx.py", "ckpt.safetensors.py", "x.npy.py"]
    for n in names:
        (tmp_path / n).write_text(code)
    out = tmp_path / "out"
    out.mkdir()
    runs = []
    for n in names:
        p = str(tmp_path / n)
        runs += [["inspect", p], ["evaluate", p, "--task", "seed"], ["export", p, "-o", str(out / "o.onnx")],
                 ["verify", p, str(good["onnx"])], ["verify", str(good["ckpt"]), p],
                 ["quantize", p, "-o", str(out / "q.onnx")], ["mobile", p, "-o", str(out / "m")],
                 ["run", p, "--input", str(good["x"])], ["run", str(good["onnx"]), "--input", p],
                 ["bench", p, "--repeats", "2"], ["bench", str(good["onnx"]), "--against", p, "--repeats", "2"]]
    for args in runs:
        one_error_line(CliRunner().invoke(cli, args))
        assert not marker.exists(), args
    for n in names:
        for call in (rnnedge.load_checkpoint, Session, load_arrays, load_onnx):
            with pytest.raises(RnnEdgeError):
                call(tmp_path / n)
    assert not marker.exists()
    assert not any(out.iterdir())
    # the one sanctioned route does run it (and then fails: the module makes no model)
    (tmp_path / "factory.py").write_text(code + "def make():\n    return None\n")
    result = CliRunner().invoke(cli, ["export", f"{tmp_path / 'factory.py'}:make", "--example", "float32[1,4,5]",
                                      "-o", str(out / "f.onnx")])
    assert marker.exists() and result.exit_code == 2 and not (out / "f.onnx").exists()


# ---- property-based: loaders only ever raise RnnEdgeError -------------------------------------------

def _only_rnnedge_errors(load, path: Path):
    try:
        load(path)
    except RnnEdgeError as err:  # anything else (protobuf, zlib, numpy, safetensors) fails the test
        assert "\n" not in str(err)


LOADERS = {"load_arrays": load_arrays, "load_onnx": lambda p: load_onnx(p, load_weights=False),
           "read_checkpoint": read_checkpoint, "Session": Session}
FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def real_files(good, tmp_path_factory):
    """The bytes of one real file of each kind the loaders take."""
    folder = tmp_path_factory.mktemp("real")
    np.savez_compressed(folder / "a.npz", x=np.ones((2, 4, 5), np.float32), lengths=np.array([4, 3]))
    return {"npy": good["x"].read_bytes(), "npz": (folder / "a.npz").read_bytes(),
            "onnx": good["onnx"].read_bytes(), "ckpt": Path(good["ckpt"]).read_bytes()}


@FUZZ
@given(data=st.binary(min_size=0, max_size=2048), prefix=st.sampled_from(
    [b"", b"\x93NUMPY\x01\x00", b"PK\x03\x04", b"\x80\x04", b"(", b"\x08\x07", b"\x10\x00\x00\x00\x00\x00\x00\x00{"]),
    loader=st.sampled_from(sorted(LOADERS)))
def test_arbitrary_bytes_only_raise_rnnedge_errors(tmp_path, data, prefix, loader):
    path = tmp_path / "fuzz.bin"
    path.write_bytes(prefix + data)
    _only_rnnedge_errors(LOADERS[loader], path)


@FUZZ
@given(kind=st.sampled_from(["npy", "npz", "onnx", "ckpt"]), cut=st.floats(0, 1),
       flips=st.lists(st.tuples(st.floats(0, 1), st.integers(1, 255)), max_size=4),
       loader=st.sampled_from(sorted(LOADERS)))
def test_mutated_real_files_only_raise_rnnedge_errors(tmp_path, real_files, kind, cut, flips, loader):
    data = bytearray(real_files[kind])
    for where, mask in flips:  # bit flips anywhere, header included
        data[min(int(where * len(data)), len(data) - 1)] ^= mask
    data = data[: max(1, int(cut * len(data))) if cut < 1 else len(data)]  # and a truncation
    path = tmp_path / f"mutated.{kind}"
    path.write_bytes(bytes(data))
    _only_rnnedge_errors(LOADERS[loader], path)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["onnx", "ckpt", "npz"]), cut=st.floats(0.05, 0.95))
def test_truncated_models_refused_by_session(tmp_path, real_files, kind, cut):
    data = real_files[kind]
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: int(cut * len(data))])
    with pytest.raises(BadInputError) as info:
        Session(path)
    assert "\n" not in str(info.value)
