"""ONNX Runtime Mobile packaging: ORT-format model, usability verdict per provider, operator config.

    report = rnnedge.mobile.prepare_mobile("model.onnx", "mobile/")
    print(report.summary)

writes into the folder (every file atomically):

    model.ort                  the model in ORT format (what onnxruntime-mobile / -android / -ios load)
    required_operators.config  the operators it needs, for a reduced-size onnxruntime build
                               (`build.sh --minimal_build --include_ops_by_config required_operators.config`)
    usability.json             per provider (NNAPI, CoreML MLProgram, CoreML NeuralNetwork): nodes it
                               can take, partitions, unsupported operators, ORT's own verdict
    usability.txt              the text of onnxruntime's mobile checker
                               (`python -m onnxruntime.tools.check_onnx_model_mobile_usability`)

The verdicts come from onnxruntime's own checker functions, called in-process on the model
after ORT's basic optimizations (as the checker does). The ORT file is also made with basic
optimizations only ("Fixed" style at level basic): higher levels fuse nodes into CPU-only
contrib operators that NNAPI and CoreML cannot take. An rnnedge model exported with
`target="mobile"` (unrolled lowering, fixed chunk) should read 100% on each provider.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rnnedge.errors import BadInputError, first_line
from rnnedge.files import atomic_path, load_onnx, save_onnx, write_bytes_atomic

log = logging.getLogger(__name__)

# Provider label -> the supported-operators table onnxruntime ships for it (None: NNAPI's own function).
PROVIDERS = {
    "NNAPI": None,
    "CoreML MLProgram": "coreml_supported_mlprogram_ops.md",
    "CoreML NeuralNetwork": "coreml_supported_neuralnetwork_ops.md",
}
CONFIG_NAME = "required_operators.config"
_LEVEL_VARIABLE = "ORT_CONVERT_ONNX_MODELS_TO_ORT_OPTIMIZATION_LEVEL"  # read by onnxruntime's converter


@dataclass
class ProviderUsability:
    provider: str
    nodes: int  # nodes in the (basic-optimized) graph
    supported: int  # nodes the provider can take (operator listed and fixed-size inputs)
    partitions: int  # groups of supported nodes; 1 is best, more than 2 rarely pays off
    partition_sizes: list[int]
    unsupported_ops: list[str]  # "domain:Op" the provider does not list
    unsupported_dynamic: int  # nodes refused only because an input has a dynamic shape
    verdict: str  # onnxruntime's suitability: YES | MAYBE | NO

    @property
    def percent(self) -> float:
        return 100.0 * self.supported / self.nodes if self.nodes else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "percent": round(self.percent, 1)}


@dataclass
class MobileReport:
    model: Path
    out_dir: Path
    ort_path: Path
    config_path: Path
    usability_path: Path
    text_path: Path
    ort_bytes: int
    fixed_shapes: bool  # every graph input and output has a static shape
    dynamic_inputs: list[str]
    operators: list[str]  # "domain;opset;Op,Op" lines of the reduced-build config
    providers: dict[str, ProviderUsability] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "model": str(self.model), "out_dir": str(self.out_dir), "ort": str(self.ort_path),
            "config": str(self.config_path), "usability": str(self.usability_path), "text": str(self.text_path),
            "ort_bytes": self.ort_bytes, "fixed_shapes": self.fixed_shapes, "dynamic_inputs": self.dynamic_inputs,
            "operators": self.operators, "providers": {k: v.to_dict() for k, v in self.providers.items()},
        }

    @property
    def summary(self) -> str:
        lines = [f"{self.ort_path} ({self.ort_bytes:,} bytes), operator config {self.config_path}"]
        if not self.fixed_shapes:
            lines.append(f"dynamic inputs {', '.join(self.dynamic_inputs) or '(values)'}: NNAPI needs fixed shapes "
                         "(export with --target mobile)")
        for p in self.providers.values():
            lines.append(f"{p.provider:<21} {p.supported:>5}/{p.nodes:<5} nodes ({p.percent:5.1f}%) in "
                         f"{p.partitions} partition(s): {p.verdict}"
                         + (f"; unsupported {', '.join(p.unsupported_ops)}" if p.unsupported_ops else ""))
        return "\n".join(lines)


def prepare_mobile(model_path, out_dir, *, optimization: str = "basic") -> MobileReport:
    """Write the ORT-format model, usability report and reduced-operator config into `out_dir`."""
    if optimization not in ("basic", "extended", "all"):
        raise BadInputError(f"unknown optimization level '{optimization}': expected basic, extended or all")
    source = Path(model_path)
    model = load_onnx(source)  # not missing, not a pickle, parses, external data stays in its folder
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise BadInputError(f"{out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    stem = source.stem if source.suffix.lower() == ".onnx" else source.name
    ort_path, config_path = out / f"{stem}.ort", out / CONFIG_NAME
    usability_path, text_path = out / "usability.json", out / "usability.txt"

    with tempfile.TemporaryDirectory(prefix="rnnedge-mobile-") as tmp:
        tmp_dir = Path(tmp)
        onnx_copy = tmp_dir / f"{stem}.onnx"  # self-contained copy of what load_onnx accepted
        save_onnx(model, onnx_copy)
        tmp_ort, tmp_config = convert_to_ort(onnx_copy, tmp_dir / "out", optimization)
        providers, dynamic_inputs, fixed, text = check_usability(onnx_copy)
        config = tmp_config.read_text().replace(str(tmp_ort), ort_path.name)  # name the final .ort file
        write_bytes_atomic(config_path, config.encode())  # outputs only once every step worked
        operators = [line for line in config.splitlines() if line and not line.startswith("#")]
        with atomic_path(ort_path) as dest:
            dest.write_bytes(tmp_ort.read_bytes())

    int8 = sum(t.data_type == 3 for t in model.graph.initializer)  # TensorProto.INT8: rnnedge's int8-stored weights
    if int8 and ort_path.stat().st_size > 0.6 * source.stat().st_size * 4:
        log.warning("%s: the ORT file holds float32 weights (%s bytes): onnxruntime's optimizations at level %s fold the "
                    "int8-stored weights (%d tensors) back to float32 at conversion; the .onnx keeps the int8 size",
                    ort_path.name, f"{ort_path.stat().st_size:,}", optimization, int8)
    report = MobileReport(source, out, ort_path, config_path, usability_path, text_path, ort_path.stat().st_size,
                          fixed, dynamic_inputs, operators, providers)
    write_bytes_atomic(usability_path, (json.dumps(report.to_dict(), indent=2) + "\n").encode())
    write_bytes_atomic(text_path, text.encode())
    log.info("mobile package in %s", out)
    return report


def convert_to_ort(onnx_path: Path, out_dir: Path, optimization: str) -> tuple[Path, Path]:
    """onnxruntime's own converter (`python -m onnxruntime.tools.convert_onnx_models_to_ort`, "Fixed" style)
    on one file, its stdout captured and logged: (the .ort file, its reduced-build operator config)."""
    converter = _converter()
    out_dir.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    previous = os.environ.get(_LEVEL_VARIABLE)
    os.environ[_LEVEL_VARIABLE] = optimization  # the converter's only way to take a level other than "all"
    try:
        with contextlib.redirect_stdout(buffer):  # it prints progress: keep --json output clean
            converter.convert_onnx_models_to_ort(onnx_path, output_dir=out_dir,
                                                 optimization_styles=[converter.OptimizationStyle.Fixed])
    except Exception as exc:  # onnxruntime's own load/type errors: pybind classes that derive from Exception only
        raise BadInputError(f"onnxruntime cannot load the model: {first_line(exc)}") from None
    finally:
        if previous is None:
            os.environ.pop(_LEVEL_VARIABLE, None)
        else:
            os.environ[_LEVEL_VARIABLE] = previous
        log.debug("onnxruntime converter: %s", buffer.getvalue().strip())
    suffix = "" if optimization == "all" else f".{optimization}"
    return out_dir / f"{onnx_path.stem}{suffix}.ort", out_dir / f"{onnx_path.stem}.required_operators{suffix}.config"


def _converter():
    """onnxruntime.tools.convert_onnx_models_to_ort, imported without letting it configure the root logger."""
    root = logging.getLogger()
    handlers = list(root.handlers)
    from onnxruntime.tools import convert_onnx_models_to_ort  # importing it calls logging.basicConfig

    root.handlers[:] = handlers
    logging.getLogger("ort_format_model.utils").setLevel(logging.WARNING)  # "Created config in /tmp/..."
    return convert_onnx_models_to_ort


def check_usability(onnx_path) -> tuple[dict[str, ProviderUsability], list[str], bool, str]:
    """onnxruntime's mobile checker, in-process: (per provider figures, dynamic inputs, all I/O fixed, its text)."""
    from onnxruntime.tools.mobile_helpers import usability_checker as uc
    from onnxruntime.tools.onnx_model_utils import ModelProtoWithShapeInfo, optimize_model

    source = Path(onnx_path)
    with tempfile.TemporaryDirectory(prefix="rnnedge-check-") as tmp:
        copy, optimized = Path(tmp) / "model.onnx", Path(tmp) / "optimized.onnx"
        save_onnx(load_onnx(source), copy)  # checked load; external data folded in
        optimize_model(copy, optimized, use_external_initializers=False)  # as the checker does, level basic
        shaped = ModelProtoWithShapeInfo(optimized).model_with_shape_info
        dynamic, _ = uc.check_shapes(shaped.graph, log)
        fixed = not dynamic and all(uc.is_fixed_size_tensor(o) for o in shaped.graph.output)
        providers = {}
        for label, table in PROVIDERS.items():
            if table is None:
                info = uc.check_nnapi_partitions(shaped, require_fixed_input_sizes=True)
            else:
                info = uc.check_coreml_partitions(shaped, require_fixed_input_sizes=True, config_filename=table)
            providers[label] = ProviderUsability(
                label, info.num_nodes, info.num_supported_nodes, info.num_partitions,
                [len(g) for g in info.supported_groups], sorted(info.unsupported_ops),
                info.nodes_unsupported_due_to_dynamic_input, info.suitability().name,
            )
        text = _checker_text(uc, optimized).replace(str(optimized), source.name)
    return providers, [i.name for i in dynamic], fixed, text


def _checker_text(uc, optimized: Path) -> str:
    """The checker's own report (its INFO log), captured instead of printed."""
    logger = logging.getLogger("rnnedge.mobile.checker")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    try:
        uc.checker(optimized.resolve(), logger)
    finally:
        logger.removeHandler(handler)
    return buffer.getvalue()
