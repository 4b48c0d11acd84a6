"""The two parts of an exported encoder-decoder: their declared I/O (names, dtypes, roles) and loading the model they
are exported from. Shared by export (which writes them) and verify (which checks them)."""

from __future__ import annotations

import os

from rnnedge.errors import BadInputError
from rnnedge.spec import IOSpec, TensorSpec

ENCODER_IO = (["tokens", "lengths"], ["memory", "memory_mask", "state"])
DECODER_IO = (["prev", "state", "memory", "memory_mask"], ["logits", "new_state", "attention"])



def part_specs(config) -> tuple[IOSpec, IOSpec]:
    """The declared I/O of both files (the decoder's state and bool mask need roles export cannot guess)."""
    V, M, S = config.vocab_size, config.memory_dim, config.state_dim
    enc = IOSpec(inputs=[TensorSpec("tokens", "int64", ["batch", "seq"], "tokens", V), TensorSpec("lengths", "int64", ["batch"], "lengths")],
                 outputs=list(ENCODER_IO[1]), axes=["batch", "seq"])
    dec = IOSpec(inputs=[TensorSpec("prev", "int64", ["batch"], "tokens", V), TensorSpec("state", "float32", ["batch", S], "state"),
                         TensorSpec("memory", "float32", ["batch", "seq", M], "features"),
                         TensorSpec("memory_mask", "bool", ["batch", "seq"], "features")],
                 outputs=list(DECODER_IO[1]), axes=["batch", "seq"])
    return enc, dec


def load_model(model_or_ckpt):
    """A Seq2SeqModel in eval mode, from itself or a checkpoint path (anything else: BadInputError)."""
    if isinstance(model_or_ckpt, (str, os.PathLike)):
        from rnnedge.checkpoint import load_checkpoint

        model = load_checkpoint(model_or_ckpt)
    else:
        model = model_or_ckpt
    if getattr(getattr(model, "config", None), "kind", None) != "seq2seq":
        what = model_or_ckpt if isinstance(model_or_ckpt, (str, os.PathLike)) else type(model_or_ckpt).__name__
        raise BadInputError(f"{what}: not a seq2seq checkpoint or Seq2SeqModel (an encoder-decoder folder needs one)")
    return model.eval()
