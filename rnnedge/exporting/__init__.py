"""Export stage: a torch module -> one ONNX file with symbolic batch/seq axes, checked before it is written.

`api` (export, export_checkpoint, ExportResult), `capture` (the torch.onnx call), `axes` (declared axes, ties,
check inputs), `guards` / `guardlog` / `guard_sizes` (what torch.export assumed about each axis), `fixups` (repairs
of torch.onnx's output), `recurrence` (the recurrent custom op and `run_cell`), `usermodule` (FILE.py:FACTORY).
"""
