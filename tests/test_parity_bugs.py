"""Planted-bug self-test: exporter bugs planted in exported files of seed-trained models are caught by
`rnnedge verify` (exit 1), and the correct files pass (exit 0).

Every bug class x cell x direction x 1-2 layers x lowering (native/scan) runs under the slow marker;
the default run takes one stably sampled case per bug class (zlib.crc32 of its id) on three trained models.
"""

from __future__ import annotations

import itertools
import json
import zlib

import onnx
import pytest
from click.testing import CliRunner
from parity_plants import PLANTS

from rnnedge.cli import cli

CELLS, DIRECTIONS, LAYERS, LOWERINGS = ["rnn", "gru", "lstm"], [False, True], [1, 2], ["native", "scan"]


def applies(bug: str, cell: str, bidirectional: bool, target: str) -> bool:
    if bug == "directions swapped":
        return bidirectional
    if bug == "linear_before_reset flipped":
        return cell == "gru"
    if bug == "state not carried":
        return target == "stream"
    return target == "dynamic"


ALL = [(bug, cell, bi, layers, lowering, target)
       for bug, cell, bi, layers, lowering in itertools.product(PLANTS, CELLS, DIRECTIONS, LAYERS, LOWERINGS)
       for target in (["dynamic", "stream"] if not bi else ["dynamic"]) if applies(bug, cell, bi, target)]


def case_id(case) -> str:
    bug, cell, bi, layers, lowering, target = case
    return f"{bug.replace(' ', '_')}-{cell}-{'bi' if bi else 'uni'}-{layers}L-{lowering}-{target}"


SAMPLE_MODELS = {("lstm", True, 2), ("gru", False, 1), ("rnn", False, 2)}  # three trainings cover every bug class
SAMPLE = [min((c for c in ALL if c[0] == bug and c[1:4] in SAMPLE_MODELS), key=lambda c: zlib.crc32(case_id(c).encode())) for bug in PLANTS]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Seed-trained checkpoints and their correct exports, made on first use: {key: path}."""
    made: dict = {}
    root = tmp_path_factory.mktemp("planted")

    def good(cell, bi, layers, lowering, target):
        import rnnedge
        from rnnedge.checkpoint import save_checkpoint
        from rnnedge.tasks import get_task
        from rnnedge.training.loop import train

        key = (cell, bi, layers)
        if key not in made:
            task = get_task("seed")
            model = train(task.default_config(cell, layers=layers, bidirectional=bi), task, epochs=2, seed=0, progress=False).model
            made[key] = root / f"{cell}-{int(bi)}-{layers}.safetensors"
            save_checkpoint(made[key], model, task="seed", labels=task.labels)
        ckpt = made[key]
        path = root / f"{cell}-{int(bi)}-{layers}-{lowering}-{target}.onnx"
        if not path.exists():
            rnnedge.export_checkpoint(ckpt, path, target=target, lowering=lowering, verify=False, lengths=True)  # (B,) lengths input kept
            code, data = verify_cli(ckpt, path)
            assert code == 0, f"correct file failed: {data.get('results') if data else None}"
        return ckpt, path

    return good


def verify_cli(ckpt, path) -> tuple[int, dict | None]:
    result = CliRunner().invoke(cli, ["verify", str(ckpt), str(path), "--json"])
    try:
        data = json.loads(result.stdout.strip().splitlines()[-1]) if result.stdout.strip() else None
    except json.JSONDecodeError:
        data = None
    return result.exit_code, data


def run_plant(case, files, tmp_path) -> dict:
    bug, cell, bi, layers, lowering, target = case
    ckpt, good = files(cell, bi, layers, lowering, target)
    model = onnx.load(str(good))
    assert PLANTS[bug](model), f"{bug} does not apply to {case_id(case)}"
    broken = tmp_path / "broken.onnx"
    onnx.save(model, str(broken))
    code, data = verify_cli(ckpt, broken)
    assert code == 1, f"{case_id(case)} not caught (exit {code}): worst {data and data.get('max_noise_ratio')}"
    return data


@pytest.mark.parametrize("case", SAMPLE, ids=case_id)
def test_planted_bug_caught_sample(case, files, tmp_path):
    run_plant(case, files, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("case", ALL, ids=case_id)
def test_planted_bug_caught_all(case, files, tmp_path):
    run_plant(case, files, tmp_path)


def test_sample_covers_every_bug_class():
    assert {c[0] for c in SAMPLE} == set(PLANTS) and len(ALL) > 100
