"""Combinations of a provider and a kind of file known to give wrong answers: THE table, and the check.

Measured (onnxruntime-openvino 1.24.1 in its own venv against onnxruntime's CPU provider, notes in the
README's providers section): the OpenVINO provider ignores the ``sequence_lens`` input of the standard
RNN/GRU/LSTM operators when the file has symbolic dims. Rows shorter than the batch's longest then come out
wrong (a GRU classifier's logits off by 0.35, an LSTM's by 0.19, a bidirectional GRU's per-step outputs by
0.085), silently; rows as long as the sequence, files without lengths, the ``scan`` lowering and files whose
dims are all fixed (``--fix-dim``) match the CPU provider to 1e-7.

``rnnedge.runtime.Session`` warns when it opens such a combination and refuses (one-line
``BadInputError``) every call whose lengths would be ignored; a combination it cannot guard (the
``sequence_lens`` does not come from a ``lengths`` input) is refused at open. ``rnnedge verify`` runs
the provider anyway (that is how the table was found) and notes the entry in its report.
numpy, onnxruntime and the standard library only (``onnx``, where installed, reads the graph).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

__all__ = ["KnownWrong", "KNOWN_WRONG", "Finding", "file_facts", "findings"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KnownWrong:
    provider: str  # onnxruntime's full name
    needs: frozenset  # facts of the file that make the combination wrong (all of them)
    reason: str  # what goes wrong, as measured
    way_out: str


KNOWN_WRONG = (
    KnownWrong("OpenVINOExecutionProvider", frozenset({"sequence_lens", "symbolic_dims"}),
               "the OpenVINO provider ignores the sequence_lens of RNN/GRU/LSTM nodes when dims are symbolic: rows "
               "shorter than the sequence come out wrong (measured up to 0.35 off on onnxruntime-openvino 1.24)",
               "feed rows of the full length, run on 'cpu', or export with --lowering scan or --fix-dim batch=B --fix-dim seq=T"),
)


@dataclass(frozen=True)
class Finding:
    provider: str
    entry: KnownWrong
    guarded: bool  # True: the runtime can refuse the calls that go wrong (lengths come from a 'lengths' input)

    def message(self, path) -> str:
        return f"{path} on {self.provider}: {self.entry.reason}; {self.entry.way_out}"


def _graph_facts(path) -> set | None:
    """'sequence_lens' if any RNN/GRU/LSTM node (subgraphs included) takes a sequence_lens input; None without onnx."""
    try:
        import onnx
    except ImportError:
        return None
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # .ort files and anything onnx cannot read: decided from the signature instead
        log.debug("known-wrong check: cannot read %s with onnx (%s)", path, err)
        return None
    stack, facts = [model.graph], set()
    while stack:
        graph = stack.pop()
        for node in graph.node:
            if node.op_type in ("RNN", "GRU", "LSTM") and node.domain in ("", "ai.onnx") and len(node.input) > 4 and node.input[4]:
                facts.add("sequence_lens")
            stack += [a.g for a in node.attribute if a.type == onnx.AttributeProto.GRAPH]
            stack += list(next((a.graphs for a in node.attribute if a.type == onnx.AttributeProto.GRAPHS), []))
    return facts


def file_facts(path, inputs, metadata: dict, lengths_name: str = "lengths") -> set:
    """What the table asks about a file: 'sequence_lens' (its recurrent nodes take lengths) and 'symbolic_dims'."""
    facts = {"symbolic_dims"} if any(not isinstance(d, int) or d <= 0 for t in inputs for d in t.shape) else set()
    graph = _graph_facts(path)
    if graph is None:  # no onnx here: an rnnedge file's lowering says it; another file with a lengths input may
        has_lengths = any(t.name == lengths_name for t in inputs)
        if has_lengths and metadata.get("rnnedge.lowering", "native") != "scan":
            facts.add("sequence_lens")
    else:
        facts |= graph
    return facts


def findings(path, providers, inputs, metadata: dict, lengths_name: str = "lengths") -> list[Finding]:
    """The table's entries that apply to this file on these providers (as onnxruntime reports them in use)."""
    entries = [e for e in KNOWN_WRONG if e.provider in providers]
    if not entries:
        return []  # the common case: no graph is read
    facts = file_facts(path, inputs, metadata, lengths_name)
    guarded = any(t.name == lengths_name for t in inputs)
    return [Finding(e.provider, e, guarded) for e in entries if e.needs <= facts]
