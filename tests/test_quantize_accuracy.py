"""int8-static on a trained model: calibrated on a task (`calibration=TASK`) with each calibration method it keeps the
task's accuracy, stores int8 and drifts by a bounded fraction of the output's range; the task's data and the method
really reach the calibrator (the scales follow them).

The model is the suite's seed-task GRU (tests/conftest.py: `seed_onnx`, trained for 2 epochs, accuracy about 0.8).
Measured here: float 0.818, int8-static 0.828 with each method; drift 0.025 of the logits' range.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from drift_bounds import TRAINED_REL, int8_count
from onnx import numpy_helper

from rnnedge.quantizing.api import CALIBRATION_METHODS, quantize
from rnnedge.quantizing.drift import compare_models, drift
from rnnedge.tasks import get_task

ACCURACY_DROP = 0.03  # int8-static may cost at most this much test accuracy (measured: none)


def _scales(path) -> dict[str, np.ndarray]:
    """The QDQ scales onnxruntime's calibrator chose, by initializer name."""
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer if t.name.endswith("_scale")}


@pytest.mark.parametrize("method", CALIBRATION_METHODS)
def test_int8_static_calibrated_on_the_task_keeps_accuracy(seed_onnx, tmp_path, method):
    out = tmp_path / f"{method}.onnx"
    result = quantize(seed_onnx, out, mode="int8-static", calibration="seed", calibration_method=method)
    assert not any("random" in w for w in result.warnings), result.warnings  # the task's data, not random inputs
    assert int8_count(out) > 0 and _scales(out)
    report = compare_models(seed_onnx, out, task="seed", repeats=1)
    before, after = report["float_metrics"]["accuracy"], report["quant_metrics"]["accuracy"]
    assert before > 0.7 and after >= before - ACCURACY_DROP, (method, before, after)
    moved = drift(seed_onnx, out, task="seed")["worst_relative"]  # max |int8 - float| / range of the float logits
    assert 0 < moved <= TRAINED_REL, (method, moved)


def test_calibration_task_data_and_method_reach_the_calibrator(seed_onnx, tmp_path):
    val = get_task("seed").split("val")
    np.savez(tmp_path / "val.npz", x=val.inputs, **({"lengths": val.lengths} if val.lengths is not None else {}))
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "random.npz", x=rng.standard_normal(val.inputs.shape).astype(np.float32) * 3,
             **({"lengths": val.lengths} if val.lengths is not None else {}))
    made = {}
    for name, kw in {"task": dict(calibration="seed"), "npz": dict(calibration=tmp_path / "val.npz"),
                     "random": dict(calibration=tmp_path / "random.npz"), "default": dict(),
                     "percentile": dict(calibration="seed", calibration_method="percentile")}.items():
        quantize(seed_onnx, tmp_path / f"{name}.onnx", mode="int8-static", **kw)
        made[name] = _scales(tmp_path / f"{name}.onnx")
    same = lambda a, b: a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)  # noqa: E731
    assert same(made["task"], made["npz"])  # calibration="seed" is the seed task's validation split, as documented
    assert same(made["task"], made["default"])  # no calibration data: a checkpoint export calibrates on its own task
    assert not same(made["task"], made["random"]) and not same(made["task"], made["percentile"])
