"""Every place an rnnedge command takes a file: shared by the bad-input and hostile-file tests."""

from __future__ import annotations

from pathlib import Path


def cli_file_slots(bad: Path, good: dict, out: Path) -> dict[str, list]:
    """Every command with `bad` in each file slot (models, checkpoints, inputs)."""
    return {
        "inspect": ["inspect", bad],
        "evaluate": ["evaluate", bad, "--task", "seed"],
        "export": ["export", bad, "-o", out / "o.onnx", "--no-verify"],
        "verify CKPT": ["verify", bad, good["onnx"]],
        "verify MODEL": ["verify", good["ckpt"], bad],
        "quantize": ["quantize", bad, "-o", out / "q.onnx"],
        "mobile": ["mobile", bad, "-o", out / "mob"],
        "run MODEL": ["run", bad, "--input", good["x"], "-o", out / "y.npy"],
        "run --input": ["run", good["onnx"], "--input", bad, "-o", out / "y.npy"],
        "run --lengths": ["run", good["onnx"], "--input", good["x"], "--lengths", bad],
        "bench MODEL": ["bench", bad, "--repeats", "2"],
        "bench --against": ["bench", good["onnx"], "--against", bad, "--repeats", "2"],
        "quantize --calibration": ["quantize", good["onnx"], "-o", out / "q.onnx", "--mode", "int8-static",
                                   "--calibration", bad],
    }
