"""Seq2seq dates: accuracy and latency of the checkpoint (torch) vs its exported folder (fp32) vs the int8 folder.

    rnnedge train --task dates -o d.safetensors
    rnnedge export d.safetensors -o dates
    rnnedge quantize dates -o dates-int8
    python samples/bench_seq2seq.py d.safetensors dates dates-int8 [--threads 1] [--independent 1000]
    python samples/bench_seq2seq.py --torch-free dates dates-int8 [--independent 1000]   # runtime only, torch blocked

Prints, from one run: exact match and character accuracy on the test split (greedy and beam 3) for each,
how often each decodes exactly like the checkpoint, and the latency per decoded string at batch 1 and
batch 64 (median of interleaved repeats, one thread each) with ratios against torch. `--independent N`
adds N dates written by Python's own `strftime` (C locale; not rnnedge's writer) in the issue's formats.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time

FORMATS = ("%d %b %Y", "%d %B %Y", "%B %d, %Y", "%b %d, %Y", "%m/%d/%Y", "%d.%m.%Y", "%Y/%m/%d", "%A, %B %d, %Y", "%a %d %b %Y")


def independent_dates(n: int, seed: int = 12345) -> list[tuple[str, str]]:
    """(source, ISO) written by datetime.strftime; month-name formats may drop the day's zero; some all lower case."""
    import locale
    import random

    locale.setlocale(locale.LC_TIME, "C")
    rng = random.Random(seed)
    first, last = dt.date(1900, 1, 1).toordinal(), dt.date(2099, 12, 31).toordinal()
    out = []
    for _ in range(n):
        day, fmt = dt.date.fromordinal(rng.randint(first, last)), rng.choice(FORMATS)
        if ("%b" in fmt or "%B" in fmt) and rng.random() < 0.5:
            fmt = fmt.replace("%d", str(day.day))
        text = day.strftime(fmt)
        out.append((text.lower() if rng.random() < 0.3 else text, day.isoformat()))
    return out


def score(pred: list[str], want: list[str]) -> dict:
    exact = sum(p == w for p, w in zip(pred, want)) / len(want)
    chars = sum(sum(a == b for a, b in zip(p, w)) for p, w in zip(pred, want)) / sum(len(w) for w in want)
    return {"exact_match": round(exact, 4), "char_accuracy": round(chars, 4)}


def agree(a: list[str], b: list[str]) -> float:
    return round(sum(x == y for x, y in zip(a, b)) / len(a), 4)


def ms_per_string(generators: dict, strings: list[str], batch: int, repeats: int) -> dict:
    """Median ms per decoded string of each generator, batches of `batch`, repeats interleaved."""
    times: dict = {name: [] for name in generators}
    chunks = [strings[i : i + batch] for i in range(0, len(strings), batch)]
    for _ in range(repeats):
        for name, gen in generators.items():
            start = time.perf_counter()
            for chunk in chunks:
                gen(chunk)
            times[name].append(1000 * (time.perf_counter() - start) / len(strings))
    return {name: round(statistics.median(t), 3) for name, t in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="+", help="CHECKPOINT FOLDER [INT8_FOLDER], or with --torch-free: FOLDER [INT8_FOLDER]")
    ap.add_argument("--torch-free", action="store_true", help="block torch (sys.modules['torch'] = None): runtime only")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--independent", type=int, default=1000, help="dates written by strftime (0: none)")
    ap.add_argument("--latency-strings", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    if args.torch_free:
        sys.modules["torch"] = None  # any import of torch now fails
    from rnnedge.families.seq2seq.dates import DatesTask
    from rnnedge.runtime import Seq2SeqSession

    paths = list(args.paths)
    gens: dict = {}
    if not args.torch_free:
        import torch

        from rnnedge.checkpoint import load_checkpoint

        torch.set_num_threads(args.threads)
        model = load_checkpoint(paths.pop(0))
        gens["torch"] = lambda s, beam=1: model.generate(s, beam=beam)
    for name, folder in zip(("onnx fp32", "onnx int8"), paths):
        session = Seq2SeqSession(folder, threads=args.threads)
        gens[name] = lambda s, beam=1, session=session: session.generate(s, beam=beam)
    sets = {"test split": DatesTask().pairs["test"]}
    if args.independent:
        sets["strftime dates"] = independent_dates(args.independent)
    report: dict = {"accuracy": {}, "agreement": {}, "ms_per_string": {}, "threads": args.threads, "torch_free": args.torch_free}
    for set_name, pairs in sets.items():
        sources, want = [p[0] for p in pairs], [p[1] for p in pairs]
        for beam in (1, 3):
            outs = {}
            for name, gen in gens.items():
                outs[name] = [o for i in range(0, len(sources), 256) for o in gen(sources[i : i + 256], beam=beam)]
                report["accuracy"][f"{set_name}, {name}, beam {beam}"] = score(outs[name], want)
            first = next(iter(outs))
            for name in list(outs)[1:]:
                report["agreement"][f"{set_name}, {name} == {first}, beam {beam}"] = agree(outs[name], outs[first])
    strings = [p[0] for p in sets["test split"][: args.latency_strings]]
    for batch in (1, 64):
        for beam in (1, 3):
            ms = ms_per_string({n: (lambda s, g=g, beam=beam: g(s, beam=beam)) for n, g in gens.items()}, strings, batch, args.repeats)
            base = ms.get("torch")
            report["ms_per_string"][f"batch {batch}, beam {beam}"] = {
                **ms, **({f"{n} / torch": round(v / base, 3) for n, v in ms.items() if n != "torch"} if base else {})}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
