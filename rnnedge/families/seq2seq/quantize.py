"""Quantize an exported seq2seq folder: rnnedge.quantizing.api on encoder.onnx and on decoder.onnx, same options.

    rnnedge quantize dates/ -o dates-int8/            # both files, int8 (forms measured per file)
    quantize_folder("dates", "dates-int8", mode="int8")

The output folder is created if missing (its parent must exist); each file is written atomically.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from rnnedge.errors import BadInputError
from rnnedge.runtime.seq2seq import FILES, seq2seq_files


@dataclass
class FolderQuantizeResult:
    input_path: Path
    output_path: Path
    mode: str
    files: dict = field(default_factory=dict)  # file name -> QuantizeResult

    def to_dict(self) -> dict:
        per = {name: r.to_dict() for name, r in self.files.items()}
        in_bytes = sum(d["input_bytes"] for d in per.values())
        out_bytes = sum(d["output_bytes"] for d in per.values())
        prefixed = {key: [f"{name}: {line}" for name, d in per.items() for line in d.get(key, [])]
                    for key in ("notes", "warnings", "stayed_float")}
        return {"input_path": str(self.input_path), "output_path": str(self.output_path), "mode": self.mode, "kind": "seq2seq",
                "input_bytes": in_bytes, "output_bytes": out_bytes, "size_ratio": round(out_bytes / max(in_bytes, 1), 4),
                "forms": {f"{name}: {unit}": form for name, d in per.items() for unit, form in (d.get("forms") or {}).items()},
                **prefixed, "files": per}


def quantize_folder(src: str | os.PathLike, dst: str | os.PathLike, **options) -> FolderQuantizeResult:
    """rnnedge.quantizing.api.quantize on each file of the folder `src`, written to the folder `dst` (same names)."""
    from rnnedge.quantizing.api import quantize

    paths = seq2seq_files(src)
    dst = Path(dst)
    if dst.exists() and not dst.is_dir():
        raise BadInputError(f"{dst}: exists and is not a folder (a seq2seq model quantizes to a folder)")
    if dst.resolve() == Path(src).resolve():
        raise BadInputError(f"{dst}: the output folder must differ from the input folder")
    if not dst.parent.exists():
        raise BadInputError(f"{dst.parent}: folder does not exist")
    dst.mkdir(exist_ok=True)
    result = FolderQuantizeResult(Path(src), dst, options.get("mode", "int8"))
    for name, path in zip(FILES, paths):
        result.files[name] = quantize(path, dst / name, **options)
    return result
