"""Quantize stage: int8 (dynamic, per-node forms chosen by measurement), int8-static (QDQ) and fp16.

`api` (quantize, QuantizeResult), `int8` (what the int8 mode writes), `inputs` (what forms are timed and drift is judged
on: the spec, the user's data, sizes that run), `forms` (the int8 forms of a recurrent node), `select` (measuring and choosing
forms), `calibration` (calibration readers), `drift` (float vs quantized outputs and metrics).
"""
