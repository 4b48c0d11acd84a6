"""scan-int8 and scan-nbits8: the hoisted-projection Scan (`exporters.scan`) with int8 MatMuls.

    scan-int8     MatMulInteger (dynamic int8 activations), in the body too (RNN/GRU/LSTM nodes are lowered first;
                  Scan units as they are)
    scan-nbits8   weight-only int8 MatMulNBits (blocks of 32, float32 activations)
"""

from __future__ import annotations

from rnnedge.quantizing.forms.registry import Form, Plan, register
from rnnedge.quantizing.forms.units import RECURRENT, Unit, name_nodes


class ScanForm(Form):
    """The Scan form of a unit, its MatMuls handed to one of onnxruntime's quantizers (`target`: a Plan list)."""

    ops = ("RNN", "GRU", "LSTM", "Scan")

    def __init__(self, name: str, rank: int, target: str):
        self.name, self.rank, self.target = name, rank, target

    def plan(self, model, unit, units: dict, plan: Plan) -> None:
        getattr(plan, self.target).extend(scan_matmuls(model, unit))


def scan_matmuls(model, unit: Unit) -> list[str]:
    """Lower `unit` to the Scan form if it is a standard node; the names of its MatMuls (projection and body)."""
    from exporters.scan import lower_to_scan

    before = {n.name for n in model.graph.node}
    if unit.op in RECURRENT:
        skipped = lower_to_scan(model, ops=(unit.op,), names={unit.name})
        if skipped:
            raise ValueError(f"cannot lower {unit.name!r} to Scan: {skipped[0]}")
        new = [n for n in model.graph.node if n.name not in before]
    else:
        new = [n for n in model.graph.node if n.name == unit.name]
    name_nodes(model)
    names = [n.name for n in new if n.op_type == "MatMul"]
    for node in new:
        if node.op_type == "Scan":
            for attr in node.attribute:
                if attr.name == "body":
                    inits = {t.name for t in attr.g.initializer}
                    names += [b.name for b in attr.g.node if b.op_type == "MatMul" and b.input[1] in inits]
    return names


register(ScanForm("scan-int8", 20, "dynamic"))  # MatMulInteger
register(ScanForm("scan-nbits8", 30, "nbits"))  # MatMulNBits
