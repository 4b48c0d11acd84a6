"""Issue 21 red team, second round: modules written the way published packages write them
(tests/published_modules2.py: LAS, DeepSpeech2, ESPnet, RNN-T, GRU4Rec, TFT, Bahdanau NMT, FullSubNet, TCN-LSTM),
exported with default options and checked independently (a plain onnxruntime session against torch at unseen batch
and sequence sizes: seq 1 where torch runs, >= 300, both sides of the branches; tests/test_published_style.py's
`independent_error`). A quick sample runs by default; every case runs with -m slow."""

from __future__ import annotations

import pytest

import rnnedge
from rnnedge.errors import ExportError

try:
    from tests import published_modules2 as pm
    from tests.test_published_style import independent_error, torch_runs
except ImportError:  # run from inside tests/
    import published_modules2 as pm
    from test_published_style import independent_error, torch_runs

TOL = 1e-5


def _export_case(name, tmp_path):
    case = pm.CASES[name]
    module = case.factory()
    path = tmp_path / f"{name}.onnx"
    result = rnnedge.export(module, pm.inputs(name, *case.example), path, dynamic_axes=case.dynamic_axes, **case.export_options)
    return module, path, result


QUICK = {"rnnt_joint", "gru4rec"}


@pytest.mark.parametrize("name", [n if n in QUICK else pytest.param(n, marks=pytest.mark.slow)
                                  for n, c in pm.CASES.items() if c.expect == "exports"])
def test_published_style_module_exports_right_at_unseen_sizes(name, tmp_path):
    import onnx

    module, path, _ = _export_case(name, tmp_path)
    case = pm.CASES[name]
    graph_inputs = {i.name: i for i in onnx.load(str(path)).graph.input}
    for inp, axes in case.dynamic_axes.items():  # every declared axis stays symbolic in the file
        for ax in axes:
            assert graph_inputs[inp].type.tensor_type.shape.dim[ax].dim_param, (inp, ax)
    checked = 0
    for batch, seq in case.probes:
        args = pm.inputs(name, batch, seq, seed=7)
        if not torch_runs(module, args):
            continue
        err = independent_error(module, path, args)
        assert err < TOL, (name, batch, seq, err)
        checked += 1
    assert checked >= 2, name


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n, c in pm.CASES.items() if c.expect != "exports"])
def test_published_style_refusals_say_why(name, tmp_path):
    words = pm.CASES[name].expect.split(": ", 1)[1]
    with pytest.raises(ExportError, match=words):
        _export_case(name, tmp_path)
    assert not (tmp_path / f"{name}.onnx").exists()
