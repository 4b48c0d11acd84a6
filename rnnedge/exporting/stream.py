"""`--target stream` for any module: every piece of state a chunk leaves for the next becomes a state pair.

    rnnedge.export(module, torch.randn(1, 100, 40), "kws-stream.onnx", target="stream")

The user's module is exported as for `--target dynamic`; then, on the raw graph torch.onnx returns (before
lowering), `add_stream_state` rewrites every place where one time step reads another:

- each recurrent stack (`rnnedge.TorchRecurrent`: nn.RNN/GRU/LSTM, standard cells through `run_cell`) gets
  its initial state as a graph input and returns its final state: `<layer>.h0 -> <layer>.hn`
  (`.c0 -> .cn` for LSTM), shape (layers x directions, batch, hidden), zeros = the module's own start;
- each convolution or pooling over time (Conv, MaxPool, AveragePool) whose time padding is on the left only
  (`F.pad(x, (k - 1, 0))`, dilated, stacked, or `padding=k-1` followed by a chomp `y[..., :-(k-1)]`)
  takes that padding from a carried context instead: `<layer>.ctx0 -> <layer>.ctxn`, the last `pad` frames
  of its input (zeros, the pad value, at the start). Strided windows stream when the chunk is a multiple of
  the stride; `stride` (the product along the path) goes to the spec and the runtime checks it.

Right context is refused, naming the layer: a window padded on the right or by less than it spans (a centred
conv), a reduction, softmax or normalisation over the time axis, a product contracting it (attention), a
slice of frames by position other than the last step (`y[:, -1]` streams: each chunk's last step).
Whatever is left, the export's quick check proves empirically (chunked == whole, `rnnedge.parity.stream`).
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field

from rnnedge.errors import ExportError

log = logging.getLogger(__name__)

WINDOWS = ("Conv", "MaxPool", "AveragePool")
INT64_MAX = 2**63 - 1
FLOAT32_LOWEST = -3.4028234663852886e38  # MaxPool's padding (-inf in torch) as a finite JSON number
FOLDABLE = ("Cast", "Reshape", "Concat", "Unsqueeze", "Squeeze", "Identity", "Neg", "Add", "Sub", "Mul", "Gather", "Constant")
POSITIONAL = ("Softmax", "LogSoftmax", "Hardmax", "MatMul", "Einsum", "LayerNormalization", "InstanceNormalization",
              "GroupNormalization", "Slice", "Gather", "GatherElements", "CumSum", "TopK", "ArgMax", "ArgMin", *WINDOWS)
WAY_OUT = "export --target dynamic to run whole sequences"


@dataclass
class StreamPlan:
    """What the rewrite added: state pairs as the spec declares them, and the chunk multiple."""

    states: list = field(default_factory=list)  # [{"input", "output", "shape", "batch_axis", "init", "layer", "kind"}]
    stride: int = 1  # chunks must be a multiple of this many frames (strided convs / pooling over time)


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
            state, stride = g.window_state(node)
            plan.states += state
            frames *= stride
            plan.stride = math.lcm(plan.stride, frames)
        elif node.op_type in ("ConvTranspose", "Resize", "Upsample") and g.time_axis_of(node.input[0]) is not None:
            raise ExportError(f"{g.layer(node)} ({node.op_type}) upsamples the time axis: it cannot stream; {WAY_OUT}")
        elif node.op_type == "Scan":
            raise ExportError(f"{g.layer(node)} runs a custom cell through run_cell (an ONNX Scan): --target stream carries "
                                "the state of nn.RNN/GRU/LSTM and of nn.RNNCell/GRUCell/LSTMCell only; "
                                "take the state as an input and return it yourself, and export --target dynamic")
        scale.update({o: frames for o in node.output})
    g.commit()
    if not plan.states and plan.stride == 1:
        raise ExportError("the module carries nothing from one chunk to the next (no recurrent layer, no conv over time): "
                            f"chunks need no state; {WAY_OUT}")
    return plan


class _Graph:
    """The raw graph with what the rewrite needs to know of it: shapes, producers, consumers, constants."""

    def __init__(self, model, time_input, time_axis, batch_symbol):
        from onnx import numpy_helper

        self.model, self.graph = model, model.graph
        self.shapes = {}
        for vi in [*self.graph.input, *self.graph.value_info, *self.graph.output]:
            t = vi.type.tensor_type
            if t.HasField("shape"):
                self.shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]
        dims = self.shapes.get(time_input) or []
        symbol = dims[time_axis] if time_axis < len(dims) else None
        if not isinstance(symbol, str):
            raise ExportError(f"input '{time_input}' has no symbolic time axis {time_axis}: nothing to stream over")
        self.time = re.compile(rf"(?<![\w]){re.escape(symbol)}(?![\w])")
        self.batch = batch_symbol
        self.producer = {o: n for n in self.graph.node for o in n.output}
        self.consumers: dict[str, list] = {}
        for n in self.graph.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.outputs = {o.name for o in self.graph.output}
        self.consts = {i.name: numpy_helper.to_array(i) for i in self.graph.initializer}
        for n in self.graph.node:
            if n.op_type == "Constant" and n.attribute:
                a = n.attribute[0]
                if a.name == "value":
                    self.consts[n.output[0]] = numpy_helper.to_array(a.t)
                elif a.name in ("value_ints", "value_int", "value_float", "value_floats"):
                    import numpy as np

                    self.consts[n.output[0]] = np.array(list(a.ints) or list(a.floats) or [a.i or a.f])
        self.before: dict[int, list] = {}  # id(node) -> new nodes to insert before it
        self.after: dict[int, list] = {}
        self.new_inputs, self.new_outputs, self.new_inits, self.dropped = [], [], [], set()
        self.names = set(self.producer) | {i.name for i in self.graph.input} | set(self.consts)

    # -- reading ------------------------------------------------------------------------------------------------

    def layer(self, node) -> str:
        """The torch module a node comes from ('frontend.0'), for messages and state names."""
        scopes = next((p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), "")
        parts = [s.strip(" '\"") for s in scopes.strip("[]").split(",")]
        parts = [p for p in parts if p][:-1]  # full module paths, outermost first; the last one is the aten call
        if parts:
            return parts[-1]
        trace = next((p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.stack_trace"), "")
        found = re.search(r'File "([^"]+)", line (\d+), in \w+\n\s*(.+)', trace)
        if found:  # a function called in forward (torch.softmax, x.mean): where, in the user's code
            return f"`{found.group(3).strip()[:80]}` ({found.group(1).rsplit('/', 1)[-1]}:{found.group(2)})"
        return node.name or node.op_type

    def value(self, name: str, depth: int = 0):
        """The value of `name` if it is computed from constants alone (torch.onnx builds slice bounds from
        Constant -> Cast -> Reshape chains), else None."""
        if not name or name in self.consts:
            return self.consts.get(name)
        node = self.producer.get(name)
        if node is None or depth > 12 or node.op_type not in FOLDABLE:
            return None
        ins = [self.value(i, depth + 1) for i in node.input]
        if any(v is None for i, v in zip(node.input, ins) if i):
            return None
        from onnx.reference import ReferenceEvaluator

        try:
            outs = ReferenceEvaluator(node).run(None, {i: v for i, v in zip(node.input, ins) if i})
        except Exception as exc:  # a node the reference runtime cannot run: not a constant, for this purpose
            log.debug("cannot fold %s: %s", node.op_type, exc)
            return None
        import numpy as np

        for out, v in zip(node.output, outs):
            self.consts[out] = np.asarray(v)
        return self.consts.get(name)

    def time_axis_of(self, name: str) -> int | None:
        """The axis of `name` that is the time axis (its size mentions the input's time symbol); None: no time axis.
        Raises where the shape is unknown but the value depends on the time axis (fail closed)."""
        dims = self.shapes.get(name)
        if dims is None:
            return None if self.value(name) is not None else -1
        hits = [a for a, d in enumerate(dims) if isinstance(d, str) and self.time.search(d)]
        if not hits:
            return None
        return hits[0] if len(hits) == 1 else -1

    def attr(self, node, name, default=None):
        from onnx import helper

        a = next((a for a in node.attribute if a.name == name), None)
        return default if a is None else helper.get_attribute_value(a)

    def fresh(self, base: str) -> str:
        name, k = base, 2
        while name in self.names:
            name, k = f"{base}_{k}", k + 1
        self.names.add(name)
        return name

    # -- refusals -------------------------------------------------------------------------------------------------

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
        if a is None or a == 0:  # no time axis, or time folded into the batch: per frame
            return ""
        rank = len(self.shapes.get(node.input[0]) or [])
        if op.startswith("Reduce") or op in ("ArgMax", "ArgMin", "TopK", "CumSum"):
            axes = self.attr(node, "axes")
            if axes is None and len(node.input) > 1 and self.value(node.input[1]) is not None:
                axes = [int(v) for v in self.value(node.input[1]).reshape(-1)]
            if op in ("ArgMax", "ArgMin", "CumSum", "TopK"):
                axes = [self.attr(node, "axis", 0)] if op != "CumSum" else [int(self.value(node.input[1], [a])[0])]
            if axes is None or a in [x % rank for x in axes] or a == -1:
                return "reduces over the time axis (a mean, sum or max over the whole sequence)"
        if op in ("Softmax", "LogSoftmax", "Hardmax") and self.attr(node, "axis", -1) % max(rank, 1) == a:
            return "takes a softmax over the time axis (attention over the sequence)"
        if op == "MatMul" and (a == rank - 1 or (len(ins) > 1 and ins[1] is not None and ins[1] == len(self.shapes.get(node.input[1]) or []) - 2)):
            return "multiplies along the time axis (attention: every step reads every other)"
        if op in ("LayerNormalization",) and a >= self.attr(node, "axis", -1) % rank:
            return "normalises over the time axis"
        if op in ("InstanceNormalization", "GroupNormalization", "GlobalAveragePool", "GlobalMaxPool", "LpNormalization"):
            return "normalises or pools over the whole time axis"
        if op in ("Slice", "Gather") and not self._last_step_or_all(node, a):
            return "selects frames by position along the time axis"
        if a == -1 and (op in POSITIONAL or op.startswith("Reduce")):
            return "reads positions along an axis, and rnnedge cannot tell which of its input's axes is time"
        return ""

    def _last_step_or_all(self, node, a) -> bool:
        """`y[:, -1]` (each chunk's last step is the stream's latest), a slice keeping every frame, or a TCN's chomp."""
        if node.op_type == "Gather":
            idx = self.value(node.input[1])
            return self.attr(node, "axis", 0) != a or (idx is not None and idx.size == 1 and int(idx.reshape(-1)[0]) == -1)
        rank = len(self.shapes.get(node.input[0]) or [])
        bounds = self._slice_bounds(node, rank)
        if bounds is None:
            return False
        if bounds.get(a, (0, None, 1)) in ((0, None, 1), (-1, None, 1)):
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
            if self.attr(node, has, 0):
                given = inputs[pos]
                if not self._is_zeros(given):
                    raise ExportError(f"the initial {letter} state of {layer} is computed in forward and is not zeros: "
                                        "a stream starts from a state it takes as an input; start from zeros (pass no state) "
                                        f"or {WAY_OUT}")
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
            states.append({"input": name_in, "output": name_out, "shape": shape, "batch_axis": 1, "init": 0.0,
                           "layer": layer, "kind": f"{self.attr(node, 'mode')!s}".strip("b'") + f".{letter}"})
        del node.input[:]
        node.input.extend(inputs)
        return states

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
                "kind": f"{self.attr(node, 'mode')!s}".strip("b'") + f".{letter}"}

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
        if node.op_type in ("Expand", "Cast", "Identity", "Reshape", "Unsqueeze", "Squeeze", "Tile", "Transpose", "Contiguous"):
            return self._is_zeros(node.input[0], depth + 1)
        return False

    # -- conv / pooling context -----------------------------------------------------------------------------------

    def window_state(self, node) -> tuple[list[dict], int]:
        """A conv or pooling window over time: its left padding from a carried context. ([state], stride)."""
        x = node.input[0]
        a = self.time_axis_of(x)
        if a is None or a == 0:
            return [], 1
        what = f"{self.layer(node)} ({node.op_type})"
        rank = len(self.shapes.get(x) or [])
        if a < 2:
            raise ExportError(f"{what} has the time axis at axis {a} of its input: rnnedge streams windows over a "
                                f"spatial axis (Conv1d on (batch, channels, time)); {WAY_OUT}")
        sp = a - 2
        nsp = rank - 2
        kernel = self.attr(node, "kernel_shape") or list(self._weight_shape(node)[2:])
        dil = (self.attr(node, "dilations") or [1] * nsp)[sp]
        stride = (self.attr(node, "strides") or [1] * nsp)[sp]
        span = (int(kernel[sp]) - 1) * dil + 1
        if self.attr(node, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET", b"VALID", "VALID"):
            raise ExportError(f"{what} pads the time axis 'same': it looks ahead; pad on the left only "
                                f"(F.pad(x, (k - 1, 0)), padding=0) to stream, or {WAY_OUT}")
        pads = list(self.attr(node, "pads") or [0] * (2 * nsp))
        own_left, own_right = pads[sp], pads[sp + nsp]
        chomp = self._chomp(node, a) if own_right else None
        if chomp is not None:
            own_right = 0
        pad_node, pad_left, pad_right, pad_value = self._pad_before(node, a)
        left, right = own_left + pad_left, own_right + pad_right
        init = pad_value if pad_left else (FLOAT32_LOWEST if node.op_type == "MaxPool" else 0.0)
        if own_left and pad_left and (pad_value != 0.0 or node.op_type == "MaxPool"):
            raise ExportError(f"{what} is padded twice over time with different values; pad once, on the left")
        if node.op_type == "AveragePool" and own_left and not self.attr(node, "count_include_pad", 0):
            raise ExportError(f"{what} averages over time with count_include_pad=False: a chunk's first windows would count "
                                f"other frames than the whole sequence's; use count_include_pad=True or {WAY_OUT}")
        if right or left > span - 1 or left < span - stride:
            ahead = span - 1 - left
            raise ExportError(f"{what} pads the time axis by ({left}, {right}) for a window of {span} frames: it "
                                f"{'needs ' + str(ahead) + ' future frame(s)' if ahead > 0 else 'emits frames of padding alone'}, "
                                f"so a chunk cannot equal the whole sequence; pad on the left only (F.pad(x, (k - 1, 0)) "
                                f"with padding=0, or padding=k-1 and drop the last k-1 outputs) to stream it, or {WAY_OUT}")
        source = pad_node.input[0] if pad_node is not None else x
        states = self._context(node, source, a, left, init, pad_node, chomp) if left else []
        return states, stride

    def _weight_shape(self, node):
        w = self.value(node.input[1]) if len(node.input) > 1 else None
        if w is None:
            raise ExportError(f"{self.layer(node)} ({node.op_type}): its weight is not a constant; {WAY_OUT}")
        return w.shape

    def _pad_before(self, node, a):
        """(Pad node, left, right, value) of a constant Pad feeding `node` on the time axis; (None, 0, 0, 0.0) if none."""
        pad = self.producer.get(node.input[0])
        if pad is None or pad.op_type != "Pad":
            return None, 0, 0, 0.0
        mode = self.attr(pad, "mode", b"constant")
        pads = self.value(pad.input[1]) if len(pad.input) > 1 else None
        if pads is None:
            raise ExportError(f"{self.layer(node)}: the padding feeding it is not a constant; {WAY_OUT}")
        pads = [int(v) for v in pads.reshape(-1)]
        rank = len(self.shapes.get(pad.input[0]) or [])
        axes = list(range(rank))
        if len(pad.input) > 3 and pad.input[3]:
            axes = [int(v) % rank for v in self.value(pad.input[3]).reshape(-1)]
        if a not in axes:
            return None, 0, 0, 0.0
        k = axes.index(a)
        left, right = pads[k], pads[k + len(axes)]
        if mode not in (b"constant", "constant") and (left or right):
            raise ExportError(f"{self.layer(node)} is fed a {mode.decode() if isinstance(mode, bytes) else mode} padding "
                                f"over time: only a constant (zero) left padding streams; {WAY_OUT}")
        value = 0.0
        if len(pad.input) > 2 and pad.input[2]:
            value = float(self.value(pad.input[2]).reshape(-1)[0])
        return pad, left, right, value

    def _chomp(self, node, a):
        """`conv(padding=p)` then `y[..., :-p]` (a TCN's Chomp1d): the Slice dropping the right padding's outputs
        (through slices that keep every element, as torch.onnx writes `[:, :, :-p]`), or None."""
        rank = len(self.shapes.get(node.output[0]) or [])
        nsp = rank - 2
        right = list(self.attr(node, "pads") or [0] * (2 * nsp))[a - 2 + nsp]
        if (self.attr(node, "strides") or [1] * nsp)[a - 2] != 1:
            return None
        value = node.output[0]
        for _ in range(rank + 1):
            users = self.consumers.get(value, [])
            if len(users) != 1 or users[0].op_type != "Slice":
                return None
            bounds = self._slice_bounds(users[0], rank)
            if bounds is None:
                return None
            if all(b == (0, None, 1) for ax, b in bounds.items()):
                value = users[0].output[0]
                continue
            if set(bounds) - {a} and any(b != (0, None, 1) for ax, b in bounds.items() if ax != a):
                return None
            return users[0] if bounds.get(a) == (0, -right, 1) else None
        return None

    def _slice_bounds(self, node, rank):
        """{axis: (start, end or None for 'to the end', step)} of a Slice with constant bounds, else None."""
        import numpy as np

        vals = [self.value(i) if i else None for i in node.input[1:5]]
        if any(v is None for v in vals[:2]) or (len(node.input) > 3 and node.input[3] and vals[2] is None):
            return None
        starts, ends = vals[0].reshape(-1), vals[1].reshape(-1)
        axes = vals[2].reshape(-1) if len(node.input) > 3 and node.input[3] else np.arange(len(starts))
        steps = vals[3].reshape(-1) if len(node.input) > 4 and node.input[4] and vals[3] is not None else np.ones(len(starts))
        return {int(ax) % rank: (int(st), None if int(e) >= 2**31 - 1 else int(e), int(sp))
                for st, e, ax, sp in zip(starts, ends, axes, steps)}

    def _context(self, node, source, a, left, init, pad_node, chomp) -> list[dict]:
        """Concat(context, source) feeds the window (padding on time removed); the context's next value is the
        last `left` frames of that concatenation."""
        import numpy as np
        from onnx import helper, numpy_helper

        dims = list(self.shapes.get(source) or [])
        if not dims or dims[0] != self.batch or any(not isinstance(d, int) for i, d in enumerate(dims) if i not in (0, a)):
            raise ExportError(f"{self.layer(node)} ({node.op_type}): its input's shape {dims} has sizes other than batch "
                                f"and time that are not fixed: its context cannot be a state of fixed size; {WAY_OUT}")
        layer = self.layer(node)
        shape = [self.batch if i == 0 else (left if i == a else d) for i, d in enumerate(dims)]
        name_in, name_out = self.fresh(f"{layer}.ctx0"), self.fresh(f"{layer}.ctxn")
        joined = self.fresh(f"{layer}.ctx_joined")
        starts, ends, axes = self.fresh(f"{layer}.ctx_starts"), self.fresh(f"{layer}.ctx_ends"), self.fresh(f"{layer}.ctx_axes")
        for n, v in ((starts, -left), (ends, INT64_MAX), (axes, a)):
            self.new_inits.append(numpy_helper.from_array(np.array([v], np.int64), n))
        new = [helper.make_node("Concat", [name_in, source], [joined], axis=a),
               helper.make_node("Slice", [joined, starts, ends, axes], [name_out])]
        feed = joined
        if pad_node is not None:  # keep its padding on the other axes, drop it on time
            pads = [int(v) for v in self.value(pad_node.input[1]).reshape(-1)]
            rank = len(dims)
            paxes = [int(v) % rank for v in self.value(pad_node.input[3]).reshape(-1)] if len(pad_node.input) > 3 and pad_node.input[3] else list(range(rank))
            k = paxes.index(a)
            pads[k] = pads[k + len(paxes)] = 0
            if any(pads):
                pname, feed = self.fresh(f"{layer}.ctx_pads"), self.fresh(f"{layer}.ctx_padded")
                self.new_inits.append(numpy_helper.from_array(np.array(pads, np.int64), pname))
                new.append(helper.make_node("Pad", [joined, pname, *pad_node.input[2:]], [feed], mode="constant"))
        node.input[0] = feed
        nsp = len(dims) - 2
        for attr in node.attribute:
            if attr.name == "pads":
                attr.ints[a - 2] = 0
                attr.ints[a - 2 + nsp] = 0
        if chomp is not None:  # padding=k-1 and y[..., :-(k-1)]: with the right padding gone, the chomp is a no-op
            self.dropped.add(id(chomp))
            self.after.setdefault(id(node), []).append(helper.make_node("Identity", [node.output[0]], [chomp.output[0]]))
        self.before.setdefault(id(node), []).extend(new)
        self.new_inputs.append(helper.make_tensor_value_info(name_in, 1, shape))
        self.new_outputs.append(helper.make_tensor_value_info(name_out, 1, shape))
        log.info("%s: %d frames of context carried as state %s -> %s", layer, left, name_in, name_out)
        return [{"input": name_in, "output": name_out, "shape": shape, "batch_axis": 0, "init": float(init),
                 "layer": layer, "kind": f"{node.op_type.lower()}.context"}]

    def commit(self) -> None:
        """Write the new nodes (in order), inputs, outputs and initializers into the graph."""
        nodes = []
        for n in self.graph.node:
            nodes += self.before.get(id(n), [])
            if id(n) not in self.dropped:
                nodes.append(n)
            nodes += self.after.get(id(n), [])
        del self.graph.node[:]
        self.graph.node.extend(nodes)
        self.graph.input.extend(self.new_inputs)
        self.graph.output.extend(self.new_outputs)
        self.graph.initializer.extend(self.new_inits)
        # value_info of rewritten values (padded lengths) no longer holds: drop what the rewrite touched
        stale = {o for n in nodes for o in n.output if o in {x for m in self.before.values() for k in m for x in k.output}}
        kept = [v for v in self.graph.value_info if v.name not in stale]
        del self.graph.value_info[:]
        self.graph.value_info.extend(kept)


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
    spec.states, spec.stride = plan.states, plan.stride
    return plan
