"""Classify a sequence while it arrives, chunk by chunk, with onnxruntime only: no torch.

    rnnedge train --task digits -o digits.safetensors
    rnnedge export digits.safetensors --target stream -o digits-stream.onnx
    python -c "import numpy as np, rnnedge; np.save('one_digit.npy', rnnedge.get_task('digits').split('test').inputs[0])"
    python samples/apps/stream_classify.py digits-stream.onnx --input one_digit.npy --chunk 2

`--input` is a .npy of one sequence (T, F) (or (T,) token ids), or a (1, T, F) batch of one.
After each chunk the app prints the class the model would answer if the sequence ended there;
the recurrent state is carried by `rnnedge.runtime.StreamingSession`, so the last line equals a
single call on the whole sequence.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from rnnedge.errors import RnnEdgeError
from rnnedge.runtime import StreamingSession


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a classifier exported with --target stream")
    parser.add_argument("--input", required=True, help=".npy of one sequence (T, F) or (T,)")
    parser.add_argument("--chunk", type=int, default=1, help="steps per call")
    parser.add_argument("--provider", default="auto")
    args = parser.parse_args(argv)
    try:
        stream = StreamingSession(args.model, providers=args.provider)
        try:
            seq = np.load(args.input, allow_pickle=False)  # never unpickle
        except (OSError, ValueError) as err:
            raise RnnEdgeError(f"{args.input}: not a readable .npy file ({err})") from None
        rank = 1 if stream.session.is_tokens else 2
        seq = seq[0] if seq.ndim == rank + 1 and seq.shape[0] == 1 else seq
        labels = stream.session.labels
        for start in range(0, len(seq), max(1, args.chunk)):
            logits = stream.feed(seq[start: start + args.chunk])  # (C,) after this chunk's last step
            p = softmax(logits.astype(np.float64))
            k = int(p.argmax())
            name = labels[k] if labels and len(labels) == len(p) else str(k)
            print(f"steps {min(start + args.chunk, len(seq)):4d}: {name} (p={p[k]:.3f})")
    except RnnEdgeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
