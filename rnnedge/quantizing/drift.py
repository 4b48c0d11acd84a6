"""How far an int8/fp16 file is from its float32 source: sizes, latency, task metric, and drift per output.

    compare_models("m.onnx", "m.int8.onnx", task="digits")     # size / latency ratios and both metrics
    drift("m.onnx", "m.int8.onnx", inputs="my_inputs.npz")     # per output: max abs, p99, relative to range

Drift is what an app sees: the quantized file's outputs against the float file's on the user's own
inputs (an .npz keyed by input name), a task's test split, or the declared spec's random inputs.
Relative figures divide by each output's range (max - min of the float outputs), so a threshold means
the same for logits and for probabilities; classifier outputs also report label agreement (argmax).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rnnedge.errors import BadInputError
from rnnedge.files import load_arrays, load_onnx, model_bytes
from rnnedge.quantizing.calibration import check_user_arrays
from rnnedge.runtime.providers import open_session


def compare_models(float_path, quant_path, task: str | None = None, threads: int = 1, batch: int = 64,
                   repeats: int = 20, seq: int = 50) -> dict:
    """Size ratio, latency ratio (`threads` threads, interleaved repeats, medians) and, with `task`, both metrics."""
    import time

    def session(path):
        load_onnx(path, load_weights=False)  # the same checks and one-line errors as everywhere
        return open_session(path, providers="cpu", threads=threads, fallback=False)

    ref, quant = session(float_path), session(quant_path)
    if task is not None:
        from rnnedge.tasks import get_task

        data = get_task(task).split("test").take(slice(0, batch))
        feeds = _feeds(ref, data.inputs, data.lengths)
    else:
        from rnnedge.quantizing.inputs import find_inputs

        model = load_onnx(float_path, load_weights=False)
        meta = {p.key: p.value for p in model.metadata_props if p.key != "rnnedge.task"}
        found = find_inputs(model, meta, {"batch": batch, "seq": seq}, run=lambda f: ref.run(None, _cast_feeds(ref, f)))
        if found.timing is None:  # the spec's random inputs, or sizes inferred from the graph that run
            raise BadInputError(f"no inputs to compare on ({found.why}): pass --eval TASK or INPUTS.npz")
        feeds = found.timing
    times: dict[str, list[float]] = {"float": [], "quant": []}
    outs = {}
    for k in range(repeats + 3):  # 3 warm-up rounds, then interleaved timed repeats
        for name, sess in (("float", ref), ("quant", quant)):
            f = _cast_feeds(sess, feeds)
            start = time.perf_counter()
            outs[name] = sess.run(None, f)[0]
            if k >= 3:
                times[name].append(time.perf_counter() - start)
    f_ms, q_ms = float(np.median(times["float"])) * 1e3, float(np.median(times["quant"])) * 1e3
    f_bytes, q_bytes = model_bytes(float_path), model_bytes(quant_path)
    result = {
        "float_bytes": f_bytes, "quant_bytes": q_bytes, "size_ratio": q_bytes / f_bytes,
        "float_ms": f_ms, "quant_ms": q_ms, "latency_ratio": q_ms / f_ms, "threads": threads, "batch": batch,
        "max_abs_diff": float(np.abs(np.asarray(outs["float"], np.float64) - np.asarray(outs["quant"], np.float64)).max()),
    }
    if task is not None:
        from rnnedge.tasks import get_task

        t = get_task(task)
        result["task"] = task
        result["float_metrics"] = t.evaluate(lambda x, lengths: ref.run(None, _feeds(ref, x, lengths))[0], split="test")
        result["quant_metrics"] = t.evaluate(lambda x, lengths: quant.run(None, _feeds(quant, x, lengths))[0], split="test")
    return result


def _feeds(sess, inputs: np.ndarray, lengths: np.ndarray | None) -> dict:
    """Task arrays -> the session's feeds: `x` (float) or `tokens` (int64), and `lengths` when it takes them."""
    feeds = {}
    for i in sess.get_inputs():
        if i.name == "lengths":
            feeds[i.name] = lengths.astype(np.int64) if lengths is not None else np.full(len(inputs), inputs.shape[1], np.int64)
        elif i.name in ("x", "tokens") or len(feeds) == 0:
            feeds[i.name] = inputs
        elif i.name in ("h0", "c0") and len(i.shape) == 3 and isinstance(i.shape[0], int) and isinstance(i.shape[2], int):
            feeds[i.name] = np.zeros((i.shape[0], len(inputs), i.shape[2]), np.float32)  # a stream file: zero state, as Session does
        else:
            raise BadInputError(f"model input '{i.name}' cannot be fed from a task (expected x or tokens, and lengths)")
    return _cast_feeds(sess, feeds)


def _cast_feeds(sess, feeds: dict) -> dict:
    kinds = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64, "tensor(int32)": np.int32}
    return {i.name: np.asarray(feeds[i.name]).astype(kinds.get(i.type) or feeds[i.name].dtype) for i in sess.get_inputs() if i.name in feeds}


# -- drift ---------------------------------------------------------------------------------------

EVAL_ROWS = 256  # at most this many rows of the user's inputs or a task split are compared
EVAL_BATCH = 64  # rows per call


def drift(float_path, quant_path, *, inputs=None, task: str | None = None, batch: int = 16, seq: int = 16) -> dict:
    """Per output of `quant_path` against `float_path`: max abs, p99 abs, both relative to the float output's range.

    `inputs`: an .npz path (or a dict) keyed by the model's input names, rows first; `task`: a task's test
    split; neither: the declared spec's random inputs (batch x seq). Classifier-like outputs (a fixed last axis > 1,
    not a recurrent state) also get `label_agreement`: the fraction of rows (positions) whose argmax is the same.
    `worst_relative` is the largest relative max over outputs: what `--max-drift` is compared with.
    """
    ref = open_session(float_path, providers="cpu", fallback=False)
    quant = open_session(quant_path, providers="cpu", fallback=False)
    batches = _eval_batches(float_path, ref, inputs, task, batch, seq)
    names = [o.name for o in ref.get_outputs()]
    got: dict[str, list] = {n: [] for n in names}
    want: dict[str, list] = {n: [] for n in names}
    for feeds in batches:
        for n, a, b in zip(names, ref.run(None, _cast_feeds(ref, feeds)), quant.run(None, _cast_feeds(quant, feeds))):
            want[n].append(np.asarray(a, np.float64).reshape(-1, *np.shape(a)[1:]) if np.ndim(a) else np.asarray(a, np.float64).reshape(1))
            got[n].append(np.asarray(b, np.float64).reshape(-1, *np.shape(b)[1:]) if np.ndim(b) else np.asarray(b, np.float64).reshape(1))
    outputs = {}
    shapes = {o.name: o.shape for o in ref.get_outputs()}
    for n in names:
        a, b = np.concatenate(want[n]), np.concatenate(got[n])
        outputs[n] = output_drift(a, b, classes=_class_scores(n, shapes.get(n)))
    worst = max((o["relative_max"] for o in outputs.values()), default=0.0)
    source = "task " + task if task else ("inputs " + str(inputs) if inputs is not None and not isinstance(inputs, dict) else
                                          "given inputs" if inputs is not None else f"random inputs (batch {batch}, {seq} steps)")
    return {"source": source, "rows": int(sum(len(next(iter(f.values()))) for f in batches)), "outputs": outputs,
            "worst_relative": worst}


STATE_NAMES = ("hn", "cn", "h", "c", "state", "new_state", "hidden", "memory")


def _class_scores(name: str, shape) -> bool:
    """Whether an output looks like class scores: a last axis of fixed size > 1 (a symbolic one is time: a per-frame
    probability over `seq` has no argmax to agree on) and not a recurrent state."""
    last = shape[-1] if shape else None
    return isinstance(last, int) and last > 1 and name.lower() not in STATE_NAMES and not name.lower().startswith(("hn", "cn", "state"))


def output_drift(ref: np.ndarray, got: np.ndarray, classes: bool = True) -> dict:
    """Drift of one output (float arrays of one shape, rows first); see `drift`. `classes`: report label agreement."""
    if ref.shape != got.shape:
        raise BadInputError(f"the quantized model's output has shape {list(got.shape)}, the float model's {list(ref.shape)}")
    diff = np.abs(got - ref).ravel()
    span = float(ref.max() - ref.min()) if ref.size else 0.0
    out = {"max_abs": float(diff.max()) if diff.size else 0.0, "p99_abs": float(np.percentile(diff, 99)) if diff.size else 0.0,
           "range": span}
    out["relative_max"] = out["max_abs"] / span if span > 0 else out["max_abs"]
    out["relative_p99"] = out["p99_abs"] / span if span > 0 else out["p99_abs"]
    if classes and ref.ndim >= 2 and ref.shape[-1] > 1:
        out["label_agreement"] = float(np.mean(ref.argmax(-1) == got.argmax(-1)))
    return out


def _eval_batches(float_path, sess, inputs, task, batch: int, seq: int) -> list[dict]:
    if inputs is not None and task is not None:
        raise BadInputError("--eval takes a task name or an inputs .npz, not both")
    if task is not None:
        from rnnedge.tasks import get_task

        data = get_task(task).split("test").take(slice(0, EVAL_ROWS))
        feeds = _feeds(sess, data.inputs, data.lengths)
    elif inputs is not None:
        from rnnedge.quantizing.inputs import fill_missing
        from rnnedge.runtime import Session
        from rnnedge.runtime.inputs import check_feeds

        arrays = dict(inputs) if isinstance(inputs, dict) else load_arrays(inputs)
        model = load_onnx(float_path, load_weights=False)
        meta = {p.key: p.value for p in model.metadata_props}
        arrays = fill_missing(arrays, model, meta, str(inputs if not isinstance(inputs, dict) else "inputs"))  # zero state, full lengths
        checked = Session(float_path, providers="cpu")
        wanted = {i.name for i in sess.get_inputs()}
        started = {p.input for p in checked.state_pairs}  # a stream file's states start at their initial value when not given
        unknown, missing = sorted(set(arrays) - wanted), sorted(wanted - set(arrays) - started)
        if unknown or missing:
            raise BadInputError(f"{inputs if not isinstance(inputs, dict) else 'inputs'}: arrays {sorted(arrays)} do not match "
                                f"the model inputs {sorted(wanted)}")
        where = inputs if not isinstance(inputs, dict) else "inputs"
        check_user_arrays(arrays, str(where))
        try:  # rnnedge.runtime's own checks: ranks, fixed axes, dtypes, lengths, declared ranges (one line each)
            feeds = check_feeds(checked, {k: np.asarray(v) for k, v in arrays.items()})
        except BadInputError as exc:
            raise BadInputError(f"{where}: {exc}") from None
    else:
        model = load_onnx(float_path, load_weights=False)
        meta = {p.key: p.value for p in model.metadata_props}
        from rnnedge.quantizing.inputs import find_inputs

        found = find_inputs(model, {k: v for k, v in meta.items() if k != "rnnedge.task"}, {"batch": batch, "seq": seq},
                            run=lambda feeds: sess.run(None, _cast_feeds(sess, feeds)))  # the spec's, or sizes that run
        if found.timing is None:
            raise BadInputError(f"no inputs to judge drift on ({found.why}): pass --eval INPUTS.npz")
        return found.judged
    firsts = {len(v) if np.ndim(v) else 1 for v in feeds.values()}
    if 0 in firsts:
        raise BadInputError("no rows to evaluate on")
    if len(firsts) > 1:  # a state input (layers, batch, hidden) is not rows-first: one call with everything
        return [feeds]
    rows = min(firsts.pop(), EVAL_ROWS)
    return [{k: v[s : s + EVAL_BATCH] for k, v in feeds.items()} for s in range(0, rows, EVAL_BATCH)]


def evaluate(float_path, quant_path, against: str | None = None, max_drift: float | None = None) -> dict:
    """What `rnnedge quantize --eval X [--max-drift D]` reports: X is a task name (metric, latency and drift on its
    test split) or an .npz of the user's own inputs (drift); with neither, `max_drift` is judged on random inputs.

    Returns {"comparison": ..., "drift": ..., "max_drift": D, "drift_ok": bool}; the caller exits 1 when not ok.
    """
    from rnnedge.families.registry import family_for_path
    from rnnedge.tasks import TASKS

    if max_drift is not None and (isinstance(max_drift, bool) or not isinstance(max_drift, (int, float)) or max_drift < 0):
        raise BadInputError(f"--max-drift must be a number >= 0, got {max_drift!r}")
    family = family_for_path(float_path)  # a seq2seq folder: exact match of the decoded strings and ms per string
    if family is not None and family.compare_paths is not None:
        if max_drift is not None:
            raise BadInputError(f"--max-drift compares one file's outputs; for a {family.name} folder use --eval TASK (its metric)")
        if against is None:
            return {}
        return {"comparison": family.compare_paths(float_path, quant_path, against)}
    task = against if against is not None and against in TASKS else None
    inputs = against if against is not None and task is None else None
    if inputs is not None and not str(inputs).endswith((".npz", ".npy")) and not Path(inputs).exists():
        raise BadInputError(f"--eval {inputs}: not a task ({', '.join(TASKS)}) nor an existing .npz of inputs")
    out: dict = {}
    if task is not None:
        out["comparison"] = compare_models(float_path, quant_path, task=task)
    if against is not None or max_drift is not None:
        out["drift"] = drift(float_path, quant_path, inputs=inputs, task=task)
    if max_drift is not None:
        out["max_drift"] = float(max_drift)
        out["drift_ok"] = out["drift"]["worst_relative"] <= max_drift
    return out
