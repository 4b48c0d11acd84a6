"""A seq2seq checkpoint -> a folder: DIR/encoder.onnx + DIR/decoder.onnx, both through rnnedge.exporting.api.

    encoder.onnx  tokens int64 (batch, seq), lengths int64 (batch,)
                  -> memory float32 (batch, seq, 2H), memory_mask bool (batch, seq), state float32 (batch, S)
    decoder.onnx  prev int64 (batch,), state (batch, S), memory (batch, seq, 2H), memory_mask (batch, seq)
                  -> logits float32 (batch, V), new_state (batch, S), attention float32 (batch, seq)

The encoder's bidirectional GRU takes rnnedge's custom-op path (symbolic batch and seq, the
standard ONNX GRU operator, lengths honoured); the decoder is a step module (one call per output
token). Both files carry rnnedge.version, rnnedge.task, rnnedge.config, rnnedge.labels (the
vocabulary), rnnedge.spec, rnnedge.part (encoder | decoder) and `rnnedge.seq2seq`: JSON with vocab,
pad/bos/eos/unk ids, max_source_len and max_target_len, which is all rnnedge.runtime.Seq2SeqSession
(and the web page) need to encode strings and decode ids.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from rnnedge.errors import BadInputError
from rnnedge.families.seq2seq.config import SPECIAL_IDS
from rnnedge.families.seq2seq.parts import DECODER_IO, ENCODER_IO, load_model, part_specs
from rnnedge.runtime.seq2seq import FILES, META_KEY

log = logging.getLogger(__name__)

@dataclass
class Seq2SeqExportResult:
    folder: Path
    files: dict  # part -> ExportResult of encoder.onnx / decoder.onnx
    seconds: float
    parity: object = None  # Seq2SeqReport of the quick check (per-file numbers + a short greedy decode), or None

    @property
    def path(self) -> Path:
        return self.folder

    def to_dict(self) -> dict:
        return {"path": str(self.folder), "kind": "seq2seq", "files": {k: str(r.path) for k, r in self.files.items()},
                "nodes": {k: r.nodes for k, r in self.files.items()}, "size_bytes": {k: r.size_bytes for k, r in self.files.items()},
                "seconds": round(self.seconds, 3), "parity": self.parity.to_dict() if self.parity is not None else None}


def seq2seq_meta(config) -> dict:
    """The `rnnedge.seq2seq` metadata dict of a Seq2SeqConfig."""
    return {"vocab": list(config.vocab), **SPECIAL_IDS, "max_source_len": config.max_source_len,
            "max_target_len": config.max_target_len, "cell": config.cell, "attention": config.attention}


def _examples(model):
    """Example inputs of both parts: batch 2, seq 7, one row shorter (export never sees the check shapes)."""
    import torch

    tokens = torch.full((2, 7), 10, dtype=torch.long)  # (2, 7) a real character id
    lengths = torch.tensor([7, 5])
    with torch.no_grad():
        memory, mask, state = model.encoder(tokens, lengths)
    prev = torch.full((2,), SPECIAL_IDS["bos"], dtype=torch.long)
    return (tokens, lengths), (prev, state, memory, mask)


def export_seq2seq(model_or_ckpt, folder: str | os.PathLike, *, opset: int = 18, verify: bool = True,
                   task: str | None = None, target: str = "dynamic") -> Seq2SeqExportResult:
    """Write `folder`/encoder.onnx and `folder`/decoder.onnx for a Seq2SeqModel or a seq2seq checkpoint."""
    from rnnedge.exporting.api import export

    if target != "dynamic":
        raise BadInputError(f"a seq2seq model exports with --target dynamic only (encoder + decoder step), not {target}")
    start = time.perf_counter()
    model = load_model(model_or_ckpt)
    folder = _prepare_folder(Path(folder))
    config = model.config
    task = task or (getattr(model, "rnnedge_meta", None) or {}).get("task") or "dates"
    common = {"rnnedge.config": json.dumps(config.to_dict(), sort_keys=True), "rnnedge.task": task,
              "rnnedge.labels": json.dumps(list(config.vocab)), META_KEY: json.dumps(seq2seq_meta(config))}
    enc_spec, dec_spec = part_specs(config)
    enc_ex, dec_ex = _examples(model)
    results = {}
    for part, module, examples, (ins, outs), spec, axes in (
        ("encoder", model.encoder, enc_ex, ENCODER_IO, enc_spec, {"tokens": {0: "batch", 1: "seq"}, "lengths": {0: "batch"}}),
        ("decoder", model.decoder, dec_ex, DECODER_IO, dec_spec,
         {"prev": {0: "batch"}, "state": {0: "batch"}, "memory": {0: "batch", 1: "seq"}, "memory_mask": {0: "batch", 1: "seq"}}),
    ):
        meta = {**common, "rnnedge.part": part, "rnnedge.spec": spec.to_json()}
        results[part] = export(module, examples, folder / f"{part}.onnx", dynamic_axes=axes, input_names=ins, output_names=outs,
                               opset=opset, verify=False, metadata=meta)
    report = None
    if verify:
        from rnnedge.families.seq2seq.verify import quick_check

        report = quick_check(model, folder)
    return Seq2SeqExportResult(folder, results, time.perf_counter() - start, report)


def _prepare_folder(folder: Path) -> Path:
    """`folder`, created if missing (its parent must exist); a file there is refused."""
    if folder.suffix.lower() in (".onnx", ".ort") and not folder.is_dir():
        raise BadInputError(f"{folder}: a sequence-to-sequence model exports to a folder ({' + '.join(FILES)}); pass -o DIR")
    if folder.exists() and not folder.is_dir():
        raise BadInputError(f"{folder}: exists and is not a folder")
    if not folder.parent.exists():
        raise BadInputError(f"{folder.parent}: folder does not exist")
    folder.mkdir(exist_ok=True)
    return folder
