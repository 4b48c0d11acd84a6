"""The `rnnedge` click group and its error edge: one line and one exit code per failure, `emit` for output.

`EXIT_CODES` is THE map from exception class to exit code (the first match wins; anything else is
`INTERNAL_ERROR`, 3, reported as a bug). `emit(data, as_json, render)` prints one JSON object with
`--json`, else the human view that `render(console, data)` draws.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from rnnedge.errors import ParityError, RnnEdgeError
from rnnedge.tasks import task_names

log = logging.getLogger("rnnedge")

_state = {"debug": False}

# THE map from what went wrong to the exit code; the first matching class wins, anything else is 3 (a bug).
EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (KeyboardInterrupt, 130),
    (click.exceptions.Abort, 130),  # click's own Ctrl-C
    (ParityError, 1),  # a check failed: parity, a drift or accuracy threshold
    (RnnEdgeError, 2),  # bad input: missing, corrupt or unsafe file, wrong shapes, a module that cannot export
    (MemoryError, 2),  # sizes asked for that do not fit in memory (numpy's _ArrayMemoryError is one): bad input, not a bug
    (click.ClickException, 2),  # bad usage: unknown option, bad value, missing argument
)
INTERNAL_ERROR = 3


def out_console() -> Console:
    return Console(soft_wrap=True)


def err_console() -> Console:
    return Console(stderr=True, soft_wrap=True)


# -- the group and its error edge ---------------------------------------------------------------


class RnnEdgeGroup(click.Group):
    """A click group whose main() turns every failure into one line and an exit code."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        argv = list(sys.argv[1:] if args is None else args)
        _state["debug"] = "--debug" in argv
        try:
            rv = super().main(args=argv, prog_name=prog_name or "rnnedge", complete_var=complete_var,
                              standalone_mode=False, **extra)
            code = rv if isinstance(rv, int) else 0
        except click.exceptions.NoArgsIsHelpError as e:  # bare `rnnedge` or a group: the help text
            e.show()
            code = 2
        except (Exception, KeyboardInterrupt) as e:  # the edge: every failure becomes one line and a code
            code = exit_code(e)
            _fail(error_message(e, code))
        if standalone_mode:
            sys.exit(code)
        return code


def exit_code(exc: BaseException) -> int:
    """The exit code for `exc`, from EXIT_CODES (INTERNAL_ERROR when no class matches)."""
    return next((code for cls, code in EXIT_CODES if isinstance(exc, cls)), INTERNAL_ERROR)


def error_message(exc: BaseException, code: int) -> str:
    """The one line printed after 'error: ' for `exc`."""
    if code == 130:
        return "interrupted"
    if isinstance(exc, click.ClickException):  # usage errors, bad option values, missing files
        ctx = getattr(exc, "ctx", None)
        return exc.format_message() + (f" (see '{ctx.command_path} --help')" if ctx is not None else "")
    if isinstance(exc, MemoryError):
        said = " ".join(str(exc).split())
        return f"not enough memory{': ' + said if said else ''} (are the sizes asked for too large?)"
    if code == INTERNAL_ERROR:
        return f"internal error (a bug in rnnedge): {type(exc).__name__}: {exc}; run with --debug for the traceback"
    return str(exc) or type(exc).__name__


def _fail(message: str) -> None:
    if _state["debug"] and sys.exc_info()[0] is not None:
        traceback.print_exc(file=sys.stderr)
    first = " ".join(str(message).split())  # always exactly one line
    click.echo(f"error: {first}", err=True)


@click.group(cls=RnnEdgeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.version_option(package_name="rnnedge")
def cli(debug: bool) -> None:
    """rnnedge: recurrent models (RNN, GRU, LSTM) from PyTorch to ONNX Runtime, verified."""
    _state["debug"] = debug
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def main() -> None:
    """Console-script entry point (`rnnedge`)."""
    cli.main(prog_name="rnnedge")


# -- shared helpers for commands ----------------------------------------------------------------

json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
model_argument = click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
model_or_folder_argument = click.argument("model", type=click.Path(path_type=Path))  # a folder: a seq2seq export (encoder + decoder)


def output_option(help: str = "Output file.", required: bool = True, folder_ok: bool = False):
    return click.option("-o", "--output", "output", type=click.Path(dir_okay=folder_ok, path_type=Path), required=required, help=help)


def emit(data: dict[str, Any], as_json: bool, render: Callable[[Console, dict[str, Any]], None] | None = None) -> None:
    """Print `data`: one JSON object with --json, else `render(console, data)` (default: a key/value table)."""
    if as_json:
        click.echo(json.dumps(_jsonable(data), sort_keys=False))
        return
    console = out_console()
    (render or render_mapping)(console, data)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if hasattr(x, "item") and callable(x.item):  # numpy / torch scalars
        return x.item()
    if isinstance(x, Path):
        return str(x)
    return x


def render_mapping(console: Console, data: dict[str, Any], title: str | None = None) -> None:
    table = Table(title=title, show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    for k, v in data.items():
        table.add_row(str(k), fmt(v))
    console.print(table)


def fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, dict):
        return ", ".join(f"{k}={fmt(x)}" for k, x in v.items())
    if isinstance(v, list) and len(v) > 12:
        return f"{', '.join(map(str, v[:12]))}, ... ({len(v)} in all)"
    if isinstance(v, list):
        return ", ".join(map(str, v))
    return str(v)


# -- options shared by the commands (commands.py, deploy.py) --------------------------------------


class FiniteFloat(click.ParamType):
    """A finite float >= 0 (click's FloatRange lets nan and inf through)."""

    name = "float"

    def convert(self, value, param, ctx):
        import math

        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number) or number < 0:
            self.fail(f"{value!r} must be a finite number >= 0", param, ctx)
        return number


FINITE = FiniteFloat()

provider_option_option = click.option(
    "--provider-option", "provider_options", multiple=True, metavar="KEY=VALUE",
    help="An option for the provider named by --provider, as onnxruntime takes it (e.g. device_id=0); repeatable. "
         "With several --provider: PROVIDER:KEY=VALUE.")


def providers_from_options(names, option_texts):
    """--provider / --provider-option -> the API's providers list (rnnedge.runtime.provider_options)."""
    from rnnedge.runtime.provider_options import cli_providers

    return cli_providers(list(names), list(option_texts))


TASK_CHOICE = click.Choice(task_names())
