"""Sequence to sequence: the `dates` task, an attention encoder-decoder, its export as a folder
(encoder.onnx + decoder.onnx), parity of each file and of the whole decode, and evaluation.

    model = rnnedge.load_checkpoint("d.safetensors")      # a Seq2SeqModel
    model.generate(["5 May 2001"], beam=3)                 # ['2001-05-05']
    rnnedge.export_checkpoint("d.safetensors", "dates/")   # dates/encoder.onnx, dates/decoder.onnx
    rnnedge.runtime.Seq2SeqSession("dates/").generate([...])   # numpy + onnxruntime only

Modules: config (Seq2SeqConfig, no torch), dates (the task, numpy), model, train, export, verify,
evaluate (torch side). Importing this package imports nothing heavy.
"""
