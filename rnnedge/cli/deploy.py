"""The deployment commands: mobile (ORT format + usability report), run (an app's call from the shell), bench
(latency against torch) and quickstart (the main job). Same shape as commands.py: parse, ONE library call, `emit`."""

from __future__ import annotations

from pathlib import Path

import click

from rnnedge.cli import render
from rnnedge.cli.app import (
    TASK_CHOICE,
    cli,
    emit,
    err_console,
    json_option,
    model_argument,
    output_option,
    provider_option_option,
    providers_from_options,
)
from rnnedge.errors import ParityError


@cli.command()
@model_argument
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the .ort file, usability.json/.txt and required_operators.config (created).")
@json_option
def mobile(model, out_dir, as_json):
    """ORT-format model, NNAPI/CoreML usability report and reduced-operator config for ONNX Runtime Mobile."""
    from rnnedge.mobile import prepare_mobile

    report = prepare_mobile(model, out_dir)
    emit(report.to_dict(), as_json, render.render_mobile)


# -- run -----------------------------------------------------------------------------------------


@cli.command()
@model_argument
@click.option("--input", "input_file", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="A .npy (the main input) or .npz (x|tokens, lengths, h0/c0) file.")
@click.option("--lengths", "lengths_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A .npy of int lengths (B,), one per row.")
@output_option("Write the main output to OUT.npy (or every output to OUT.npz).", required=False)
@click.option("--provider", default="auto", show_default=True, help="auto, cpu, cuda, ... or a full provider name.")
@provider_option_option
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Intra-op threads (default: onnxruntime's).")
@click.option("--chunk", type=click.IntRange(min=1), default=None, help="Stream files: feed each row in chunks of this many steps "
              "(rnnedge.runtime.StreamingSession, state carried), outputs joined.")
@json_option
def run(model, input_file, lengths_file, output, provider, provider_options, threads, chunk, as_json):
    """Run MODEL (.onnx/.ort) on arrays from a .npy/.npz file, without torch."""
    from rnnedge.run import run_file

    data = run_file(model, input_file, lengths_file, output, provider=providers_from_options([provider], provider_options), threads=threads,
                    chunk=chunk)
    emit(data, as_json, render.render_run)


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
@click.option("--provider", default="cpu", show_default=True, help="The provider timed: cpu, cuda, auto, ... or a full name.")
@provider_option_option
@json_option
def bench(model, against, threads, batch, seq, repeats, plot, provider, provider_options, as_json):
    """Latency (p50/p90/p99), throughput, size and memory of MODEL, against torch eager with --against."""
    from rnnedge.bench.latency import bench as run_bench

    if against is not None:
        from rnnedge.checkpoint import read_checkpoint

        read_checkpoint(against)  # refuse a bad checkpoint before any timing
    report = run_bench(model, against=against, threads=threads, batch=batch, seq=seq, repeats=repeats, plot=plot,
                       providers=providers_from_options([provider], provider_options))
    emit(report.to_dict(), as_json, render.render_bench)


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
    progress = False if quiet else render.RichProgress(task_name, get_task(task_name).metric)
    stage = (lambda name: None) if quiet else (lambda name: err_console().print(f"[bold]{name}[/bold] ..."))
    summary = run_quickstart(task_name, cell=cell, out_dir=out_dir, epochs=epochs, hidden=hidden, seed=seed,
                             progress=progress, on_stage=stage)
    emit(summary, as_json, render.render_quickstart)
    if not summary["parity"]["ok"]:
        raise ParityError(summary["parity"]["summary"].splitlines()[0])
