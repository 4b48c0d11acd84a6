"""How small a single-weight change does `rnnedge verify` catch with its default tolerance?

Trains the `seed` task (default GRU) for a few epochs, exports it (native lowering), then for a
sample of single weights of the recurrent layer (input, recurrent and bias elements) scales that
one element by (1 + eps), for eps from 1e-1 down to 1e-5, and records the smallest eps that makes
`rnnedge.verify` fail. Prints the distribution over the sampled weights.

    python samples/parity_sensitivity.py [--cell gru] [--weights 30]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

import rnnedge
from rnnedge.checkpoint import save_checkpoint
from rnnedge.tasks import get_task
from rnnedge.train import train

EPS = [1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cell", default="gru")
    parser.add_argument("--weights", type=int, default=30)
    args = parser.parse_args()
    task = get_task("seed")
    model = train(task.default_config(args.cell), task, epochs=5, seed=0, progress=False).model
    tmp = Path(tempfile.mkdtemp())
    ckpt = tmp / "seed.safetensors"
    save_checkpoint(ckpt, model, task="seed")
    good = tmp / "good.onnx"
    rnnedge.export_checkpoint(ckpt, good, lowering="native", verify=False)
    base = onnx.load(str(good))
    node = next(n for n in base.graph.node if n.op_type in ("RNN", "GRU", "LSTM"))
    rng = np.random.default_rng(0)
    smallest = []
    for k in range(args.weights):
        which = node.input[[1, 2, 3][k % 3]]  # W, R, B in turn
        init = next(i for i in base.graph.initializer if i.name == which)
        array = numpy_helper.to_array(init)
        index = tuple(int(rng.integers(0, s)) for s in array.shape)
        found = None
        for eps in EPS:
            broken = onnx.ModelProto()
            broken.CopyFrom(base)
            target = next(i for i in broken.graph.initializer if i.name == which)
            changed = array.copy()
            changed[index] *= 1 + eps
            target.CopyFrom(numpy_helper.from_array(changed, which))
            path = tmp / "broken.onnx"
            onnx.save(broken, str(path))
            if not rnnedge.verify(ckpt, path):
                found = eps
            else:
                break
        smallest.append(found)
        print(f"{which:>24} {str(index):>12} |w|={abs(array[index]):.3f}  smallest caught: {found}")
    caught = [e for e in smallest if e is not None]
    print(f"\n{args.cell}: {len(caught)}/{len(smallest)} single weights caught at a 10% change or less; "
          f"median smallest change caught {np.median(caught):.0e}, best {min(caught):.0e}")


if __name__ == "__main__":
    main()
