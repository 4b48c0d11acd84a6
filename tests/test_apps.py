"""samples/apps run with torch blocked from import, and agree with torch on what they compute."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
APPS = ROOT / "samples" / "apps"
LABELS = ["<unk>", *"abcdef .\n"]  # a tiny character vocabulary

# Installs a meta_path finder that refuses torch, then runs the app as __main__ with the given argv.
BLOCKED = """
import runpy, sys
class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError("torch is blocked in this test: the app must not import it")
        return None
sys.meta_path.insert(0, NoTorch())
sys.argv = sys.argv[1:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules), "torch was imported"
"""


def run_app(app: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKED, str(APPS / app), *map(str, args)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


@pytest.fixture(scope="module")
def char_lm(tmp_path_factory):
    """A small untrained character LSTM LM exported with --target stream: (onnx path, torch model)."""
    import torch

    from rnnedge.checkpoint import save_checkpoint
    from rnnedge.exporting.api import export_checkpoint
    from rnnedge.families.sequence.model import ModelConfig, SequenceModel

    torch.manual_seed(0)
    config = ModelConfig(input_kind="tokens", input_size=len(LABELS), embed_dim=6, cell="lstm", hidden=12,
                         layers=2, head="lm", num_outputs=len(LABELS))
    model = SequenceModel(config).eval()
    folder = tmp_path_factory.mktemp("apps")
    ckpt = save_checkpoint(folder / "lm.safetensors", model, task="charlm", labels=LABELS)
    path = folder / "lm-stream.onnx"
    export_checkpoint(ckpt, path, target="stream")
    return path, model


def torch_greedy(model, prompt_ids: list[int], steps: int) -> list[int]:
    """Greedy decoding the slow way: the whole sequence through torch at every step."""
    import torch

    ids = list(prompt_ids)
    with torch.no_grad():
        for _ in range(steps):
            logits = model(torch.tensor([ids]))  # (1, T, V)
            ids.append(int(logits[0, -1].argmax()))
    return ids[len(prompt_ids):]


def test_generate_greedy_matches_torch_without_torch(char_lm):
    path, model = char_lm
    prompt, steps = "bad cafe", 40
    result = run_app("generate.py", path, "--prompt", prompt, "--steps", steps, "--temperature", 0, "--provider", "cpu")
    assert result.returncode == 0, result.stderr
    index = {c: i for i, c in enumerate(LABELS)}
    expected = "".join(LABELS[i] if i else "\ufffd" for i in torch_greedy(model, [index[c] for c in prompt], steps))
    assert result.stdout == prompt + expected + "\n"


def test_generate_samples_with_temperature(char_lm):
    path, _ = char_lm
    args = (path, "--prompt", "a", "--steps", 30, "--temperature", 1.5, "--seed", 3)
    first, again = run_app("generate.py", *args), run_app("generate.py", *args)
    assert first.returncode == 0, first.stderr
    text = first.stdout[:-1]  # print's newline
    assert text.startswith("a") and len(text) == 31
    assert set(text[1:]) <= set(LABELS[1:]) | {"\ufffd"}  # <unk> prints as the replacement character
    assert first.stdout == again.stdout  # the seed fixes the sample


def test_generate_refuses_a_non_stream_model_in_one_line(tmp_path):
    bad = tmp_path / "missing.onnx"
    result = run_app("generate.py", bad)
    assert result.returncode == 2 and result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1


def test_stream_classify_ends_where_one_call_ends(seed_checkpoint, tmp_path):
    from rnnedge.exporting.api import export_checkpoint
    from rnnedge.runtime import Session

    ckpt, _ = seed_checkpoint
    path = tmp_path / "seed-stream.onnx"
    export_checkpoint(ckpt, path, target="stream", verify=False)
    seq = np.random.default_rng(0).standard_normal((10, 5)).astype(np.float32)  # (T, F)
    np.save(tmp_path / "seq.npy", seq)
    result = run_app("stream_classify.py", path, "--input", tmp_path / "seq.npy", "--chunk", 3)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["steps    3", "steps    6", "steps    9", "steps   10"]
    whole = Session(path).run(seq[None])[0]  # (C,)
    label = ["down", "flat", "up"][int(whole.argmax())]
    assert lines[-1].split(": ")[1].startswith(label + " ")
