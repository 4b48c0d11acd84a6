"""The `rnnedge` command line: parse -> call the library -> print. The only package that imports click/rich.

Exit codes come from one table, `EXIT_CODES` (exception class -> code): 0 done, 1 a check failed
(ParityError), 2 bad usage or bad input (any other RnnEdgeError, click usage errors), 3 an internal error
(any other exception: a bug in rnnedge, said so in one line), 130 interrupted. Errors are one line on
stderr (`error: ...`); `--debug` adds the traceback. Every command takes `--json` and then prints exactly
one JSON object on stdout.

Layout: `app.py` the group, its error edge (`EXIT_CODES`), `emit` and the shared options; `commands.py` train, evaluate,
inspect, export, verify, quantize; `deploy.py` mobile, run, bench, quickstart;
`render.py` the rich views. Adding a command: in commands.py decorate with `@cli.command()`, take `@json_option` (and `model_argument` /
`output_option` for files), call ONE library function, and finish with `emit(data, as_json, render)`,
where `render(console, data)` draws the human view (rich tables) on stdout.
"""

from __future__ import annotations

from rnnedge.cli import commands, deploy  # noqa: F401  (register every command on the group)
from rnnedge.cli.app import EXIT_CODES, INTERNAL_ERROR, cli, emit, error_message, exit_code, main

__all__ = ["EXIT_CODES", "INTERNAL_ERROR", "cli", "emit", "error_message", "exit_code", "main"]
