"""Is a 1% change of a single weight of a trained model caught by `rnnedge verify`'s default (noise) tolerance?

Trains the `seed` task for each cell (RNN, GRU, LSTM), uni- and bidirectional, 1 and 2 layers, exports it
(native lowering), then for every weight tensor of the file (recurrent W/R/B of every layer, and the head)
scales its largest-magnitude element and `--weights` random elements by 1.01, one at a time, and runs
`rnnedge.verify` on the changed file. Prints, per model, how many single-weight changes were caught and
the smallest error seen as a multiple of the noise (the bound is NOISE_K x noise). `--eps` also finds, for a
few random weights of one GRU, the smallest relative change that is caught.

    python samples/parity_sensitivity.py [--cells rnn,gru,lstm] [--weights 2] [--epochs 2] [--eps]
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

import rnnedge
from rnnedge.checkpoint import save_checkpoint
from rnnedge.parity import NOISE_K
from rnnedge.tasks import get_task
from rnnedge.training.loop import train

EPS = [1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5]


def trained_file(tmp: Path, cell: str, bidirectional: bool, layers: int, epochs: int) -> tuple[Path, Path]:
    task = get_task("seed")
    model = train(task.default_config(cell, layers=layers, bidirectional=bidirectional), task, epochs=epochs, seed=0, progress=False).model
    ckpt = tmp / f"{cell}{int(bidirectional)}{layers}.safetensors"
    save_checkpoint(ckpt, model, task="seed")
    good = tmp / f"{cell}{int(bidirectional)}{layers}.onnx"
    rnnedge.export_checkpoint(ckpt, good, lowering="native", verify=False)
    return ckpt, good


def changed(base: onnx.ModelProto, name: str, index: tuple, factor: float, path: Path) -> Path:
    model = onnx.ModelProto()
    model.CopyFrom(base)
    init = next(i for i in model.graph.initializer if i.name == name)
    array = numpy_helper.to_array(init).copy()
    array[index] *= factor
    init.CopyFrom(numpy_helper.from_array(array, name))
    onnx.save(model, str(path))
    return path


def weight_sites(base: onnx.ModelProto, per_tensor: int, rng) -> list[tuple[str, tuple, bool]]:
    """(initializer, element, is the tensor's largest) for every float weight tensor with more than 2 elements."""
    sites = []
    for init in base.graph.initializer:
        array = numpy_helper.to_array(init)
        if array.dtype != np.float32 or array.size <= 2:
            continue
        sites.append((init.name, tuple(int(i) for i in np.unravel_index(int(np.argmax(np.abs(array))), array.shape)), True))
        sites += [(init.name, tuple(int(rng.integers(0, s)) for s in array.shape), False) for _ in range(per_tensor)]
    return sites


def one_percent(tmp: Path, cell: str, bidirectional: bool, layers: int, args) -> None:
    ckpt, good = trained_file(tmp, cell, bidirectional, layers, args.epochs)
    base = onnx.load(str(good))
    rng = np.random.default_rng(0)
    caught, largest, ratios, missed = 0, [0, 0], [], []
    sites = weight_sites(base, args.weights, rng)
    for name, index, is_largest in sites:
        report = rnnedge.verify(ckpt, changed(base, name, index, 1.01, tmp / "broken.onnx"), providers=["CPUExecutionProvider"])
        hit = not report
        caught += hit
        largest[0] += hit and is_largest
        largest[1] += is_largest
        ratios.append(report.worst_ratio() or 0.0)
        if not hit:
            w = numpy_helper.to_array(next(i for i in base.graph.initializer if i.name == name))[index]
            missed.append(f"{name}{list(index)} (|w| {abs(w):.2g}, {ratios[-1]:.1f}x noise)")
    print(f"{cell:4} {'bi ' if bidirectional else 'uni'} {layers}L: 1% of one weight caught {caught}/{len(sites)} "
          f"(largest of each tensor {largest[0]}/{largest[1]}); error/noise median {np.median(ratios):.0f}, "
          f"min {min(ratios):.1f} (bound {NOISE_K:g})" + (f"; missed: {', '.join(missed[:4])}" if missed else ""), flush=True)


def smallest_eps(tmp: Path, args) -> None:
    ckpt, good = trained_file(tmp, "gru", False, 1, args.epochs)
    base = onnx.load(str(good))
    rng = np.random.default_rng(1)
    found = []
    for name, index, _ in weight_sites(base, 1, rng):
        smallest = None
        for eps in EPS:
            if rnnedge.verify(ckpt, changed(base, name, index, 1 + eps, tmp / "broken.onnx"), providers=["CPUExecutionProvider"]):
                break
            smallest = eps
        found.append(smallest)
        print(f"  {name:>22} {str(list(index)):>10}: smallest change caught {smallest}", flush=True)
    hits = [e for e in found if e is not None]
    print(f"gru: {len(hits)}/{len(found)} weights caught at <= 10%; median smallest change caught {np.median(hits):.0e}, best {min(hits):.0e}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cells", default="rnn,gru,lstm")
    parser.add_argument("--weights", type=int, default=2, help="random elements per weight tensor (plus its largest)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--eps", action="store_true", help="also the smallest change caught, per weight, on one GRU")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    for cell, bidirectional, layers in itertools.product(args.cells.split(","), [False, True], [1, 2]):
        one_percent(tmp, cell, bidirectional, layers, args)
    if args.eps:
        smallest_eps(tmp, args)


if __name__ == "__main__":
    main()
