"""Stream text out of a character (or word) language model with onnxruntime only: no torch.

    rnnedge train --task charlm -o charlm.safetensors
    rnnedge export charlm.safetensors --target stream -o charlm-stream.onnx
    python samples/apps/generate.py charlm-stream.onnx --prompt "def " --steps 200

The model is a token LM exported with `--target stream` (inputs tokens, lengths, h0 (, c0); outputs
logits (B, T, V), hn (, cn)). Its vocabulary comes from the file's `rnnedge.labels` metadata. The
prompt is fed once; then each sampled token is fed back alone, with the recurrent state carried
by `rnnedge.runtime.StreamingSession`, so every step costs one step of the recurrence.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from rnnedge.errors import RnnEdgeError
from rnnedge.runtime import StreamingSession


def sample(logits: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
    """One token id from logits (V,): argmax at temperature 0, else softmax(logits / temperature)."""
    if temperature <= 0:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / temperature
    p = np.exp(z - z.max())
    return int(rng.choice(len(p), p=p / p.sum()))


class Vocabulary:
    """Token ids <-> text from the model's labels: characters joined as is, words with spaces."""

    def __init__(self, labels: list[str]):
        self.labels = labels
        self.index = {t: i for i, t in enumerate(labels)}
        self.chars = all(len(t) == 1 for t in labels if not (t.startswith("<") and t.endswith(">")))
        self.unk = self.index.get("<unk>", 0)

    def encode(self, text: str) -> np.ndarray:
        pieces = list(text) if self.chars else text.split()
        return np.array([self.index.get(p, self.unk) for p in pieces], dtype=np.int64)

    def decode(self, ids) -> str:
        if self.chars:  # one character per token; <unk> and other specials print as U+FFFD
            return "".join(t if len(t) == 1 else "\ufffd" for t in (self.labels[i] for i in ids))
        return " ".join(self.labels[i] for i in ids)


def generate(stream: StreamingSession, vocab: Vocabulary, prompt: str, steps: int, temperature: float, seed: int) -> str:
    rng = np.random.default_rng(seed)
    ids = vocab.encode(prompt)
    if ids.size == 0:
        ids = np.array([vocab.unk], dtype=np.int64)
    logits = stream.feed(ids)[-1]  # (T, V) -> the last step's (V,)
    out = []
    for _ in range(steps):
        token = sample(logits, temperature, rng)
        out.append(token)
        logits = stream.feed(np.array([token], dtype=np.int64))[-1]
    return vocab.decode(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a token LM exported with --target stream (.onnx or .ort)")
    parser.add_argument("--prompt", default="def ", help="text to start from")
    parser.add_argument("--steps", type=int, default=200, help="tokens to generate")
    parser.add_argument("--temperature", type=float, default=0.8, help="0 = always the most likely token")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--provider", default="auto", help="auto, cpu, cuda, ...")
    args = parser.parse_args(argv)
    try:
        stream = StreamingSession(args.model, providers=args.provider)
        labels = stream.session.labels
        if not stream.session.is_tokens or not labels:
            raise RnnEdgeError(f"{args.model}: not a token model with a vocabulary (rnnedge.labels metadata)")
        vocab = Vocabulary(labels)
        text = generate(stream, vocab, args.prompt, args.steps, args.temperature, args.seed)
    except RnnEdgeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(args.prompt + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
