"""The `rnnedge` command line: parse -> call the library -> print. The only module that imports click/rich.

Exit codes come from one table, `EXIT_CODES` (exception class -> code): 0 done, 1 a check failed
(ParityError), 2 bad usage or bad input (any other RnnEdgeError, click usage errors), 3 an internal error
(any other exception: a bug in rnnedge, said so in one line), 130 interrupted. Errors are one line on
stderr (`error: ...`); `--debug` adds the traceback. Every command takes `--json` and then prints exactly
one JSON object on stdout.

Adding a command: decorate with `@cli.command()`, take `@json_option` (and `model_argument` /
`output_option` for files), call ONE library function, and finish with `emit(data, as_json, render)`,
where `render(console, data)` draws the human view (rich tables) on stdout.
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

log = logging.getLogger("rnnedge")

_state = {"debug": False}

# THE map from what went wrong to the exit code; the first matching class wins, anything else is 3 (a bug).
EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (KeyboardInterrupt, 130),
    (click.exceptions.Abort, 130),  # click's own Ctrl-C
    (ParityError, 1),  # a check failed: parity, a drift or accuracy threshold
    (RnnEdgeError, 2),  # bad input: missing, corrupt or unsafe file, wrong shapes, a module that cannot export
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


def output_option(help: str = "Output file.", required: bool = True):
    return click.option("-o", "--output", "output", type=click.Path(dir_okay=False, path_type=Path), required=required, help=help)


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
        table.add_row(str(k), _fmt(v))
    console.print(table)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, dict):
        return ", ".join(f"{k}={_fmt(x)}" for k, x in v.items())
    if isinstance(v, list) and len(v) > 12:
        return f"{', '.join(map(str, v[:12]))}, ... ({len(v)} in all)"
    if isinstance(v, list):
        return ", ".join(map(str, v))
    return str(v)


# -- train ----------------------------------------------------------------------------------------

TASK_CHOICE = click.Choice(["seed", "digits", "fillblank", "charlm"])


class RichProgress:
    """rnnedge.train's progress hook as a rich progress bar on stderr."""

    def __init__(self, task_name: str, metric: str):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.metric = metric
        self.bar = Progress(TextColumn(f"{task_name} [progress.description]{{task.description}}"), BarColumn(),
                            MofNCompleteColumn(), TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                            console=err_console(), transient=False)
        self.id = None

    def start(self, epochs: int, steps_per_epoch: int) -> None:
        self.bar.start()
        self.id = self.bar.add_task("epoch 1", total=epochs * steps_per_epoch, info="")

    def step(self, epoch: int, loss: float) -> None:
        self.bar.update(self.id, advance=1, description=f"epoch {epoch}")

    def epoch_end(self, record: dict[str, Any]) -> None:
        info = f"loss {record['train_loss']:.3f} val {self.metric} {record['val'][self.metric]:.4f}"
        self.bar.update(self.id, info=info)

    def close(self) -> None:
        self.bar.stop()


@cli.command()
@click.option("--task", "task_name", type=TASK_CHOICE, required=True, help="Built-in task.")
@click.option("--cell", type=click.Choice(["rnn", "gru", "lstm"]), default=None, help="Recurrent cell (task default if omitted).")
@click.option("--hidden", type=click.IntRange(min=1), default=None, help="Hidden units per layer and direction.")
@click.option("--layers", type=click.IntRange(min=1), default=None, help="Stacked recurrent layers.")
@click.option("--bidirectional/--unidirectional", default=None, help="Read the sequence both ways (task default if omitted).")
@click.option("--dropout", type=click.FloatRange(0.0, 1.0, max_open=True), default=None, help="Dropout (input/output and between layers).")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Epochs (task default if omitted).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Random seed.")
@click.option("--lr", type=click.FloatRange(0.0, min_open=True), default=None, help="AdamW learning rate.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Batch size (per process under torchrun).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@output_option("Checkpoint to write (.safetensors).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@json_option
def train(task_name, cell, hidden, layers, bidirectional, dropout, epochs, seed, lr, batch_size, device, output, quiet, as_json):
    """Train a model on a built-in task and save a checkpoint."""
    from rnnedge.checkpoint import save_checkpoint
    from rnnedge.tasks import get_task
    from rnnedge.train import is_main_process
    from rnnedge.train import train as train_model

    task = get_task(task_name)
    config = task.default_config(cell or task.default_config().cell, hidden=hidden, layers=layers,
                                 bidirectional=bidirectional, dropout=dropout)
    progress = False if (quiet or as_json or not is_main_process()) else RichProgress(task.name, task.metric)
    result = train_model(config, task, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, device=device, progress=progress)
    if not is_main_process():
        return
    save_checkpoint(output, result.model, task=task.name, labels=task.labels, metrics=result.metrics)
    data = {"checkpoint": str(output), "task": task.name, "metric": task.metric, "metrics": result.metrics,
            "seconds": round(result.seconds, 2), "epochs": len(result.history), "config": config.to_dict()}
    emit(data, as_json, lambda c, d: render_mapping(c, {"checkpoint": d["checkpoint"], "task": d["task"],
                                                        "cell": config.cell, "seconds": d["seconds"], **d["metrics"]}))


# -- evaluate ------------------------------------------------------------------------------------


@cli.command()
@model_argument
@click.option("--task", "task_name", type=TASK_CHOICE, default=None, help="Task (default: the one in the model's metadata).")
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="test", show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@json_option
def evaluate(model, task_name, split, batch_size, as_json):
    """Score a checkpoint or an .onnx file on a task's split."""
    from rnnedge.evaluation import evaluate_file

    data = evaluate_file(model, task_name, split=split, batch_size=batch_size)
    emit(data, as_json, lambda c, d: render_mapping(c, {"model": d["model"], "task": d["task"], "split": d["split"], **d["metrics"]}))


# -- inspect -------------------------------------------------------------------------------------


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@json_option
def inspect(file, as_json):
    """Describe a checkpoint (config, parameters, metrics) or an .onnx file."""
    from rnnedge.describe import describe_file

    emit(describe_file(file), as_json, _render_description)


def _render_description(console: Console, d: dict[str, Any]) -> None:
    flat = {k: v for k, v in d.items() if k not in ("config", "metrics", "labels")}
    render_mapping(console, flat, title=str(d.get("file", "")))
    if d.get("config"):
        render_mapping(console, d["config"], title="config")
    if d.get("metrics"):
        render_mapping(console, d["metrics"], title="metrics")
    if d.get("labels"):
        console.print(f"labels: {_fmt(d['labels'])}")


# -- export --------------------------------------------------------------------------------------


@cli.command()
@click.argument("source")
@output_option("ONNX file to write.")
@click.option("--target", type=click.Choice(["dynamic", "stream", "mobile"]), default="dynamic", show_default=True,
              help="dynamic: symbolic batch/seq; stream: h0/c0 in, hn/cn out; mobile: fixed chunk, plain operators.")
@click.option("--lowering", type=click.Choice(["auto", "native", "scan", "unrolled"]), default="auto", show_default=True)
@click.option("--chunk", type=click.IntRange(min=1), default=16, show_default=True, help="Steps per call for --target mobile.")
@click.option("--opset", type=click.IntRange(14, 23), default=18, show_default=True)
@click.option("--example", "examples", multiple=True, help="FILE.py:FACTORY only: an example input, e.g. 'float32[1,10,5]' (repeat for more).")
@click.option("--input-name", "input_names", multiple=True, help="FILE.py:FACTORY only: input names, in order.")
@click.option("--output-name", "output_names", multiple=True, help="FILE.py:FACTORY only: output names, in order.")
@click.option("--no-verify", is_flag=True, help="Skip the quick parity check after export.")
@json_option
def export(source, output, target, lowering, chunk, opset, examples, input_names, output_names, no_verify, as_json):
    """Export a checkpoint (or FILE.py:FACTORY, your own module) to one ONNX file with dynamic axes."""
    from rnnedge.export import export_checkpoint
    from rnnedge.usermodule import export_factory, is_factory_ref

    if is_factory_ref(source):
        result = export_factory(source, list(examples), output, target=target, lowering=lowering,
                                input_names=list(input_names) or None, output_names=list(output_names) or None,
                                opset=opset, verify=not no_verify)
    else:
        result = export_checkpoint(Path(source), output, target=target, lowering=lowering, chunk=chunk, opset=opset,
                                   verify=not no_verify)
    data = result.to_dict()
    emit(data, as_json, lambda c, d: render_mapping(c, {k: v for k, v in d.items() if k != "parity"} | (
        {"parity": result.parity.summary()} if result.parity is not None else {})))


# -- verify --------------------------------------------------------------------------------------


@cli.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=Path))
@model_argument
@click.option("--atol", type=click.FloatRange(min=0), default=None,
              help="Fixed absolute tolerance instead of the noise policy (default: 16x torch's own float32 noise; fp16 files 2e-2).")
@click.option("--rtol", type=click.FloatRange(min=0), default=None, help="Fixed relative tolerance (with --atol; fp16 files 2e-2).")
@click.option("--allow-ill-conditioned", is_flag=True,
              help="Pass although some outputs cannot be verified in float32 (torch float32 itself off float64); they stay listed.")
@click.option("--cases", type=click.IntRange(min=0), default=0, show_default=True, help="Random cases beyond the fixed set.")
@click.option("--provider", "providers", multiple=True, help="Execution provider(s) (default: every one available).")
@json_option
def verify(checkpoint, model, atol, rtol, cases, providers, allow_ill_conditioned, as_json):
    """Check that MODEL.onnx computes what CHECKPOINT computes; exit 1 on any difference."""
    from rnnedge.checkpoint import read_checkpoint
    from rnnedge.files import load_onnx
    from rnnedge.parity import verify as verify_parity

    read_checkpoint(checkpoint)  # refuse a bad checkpoint before any work
    load_onnx(model, load_weights=False)
    if providers:  # unknown or unavailable names: one line (onnxruntime would fall back to CPU and say nothing useful)
        from rnnedge.runtime.sessions import select_providers

        providers = [select_providers(p)[0] for p in providers]
    report = verify_parity(checkpoint, model, atol=atol, rtol=rtol, cases=cases, providers=list(providers) or None,
                           allow_ill_conditioned=allow_ill_conditioned)
    emit(report.to_dict(), as_json, lambda c, d: _render_parity(c, report))
    if not report:
        raise ParityError(report.summary().splitlines()[0], report)


def _render_parity(console: Console, report) -> None:
    table = Table(title=f"parity ({report.policy})")
    for col in ("case", "provider", "output", "max abs", "x noise", "max rel", ""):
        table.add_column(col)
    for case in report.cases:
        if case.error:
            table.add_row(case.case, case.provider, "-", "-", "-", "-", f"[red]{case.error}[/red]")
        for o in case.outputs:
            mark = "[green]ok[/green]" if o.ok and not o.ill_conditioned else f"[red]FAIL[/red] {o.note}" if not o.ok else f"[yellow]allowed[/yellow] {o.note}"
            ratio = f"{o.noise_ratio:.1f}" if o.noise_ratio is not None else "-"
            table.add_row(case.case, case.provider, o.name, f"{o.max_abs:.2e}", ratio, f"{o.max_rel:.2e}", mark)
    console.print(table)
    for line in report.summary().splitlines()[:1] + [f"note: {n}" for n in report.notes]:
        console.print(line)


# -- quantize ------------------------------------------------------------------------------------


@cli.command()
@model_argument
@output_option("Quantized .onnx file to write.")
@click.option("--mode", type=click.Choice(["int8", "int8-static", "fp16"]), default="int8", show_default=True,
              help="int8: dynamic; int8-static: calibrated QDQ; fp16: float16 for GPU providers.")
@click.option("--calibration", default=None, help="int8-static: a .npz of inputs (keys = model input names) or a task name.")
@click.option("--calibration-method", type=click.Choice(["minmax", "entropy", "percentile"]), default="minmax", show_default=True)
@click.option("--per-channel/--per-tensor", default=None, help="int8 weight scales per output channel (default: per tensor).")
@click.option("--for", "deploy", default=None, metavar="batch=B,seq=T",
              help="int8: the deployment shape each recurrent unit's form is measured at (default batch 1, the file's chunk or a few steps).")
@click.option("--form", default=None, help="int8: use this form wherever it applies instead of measuring (see rnnedge.quantize_forms.FORMS).")
@click.option("--op-types", default=None, help="int8: comma-separated op types whose weights become int8 (default MatMul,Gemm,RNN,GRU,LSTM,Gather).")
@click.option("--quantize-conv", is_flag=True, default=False, help="int8: quantize Conv too (off by default: int8 Conv can hurt accuracy).")
@click.option("--eval", "eval_task", default=None, metavar="TASK|INPUTS.npz",
              help="Also report drift per output against float32 on a task's test split or your own inputs (.npz by input name).")
@click.option("--max-drift", type=click.FloatRange(min=0), default=None,
              help="Exit 1 if an output moves by more than this fraction of its range (on --eval's inputs, else random ones).")
@json_option
def quantize(model: Path, output: Path, mode: str, calibration: str | None, calibration_method: str, per_channel: bool | None,
             deploy: str | None, form: str | None, op_types: str | None, quantize_conv: bool, eval_task: str | None,
             max_drift: float | None, as_json: bool) -> None:
    """Quantize MODEL.onnx to int8 (forms measured per recurrent unit, or static) or float16."""
    from rnnedge.errors import ParityError
    from rnnedge.quantize import quantize as run_quantize
    from rnnedge.quantize_eval import evaluate

    result = run_quantize(model, output, mode=mode, calibration=calibration, calibration_method=calibration_method,
                          per_channel=per_channel, deploy=deploy, forms=form, op_types=op_types, quantize_conv=quantize_conv)
    data = result.to_dict()
    data.update(evaluate(model, output, eval_task, max_drift))
    emit(data, as_json, _render_quantize)
    if data.get("drift_ok") is False:
        raise ParityError(f"int8 drift {data['drift']['worst_relative']:.4g} of an output's range exceeds --max-drift {max_drift}")


def _render_quantize(console: Console, d: dict[str, Any]) -> None:
    table = Table(title=f"{d['input_path']} -> {d['output_path']} ({d['mode']})")
    for col in ("", "float32", d["mode"], "ratio"):
        table.add_column(col, justify="right" if col else "left")
    table.add_row("size (bytes)", str(d["input_bytes"]), str(d["output_bytes"]), f"{d['size_ratio']:.3f}")
    if d.get("fp32_ms") and d.get("int8_ms"):
        shape = d["deploy"]
        table.add_row(f"latency (ms, batch {shape['batch']}, {shape['seq']} steps)", f"{d['fp32_ms']:.3f}", f"{d['int8_ms']:.3f}",
                      f"{d['latency_ratio']:.2f}")
    cmp = d.get("comparison")
    if cmp:
        table.add_row("latency (ms, 1 thread)", f"{cmp['float_ms']:.2f}", f"{cmp['quant_ms']:.2f}", f"{cmp['latency_ratio']:.2f}")
        for k, v in cmp["float_metrics"].items():
            table.add_row(f"{cmp['task']} {k}", f"{v:.4f}", f"{cmp['quant_metrics'][k]:.4f}", "")
    console.print(table)
    for unit, form in d.get("forms", {}).items():
        console.print(f"- {unit}: [bold]{form}[/bold]" + (f"  (ms: {', '.join(f'{k} {v:.3f}' for k, v in d['measured'][unit].items())})"
                                                          if unit in d.get("measured", {}) else ""))
    for name, o in (d.get("drift") or {}).get("outputs", {}).items():
        agree = f", labels agree {o['label_agreement']:.1%}" if "label_agreement" in o else ""
        console.print(f"- drift {name}: max {o['max_abs']:.3g} ({o['relative_max']:.2%} of range), p99 {o['p99_abs']:.3g}{agree}")
    for line in d["notes"]:
        console.print(f"- {line}")
    for line in d["stayed_float"]:
        console.print(f"[yellow]- {line}[/yellow]")


# -- mobile --------------------------------------------------------------------------------------


@cli.command()
@model_argument
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the .ort file, usability.json/.txt and required_operators.config (created).")
@json_option
def mobile(model, out_dir, as_json):
    """ORT-format model, NNAPI/CoreML usability report and reduced-operator config for ONNX Runtime Mobile."""
    from rnnedge.mobile import prepare_mobile

    report = prepare_mobile(model, out_dir)
    emit(report.to_dict(), as_json, _render_mobile)


def _render_mobile(console: Console, d: dict[str, Any]) -> None:
    render_mapping(console, {"ort": d["ort"], "bytes": d["ort_bytes"], "config": d["config"], "report": d["usability"],
                             "fixed shapes": d["fixed_shapes"]})
    table = Table(title="ONNX Runtime mobile checker")
    for column in ("provider", "nodes", "supported", "%", "partitions", "verdict", "unsupported"):
        table.add_column(column, justify="right" if column in ("nodes", "supported", "%", "partitions") else "left",
                         no_wrap=column == "provider")
    for p in d["providers"].values():
        table.add_row(p["provider"], str(p["nodes"]), str(p["supported"]), f"{p['percent']:.1f}", str(p["partitions"]),
                      p["verdict"], ", ".join(p["unsupported_ops"]) or "-")
    console.print(table)


# -- run -----------------------------------------------------------------------------------------


@cli.command()
@model_argument
@click.option("--input", "input_file", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="A .npy (the main input) or .npz (x|tokens, lengths, h0/c0) file.")
@click.option("--lengths", "lengths_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A .npy of int lengths (B,), one per row.")
@output_option("Write the main output to OUT.npy (or every output to OUT.npz).", required=False)
@click.option("--provider", default="auto", show_default=True, help="auto, cpu, cuda, ... or a full provider name.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Intra-op threads (default: onnxruntime's).")
@json_option
def run(model, input_file, lengths_file, output, provider, threads, as_json):
    """Run MODEL (.onnx/.ort) on arrays from a .npy/.npz file, without torch."""
    from rnnedge.run import run_file

    data = run_file(model, input_file, lengths_file, output, provider=provider, threads=threads)
    emit(data, as_json, _render_run)


def _render_run(console: Console, d: dict[str, Any]) -> None:
    rows = {k: d[k] for k in ("model", "output", "shape", "dtype", "providers", "placement", "output_path") if k in d}
    render_mapping(console, rows)
    if "argmax" in d:
        table = Table(title="predictions")
        table.add_column("row", justify="right")
        table.add_column("argmax", justify="right")
        if "labels" in d:
            table.add_column("label")
        for i, k in enumerate(d["argmax"][:20]):
            table.add_row(str(i), str(k), *([d["labels"][i]] if "labels" in d else []))
        console.print(table)
        if len(d["argmax"]) > 20:
            console.print(f"... {len(d['argmax']) - 20} more rows (use -o OUT.npy or --json)")


# -- bench ---------------------------------------------------------------------------------------


@cli.command()
@model_argument
@click.option("--against", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A checkpoint: time torch eager on the same inputs and report onnx/torch ratios.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--seq", type=click.IntRange(min=1), default=None, help="Steps (default: the task's length, else 50).")
@click.option("--repeats", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="PNG of latency against sequence length: torch eager, onnx fp32, onnx int8 (needs matplotlib).")
@json_option
def bench(model, against, threads, batch, seq, repeats, plot, as_json):
    """Latency (p50/p90/p99), throughput, size and memory of MODEL, against torch eager with --against."""
    from rnnedge.bench import bench as run_bench

    if against is not None:
        from rnnedge.checkpoint import read_checkpoint

        read_checkpoint(against)  # refuse a bad checkpoint before any timing
    report = run_bench(model, against=against, threads=threads, batch=batch, seq=seq, repeats=repeats, plot=plot)
    emit(report.to_dict(), as_json, _render_bench)


def _render_bench(console: Console, d: dict[str, Any]) -> None:
    table = Table(title=f"{d['model']}: batch {d['batch']}, {d['seq']} steps, {d['threads']} thread(s), "
                        f"{d['model_bytes']:,} bytes")
    for col in ("", "p50 ms", "p90 ms", "p99 ms", "seq/s"):
        table.add_column(col, justify="right" if col else "left")
    for name in ("onnx", "torch", "floor"):
        s = d.get(name)
        if s:
            label = {"onnx": "onnxruntime", "torch": "torch eager", "floor": "floor (Identity)"}[name]
            table.add_row(label, f"{s['p50_ms']:.3f}", f"{s['p90_ms']:.3f}", f"{s['p99_ms']:.3f}", f"{s['throughput_seq_s']:,.0f}")
    console.print(table)
    r = d["ratios"]
    if "p50" in r:
        console.print(f"onnx/torch: p50 {r['p50']:.2f}x, p90 {r['p90']:.2f}x, p99 {r['p99']:.2f}x")
    console.print(f"within {r['floor']:.1f}x of the onnxruntime floor; providers {', '.join(d['providers'])}")
    m = d["memory"]
    console.print(f"memory: resident growth {m['rss_growth_mb']:.1f} MiB (peak {m['peak_rss_mb']:.1f} MiB)")
    if d.get("plot"):
        console.print(f"plot: {d['plot']['png']}")


# -- quickstart ----------------------------------------------------------------------------------


@cli.command()
@click.option("--task", "task_name", type=TASK_CHOICE, default="digits", show_default=True)
@click.option("--cell", type=click.Choice(["rnn", "gru", "lstm"]), default="gru", show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Epochs (task default if omitted).")
@click.option("--hidden", type=click.IntRange(min=1), default=None, help="Hidden units (task default if omitted).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/quickstart"),
              show_default=True, help="Folder for the checkpoint, models, reports.")
@json_option
def quickstart(task_name, cell, epochs, hidden, seed, out_dir, as_json):
    """The main job: train, export, verify, quantize (int8) and bench; exit 1 if parity fails."""
    from rnnedge.quickstart import quickstart as run_quickstart
    from rnnedge.tasks import get_task

    quiet = as_json
    progress = False if quiet else RichProgress(task_name, get_task(task_name).metric)
    stage = (lambda name: None) if quiet else (lambda name: err_console().print(f"[bold]{name}[/bold] ..."))
    summary = run_quickstart(task_name, cell=cell, out_dir=out_dir, epochs=epochs, hidden=hidden, seed=seed,
                             progress=progress, on_stage=stage)
    emit(summary, as_json, _render_quickstart)
    if not summary["parity"]["ok"]:
        raise ParityError(summary["parity"]["summary"].splitlines()[0])


def _render_quickstart(console: Console, d: dict[str, Any]) -> None:
    lat = d["latency"]
    table = Table(title=f"quickstart: {d['task']} {d['cell'].upper()} -> {d['out_dir']} "
                        f"(latency: batch {lat['batch']}, {lat['seq']} steps, {lat['threads']} thread)")
    for col in ("", d["metric"], "bytes", "p50 ms", "vs torch"):
        table.add_column(col, justify="right" if col else "left")
    for name in ("torch", "onnx fp32", "onnx int8"):
        s = lat["latency"][name]
        table.add_row(name, f"{d['accuracy'][name]:.4f}", f"{d['bytes']['checkpoint' if name == 'torch' else name]:,}",
                      f"{s['p50_ms']:.3f}", "1.00" if name == "torch" else f"{lat['ratios'][name]:.2f}x")
    console.print(table)
    console.print(d["parity"]["summary"].splitlines()[0] + f"; int8 vs fp32 max abs diff {d['int8_max_abs_diff']:.2e}")
    console.print(f"lowering {d['lowering']}; took {d['seconds']['total']:.0f} s; files in {d['out_dir']}")


if __name__ == "__main__":
    main()
