"""How a SequenceModel checkpoint exports: the contract's wrapper (rnnedge.families.sequence.contract) through
rnnedge.exporting.api.export, with the checkpoint's config, task and labels in the file's metadata."""

from __future__ import annotations

import json


def export_sequence_model(model, path, *, target: str = "dynamic", lowering: str = "auto", chunk: int = 16, batch: int = 1,
                          opset: int = 18, verify: bool = True, lengths: bool | None = None, fix_dims: dict | None = None):
    """One ONNX file for a loaded SequenceModel (see rnnedge.exporting.api.export_checkpoint for the options)."""
    from rnnedge.exporting.api import export
    from rnnedge.families.sequence.contract import contract, task_has_lengths

    meta = getattr(model, "rnnedge_meta", {}) or {}
    with_lengths = task_has_lengths(meta.get("task")) if lengths is None else bool(lengths)
    c = contract(model, target, chunk=chunk, batch=batch, lengths=with_lengths)
    metadata = {"rnnedge.config": json.dumps(model.config.to_dict(), sort_keys=True)}
    if meta.get("task"):
        metadata["rnnedge.task"] = meta["task"]
    if meta.get("labels"):
        metadata["rnnedge.labels"] = json.dumps(meta["labels"])
    if target == "mobile":
        metadata["rnnedge.chunk"] = str(chunk)
    return export(c.module, c.examples, path, dynamic_axes=c.dynamic_axes, target=target, lowering=lowering,
                  input_names=c.input_names, output_names=c.output_names, opset=opset, verify=verify, metadata=metadata,
                  fix_dims=fix_dims)
