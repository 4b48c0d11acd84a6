"""Parity of an exported seq2seq folder with its torch model: each file numerically, then the whole decode.

    report = verify_folder("d.safetensors", "dates/")   # a rnnedge.parity.ParityReport
    rnnedge verify d.safetensors dates/                 # the same, exit 1 on any failure

1. Numbers, per file, at shapes export never saw: encoder.onnx on (batch, seq) = (1, 1), (3, 13),
   (9, max_source_len) and (33, 6) with ragged lengths; decoder.onnx on the torch encoder's outputs
   for those, for two chained steps from random previous tokens. Judged by rnnedge.parity's policy
   (torch float64 as the reference, torch's own float32 noise as the yardstick) or fixed atol/rtol.
2. Tokens: >= 200 strings (the dates test split, or random strings of the vocabulary) in batches of
   mixed sizes and lengths, decoded greedy and with beam 3 by the checkpoint's `generate` and by
   rnnedge.runtime.Seq2SeqSession on the folder; every string must give the same ids, token for token.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from rnnedge.families.seq2seq.parts import load_model, part_specs
from rnnedge.parity import CaseResult, OutputDiff, ParityReport, TorchRunner, compare
from rnnedge.runtime.providers import canonical_entry
from rnnedge.runtime.seq2seq import Seq2SeqSession, seq2seq_files

log = logging.getLogger(__name__)

DECODE_BATCHES = (1, 2, 5, 8, 16, 24, 32, 48, 64, 20)  # 220 strings in batches of mixed size (each mixes lengths)
BEAMS = (1, 3)


def encoder_feeds(config, batch: int, seq: int, seed: int) -> dict:
    """Random character ids (B, T) and ragged lengths (B,) with one full row."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(4, config.vocab_size, size=(batch, seq), dtype=np.int64)
    lengths = rng.integers(1, seq + 1, size=batch, dtype=np.int64)
    lengths[0] = seq
    return {"tokens": tokens, "lengths": lengths}


def _shapes(config, extra: int, seed: int) -> list[tuple[int, int]]:
    shapes = [(1, 1), (3, 13), (9, config.max_source_len), (33, 6)]
    rng = np.random.default_rng(seed)
    shapes += [(int(rng.integers(1, 40)), int(rng.integers(1, config.max_source_len + 1))) for _ in range(extra)]
    return shapes


def check_files(model, folder, *, atol=None, rtol=None, cases: int = 0, provider: str = "CPUExecutionProvider", options=None,
                allow_ill_conditioned: bool = False, shapes=None) -> ParityReport:
    """Per-file numerical parity of encoder.onnx and decoder.onnx (section 1 of the module docstring)."""
    from rnnedge.parity import OrtRunner

    enc_path, dec_path = seq2seq_files(folder)
    enc_spec, dec_spec = part_specs(model.config)
    report = ParityReport(atol=atol, rtol=rtol, allow_ill_conditioned=allow_ill_conditioned)
    opts = {"atol": atol, "rtol": rtol, "provider": provider, "allow_ill_conditioned": allow_ill_conditioned}
    with TorchRunner(model.encoder, enc_spec) as t_enc, TorchRunner(model.decoder, dec_spec) as t_dec, \
            OrtRunner(enc_path, [(provider, options or {})]) as o_enc, OrtRunner(dec_path, [(provider, options or {})]) as o_dec:
        for i, (batch, seq) in enumerate(shapes or _shapes(model.config, cases, seed=7)):
            label = f"batch={batch} seq={seq}"
            feeds = encoder_feeds(model.config, batch, seq, seed=100 + i)
            ref = t_enc.infer(feeds)
            report.extend(compare(ref, o_enc.infer(feeds), case=f"encoder {label}", ref64=t_enc.infer_float64(feeds), **opts))
            rng = np.random.default_rng(200 + i)
            state = ref["state"].astype(np.float32)
            for step in (1, 2):
                dfeeds = {"prev": rng.integers(0, model.config.vocab_size, size=batch, dtype=np.int64), "state": state,
                          "memory": ref["memory"].astype(np.float32), "memory_mask": ref["memory_mask"].astype(bool)}
                dref = t_dec.infer(dfeeds)
                report.extend(compare(dref, o_dec.infer(dfeeds), case=f"decoder step {step} {label}",
                                      ref64=t_dec.infer_float64(dfeeds), **opts))
                state = dref["new_state"].astype(np.float32)
    return report


def default_strings(config, n: int) -> list[str]:
    """`n` sources: the dates test split for a dates model, else random strings over the vocabulary's characters."""
    from rnnedge.families.seq2seq.dates import VOCAB

    if list(config.vocab) == list(VOCAB):
        from rnnedge.tasks import get_task

        pairs = get_task("dates").pairs["test"]
        return [src for src, _ in pairs[:n]]
    chars = [t for t in config.vocab if len(t) == 1 and not t.isspace()]
    rng = np.random.default_rng(0)
    return ["".join(rng.choice(chars, size=int(rng.integers(1, config.max_source_len + 1)))) for _ in range(n)]


def check_decode(model, session: Seq2SeqSession, strings: list[str], beam: int, provider: str = "CPUExecutionProvider",
                 batches=DECODE_BATCHES) -> CaseResult:
    """Token-for-token equality of torch's and onnxruntime's decode of `strings`, in batches of the given sizes."""
    differ, start, sizes = [], 0, list(batches)
    while start < len(strings):
        size = sizes[0] if sizes else 64
        sizes = sizes[1:]
        chunk = strings[start : start + size]
        ref, got = model.generate_ids(chunk, beam=beam), session.generate_ids(chunk, beam=beam)
        differ += [(start + j, s, r, g) for j, (s, r, g) in enumerate(zip(chunk, ref, got)) if r != g]
        start += size
    note = ""
    if differ:
        i, s, r, g = differ[0]
        note = f"{len(differ)} of {len(strings)} strings decode differently; first: #{i} {s!r}: torch {r} vs onnxruntime {g}"
    name = "greedy" if beam == 1 else f"beam {beam}"
    diff = OutputDiff("tokens", float(len(differ)), len(differ) / max(len(strings), 1), 0.0, (), not differ, note)
    return CaseResult(f"decode {name}, {len(strings)} strings", provider, [diff])


def verify_folder(model_or_ckpt, folder: str | os.PathLike, *, atol: float | None = None, rtol: float | None = None,
                  cases: int = 0, providers=None, allow_ill_conditioned: bool = False, strings: list[str] | None = None,
                  n_strings: int = 240, beams=BEAMS) -> ParityReport:
    """Numerical parity of both files and token-for-token decode parity (greedy and beam 3) on >= 200 strings."""
    seq2seq_files(folder)  # a folder without encoder.onnx/decoder.onnx: say that first, naming it
    model = load_model(model_or_ckpt)
    strings = list(strings) if strings is not None else default_strings(model.config, n_strings)
    report = ParityReport(atol=atol, rtol=rtol, allow_ill_conditioned=allow_ill_conditioned)
    for entry in providers or ["CPUExecutionProvider"]:
        provider, options = canonical_entry(entry)
        report.extend(check_files(model, folder, atol=atol, rtol=rtol, cases=cases, provider=provider, options=options,
                                  allow_ill_conditioned=allow_ill_conditioned))
        session = Seq2SeqSession(folder, providers=[(provider, options)])
        for beam in beams:
            report.cases.append(check_decode(model, session, strings, beam, provider))
    return report


def quick_check(model, folder) -> ParityReport:
    """What export runs: both files at two unseen shapes and a greedy decode of 24 strings."""
    report = check_files(model, folder, shapes=[(3, 13), (5, 29)])
    session = Seq2SeqSession(folder)
    report.cases.append(check_decode(model, session, default_strings(model.config, 24), 1, batches=(7, 17)))
    return report
