"""Sequence to sequence, exported: `rnnedge export` writes a folder, `rnnedge verify` checks each file and the whole
decode token for token (and fails on a changed weight), the folder decodes without torch, evaluate and quantize
take the folder. One tiny model trained for seconds (parity does not need accuracy), exported once."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from rnnedge.errors import BadInputError

STRINGS = ["5 May 2001", "wednesday, september 30, 2099", "12/31/1999", "2031/02/21", "Mon 30 Mar 2082", "07.06.2032",
           "march 16, 1991", "Dec 01, 1900"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(checkpoint path, model, exported folder): a GRU/Luong model, hidden 16, one epoch on 512 strings, exported by the CLI."""
    from click.testing import CliRunner

    from rnnedge.checkpoint import save_checkpoint
    from rnnedge.cli import cli
    from rnnedge.families.seq2seq.dates import DatesTask
    from rnnedge.training.loop import train

    class TinyDates(DatesTask):
        sizes = {"train": 512, "val": 32, "test": 32}

    task = TinyDates()
    result = train(task.default_config("gru", hidden=16), task, epochs=1, progress=False)
    folder = tmp_path_factory.mktemp("seq2seq")
    ckpt = folder / "d.safetensors"
    save_checkpoint(ckpt, result.model, task="dates", labels=task.labels, metrics=result.metrics)
    out = CliRunner().invoke(cli, ["export", str(ckpt), "-o", str(folder / "dates"), "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["kind"] == "seq2seq" and data["parity"]["ok"]
    return ckpt, result.model, folder / "dates"


def test_export_writes_both_files_with_symbolic_axes_and_metadata(tiny):
    import onnx

    _, model, folder = tiny
    shapes = {}
    for part in ("encoder", "decoder"):
        m = onnx.load(str(folder / f"{part}.onnx"))
        meta = {p.key: p.value for p in m.metadata_props}
        assert meta["rnnedge.task"] == "dates" and meta["rnnedge.part"] == part and "rnnedge.version" in meta
        seq2seq = json.loads(meta["rnnedge.seq2seq"])
        assert seq2seq["vocab"] == list(model.config.vocab) and (seq2seq["bos"], seq2seq["eos"], seq2seq["pad"]) == (1, 2, 0)
        assert seq2seq["max_target_len"] == 12 and json.loads(meta["rnnedge.spec"])["inputs"]
        shapes[part] = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
                        for v in [*m.graph.input, *m.graph.output]}
    assert shapes["encoder"] == {"tokens": ["batch", "seq"], "lengths": ["batch"], "memory": ["batch", "seq", 32],
                                 "memory_mask": ["batch", "seq"], "state": ["batch", 16]}
    assert shapes["decoder"] == {"prev": ["batch"], "state": ["batch", 16], "memory": ["batch", "seq", 32],
                                 "memory_mask": ["batch", "seq"], "logits": ["batch", 71], "new_state": ["batch", 16],
                                 "attention": ["batch", "seq"]}


def test_verify_cli_passes_and_reports_files_and_decode(tiny, runner):
    from rnnedge.cli import cli

    ckpt, _, folder = tiny
    out = runner.invoke(cli, ["verify", str(ckpt), str(folder), "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    cases = {r["case"]: r for r in report["results"]}
    assert any(c.startswith("encoder batch=33") for c in cases) and any(c.startswith("decoder step 2") for c in cases)
    assert cases["decode greedy, 240 strings"]["ok"] and cases["decode beam 3, 240 strings"]["ok"]


def test_inspect_a_folder_describes_each_file(tiny, runner, tmp_path):
    from rnnedge.cli import cli

    _, _, folder = tiny
    out = runner.invoke(cli, ["inspect", str(folder), "--json"])
    assert out.exit_code == 0, out.output
    info = json.loads(out.output)
    assert info["kind"] == "folder" and set(info["parts"]) == {"decoder.onnx", "encoder.onnx"}
    assert all(p["kind"] == "onnx" and p["inputs"] for p in info["parts"].values())
    human = runner.invoke(cli, ["inspect", str(folder)])
    assert human.exit_code == 0 and "encoder.onnx" in human.output and "decoder.onnx" in human.output
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = runner.invoke(cli, ["inspect", str(empty)])
    assert bad.exit_code == 2 and "no .onnx" in bad.output


def test_verify_fails_when_a_weight_changed(tiny, tmp_path, runner):
    import torch

    from rnnedge.checkpoint import load_checkpoint, save_checkpoint
    from rnnedge.cli import cli

    ckpt, _, folder = tiny
    changed = load_checkpoint(ckpt)
    with torch.no_grad():
        changed.decoder.out.bias[5] += 0.5  # the logit of one character
    save_checkpoint(tmp_path / "changed.safetensors", changed, task="dates", labels=list(changed.config.vocab))
    out = runner.invoke(cli, ["verify", str(tmp_path / "changed.safetensors"), str(folder), "--json"])
    assert out.exit_code == 1
    report = json.loads(out.output.splitlines()[0])
    failed = {r["case"] for r in report["results"] if not r["ok"]}
    assert any(c.startswith("decoder") for c in failed) and not any(c.startswith("encoder") for c in failed)


def test_runtime_decodes_without_torch_like_the_checkpoint(tiny):
    _, model, folder = tiny
    code = f"""
import json, sys
sys.modules['torch'] = None
from rnnedge.runtime import Seq2SeqSession
s = Seq2SeqSession({str(folder)!r})
strings = {STRINGS!r}
print(json.dumps([s.generate(strings), s.generate(strings, beam=3), s.generate(strings[:3], beam=2, max_len=4)]))
assert not any(m == 'torch' or m.startswith('torch.') for m in sys.modules if sys.modules[m] is not None)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    greedy, beam3, short = json.loads(out.stdout)
    assert greedy == model.generate(STRINGS) and beam3 == model.generate(STRINGS, beam=3)
    assert short == model.generate(STRINGS[:3], beam=2, max_len=4) and all(len(s) <= 4 for s in short)


@pytest.mark.parametrize("bad, kwargs, message", [
    (["", "5 May 2001"], {}, "string 0 is empty"), (["5 Mai 2001 ✓"], {}, "'✓' at position 11"), (["9" * 60], {}, "at most 40"),
    ("5 May 2001", {}, "list of strings"), (["5 May 2001"], {"beam": 0}, "beam"), (["5 May 2001"], {"max_len": 0}, "max_len"),
    (["5 May 2001"], {"batch_size": 0}, "batch_size"), (["5 May 2001", "1 May 2001", "x%"], {"batch_size": 2}, "string 2 ('x%')"),
])
def test_runtime_refuses_bad_input_with_one_line(tiny, bad, kwargs, message):
    import re

    from rnnedge.runtime import Seq2SeqSession

    with pytest.raises(BadInputError, match=re.escape(message)):
        Seq2SeqSession(tiny[2]).generate(bad, **kwargs)


def test_runtime_refuses_folders_that_are_not_seq2seq(tmp_path, seed_onnx):
    import shutil

    from rnnedge.runtime import Seq2SeqSession

    with pytest.raises(BadInputError, match="not a folder"):
        Seq2SeqSession(tmp_path / "missing")
    with pytest.raises(BadInputError, match="encoder.onnx: missing"):
        Seq2SeqSession(tmp_path)
    for name in ("encoder.onnx", "decoder.onnx"):
        shutil.copy(seed_onnx, tmp_path / name)
    with pytest.raises(BadInputError, match="rnnedge.seq2seq metadata"):
        Seq2SeqSession(tmp_path)


def test_evaluate_checkpoint_and_folder_agree(tiny, runner):
    from rnnedge.cli import cli

    ckpt, _, folder = tiny
    scores = []
    for target in (ckpt, folder):
        out = runner.invoke(cli, ["evaluate", str(target), "--split", "val", "--json"])
        assert out.exit_code == 0, out.output
        data = json.loads(out.output)
        assert data["task"] == "dates" and data["metric"] == "exact_match"
        scores.append(data["metrics"])
    assert scores[0] == scores[1] and scores[0]["n"] == 1000 and 0 <= scores[0]["char_accuracy"] <= 1


def test_quantize_folder_writes_int8_files_that_decode_as_well_as_the_float_folder(tiny, tmp_path, runner):
    from drift_bounds import int8_count

    from rnnedge.cli import cli
    from rnnedge.runtime import Seq2SeqSession

    _, model, folder = tiny
    out = runner.invoke(cli, ["quantize", str(folder), "-o", str(tmp_path / "int8"), "--eval", "dates", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert set(data["files"]) == {"encoder.onnx", "decoder.onnx"} and data["output_bytes"] < data["input_bytes"]
    assert all(int8_count(tmp_path / "int8" / name) > 0 for name in data["files"])  # int8 where int8 is claimed
    cmp = data["comparison"]
    assert cmp["task"] == "dates" and cmp["float_metrics"]["n"] == cmp["quant_metrics"]["n"] == 2000 and cmp["quant_ms"] > 0
    fl, q = cmp["float_metrics"], cmp["quant_metrics"]
    # the tiny model is near chance (char accuracy ~0.1): the metrics must agree, and the decoded strings must too
    assert abs(q["char_accuracy"] - fl["char_accuracy"]) <= 0.05 and abs(q["exact_match"] - fl["exact_match"]) <= 0.05, (fl, q)
    session = Seq2SeqSession(tmp_path / "int8")
    assert session.meta["vocab"] == list(model.config.vocab)
    got, want = session.generate(STRINGS, beam=3), Seq2SeqSession(folder).generate(STRINGS, beam=3)
    assert len(got) == len(STRINGS) and sum(a == b for a, b in zip(got, want)) >= len(STRINGS) // 2, (got, want)


def test_export_refuses_other_targets_and_file_names(tiny, tmp_path):
    from rnnedge.exporting.api import export_checkpoint

    ckpt = tiny[0]
    with pytest.raises(BadInputError, match="dynamic only"):
        export_checkpoint(ckpt, tmp_path / "d", target="stream")
    with pytest.raises(BadInputError, match="exports to a folder"):
        export_checkpoint(ckpt, tmp_path / "d.onnx")


def test_session_step_is_the_exported_decoder(tiny):
    """Seq2SeqSession's encode/step give what the torch parts give (the app-level API below generate)."""
    import torch

    from rnnedge.runtime import Seq2SeqSession

    _, model, folder = tiny
    session = Seq2SeqSession(folder)
    tokens, lengths = session.codec.encode(STRINGS)
    memory, mask, state = session.encode(tokens, lengths)
    with torch.no_grad():
        ref = model.encoder(torch.from_numpy(tokens), torch.from_numpy(lengths))
    np.testing.assert_allclose(memory, ref[0].numpy(), atol=1e-5)
    assert (mask == ref[1].numpy()).all()
    logits, new_state, attention = session.step(np.full(len(STRINGS), 1, np.int64), state, memory, mask)
    assert logits.shape == (len(STRINGS), 71) and np.allclose(attention.sum(axis=1), 1, atol=1e-5)
    assert (attention[~mask] < 1e-6).all()  # padded positions get no attention


@pytest.mark.slow
@pytest.mark.parametrize("cell, attention", [("lstm", "bahdanau"), ("rnn", "luong"), ("gru", "bahdanau"), ("lstm", "luong")])
def test_every_decoder_cell_and_attention_exports_and_verifies(cell, attention, tmp_path):
    """The other decoder cells and scores (the default run covers gru + luong): untrained weights, parity only."""
    import torch

    from rnnedge.families.seq2seq.dates import DatesTask
    from rnnedge.families.seq2seq.export import export_seq2seq
    from rnnedge.families.seq2seq.model import Seq2SeqModel
    from rnnedge.families.seq2seq.verify import verify_folder

    torch.manual_seed(0)
    model = Seq2SeqModel(DatesTask().default_config(cell, hidden=12, attention=attention)).eval()
    result = export_seq2seq(model, tmp_path / "d")
    assert result.parity
    report = verify_folder(model, tmp_path / "d", n_strings=200)
    assert report, report.summary()
