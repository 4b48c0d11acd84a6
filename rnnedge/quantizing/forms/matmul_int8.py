"""matmul-int8 (REST only): dynamic int8 MatMul/Gemm outside the loop (MatMulInteger)."""

from __future__ import annotations

from rnnedge.quantizing.forms.registry import Form, Plan, register
from rnnedge.quantizing.forms.units import rest_matmuls


class MatmulInt8(Form):
    name = "matmul-int8"
    ops = ("REST",)
    rank = 40

    def plan(self, model, unit, units: dict, plan: Plan) -> None:
        plan.dynamic.extend(rest_matmuls(model, units))


register(MatmulInt8())
