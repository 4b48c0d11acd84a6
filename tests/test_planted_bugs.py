"""Planted bugs are caught: each bug of tests/plants.py, planted in the product code (RNNEDGE_PLANT, tests/conftest.py),
makes at least one of its target tests fail, and the targets pass without it (samples/planted_bugs.py runs the table).

The default run plants two cheap bugs (the targets themselves run unplanted in it anyway); the whole table (eight bugs,
and each target run unplanted, about ten minutes) runs under the slow marker.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "samples"))

from planted_bugs import PLANTS, run_targets  # noqa: E402

DEFAULT = ["beam-is-greedy", "tolerance-x1000"]  # each runs in seconds


def test_the_plant_list_names_the_issue_bugs():
    assert len(PLANTS) >= 8 and all(PLANTS[name][0].targets for name in PLANTS)


@pytest.mark.parametrize("name", DEFAULT)
def test_a_planted_bug_fails_its_targets(name):
    code, failed, _ = run_targets(PLANTS[name][0].targets, name)
    assert code == 1 and failed, (name, code)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PLANTS))
def test_the_targets_pass_unplanted(name):  # the default run runs every target itself, unplanted
    code, failed, _ = run_targets(PLANTS[name][0].targets, None)
    assert code == 0, (name, failed)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in PLANTS if n not in DEFAULT])
def test_every_planted_bug_is_caught(name):
    code, failed, _ = run_targets(PLANTS[name][0].targets, name)
    assert code == 1 and failed, (name, code)
