"""Conv and pooling context for a stream (rnnedge.exporting.stream): a window over time whose padding is on the left
only takes that padding from a carried state, the last `pad` frames of its input, instead of zeros each call."""

from __future__ import annotations

import logging

from rnnedge.errors import ExportError

log = logging.getLogger(__name__)

WINDOWS = ("Conv", "MaxPool", "AveragePool")
INT64_MAX = 2**63 - 1
FLOAT32_LOWEST = -3.4028234663852886e38  # MaxPool's padding (-inf in torch) as a finite JSON number
WAY_OUT = "export --target dynamic to run whole sequences"


class WindowContext:
    """Mixed into the stream rewrite's graph (needs GraphReading's helpers)."""

    def window_state(self, node) -> tuple[list[dict], int, int]:
        """A conv or pooling window over time: its left padding from a carried context. ([state], stride, lookahead)."""
        x = node.input[0]
        a = self.time_axis_of(x)
        if a is None or a == 0:
            return [], 1, 0
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
        if node.op_type == "MaxPool":  # F.pad(x, (k - 1, 0), value=-inf): the same maximum from a finite state (JSON, runtime checks)
            init = max(init, FLOAT32_LOWEST)
        if own_left and pad_left and (pad_value != 0.0 or node.op_type == "MaxPool"):
            raise ExportError(f"{what} is padded twice over time with different values; pad once, on the left")
        if node.op_type == "AveragePool" and own_left and not self.attr(node, "count_include_pad", 0):
            raise ExportError(f"{what} averages over time with count_include_pad=False: a chunk's first windows would count "
                                f"other frames than the whole sequence's; use count_include_pad=True or {WAY_OUT}")
        ahead = span - 1 - left
        if stride == 1 and ahead > 0 and right <= ahead and self._nothing_carried_after(node):
            source = pad_node.input[0] if pad_node is not None else x  # a declared delay: output i is whole output i - ahead
            log.info("%s looks %d frame(s) ahead: declared as the stream's lookahead", what, ahead)
            return self._context(node, source, a, span - 1, init, pad_node, None), 1, ahead
        if right or left > span - 1 or left < span - stride:
            raise ExportError(f"{what} pads the time axis by ({left}, {right}) for a window of {span} frames: it "
                                f"{'needs ' + str(ahead) + ' future frame(s)' if ahead > 0 else 'emits frames of padding alone'}, "
                                f"so a chunk cannot equal the whole sequence; pad on the left only (F.pad(x, (k - 1, 0)) "
                                f"with padding=0, or padding=k-1 and drop the last k-1 outputs) to stream it, or {WAY_OUT}"
                                + (" (a delay is declared only where no layer after it carries state)" if ahead > 0 and stride == 1 else ""))
        source = pad_node.input[0] if pad_node is not None else x
        states = self._context(node, source, a, left, init, pad_node, chomp) if left else []
        return states, stride, 0

    def _nothing_carried_after(self, node) -> bool:
        """Whether every layer after `node` works frame by frame (no recurrence, no window over time): then its stream
        output is the whole output delayed, its first frames aside, and a lookahead can be declared."""
        seen, todo = set(), list(node.output)
        while todo:
            for user in self.consumers.get(todo.pop(), []):
                if id(user) in seen:
                    continue
                seen.add(id(user))
                if user.op_type in ("TorchRecurrent", "Scan", *WINDOWS):
                    return False
                todo += list(user.output)
        return True

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
        amounts = self.pads_on_axis(pad, a)
        if amounts is None:
            raise ExportError(f"{self.layer(node)}: the padding feeding it is not a constant; {WAY_OUT}")
        if amounts == "off-axis":
            return None, 0, 0, 0.0
        left, right = amounts
        if mode not in (b"constant", "constant") and (left or right):
            raise ExportError(f"{self.layer(node)} is fed a {mode.decode() if isinstance(mode, bytes) else mode} padding "
                                f"over time: only a constant (zero) left padding streams; {WAY_OUT}")
        value = 0.0
        if len(pad.input) > 2 and pad.input[2]:
            value = float(self.value(pad.input[2]).reshape(-1)[0])
        return pad, left, right, value

    def pads_on_axis(self, pad, a):
        """(left, right) frames a Pad node adds on axis `a`; "off-axis": it pads other axes only; None: its pads are
        not constants."""
        pads = self.value(pad.input[1]) if len(pad.input) > 1 else None
        if pads is None:
            return None
        pads = [int(v) for v in pads.reshape(-1)]
        rank = len(self.shapes.get(pad.input[0]) or [])
        axes = list(range(rank))
        if len(pad.input) > 3 and pad.input[3]:
            axes = [int(v) % rank for v in self.value(pad.input[3]).reshape(-1)]
        if a not in axes:
            return "off-axis"
        k = axes.index(a)
        return pads[k], pads[k + len(axes)]

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
            if bounds is None:  # a computed end: `conv(x)[..., :x.shape[-1]]` if it cuts back to the input's length
                return users[0] if self._trims_to_input(users[0], node, a) else None
            if all(b == (0, None, 1) for ax, b in bounds.items()):
                value = users[0].output[0]
                continue
            if set(bounds) - {a} and any(b != (0, None, 1) for ax, b in bounds.items() if ax != a):
                return None
            return users[0] if bounds.get(a) == (0, -right, 1) else None
        return None

    def _trims_to_input(self, cut, node, a) -> bool:
        """A Slice from 0 whose output has the conv input's own time size (the same symbol) and every other size kept."""
        out, before, given = (self.shapes.get(n) for n in (cut.output[0], cut.input[0], node.input[0]))
        starts = self.value(cut.input[1]) if len(cut.input) > 1 else None
        steps = self.value(cut.input[4]) if len(cut.input) > 4 and cut.input[4] else None
        if not out or not before or not given or len(out) != len(before) or starts is None or starts.any():
            return False
        if steps is not None and (steps != 1).any():
            return False
        return isinstance(out[a], str) and out[a] == given[a] and all(o == b for i, (o, b) in enumerate(zip(out, before)) if i != a)

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
