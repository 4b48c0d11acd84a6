"""issue 20 (quantize): the figures of notes/issue-20-quantize.md, on published-style files built by tests/quantize_files.py.

    python notes/issue-20-quantize-figures.py FOLDER     # from the repository root; writes its files in FOLDER
"""

import json
import logging
import os
import sys

import numpy as np
import onnx

sys.path.insert(0, os.getcwd())
from rnnedge.quantizing.api import quantize  # noqa: E402
from rnnedge.quantizing.forms import constants_to_initializers  # noqa: E402
from tests.quantize_files import build_dynamo_gru, build_gated, build_odd_size, build_relative_lengths, build_vad, speech_like, stream  # noqa: E402


def show(name, r, src=None, out=None):
    print(f"== {name}: size {r.input_bytes:,} -> {r.output_bytes:,} ({r.size_ratio:.3f}); forms {r.forms}; kept_fp32 {r.kept_fp32}")
    drift = {k: (round(v, 4) if v is not None else None) for k, v in r.judged_drift.items()}
    print(f"   judged on: {r.judged_on or '-'}; judged drift {json.dumps(drift)}")
    for line in r.stayed_float:
        print("   stayed float:", line[:150])
    for rate, chunk in ((16000, 512), (8000, 256)) if src else ():
        audio = speech_like(4.0, rate, seed=3)
        f, q = stream(src, audio, chunk, rate), stream(out, audio, chunk, rate)
        print(f"   stream {rate} Hz, {len(f)} chunks of {chunk}: prob {f.min():.3f}..{f.max():.3f}, max |int8 - fp32| {np.abs(f - q).max():.4f}")


def main():
    logging.disable(logging.WARNING)
    os.chdir(sys.argv[1] if len(sys.argv) > 1 else ".")
    for opset in (15, 17):
        src = build_vad(f"vad{opset}.onnx", opset=opset)
        show(f"VAD opset {opset}", quantize(src, f"vad{opset}.int8.onnx"), src, f"vad{opset}.int8.onnx")
    show("VAD opset 17, --quantize-conv", quantize("vad17.onnx", "vadc.int8.onnx", quantize_conv=True), "vad17.onnx", "vadc.int8.onnx")
    if os.path.exists("vadx.onnx.data"):  # onnx appends to an existing data file
        os.remove("vadx.onnx.data")
    model = onnx.load("vad17.onnx")
    constants_to_initializers(model)
    onnx.save_model(model, "vadx.onnx", save_as_external_data=True, all_tensors_to_one_file=True, location="vadx.onnx.data", size_threshold=1024)
    show("VAD with external data", quantize("vadx.onnx", "vadx.int8.onnx"), "vadx.onnx", "vadx.int8.onnx")
    build_dynamo_gru("dyn.onnx")
    show("dynamo-exported 2-layer GRU(16, 64) tagger", quantize("dyn.onnx", "dyn.int8.onnx"))
    show("relative-lengths LSTM", quantize(build_relative_lengths("rel.onnx"), "rel.int8.onnx"))
    show("odd-size LSTM (runs at 777 samples only)", quantize(build_odd_size("odd.onnx"), "odd.int8.onnx"))
    show("gated LSTM (probability constant on random inputs)", quantize(build_gated("gated.onnx"), "gated.int8.onnx"))


if __name__ == "__main__":
    main()
