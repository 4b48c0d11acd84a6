"""The `rnnedge` commands: each parses its options, calls ONE library function and `emit`s the result."""

from __future__ import annotations

import os
from pathlib import Path

import click

from rnnedge.cli import render
from rnnedge.cli.app import (
    FINITE,
    TASK_CHOICE,
    cli,
    emit,
    json_option,
    model_or_folder_argument,
    output_option,
    provider_option_option,
    providers_from_options,
    render_mapping,
)
from rnnedge.errors import ParityError

MAX_CHUNK = 4096  # --target mobile unrolls this many steps at most (a huge chunk would take hours to build)


# -- train ----------------------------------------------------------------------------------------



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
    from rnnedge.training.loop import is_main_process
    from rnnedge.training.loop import train as train_model

    task = get_task(task_name)
    config = task.default_config(cell or task.default_config().cell, hidden=hidden, layers=layers,
                                 bidirectional=bidirectional, dropout=dropout)
    progress = False if (quiet or as_json or not is_main_process()) else render.RichProgress(task.name, task.metric)
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
@model_or_folder_argument
@click.option("--task", "task_name", type=TASK_CHOICE, default=None, help="Task (default: the one in the model's metadata).")
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="test", show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@json_option
def evaluate(model, task_name, split, batch_size, as_json):
    """Score a checkpoint or an .onnx file on a task's split."""
    from rnnedge.evaluate import evaluate_file

    data = evaluate_file(model, task_name, split=split, batch_size=batch_size)
    emit(data, as_json, lambda c, d: render_mapping(c, {"model": d["model"], "task": d["task"], "split": d["split"], **d["metrics"]}))


# -- inspect -------------------------------------------------------------------------------------


@cli.command()
@click.argument("file", type=click.Path(path_type=Path))
@json_option
def inspect(file, as_json):
    """Describe a checkpoint (config, parameters, metrics), an .onnx file, or a folder of them (seq2seq)."""
    from rnnedge.inspect import describe_file

    emit(describe_file(file), as_json, render.render_description)


# -- export --------------------------------------------------------------------------------------


@cli.command()
@click.argument("source")
@output_option("ONNX file to write (a folder for a seq2seq checkpoint: encoder.onnx + decoder.onnx).", folder_ok=True)
@click.option("--target", type=click.Choice(["dynamic", "stream", "mobile"]), default="dynamic", show_default=True,
              help="dynamic: symbolic batch/seq; stream: every state in and out (recurrent layers, causal conv context; "
              "checkpoints and FILE.py:FACTORY alike); mobile: fixed chunk, plain operators.")
@click.option("--lowering", type=click.Choice(["auto", "native", "scan", "unrolled"]), default="auto", show_default=True)
@click.option("--chunk", type=click.IntRange(1, MAX_CHUNK), default=16, show_default=True,
              help=f"Steps per call for --target mobile (1..{MAX_CHUNK}: the steps are unrolled into the file).")
@click.option("--opset", type=click.IntRange(14, 23), default=18, show_default=True)
@click.option("--example", "examples", multiple=True, help="FILE.py:FACTORY only: an example input, e.g. 'float32[1,10,5]', "
              "'int64[1]=100' (every element 100: lengths), '(float32[2,1,16], float32[2,1,16])' (one tuple argument: "
              "an LSTM's (h0, c0)); repeat for more.")
@click.option("--input-name", "input_names", multiple=True, help="FILE.py:FACTORY only: input names, in order (default: forward's "
              "parameter names).")
@click.option("--output-name", "output_names", multiple=True, help="FILE.py:FACTORY only: output names, in order (default: output, "
              "or output_0, output_1, ...).")
@click.option("--label", "labels", multiple=True, help="FILE.py:FACTORY only: a class label, in order (repeatable); stored as "
              "rnnedge.labels.")
@click.option("--labels", "labels_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="FILE.py:FACTORY only: a file of labels (one per line, or a JSON list); stored as rnnedge.labels.")
@click.option("--no-verify", is_flag=True, help="Skip the quick parity check after export.")
@click.option("--lengths/--no-lengths", "lengths", default=None, help="Checkpoints: take a 'lengths' input (default: only when the task's "
              "sequences vary in length).")
@click.option("--fix-dim", "fix_dims", multiple=True, metavar="NAME=SIZE", help="Pin a named axis to a size in the file, e.g. batch=1 "
              "(for runtimes that refuse symbolic dims); repeatable.")
@click.option("--axis", "axes", multiple=True, metavar="INPUT:AXIS=LABEL", help="FILE.py:FACTORY only: a dynamic axis, e.g. "
              "mel:1=frames (repeatable), added to the default ones (batch and seq of the first input).")
@click.option("--no-default-axes", is_flag=True, help="FILE.py:FACTORY only: --axis replaces the default batch/seq axes instead of "
              "adding to them.")
@click.option("--tie", "ties", multiple=True, metavar="NAME=RELATION", help="FILE.py:FACTORY only: how an axis relates to another, "
              "e.g. 'samples=(frames - 4) * 256'; repeatable.")
@click.option("--check-input", "check_inputs", multiple=True, type=click.Path(dir_okay=False), help="FILE.py:FACTORY only: an .npz of "
              "inputs (named like the inputs, or in order) the quick check runs on instead of sizes it picks; repeatable.")
@click.option("--allow-bounded", is_flag=True, help="FILE.py:FACTORY only: a dynamic axis the module's code bounds (if x.shape[1] > 100) "
              "is recorded (metadata rnnedge.range.<axis>) and enforced by rnnedge.runtime instead of refused.")
@json_option
def export(source, output, target, lowering, chunk, opset, examples, input_names, output_names, labels, labels_file, no_verify, lengths,
           fix_dims, axes, no_default_axes, ties, check_inputs, allow_bounded, as_json):
    """Export a checkpoint (or FILE.py:FACTORY, your own module) to one ONNX file with dynamic axes."""
    from rnnedge.errors import BadInputError
    from rnnedge.exporting.api import export_checkpoint
    from rnnedge.exporting.usermodule import export_factory, is_factory_ref, parse_axes_text, parse_fix_dims, parse_ties_text, read_labels

    fixed = parse_fix_dims(fix_dims)
    from click.core import ParameterSource

    chunk_given = click.get_current_context().get_parameter_source("chunk") != ParameterSource.DEFAULT
    if chunk_given and (target != "mobile" or is_factory_ref(source)):
        raise BadInputError("--chunk sets a checkpoint's --target mobile chunk; for FILE.py:FACTORY the chunk is the example's "
                            "length" if is_factory_ref(source) else f"--chunk is for --target mobile, not --target {target}")
    if lengths and target == "mobile":
        raise BadInputError("--lengths is not available with --target mobile: a fixed chunk has every step of every row")
    if is_factory_ref(source):
        axis_options = dict(fix_dims=fixed or None, tied_axes=parse_ties_text(ties) or None, dynamic_axes=parse_axes_text(axes) or None,
                            default_axes=not no_default_axes)
        result = export_factory(source, list(examples), output, target=target, lowering=lowering,
                                input_names=list(input_names) or None, output_names=list(output_names) or None,
                                opset=opset, verify=not no_verify, allow_bounded=allow_bounded, check_input_files=check_inputs,
                                labels=read_labels(labels, labels_file), **axis_options)
    else:
        if ties or check_inputs or axes or no_default_axes:
            raise BadInputError("--axis, --no-default-axes, --tie and --check-input are for FILE.py:FACTORY modules; a checkpoint's "
                                "axes are declared by rnnedge")
        if labels or labels_file or input_names or output_names:
            raise BadInputError("--label/--labels and --input-name/--output-name are for FILE.py:FACTORY modules; a checkpoint's "
                                "labels and names come from its task")
        result = export_checkpoint(Path(source), output, target=target, lowering=lowering, chunk=chunk, opset=opset,
                                   verify=not no_verify, lengths=lengths, fix_dims=fixed or None)
    data = result.to_dict()
    emit(data, as_json, lambda c, d: render.render_export(c, d, result.parity.summary() if result.parity is not None else None))


# -- verify --------------------------------------------------------------------------------------


@cli.command()
@click.argument("source", metavar="CKPT|FILE.py:FACTORY")
@model_or_folder_argument
@click.option("--atol", type=FINITE, default=None,
              help="Fixed absolute tolerance instead of the noise policy (default: 16x torch's own float32 noise; fp16 files 2e-2).")
@click.option("--rtol", type=FINITE, default=None, help="Fixed relative tolerance (with --atol; fp16 files 2e-2).")
@click.option("--allow-ill-conditioned", is_flag=True,
              help="Pass although some outputs cannot be verified in float32 (torch float32 itself off float64); they stay listed.")
@click.option("--cases", type=click.IntRange(min=0), default=0, show_default=True, help="Random cases beyond the fixed set.")
@click.option("--provider", "providers", multiple=True, help="Execution provider(s), each checked (default: every one available).")
@provider_option_option
@click.option("--example", "examples", multiple=True, help="FILE.py:FACTORY only: the export's example input, e.g. 'float32[1,100,40]' "
              "(its length is what the cases are built around).")
@click.option("--axis", "axes", multiple=True, metavar="INPUT:AXIS=LABEL", help="FILE.py:FACTORY only: a dynamic axis the file must declare.")
@click.option("--no-default-axes", is_flag=True, help="Accepted as export takes it (the file's own spec says its axes): export's options can be repeated here.")
@click.option("--check-input", "check_inputs", multiple=True, type=click.Path(dir_okay=False), help="FILE.py:FACTORY only: an .npz of "
              "inputs compared exactly (streamed in chunks for a stream file); repeatable.")
@json_option
def verify(source, model, atol, rtol, cases, providers, provider_options, allow_ill_conditioned, examples, axes, no_default_axes,
           check_inputs, as_json):
    """Check that MODEL.onnx computes what CKPT (or your module, FILE.py:FACTORY) computes; exit 1 on any difference.

    A stream file (--target stream) is also fed in chunks of 1, 7 and 50 steps, state carried, against the whole sequence."""
    from rnnedge.checkpoint import read_checkpoint
    from rnnedge.errors import BadInputError
    from rnnedge.exporting.usermodule import is_factory_ref, verify_factory
    from rnnedge.files import load_onnx
    from rnnedge.parity import verify as verify_parity

    factory = is_factory_ref(source)
    if not factory:
        if examples or axes or check_inputs or no_default_axes:
            raise BadInputError("--example, --axis, --no-default-axes and --check-input are for FILE.py:FACTORY modules; "
                                "a checkpoint declares its own")
        read_checkpoint(Path(source))  # refuse a bad checkpoint before any work
    if not model.is_dir():  # a folder is a seq2seq export, checked file by file by rnnedge.families.seq2seq.verify
        load_onnx(model, load_weights=False)
    if providers or provider_options:  # unknown or unavailable names: one line (onnxruntime would fall back to CPU, unsaid)
        from rnnedge.runtime.providers import provider_entries

        chosen = providers_from_options(providers, provider_options)
        providers = [provider_entries(p)[0] for p in ([chosen] if isinstance(chosen, str) else chosen)]
    options = dict(atol=atol, rtol=rtol, cases=cases, providers=list(providers) or None, allow_ill_conditioned=allow_ill_conditioned)
    if factory:
        report = verify_factory(source, model, examples=examples, axes=axes, check_inputs=check_inputs, **options)
    else:
        report = verify_parity(Path(source), model, **options)
    emit(report.to_dict(), as_json, lambda c, d: render.render_parity(c, report))
    if not report:
        raise ParityError(report.summary().splitlines()[0], report)


# -- quantize ------------------------------------------------------------------------------------


def _eval_source(ctx, param, value):
    """--eval: a built-in task or an existing .npz/.npy of inputs, checked before anything is written."""
    from rnnedge.tasks import TASKS

    if value is None or value in TASKS or Path(value).is_file():
        return value
    raise click.BadParameter(f"{value!r} is neither a task ({', '.join(TASKS)}) nor an existing .npz of inputs")


@cli.command()
@model_or_folder_argument
@output_option("Quantized .onnx file to write (a folder for a seq2seq folder).", folder_ok=True)
@click.option("--mode", type=click.Choice(["int8", "int8-static", "fp16"]), default="int8", show_default=True,
              help="int8: int8 weights, forms measured (--for); int8-static: calibrated QDQ; fp16: float16 for GPU providers.")
@click.option("--calibration", default=None,
              help="A .npz of inputs (keys = model input names) or a task name: int8-static calibrates on it, int8 judges drift on it.")
@click.option("--calibration-method", type=click.Choice(["minmax", "entropy", "percentile"]), default="minmax", show_default=True)
@click.option("--per-channel/--per-tensor", default=None, help="lstm-int8/scan-int8/matmul-int8: scales per output channel "
                   "(default: per tensor); weights-int8 is per row always.")
@click.option("--for", "deploy", default=None, metavar="batch=B,seq=T",
              help="int8: the deployment shape each recurrent unit's form is measured at (default batch 1, the file's chunk or a few steps).")
@click.option("--form", default=None, help="int8: use this form wherever it applies instead of measuring (see rnnedge.quantizing.forms.FORMS).")
@click.option("--op-types", default=None, help="int8: comma-separated op types whose weights become int8 (default MatMul,Gemm,RNN,GRU,LSTM,Gather).")
@click.option("--quantize-conv", is_flag=True, default=False, help="int8: quantize Conv too (off by default: int8 Conv can hurt accuracy).")
@click.option("--eval", "eval_task", default=None, metavar="TASK|INPUTS.npz", callback=_eval_source,
              help="Also report drift per output against float32 on a task's test split or your own inputs (.npz by input name).")
@click.option("--max-drift", type=FINITE, default=None,
              help="Exit 1 if an output moves by more than this fraction of its range (on --eval's inputs, else random ones).")
@click.option("--example", "examples", multiple=True, metavar="NAME=VALUE",
              help="int8: an input the file cannot describe, for timing and the drift check: a value (sr=16000) or a shape "
                   "(audio=float32[1,512]); repeatable.")
@click.option("--provider", default=None, metavar="NAME",
              help="int8: the execution provider the file will run on: forms are timed there and never one it cannot run (default cpu).")
@provider_option_option
@json_option
def quantize(model: Path, output: Path, mode: str, calibration: str | None, calibration_method: str, per_channel: bool | None,
             deploy: str | None, form: str | None, op_types: str | None, quantize_conv: bool, eval_task: str | None,
             max_drift: float | None, examples: tuple[str, ...], provider: str | None, provider_options: tuple[str, ...],
             as_json: bool) -> None:
    """Quantize MODEL.onnx to int8 (forms measured per recurrent unit, or static) or float16."""
    from rnnedge.errors import ParityError
    from rnnedge.quantizing.api import quantize as run_quantize
    from rnnedge.quantizing.drift import evaluate

    checked = (eval_task is not None or max_drift is not None) and not Path(model).is_dir()
    # with --eval/--max-drift the file is judged before it takes the output's place: a failed check or bad --eval
    # inputs leave an existing output untouched
    target = output.with_name(f".{output.name}.{os.getpid()}.unchecked.onnx") if checked else output
    try:
        result = run_quantize(model, target, mode=mode, calibration=calibration, calibration_method=calibration_method,
                              per_channel=per_channel, deploy=deploy, forms=form, op_types=op_types, quantize_conv=quantize_conv,
                              data=eval_task if mode == "int8" else None, examples=list(examples) or None,
                              providers=providers_from_options([provider or "cpu"], provider_options) if provider or provider_options else None)
        data = result.to_dict()
        data.update(evaluate(model, target, eval_task, max_drift))
        passed = data.get("drift_ok") is not False
        if checked and passed:
            os.replace(target, output)
        if checked:
            data["output_path"] = str(output) if passed else f"{output} (not written: the drift check failed)"
    finally:
        if checked and target.exists():
            target.unlink()
    emit(data, as_json, render.render_quantize)
    if not passed:
        raise ParityError(f"int8 drift {data['drift']['worst_relative']:.4g} of an output's range exceeds --max-drift {max_drift}")


# -- mobile --------------------------------------------------------------------------------------
