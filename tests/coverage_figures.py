"""Max error onnxruntime vs torch for the real-architecture coverage modules (the table in notes/issue-11.md).

    python tests/coverage_figures.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path


def main() -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    import torch
    from coverage_check import max_error_vs_torch, session
    from coverage_modules import REAL
    from test_coverage_real import EXTRA, SHAPES

    import rnnedge

    out = Path(tempfile.mkdtemp()) / "real.onnx"
    for name, case in REAL.items():
        torch.manual_seed(0)
        module, example, names, axes, make = case()
        module.eval()
        result = rnnedge.export(module, example, out, input_names=names, dynamic_axes=axes, **EXTRA.get(name, {}))
        sess = session(out)
        errors = ", ".join(f"{b}x{t} {max_error_vs_torch(module, out, make(b, t), sess):.1e}" for b, t in SHAPES[name])
        print(f"| {name} | {', '.join(names)} | {result.lowering} | {errors} |")


if __name__ == "__main__":
    main()
