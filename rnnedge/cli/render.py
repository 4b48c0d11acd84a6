"""The human view of each command's result: rich tables on stdout, a progress bar on stderr."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from rnnedge.cli.app import err_console, fmt, render_mapping


class RichProgress:
    """rnnedge.training.loop's progress hook as a rich progress bar on stderr."""

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


def render_description(console: Console, d: dict[str, Any]) -> None:
    if d.get("kind") == "folder":
        console.print(f"{d['file']}: {len(d['parts'])} model file(s)")
        for part in d["parts"].values():
            render_description(console, part)
        return
    flat = {k: v for k, v in d.items() if k not in ("config", "metrics", "labels")}
    render_mapping(console, flat, title=str(d.get("file", "")))
    if d.get("config"):
        render_mapping(console, d["config"], title="config")
    if d.get("metrics"):
        render_mapping(console, d["metrics"], title="metrics")
    if d.get("labels"):
        console.print(f"labels: {fmt(d['labels'])}")


def render_export(console: Console, d: dict[str, Any], parity: str | None) -> None:
    """The export's summary, then each input and output of the file with its dtype and dims."""
    io = d.get("io") or {}
    shown = ("parity", "io", "inputs", "outputs") if io else ("parity", "io")
    render_mapping(console, {k: v for k, v in d.items() if k not in shown and (k != "valid" or v)}  # valid: recorded ranges only
                   | ({"parity": parity} if parity is not None else {}))
    for kind in ("inputs", "outputs"):
        for t in io.get(kind, []):
            console.print(f"{kind[:-1]:6} {t['name']}  {t['dtype']} [{', '.join(map(str, t['shape']))}]", highlight=False, markup=False)


def render_parity(console: Console, report) -> None:
    table = Table(title=f"parity ({report.policy})")
    for col in ("case", "provider", "output", "max abs", "x noise", "max rel", ""):
        table.add_column(col)
    for case in report.cases:
        if case.error:
            table.add_row(case.case, case.provider, "-", "-", "-", "-", f"[red]{case.error}[/red]")
        elif getattr(case, "skipped", "") or not case.outputs:
            table.add_row(case.case, case.provider, "-", "-", "-", "-", f"[yellow]{case.skipped or 'ok'}[/yellow]")
        for o in case.outputs:
            mark = "[green]ok[/green]" if o.ok and not o.ill_conditioned else f"[red]FAIL[/red] {o.note}" if not o.ok else f"[yellow]allowed[/yellow] {o.note}"
            ratio = f"{o.noise_ratio:.1f}" if o.noise_ratio is not None else "-"
            table.add_row(case.case, case.provider, o.name, f"{o.max_abs:.2e}", ratio, f"{o.max_rel:.2e}", mark)
    console.print(table)
    for line in report.summary().splitlines()[:1] + [f"note: {n}" for n in report.notes]:
        console.print(line)


def render_quantize(console: Console, d: dict[str, Any]) -> None:
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
    if d.get("judged_on"):
        judged = ", ".join(f"{k} {'unjudged (constant there)' if v is None else f'{v:.2%} of range'}" for k, v in d.get("judged_drift", {}).items())
        console.print(f"- judged on {d['judged_on']}" + (f": {judged}" if judged else ""))
    for line in d["notes"]:
        console.print(f"- {line}")
    for line in d["stayed_float"]:
        console.print(f"[yellow]- {line}[/yellow]")


def render_mobile(console: Console, d: dict[str, Any]) -> None:
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


def render_run(console: Console, d: dict[str, Any]) -> None:
    rows = {k: d[k] for k in ("model", "output", "shape", "dtype", "lookahead", "providers", "placement", "output_path") if k in d}
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


def render_bench(console: Console, d: dict[str, Any]) -> None:
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
    w = d.get("work") or {}
    if w.get("gflops"):
        console.print(f"work: {w['gflops']:.2f} GFLOP/s, {w['peak_fraction']:.0%} of this machine's fp32 MatMul peak "
                      f"({w['peak_gflops']:.1f} GFLOP/s, measured in the same run)")
    q = d.get("quantization")
    if q:
        forms = ", ".join(f"{k}: {v}" for k, v in (q.get("forms") or {}).items()) or ("float32 kept" if q.get("kept_fp32") else "-")
        console.print(f"quantization: {q['mode']}; forms {forms}" + (f" (chosen for {q['for']})" if q.get("for") else ""))
    m = d["memory"]
    console.print(f"memory: resident growth {m['rss_growth_mb']:.1f} MiB (peak {m['peak_rss_mb']:.1f} MiB)")
    if d.get("plot"):
        console.print(f"plot: {d['plot']['png']}")


def render_quickstart(console: Console, d: dict[str, Any]) -> None:
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
