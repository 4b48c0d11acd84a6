"""What `rnnedge inspect` shows of a file: an ONNX or ORT model (I/O with symbolic dims, opset, operators,
size, metadata, declared spec) or a checkpoint (config, parameters, metrics, labels)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from rnnedge.errors import BadInputError
from rnnedge.files import check_readable, load_onnx, model_bytes, refuse_pickle


def describe_file(path) -> dict:
    """`rnnedge inspect`: describe an .onnx/.ort model or an rnnedge checkpoint (by the suffix)."""
    p = Path(path)
    if not p.exists():
        raise BadInputError(f"{p}: no such file")
    if p.is_dir():  # a seq2seq folder (encoder.onnx + decoder.onnx), or any folder of models: each file
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in (".onnx", ".ort") and f.is_file())
        if not files:
            raise BadInputError(f"{p}: a folder with no .onnx/.ort file")
        return {"file": str(p), "kind": "folder", "parts": {f.name: describe_onnx(f) for f in files}}
    return describe_onnx(p) if p.suffix.lower() in (".onnx", ".ort") else describe_checkpoint(p)


def describe_checkpoint(path) -> dict:
    """A checkpoint's config, parameter count, metrics and labels (read safely, weights not run)."""
    from rnnedge.checkpoint import read_checkpoint

    p = Path(path)
    config, state, meta = read_checkpoint(p)
    return {"file": str(p), "kind": "checkpoint", "bytes": p.stat().st_size, "task": meta["task"],
            "version": meta["version"], "parameters": sum(int(t.numel()) for t in state.values()),
            "config": config.to_dict(), "metrics": meta["metrics"], "labels": meta["labels"]}


def describe_onnx(path) -> dict:
    """What `rnnedge inspect` shows of an .onnx/.ort file: I/O with symbolic dims, opset, operators, size, metadata."""
    p = Path(path)
    if p.suffix.lower() == ".ort":
        from rnnedge.runtime.providers import open_session

        check_readable(p, "ORT model")
        refuse_pickle(p)
        session = open_session(p, providers="cpu", fallback=False)
        io = lambda args: [{"name": a.name, "type": a.type, "shape": list(a.shape)} for a in args]  # noqa: E731
        meta = dict(session.get_modelmeta().custom_metadata_map)
        return {"file": str(p), "kind": "ort", "bytes": p.stat().st_size, "inputs": io(session.get_inputs()),
                "outputs": io(session.get_outputs()), "metadata": {k: v for k, v in meta.items() if k != "rnnedge.spec"},
                **declared_spec(meta)}
    model = load_onnx(p, load_weights=False)

    def io(values):
        out = []
        for v in values:
            t = v.type.tensor_type
            dims = [d.dim_param or (d.dim_value if d.HasField("dim_value") else "?") for d in t.shape.dim]
            if not v.type.HasField("tensor_type"):  # a sequence/map/optional value: its kind, not a float32 tensor
                out.append({"name": v.name, "dtype": (v.type.WhichOneof("value") or "?").removesuffix("_type"), "shape": None})
                continue
            out.append({"name": v.name, "dtype": onnx_dtype_name(t.elem_type), "shape": dims if t.HasField("shape") else None})
        return out

    from exporters.graph import all_nodes

    ops = Counter(f"{node.domain + '.' if node.domain else ''}{node.op_type}" for node in all_nodes(model.graph))
    initializer_names = {i.name for i in model.graph.initializer}
    return {
        "file": str(p), "kind": "onnx", "bytes": model_bytes(p),
        "opset": {o.domain or "ai.onnx": o.version for o in model.opset_import},
        "inputs": io([i for i in model.graph.input if i.name not in initializer_names]), "outputs": io(model.graph.output),
        "nodes": len(model.graph.node), "operators": dict(sorted(ops.items())),
        "metadata": {p.key: p.value for p in model.metadata_props if p.key != "rnnedge.spec"},
        **declared_spec({p.key: p.value for p in model.metadata_props}),
    }


def declared_spec(metadata: dict) -> dict:
    """{"spec": ...}: the declared I/O (`rnnedge.spec`) in short form, one line per input; {} when absent or unreadable."""
    from rnnedge.spec import IOSpec

    raw = metadata.get("rnnedge.spec")
    if not raw:
        return {}
    try:
        spec = IOSpec.from_json(raw)
    except (ValueError, TypeError, KeyError, AttributeError):
        return {"spec": "unreadable rnnedge.spec metadata"}
    inputs = {t.name: f"{t.role} {t.dtype}[{', '.join(map(str, t.shape))}]" for t in spec.inputs}
    out = {"inputs": inputs, "outputs": list(spec.outputs)}
    out["lengths"] = next((f"{t.name} ({t.dtype})" for t in spec.inputs if t.role == "lengths"), "none (every row is a full sequence)")
    out.update({k: v for k in ("ties", "fixed", "ranges") if (v := getattr(spec, k, None))})
    if spec.states:  # a stream file: what each call hands to the next
        out["states"] = [f"{st['input']} -> {st['output']} ({st.get('kind', 'state')} of {st.get('layer', '?')}, "
                         f"batch axis {st.get('batch_axis', 1)}, starts at {st.get('init', 0.0):g})" for st in spec.states]
        out["stride"] = spec.stride
        out["lookahead"] = spec.lookahead  # stream output i is the whole sequence's output i - lookahead
    return {"spec": out}


def onnx_dtype_name(elem_type: int) -> str:
    import onnx

    return onnx.helper.tensor_dtype_to_np_dtype(elem_type).name if elem_type else "?"

