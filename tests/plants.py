"""Bugs planted in the PRODUCT code, one at a time, to show the suite catches each (issue 22, deliverable 5).

`RNNEDGE_PLANT=<name> python -m pytest <targets>`: tests/conftest.py calls `apply(name)` before any test module is
imported, so every import of the patched function sees the bug. `python samples/planted_bugs.py` runs the table: each
plant against its target tests, which must fail (and pass without the plant). Each plant replaces one function or
constant of rnnedge/ or exporters/ for the whole pytest process.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Plant:
    what: str  # the bug, in words
    targets: tuple[str, ...]  # pytest node ids that must catch it


def _wrap(module: str, name: str, make):
    """Replace module.name by make(original)."""
    mod = importlib.import_module(module)
    setattr(mod, name, make(getattr(mod, name)))


def _int8_as_fp32():
    """quantize --mode int8 writes the float32 model but records and reports int8 forms."""
    def make(original):
        @functools.wraps(original)
        def planted(model, meta, shape, forms, ops, threads, result, *args, **kwargs):
            original(model, meta, shape, forms, ops, threads, result, *args, **kwargs)
            from rnnedge.quantizing.int8 import as_given

            return as_given(result.input_path)
        return planted
    _wrap("rnnedge.quantizing.api", "quantize_int8", make)


def _state_not_carried():
    """StreamingSession forgets each stream's state between calls (every chunk starts from zeros)."""
    from rnnedge.runtime import streaming

    class Forgetful(dict):
        def get(self, key, default=None):
            return default

    def make(original):
        @functools.wraps(original)
        def planted(self, *args, **kwargs):
            original(self, *args, **kwargs)
            self._states = Forgetful()
        return planted
    streaming.StreamingSession.__init__ = make(streaming.StreamingSession.__init__)


def _lengths_ignored():
    """The native lowering leaves the RNN/GRU/LSTM node's sequence_lens input empty."""
    def make(original):
        @functools.wraps(original)
        def planted(*args, **kwargs):
            nodes = original(*args, **kwargs)
            for node in nodes:
                if node.op_type in ("RNN", "GRU", "LSTM") and len(node.input) > 4:
                    node.input[4] = ""
            return nodes
        return planted
    _wrap("exporters.native", "_lower_one", make)


def _bias_dropped():
    """The native lowering drops the recurrent layers' biases (B)."""
    def make(original):
        @functools.wraps(original)
        def planted(*args, **kwargs):
            W, R, _B, P = original(*args, **kwargs)
            return W, R, None, P
        return planted
    _wrap("exporters.native", "convert_weights", make)


def _tolerance_x1000():
    """verify's tolerance is 1000 times too wide (the noise factor and any explicit atol/rtol)."""
    compare = importlib.import_module("rnnedge.parity.compare")
    compare.NOISE_K *= 1000

    def make(original):
        @functools.wraps(original)
        def planted(name, ref32, got, ref64=None, e=None, atol=None, rtol=None, *args, **kwargs):
            atol, rtol = (None if atol is None else atol * 1000), (None if rtol is None else rtol * 1000)
            return original(name, ref32, got, ref64, e, atol, rtol, *args, **kwargs)
        return planted
    _wrap("rnnedge.parity.compare", "compare_output", make)


def _beam_is_greedy():
    """Beam search ignores `beam` and decodes greedily."""
    def make(original):
        @functools.wraps(original)
        def planted(*args, **kwargs):
            return original(*args, **{**kwargs, "beam": 1})
        return planted
    _wrap("rnnedge.runtime.seq2seq", "beam_search", make)


def _guard_log_empty():
    """torch's guard log reads as empty (every "[guard added]" record dropped)."""
    guardlog = importlib.import_module("rnnedge.exporting.guardlog")
    guardlog._GuardHandler._read = lambda self, record: None


def _eval_against_itself():
    """quantize --eval / drift / compare_models compare the float file with itself."""
    def make(original):
        @functools.wraps(original)
        def planted(float_path, quant_path, *args, **kwargs):
            return original(float_path, float_path, *args, **kwargs)
        return planted
    for name in ("drift", "compare_models"):
        _wrap("rnnedge.quantizing.drift", name, make)


PLANTS: dict[str, tuple[Plant, object]] = {
    "int8-as-fp32": (Plant("int8 file written as fp32 but reported int8", (
        "tests/test_quantize.py::test_each_mode_each_cell_runs_close_to_float[int8-gru-uni]",
        "tests/test_quantize.py::test_int8_recurrent_weights_are_int8[gru]")), _int8_as_fp32),
    "state-not-carried": (Plant("state not carried between chunks in StreamingSession", (
        "tests/test_runtime.py::test_chunks_of_7_with_carried_state_equal_whole_sequence",)), _state_not_carried),
    "lengths-ignored": (Plant("lengths ignored: the lowering drops sequence_lens", (
        "tests/test_coverage_matrix.py::test_matrix_sample",)), _lengths_ignored),
    "bias-dropped": (Plant("a lowering that drops the recurrent bias", (
        "tests/test_export.py::test_user_module_exports_with_symbolic_axes_and_matches_torch",)), _bias_dropped),
    "tolerance-x1000": (Plant("verify's tolerance x1000", (
        "tests/test_parity.py::test_noise_policy_scales_with_torch_own_error",
        "tests/test_parity.py::test_assert_parity_for_user_test_suites")), _tolerance_x1000),
    "beam-is-greedy": (Plant("beam search returning greedy", (
        "tests/test_seq2seq.py::test_beam_search_beats_greedy_where_it_should",)), _beam_is_greedy),
    "guard-log-empty": (Plant("guard log read as empty", (
        "tests/test_guards_fail_closed.py::test_a_normal_export_confirms_its_reading_and_drops_the_planted_guard",
        "tests/test_guards.py::test_branch_on_length_is_refused_with_axis_range_and_line")), _guard_log_empty),
    "eval-against-itself": (Plant("quantize eval comparing a file to itself", (
        "tests/test_quantize.py::test_compare_models_reports_ratios",
        "tests/test_quantize_accuracy.py::test_int8_static_calibrated_on_the_task_keeps_accuracy[minmax]")), _eval_against_itself),
}


def apply(name: str) -> None:
    if name not in PLANTS:
        raise SystemExit(f"RNNEDGE_PLANT={name!r}: no such plant; plants: {', '.join(PLANTS)}")
    PLANTS[name][1]()
