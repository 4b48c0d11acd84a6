"""lstm-int8: onnxruntime's DynamicQuantizeLSTM (LSTM only): int8 weights and int8 products (CPU provider only)."""

from __future__ import annotations

from rnnedge.quantizing.forms.registry import Form, Plan, register


class LstmInt8(Form):
    name = "lstm-int8"
    ops = ("LSTM",)
    rank = 10

    def plan(self, model, unit, units: dict, plan: Plan) -> None:
        plan.dynamic.append(unit.name)


register(LstmInt8())
