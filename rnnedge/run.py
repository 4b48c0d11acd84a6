"""`rnnedge run` as a library call: a model file on arrays from .npy/.npz files, without torch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rnnedge.errors import BadInputError
from rnnedge.files import load_arrays, save_arrays


def feeds_from_arrays(session, arrays: dict, lengths_file: Path | None = None) -> dict:
    """Arrays read from --input (and --lengths) -> named feeds for `session`; unknown names refused."""
    arrays = dict(arrays)
    main = next((arrays.pop(k) for k in (session.input_name, "x", "tokens") if k in arrays), None)
    if main is None:
        raise BadInputError(f"--input holds {sorted(arrays)}; expected an array named 'x' or 'tokens' (or a .npy file)")
    if lengths_file is not None:
        found = load_arrays(lengths_file)
        if len(found) != 1:
            raise BadInputError(f"{lengths_file}: expected one array of lengths, found {sorted(found)}")
        arrays["lengths"] = next(iter(found.values()))
    known = {s.name for s in session.inputs} | {"lengths"}
    unknown = sorted(set(arrays) - known)
    if unknown:
        raise BadInputError(f"--input has array(s) {unknown} the model does not take; its inputs: {sorted(known)}")
    return {session.input_name: main, **arrays}


def run_file(model: str | Path, input_file: str | Path, lengths_file: str | Path | None = None, output: str | Path | None = None,
             provider="auto", threads: int | None = None, chunk: int | None = None) -> dict[str, Any]:
    """Run `model` (.onnx/.ort) on `input_file`; write the main output (.npy) or all outputs (.npz) to `output`.

    `provider`: as rnnedge.runtime.Session takes it ("auto", a name, or names and (name, {option: value}) pairs).
    `chunk`: a stream file is fed each row in chunks of that many steps (StreamingSession, state carried).
    Returns what `rnnedge run` prints: the output's name, shape and dtype, the providers, and (without
    `output`) the node placement, argmax/labels of a classifier and the values when small."""
    from rnnedge.runtime import Session

    arrays = load_arrays(input_file)  # refuse a bad input before loading the model
    session = Session(model, providers=provider, threads=threads)
    feeds = feeds_from_arrays(session, arrays, Path(lengths_file) if lengths_file else None)
    outputs = run_streamed(session, feeds, chunk) if chunk else session.run_all(feeds)
    y = outputs[session.output_name]
    data: dict[str, Any] = {"model": str(model), "input": str(input_file), "output": session.output_name,
                            "shape": list(y.shape), "dtype": str(y.dtype), "providers": session.providers}
    if session.lookahead:  # a centred conv's declared delay: every call of this file answers late, whole or chunked
        data["lookahead"] = (f"{session.lookahead} steps: output i is the module's output at step i - {session.lookahead} "
                             f"(the first {session.lookahead} are warm-up)")
    if output is not None:
        data["output_path"] = str(save_arrays(output, outputs, session.output_name))
        return data
    data["placement"] = session.node_placement()
    if y.ndim == 2 and (session.config or {}).get("head", "classify") == "classify":
        top = y.argmax(axis=1)
        data["argmax"] = top.tolist()
        if session.labels and len(session.labels) == y.shape[1]:
            data["labels"] = [session.labels[i] for i in top]
    if y.size <= 1000:
        data["values"] = y.tolist()
    return data


def run_streamed(session, feeds: dict, chunk: int) -> dict:
    """The main output of every row streamed in chunks of `chunk` steps (rows are concurrent streams)."""
    import numpy as np

    from rnnedge.runtime import StreamingSession

    extra = sorted(set(feeds) - {session.input_name})
    if extra:
        raise BadInputError(f"--chunk streams the main input '{session.input_name}' only; --input also holds {extra}")
    streams = StreamingSession(session)
    x = np.asarray(feeds[session.input_name])
    if x.ndim < 2:
        raise BadInputError(f"--chunk needs a batch of sequences; '{session.input_name}' has shape {x.shape}")
    pieces: dict[int, list] = {row: [] for row in range(len(x))}
    t = streams.time_axis  # of one row: 0, or 1 for a channels-first (B, F, T) stream file
    for start in range(0, x.shape[t + 1], chunk):
        cut = {row: np.take(x[row], range(start, min(start + chunk, x.shape[t + 1])), axis=t) for row in range(len(x))}
        for row, y in streams.step(cut).items():
            pieces[row].append(y)
    rows = [np.concatenate(p, streams.output_time_axis) if streams.per_step else p[-1] for _, p in sorted(pieces.items())]
    return {session.output_name: np.stack(rows)}
