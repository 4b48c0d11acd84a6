"""`--target stream` for any module: every piece of state a chunk leaves for the next becomes a state pair.

    rnnedge.export(module, torch.randn(1, 100, 40), "kws-stream.onnx", target="stream")

The user's module is exported as for `--target dynamic`; then, on the raw graph torch.onnx returns (before
lowering), `add_stream_state` rewrites every place where one time step reads another:

- each recurrent stack (`rnnedge.TorchRecurrent`: nn.RNN/GRU/LSTM, standard cells through `run_cell`) gets
  its initial state as a graph input and returns its final state: `<layer>.h0 -> <layer>.hn`
  (`.c0 -> .cn` for LSTM), shape (layers x directions, batch, hidden), zeros = the module's own start;
- each custom cell through `run_cell` (an ONNX Scan) gets its loop states the same way: `<cell>.s<k>_0 -> _n`;
- each convolution or pooling over time (Conv, MaxPool, AveragePool) whose time padding is on the left only
  (`F.pad(x, (k - 1, 0))`, dilated, stacked, or `padding=k-1` followed by a chomp `y[..., :-(k-1)]` or a cut
  back to the input's length `y[..., :x.size(-1)]`)
  takes that padding from a carried context instead: `<layer>.ctx0 -> <layer>.ctxn`, the last `pad` frames
  of its input (zeros, the pad value, at the start). Strided windows stream when the chunk is a multiple of
  the stride; `stride` (the product along the path) goes to the spec and the runtime checks it.

Right context is refused, naming the layer: a window padded on the right or by less than it spans (a centred
conv), a reduction, softmax or normalisation over the time axis, a product contracting it (attention), a
slice of frames by position other than the last step (`y[:, -1]` streams: each chunk's last step).
Whatever is left, the export's quick check proves empirically (chunked == whole, `rnnedge.parity.stream`).
"""

from __future__ import annotations

import itertools
import logging
import math
import re
from dataclasses import dataclass, field

from rnnedge.errors import ExportError
from rnnedge.exporting.stream_context import WAY_OUT, WINDOWS, WindowContext
from rnnedge.exporting.stream_graph import PAIRWISE, GraphReading

log = logging.getLogger(__name__)

POSITIONAL = ("Softmax", "LogSoftmax", "Hardmax", "MatMul", "Einsum", "LayerNormalization", "InstanceNormalization",
              "GroupNormalization", "Slice", "Gather", "GatherElements", "CumSum", "TopK", "ArgMax", "ArgMin", *WINDOWS)


@dataclass
class StreamPlan:
    """What the rewrite added: state pairs as the spec declares them, and the chunk multiple."""

    states: list = field(default_factory=list)  # [{"input", "output", "shape", "batch_axis", "init", "layer", "kind"}]
    stride: int = 1  # chunks must be a multiple of this many frames (strided convs / pooling over time)
    lookahead: int = 0  # stream output i is whole output i - lookahead (a centred conv with only per-frame layers after it)


def add_stream_state(model, time_input: str, time_axis: int, batch_symbol: str | None) -> StreamPlan:
    """Rewrite `model` (raw torch.onnx graph, in place) so that it takes and returns its state. Refuses what cannot stream."""
    g = _Graph(model, time_input, time_axis, batch_symbol)
    g.refuse_time_mixers()
    plan = StreamPlan()
    scale: dict[str, int] = {}  # value -> input frames per frame of it (strides upstream multiplied)
    for node in list(model.graph.node):
        frames = max((scale.get(i, 1) for i in node.input), default=1)
        if node.op_type == "TorchRecurrent":
            plan.states += g.recurrent_state(node)
        elif node.op_type in WINDOWS:
            state, stride, ahead = g.window_state(node)
            if ahead and plan.lookahead and ahead != plan.lookahead:
                raise ExportError(f"{g.layer(node)} ({node.op_type}) looks {ahead} frame(s) ahead, another layer "
                                  f"{plan.lookahead}: one stream cannot declare two delays; {WAY_OUT}")
            plan.lookahead = max(plan.lookahead, ahead)
            plan.states += state
            frames *= stride
            plan.stride = math.lcm(plan.stride, frames)
        elif node.op_type in ("ConvTranspose", "Resize", "Upsample") and g.time_axis_of(node.input[0]) is not None:
            raise ExportError(f"{g.layer(node)} ({node.op_type}) upsamples the time axis: it cannot stream; {WAY_OUT}")
        elif node.op_type == "Scan":
            plan.states += g.scan_state(node)
        scale.update({o: frames for o in node.output})
    g.commit()
    if not plan.states and plan.stride == 1:
        raise ExportError("the module carries nothing from one chunk to the next (no recurrent layer, no conv over time): "
                            f"chunks need no state; {WAY_OUT}")
    return plan


WHOLE_AXIS = ("InstanceNormalization", "GroupNormalization", "GlobalAveragePool", "GlobalMaxPool", "LpNormalization")
RESHAPES = ("Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze")


class _Graph(GraphReading, WindowContext):
    """The rewrite: refusals, recurrent state (here) and window context (WindowContext) on the graph it reads."""

    def refuse_time_mixers(self) -> None:
        """Nodes that read the whole time axis at once: refused, naming the layer and what to change."""
        for node in self.graph.node:
            why = self._mixes_time(node)
            if why:
                raise ExportError(f"{self.layer(node)} ({node.op_type}) {why}: a chunk cannot see the rest of the "
                                    f"sequence, so streamed output would differ from the whole; {WAY_OUT}")

    def _mixes_time(self, node) -> str:
        op = node.op_type
        ins = [self.time_axis_of(i) if i else None for i in node.input]
        a = ins[0] if ins else None
        if op in WHOLE_AXIS and a is None and self._folds_time(node.input[0]):
            return ("normalises over an axis the time axis was reshaped into (nn.GroupNorm on (B, C, T) normalises over "
                    "time too; normalise per frame: LayerNorm over the features, or GroupNorm on (B * T, C))")
        if a is None or a == 0:  # no time axis, or time folded into the batch: per frame
            return ""
        if PAIRWISE in ins:
            return "pairs every time step with every other (attention scores over the sequence)"
        rank = len(self.shapes.get(node.input[0]) or [])
        if op.startswith("Reduce") or op in ("ArgMax", "ArgMin", "TopK", "CumSum"):
            axes = self.attr(node, "axes")
            if axes is None and len(node.input) > 1 and self.value(node.input[1]) is not None:
                axes = [int(v) for v in self.value(node.input[1]).reshape(-1)]
            if op in ("ArgMax", "ArgMin", "TopK"):
                axes = [self.attr(node, "axis", 0)]
            if op == "CumSum":  # its axis is an input (a 0-d constant), not an attribute
                axis = self.value(node.input[1]) if len(node.input) > 1 else None
                axes = None if axis is None else [int(axis.reshape(-1)[0])]
            if axes is None or a in [x % rank for x in axes] or a == -1:
                return ("accumulates along the time axis (a cumulative sum: its running total is not carried from chunk to "
                        "chunk; keep such statistics in a recurrent layer, or pass them in as an input)") if op == "CumSum" \
                    else "reduces over the time axis (a mean, sum or max over the whole sequence)"
        if op in ("Softmax", "LogSoftmax", "Hardmax") and self.attr(node, "axis", -1) % max(rank, 1) == a:
            return "takes a softmax over the time axis (attention over the sequence)"
        if op == "MatMul" and (a == rank - 1 or (len(ins) > 1 and ins[1] is not None and ins[1] == len(self.shapes.get(node.input[1]) or []) - 2)):
            return "multiplies along the time axis (attention: every step reads every other)"
        if op in ("LayerNormalization",) and a >= self.attr(node, "axis", -1) % rank:
            return "normalises over the time axis"
        if op in WHOLE_AXIS:
            return "normalises or pools over the whole time axis"
        if op == "Pad" and self.pads_on_axis(node, a) not in ((0, 0), "off-axis") \
                and not all(u.op_type in WINDOWS for u in self.consumers.get(node.output[0], [])):
            return "adds frames to the time axis (a start symbol or padding no conv or pooling reads as its window)" + (
                "; a conv reads it after a transpose: pad right before the conv, after the transpose "
                "(F.pad(x.transpose(1, 2), (k - 1, 0)))" if self._window_after_transpose(node) else "")
        if op in ("Slice", "Gather") and not self._last_step_or_all(node, a):
            return "selects frames by position along the time axis"
        if a == -1 and (op in POSITIONAL or op.startswith("Reduce")):
            return "reads positions along an axis, and rnnedge cannot tell which of its input's axes is time"
        return ""

    def _window_after_transpose(self, pad) -> bool:
        """F.pad on (B, T, F), then .transpose(1, 2) into a conv: the padding is there, but not where it is read."""
        return any(u.op_type == "Transpose" and any(w.op_type in WINDOWS for w in self.consumers.get(u.output[0], []))
                   for u in self.consumers.get(pad.output[0], []))

    def _folds_time(self, name: str, depth: int = 0) -> bool:
        """`name` has sizes shape inference could not name, and was reshaped from a tensor with a time axis past the
        batch (GroupNorm's (B, C, T) -> (B, groups, C / groups * T)): its time axis is hidden in an unnamed axis."""
        dims = self.shapes.get(name) or []
        node = self.producer.get(name)
        if node is None or depth > 4 or node.op_type not in RESHAPES or not any(isinstance(d, str) for d in dims[1:]):
            return False
        t = self.time_axis_of(node.input[0])
        return (t is not None and t > 0) or (t is None and self._folds_time(node.input[0], depth + 1))

    def _last_step_or_all(self, node, a) -> bool:
        """`y[:, -1]` (each chunk's last step is the stream's latest), a slice keeping every frame, or a TCN's chomp."""
        if node.op_type == "Gather":
            idx = self.value(node.input[1])
            return self.attr(node, "axis", 0) != a or (idx is not None and idx.size == 1 and int(idx.reshape(-1)[0]) == -1)
        rank = len(self.shapes.get(node.input[0]) or [])
        bounds = self._slice_bounds(node, rank)
        if bounds is not None and bounds.get(a, (0, None, 1)) in ((0, None, 1), (-1, None, 1)):
            return True
        producer = self.producer.get(node.input[0])
        while producer is not None and producer.op_type == "Slice":  # through the no-op slices before a chomp
            producer = self.producer.get(producer.input[0])
        return producer is not None and producer.op_type in WINDOWS and self._chomp(producer, a) is node

    # -- recurrent state ------------------------------------------------------------------------------------------

    def recurrent_state(self, node) -> list[dict]:
        """rnnedge.TorchRecurrent: its h0 (c0) from new graph inputs, its hn (cn) to new graph outputs."""
        from onnx import helper

        if self.attr(node, "bidirectional", 0):
            raise ExportError(f"{self.layer(node)} is bidirectional: its backward direction needs the whole sequence, so "
                                f"it cannot stream; {WAY_OUT}")
        weight = node.input[1 + sum(self.attr(node, k, 0) for k in ("has_h0", "has_c0", "has_lengths"))]
        layer = re.sub(r"\.(weight_ih(_l0)?)$", "", weight) if ".weight_ih" in weight else self.layer(node)
        layer = re.sub(r"^p_", "", layer)
        lstm = self.attr(node, "mode") in (b"lstm", "lstm")
        layers, hidden = self.attr(node, "num_layers", 1), self.attr(node, "hidden_size")
        out = self.attr(node, "proj_size", 0) or hidden
        inputs = list(node.input)
        states = []
        slots = [("h", out, 1)] + ([("c", hidden, 2)] if lstm else [])  # (state, size, output index)
        for letter, size, y_index in slots:
            has = f"has_{letter}0"
            pos = 1 if letter == "h" else 1 + self.attr(node, "has_h0", 0)
            if self.attr(node, has, 0) and inputs[pos] in {i.name for i in self.graph.input}:
                states.append(self._own_state(node, layer, letter, inputs[pos], y_index))  # the module's own state input
                continue
            start = self._start(inputs[pos], layer, letter, layers, size) if self.attr(node, has, 0) else 0.0
            name_in = self.fresh(f"{layer}.{letter}0")
            shape = [layers, self.batch, size]
            self.new_inputs.append(helper.make_tensor_value_info(name_in, 1, shape))
            if self.attr(node, has, 0):
                inputs[pos] = name_in
            else:
                inputs.insert(pos, name_in)
                for a in node.attribute:
                    if a.name == has:
                        a.i = 1
            y = node.output[y_index]
            if not y:
                y = self.fresh(f"{layer}.{letter}_last")
                node.output[y_index] = y
            name_out = self.fresh(f"{layer}.{letter}n")
            self.after.setdefault(id(node), []).append(helper.make_node("Identity", [y], [name_out]))
            self.new_outputs.append(helper.make_tensor_value_info(name_out, 1, shape))
            states.append({"input": name_in, "output": name_out, "shape": shape, "batch_axis": 1, "init": start,
                           "layer": layer, "kind": f"{self.attr(node, 'mode')!s}".strip("b'") + f".{letter}"})
        del node.input[:]
        node.input.extend(inputs)
        return states

    def scan_state(self, node) -> list[dict]:
        """A custom cell through run_cell (an ONNX Scan over time): each loop state from a new graph input (zeros at the
        start: run_cell's default), each final state to a new graph output: `<cell>.s<k>_0 -> <cell>.s<k>_n`."""
        from onnx import helper

        scans = self.attr(node, "num_scan_inputs", 1)
        if any(self.attr(node, "scan_input_directions", []) or []) or any(self.attr(node, "scan_output_directions", []) or []):
            raise ExportError(f"{self.layer(node)} scans the sequence backwards: it needs the whole sequence, so it cannot "
                              f"stream; {WAY_OUT}")
        layer, inputs, states = self._cell_name(node), list(node.input), []
        for k in range(len(inputs) - scans):
            shape = list(self.shapes.get(inputs[k]) or [])
            if self.batch not in shape or not self._is_zeros(inputs[k]):
                raise ExportError(f"the state of {layer}'s custom cell is {'taken from the inputs or computed' if shape else 'of unknown shape'}: "
                                  "a stream starts from zeros (run_cell(cell, x) with no state); take the state as an input "
                                  f"and return it yourself (a step module), or {WAY_OUT}")
            name_in, name_out = self.fresh(f"{layer}.s{k}_0"), self.fresh(f"{layer}.s{k}_n")
            inputs[k] = name_in
            self.new_inputs.append(helper.make_tensor_value_info(name_in, 1, shape))
            if not node.output[k]:
                node.output[k] = self.fresh(f"{layer}.s{k}_last")
            self.after.setdefault(id(node), []).append(helper.make_node("Identity", [node.output[k]], [name_out]))
            self.new_outputs.append(helper.make_tensor_value_info(name_out, 1, shape))
            states.append({"input": name_in, "output": name_out, "shape": shape, "batch_axis": shape.index(self.batch),
                           "init": 0.0, "layer": layer, "kind": f"scan.s{k}"})
        del node.input[:]
        node.input.extend(inputs)
        return states

    def _cell_name(self, node) -> str:
        """The cell's module path: the common dotted prefix of the weights its Scan body reads ('cell' from cell.x.weight,
        cell.ln.bias); torch.onnx gives a Scan no module scope."""
        body = next((a.g for a in node.attribute if a.name == "body"), None)
        names = sorted({re.sub(r"^p_", "", i) for n in (body.node if body is not None else []) for i in n.input if i in self.consts and "." in i})
        if not names:
            return "cell"
        parts = [n.split(".")[:-1] for n in names]
        common = [column[0] for column in itertools.takewhile(lambda c: len(set(c)) == 1, zip(*parts))]
        return ".".join(common) or "cell"

    def _own_state(self, node, layer, letter, name_in, y_index) -> dict:
        """A state the module already takes as an input (forward(x, h0) -> (y, hn)): paired with the output it returns."""
        y = node.output[y_index]
        outs = {y} | {n.output[0] for n in self.consumers.get(y, []) if n.op_type == "Identity"}
        name_out = next((o.name for o in self.graph.output if o.name in outs), None)
        if name_out is None:
            raise ExportError(f"{layer} takes its {letter} state from input '{name_in}' but the module does not return the "
                                f"layer's final {letter} state: return it (y, hn), or take no state and let --target stream add it")
        shape = list(self.shapes.get(name_in) or [])
        return {"input": name_in, "output": name_out, "shape": shape, "batch_axis": 1, "init": 0.0, "layer": layer,
                "kind": f"{self.attr(node, 'mode')!s}".strip("b'") + f".{letter}", "own": True}

    def _start(self, given: str, layer: str, letter: str, layers: int, size: int):
        """A state built in forward: 0.0 when it is zeros, the module's own values (layers, size) when it is a constant
        repeated over the batch (a learned initial state); anything that depends on the inputs is refused."""
        if self._is_zeros(given):
            return 0.0
        value = self._constant_root(given)
        if value is not None and value.size == layers * size and value.ndim == 3 and value.shape[1] == 1:
            return value.reshape(layers, size).astype(float).tolist()
        raise ExportError(f"the initial {letter} state of {layer} is computed in forward from the inputs: a stream starts from "
                          "a state it takes as an input; start from zeros or a learned (layers, 1, hidden) state, or "
                          f"{WAY_OUT}")

    def _constant_root(self, name: str, depth: int = 0):
        """The constant a value repeats (`self.h0.expand(-1, B, -1)`, `.repeat`, `.contiguous()`), else None."""
        value = self.value(name)
        if value is not None or depth > 8:
            return value
        node = self.producer.get(name)
        if node is None or node.op_type not in ("Expand", "Tile", "Cast", "Identity"):
            return None
        return self._constant_root(node.input[0], depth + 1)

    def _is_zeros(self, name: str, depth: int = 0) -> bool:
        """Whether a value is all zeros whatever the inputs (torch.zeros(..., x.size(0), ...) in forward)."""
        if self.value(name) is not None:
            return not self.value(name).any()
        node = self.producer.get(name)
        if node is None or depth > 8:
            return False
        if node.op_type == "ConstantOfShape":
            value = self.attr(node, "value")
            from onnx import numpy_helper

            return value is None or not numpy_helper.to_array(value).any()
        if node.op_type in ("Expand", "Cast", "CastLike", "Identity", "Reshape", "Unsqueeze", "Squeeze", "Tile", "Transpose", "Contiguous"):
            return self._is_zeros(node.input[0], depth + 1)
        return False

    # -- conv / pooling context -----------------------------------------------------------------------------------


def stream_rewrite(model, spec, names: list[str], axes: dict) -> StreamPlan:
    """Run `add_stream_state` on the raw graph of a user module's export and declare the states in `spec`."""
    from rnnedge.spec import TensorSpec

    time = spec.time_axis
    where = next(((i, n, ax) for i, n in enumerate(names) for ax, lab in sorted(axes.get(n, {}).items()) if lab == time), None)
    if time is None or where is None:
        raise ExportError("--target stream needs a dynamic time axis to stream over (e.g. --axis mel:1=frames); a step module "
                          "(x_t, state -> state) already takes and returns its state: export it with --target dynamic")
    i, name, ax = where
    raw = model.graph.input[i]
    dims = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in raw.type.tensor_type.shape.dim]
    batch_ax = next((a for a, lab in axes.get(name, {}).items() if lab == "batch"), 0 if ax != 0 else None)
    batch = dims[batch_ax] if batch_ax is not None and batch_ax < len(dims) else 1
    plan = add_stream_state(model, raw.name, ax, batch)
    raw_names = {model.graph.input[k].name: n for k, n in enumerate(names) if k < len(model.graph.input)}
    by_name = {t.name: t for t in spec.inputs}
    for state in plan.states:
        state["input"] = raw_names.get(state["input"], state["input"])  # the user's own name for an input it takes
        state["shape"] = ["batch" if d == batch and isinstance(d, str) else d for d in state["shape"]]
        if state["input"] in by_name:
            by_name[state["input"]].role = "state"
        else:
            spec.inputs.append(TensorSpec(state["input"], "float32", list(state["shape"]), "state"))
    spec.states, spec.stride, spec.lookahead = plan.states, plan.stride, plan.lookahead
    return plan
