"""Sequence to sequence: the `dates` task, an attention encoder-decoder, its export as a folder
(encoder.onnx + decoder.onnx), parity of each file and of the whole decode, and evaluation.

    model = rnnedge.load_checkpoint("d.safetensors")      # a Seq2SeqModel
    model.generate(["5 May 2001"], beam=3)                 # ['2001-05-05']
    rnnedge.export_checkpoint("d.safetensors", "dates/")   # dates/encoder.onnx, dates/decoder.onnx
    rnnedge.runtime.Seq2SeqSession("dates/").generate([...])   # numpy + onnxruntime only

Modules: config (Seq2SeqConfig, no torch), dates (the task, numpy), model, train (its loss on a batch), export,
verify, evaluate, quantize. Registers itself with rnnedge.families.registry; importing it imports nothing heavy.
"""

from __future__ import annotations

from pathlib import Path

from rnnedge.families.registry import Family, register


def _config_from_dict(d):
    from rnnedge.families.seq2seq.config import Seq2SeqConfig

    return Seq2SeqConfig.from_dict(d)


def _build(config):
    from rnnedge.families.seq2seq.model import Seq2SeqModel

    return Seq2SeqModel(config)


def _export_checkpoint(model, path, *, opset: int = 18, verify: bool = True, target: str = "dynamic", **_options):
    from rnnedge.families.seq2seq.export import export_seq2seq

    return export_seq2seq(model, path, opset=opset, verify=verify, target=target)


def _split_tensors(data):
    import torch

    return tuple(torch.from_numpy(a) for a in (data.inputs, data.lengths, data.targets))  # (N, Ts), (N,), (N, Tt)


def _train_loss(net, task, tensors, ix, device):
    from rnnedge.families.seq2seq.train import teacher_forced_loss

    return teacher_forced_loss(net, task, tensors, ix, device)


def _evaluate_model(model, task, split):
    from rnnedge.families.seq2seq.train import evaluate_seq2seq

    return evaluate_seq2seq(model, task, split)


def _owns_path(path: Path) -> bool:
    return path.is_dir()  # an exported encoder-decoder folder (encoder.onnx + decoder.onnx)


def _verify_path(model_or_ckpt, path, **options):
    from rnnedge.families.seq2seq.verify import verify_folder

    return verify_folder(model_or_ckpt, path, **options)


def _quantize_path(path, out, **options):
    from rnnedge.families.seq2seq.quantize import quantize_folder

    return quantize_folder(path, out, **options)


def _evaluate_path(path, task_name=None, split="test", batch_size=256):
    from rnnedge.families.seq2seq.evaluate import evaluate_path

    return evaluate_path(path, task_name, split=split, batch_size=batch_size)


def _compare_paths(float_path, quant_path, task_name):
    from rnnedge.families.seq2seq.evaluate import compare_folders

    return compare_folders(float_path, quant_path, task_name)


def _dates_task():
    from rnnedge.families.seq2seq.dates import DatesTask

    return DatesTask()


register(Family(name="seq2seq", config_from_dict=_config_from_dict, build=_build, export_checkpoint=_export_checkpoint,
                train_loss=_train_loss, evaluate_model=_evaluate_model, split_tensors=_split_tensors, owns_path=_owns_path,
                verify_path=_verify_path, quantize_path=_quantize_path, evaluate_path=_evaluate_path,
                compare_paths=_compare_paths, distributed=False, tasks={"dates": _dates_task}))
