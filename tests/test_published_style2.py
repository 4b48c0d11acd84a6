"""Issue 21 red team, second round: modules written the way published packages write them
(tests/published_modules2.py: LAS, DeepSpeech2, ESPnet, RNN-T, GRU4Rec, TFT, Bahdanau NMT, FullSubNet, TCN-LSTM),
exported with default options and checked independently (a plain onnxruntime session against torch at unseen batch
and sequence sizes: seq 1 where torch runs, >= 300, both sides of the branches; tests/test_published_style.py's
`independent_error`). A quick sample runs by default; every case runs with -m slow."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rnnedge
from rnnedge.errors import ExportError

try:
    from tests import published_modules2 as pm
    from tests.test_published_style import assert_refused_saying_why, assert_right_at_probes, export_case, independent_error
except ImportError:  # run from inside tests/
    import published_modules2 as pm
    from test_published_style import assert_refused_saying_why, assert_right_at_probes, export_case, independent_error

TOL = 1e-5


QUICK = {"rnnt_joint", "gru4rec", "fullsubnet", "crdnn_lstm"}


@pytest.mark.parametrize("name", [n if n in QUICK else pytest.param(n, marks=pytest.mark.slow)
                                  for n, c in pm.CASES.items() if c.expect == "exports"])
def test_published_style_module_exports_right_at_unseen_sizes(name, tmp_path):
    module, path, _ = export_case(pm, name, tmp_path)
    assert_right_at_probes(pm, name, module, path)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n, c in pm.CASES.items() if c.expect != "exports"])
def test_published_style_refusals_say_why(name, tmp_path):
    assert_refused_saying_why(pm, name, tmp_path)


class SubbandUnfold(nn.Module):
    """Sub-band windows of 3 frequencies over the whole time axis, `F.unfold` with the kernel's time side the input's
    own length: time first (kernel (T, 3), the height case) or time last (kernel (3, T), FullSubNet's)."""

    def __init__(self, time_last: bool):
        super().__init__()
        self.time_last = time_last
        self.lstm = nn.LSTM(3, 6, batch_first=True)

    def forward(self, x):  # (B, T, 8)
        B, T, F_ = x.shape
        if self.time_last:
            blocks = F.unfold(x.transpose(1, 2).unsqueeze(1), (3, T), padding=(1, 0))  # (B, 3 * T, 8)
            sub = blocks.reshape(B, 3, T, F_).permute(0, 3, 2, 1)
        else:
            blocks = nn.Unfold((T, 3), padding=(0, 1))(x.unsqueeze(1))  # (B, T * 3, 8)
            sub = blocks.reshape(B, T, 3, F_).permute(0, 3, 1, 2)
        y = self.lstm(sub.reshape(B * F_, T, 3))[0]  # frequency folded into batch
        return y.reshape(B, F_, T, 6)


@pytest.mark.parametrize("time_last", [True, False])
def test_unfold_with_a_kernel_as_long_as_the_time_axis_keeps_it_dynamic(time_last, tmp_path):
    """Planted bug it catches: without rnnedge.exporting.translations.unfold_kept_dynamic, torch's im2col reads the
    kernel as Python ints and FullSubNet-style sub-band models were refused ('frames' specialised to 24)."""
    torch.manual_seed(0)
    module, path = SubbandUnfold(time_last).eval(), tmp_path / "unfold.onnx"
    rnnedge.export(module, torch.randn(2, 24, 8), path, dynamic_axes={"x": {0: "batch", 1: "seq"}})
    for batch, seq in ((3, 1), (1, 7), (2, 300)):
        assert independent_error(module, path, (torch.randn(batch, seq, 8),)) < TOL, (batch, seq)


class RNNTPredictor(nn.Module):
    """The RNN-T predictor alone: labels (B, U) -> (B, U + 1, H), a blank start symbol padded in front."""

    def __init__(self):
        super().__init__()
        self.joint = pm.build("rnnt_joint")

    def forward(self, labels):
        return self.joint.pred_proj(self.joint.predict(labels))


def test_a_start_symbol_padded_on_the_time_axis_is_refused_for_streaming(tmp_path):
    """Planted bug it catches: without the Pad check in rnnedge.exporting.stream, the streamed predictor added the
    start frame to every chunk and only the quick check stopped it (ParityError 'shape (2, 2, 12) != (2, 49, 12)',
    exit 1); now the layer is named and the reason given, no file written. The whole-sequence export is right."""
    module = RNNTPredictor().eval()
    labels = torch.randint(1, 9, (1, 24))
    with pytest.raises(ExportError, match="adds frames to the time axis"):
        rnnedge.export(module, labels, tmp_path / "s.onnx", target="stream")
    assert not (tmp_path / "s.onnx").exists()
    rnnedge.export(module, labels, tmp_path / "d.onnx", dynamic_axes={"labels": {0: "batch", 1: "labels"}})
    for batch, u in ((3, 1), (2, 300)):
        assert independent_error(module, tmp_path / "d.onnx", (torch.randint(1, 9, (batch, u)),)) < TOL
