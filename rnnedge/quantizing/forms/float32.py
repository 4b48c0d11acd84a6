"""float32: the unit's weights stay float32. Never a speed candidate; the fallback where even the floor's int8 weights
move the outputs too far (an unstable ReLU recurrence, say). Applies to every unit when chosen by the accuracy guard."""

from __future__ import annotations

from rnnedge.quantizing.forms.registry import Form, Plan, register
from rnnedge.quantizing.forms.units import FP32, unit_nodes


class Float32(Form):
    name = FP32
    ops = ()  # never tried for speed
    rank = 90

    def plan(self, model, unit, units: dict, plan: Plan) -> None:
        plan.floats.update(unit_nodes(model, unit))


register(Float32())
