"""Published-style recurrent ONNX files built by hand for the quantize tests (no downloads), and speech-like audio.

    build_vad(path)              a VAD: If on the sample rate, each branch an STFT front end (reflect Pad + Conv as DFT)
                                 -> log power -> Conv encoder -> 2-layer LSTM (state in/out) -> speech probability;
                                 weights are Constant nodes inside the branches (as TorchScript writes a scripted If)
    build_relative_lengths(path) an LSTM taking relative lengths (float [batch] in (0, 1]) it scales itself
    build_odd_size(path)         an LSTM that runs at exactly 777 samples (no size quantize tries runs)
    build_gated(path)            an LSTM whose probability output is constant (0) on random inputs
    speech_like(seconds, rate)   harmonics of a gliding pitch under syllable envelopes, pauses, noise
    stream(path, audio, chunk)   a VAD file run chunk by chunk with its state carried over: probabilities
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto as TP
from onnx import helper as H
from onnx import numpy_helper as NH

HID = 64


def _const(nodes, name, arr):
    nodes.append(H.make_node("Constant", [], [name], value=NH.from_array(np.asarray(arr), name + "_v")))
    return name


def _branch(tag, window, rng):
    n = []
    c = lambda name, arr: _const(n, f"{tag}_{name}", arr)  # noqa: E731
    hop, bins = window // 2, window // 2 + 1
    t = np.arange(window)
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * t / window)
    k = np.arange(bins)[:, None]
    basis = np.concatenate([np.cos(2 * np.pi * k * t / window) * hann, -np.sin(2 * np.pi * k * t / window) * hann])
    p = lambda x: f"{tag}_{x}"  # noqa: E731
    n.append(H.make_node("Unsqueeze", ["input", c("ax1", np.array([1], np.int64))], [p("x3")]))
    n.append(H.make_node("Pad", [p("x3"), c("pads", np.array([0, 0, hop, 0, 0, hop], np.int64))], [p("xp")], mode="reflect"))
    n.append(H.make_node("Conv", [p("xp"), c("dft", basis[:, None, :].astype(np.float32))], [p("spec")], strides=[hop], name=p("stft")))
    n.append(H.make_node("Split", [p("spec"), c("split", np.array([bins, bins], np.int64))], [p("re"), p("im")], axis=1))
    n.append(H.make_node("Mul", [p("re"), p("re")], [p("re2")]))
    n.append(H.make_node("Mul", [p("im"), p("im")], [p("im2")]))
    n.append(H.make_node("Add", [p("re2"), p("im2")], [p("pow")]))
    n.append(H.make_node("Add", [p("pow"), c("eps", np.array(1e-6, np.float32))], [p("pe")]))
    n.append(H.make_node("Log", [p("pe")], [p("logspec")]))
    enc_w = (rng.standard_normal((HID, bins, 3)) / np.sqrt(bins * 3)).astype(np.float32)
    n.append(H.make_node("Conv", [p("logspec"), c("enc_w", enc_w), c("enc_b", np.zeros(HID, np.float32))], [p("enc")],
                         pads=[1, 1], name=p("encoder")))
    n.append(H.make_node("Relu", [p("enc")], [p("encr")]))
    n.append(H.make_node("Transpose", [p("encr")], [p("seq")], perm=[2, 0, 1]))  # (frames, B, HID)
    layer_in, hs, cs = p("seq"), [], []
    for layer in range(2):
        for s in ("h", "c"):
            n.append(H.make_node("Slice", [s, c(f"st{s}{layer}", np.array([layer], np.int64)), c(f"en{s}{layer}", np.array([layer + 1], np.int64)),
                                          c(f"ax0_{s}{layer}", np.array([0], np.int64))], [p(f"{s}{layer}")]))
        W = (rng.standard_normal((1, 4 * HID, HID)) * 1.2 / np.sqrt(HID)).astype(np.float32)
        R = (rng.standard_normal((1, 4 * HID, HID)) * 1.2 / np.sqrt(HID)).astype(np.float32)
        B = (rng.standard_normal((1, 8 * HID)) * 0.1).astype(np.float32)
        n.append(H.make_node("LSTM", [layer_in, c(f"W{layer}", W), c(f"R{layer}", R), c(f"B{layer}", B), "", p(f"h{layer}"), p(f"c{layer}")],
                             [p(f"Y{layer}"), p(f"hn{layer}"), p(f"cn{layer}")], hidden_size=HID, name=p(f"lstm{layer}")))
        n.append(H.make_node("Squeeze", [p(f"Y{layer}"), c(f"sq{layer}", np.array([1], np.int64))], [p(f"Ys{layer}")]))
        layer_in = p(f"Ys{layer}")
        hs.append(p(f"hn{layer}"))
        cs.append(p(f"cn{layer}"))
    n.append(H.make_node("Relu", [layer_in], [p("dr")]))
    dec = (rng.standard_normal((HID, 1)) * 3 / np.sqrt(HID)).astype(np.float32)
    n.append(H.make_node("MatMul", [p("dr"), c("dec_w", dec)], [p("logit")], name=p("decoder")))
    n.append(H.make_node("Sigmoid", [p("logit")], [p("prob")]))
    n.append(H.make_node("ReduceMean", [p("prob")], [p("out")], axes=[0], keepdims=0))  # (B, 1)
    n.append(H.make_node("Concat", hs, [p("hn")], axis=0))
    n.append(H.make_node("Concat", cs, [p("cn")], axis=0))
    outs = [H.make_tensor_value_info(p(x), TP.FLOAT, None) for x in ("out", "hn", "cn")]
    return H.make_graph(n, f"vad_{tag}", [], outs)


def build_vad(path, opset=16, seed=0):
    rng = np.random.default_rng(seed)
    nodes = [H.make_node("Constant", [], ["k16"], value=NH.from_array(np.array(16000, np.int64), "k16v")),
             H.make_node("Equal", ["sr", "k16"], ["is16"]),
             H.make_node("If", ["is16"], ["output", "hn", "cn"], name="by_rate",
                         then_branch=_branch("16k", 256, rng), else_branch=_branch("8k", 128, rng))]
    inputs = [H.make_tensor_value_info("input", TP.FLOAT, ["batch", "samples"]), H.make_tensor_value_info("sr", TP.INT64, []),
              H.make_tensor_value_info("h", TP.FLOAT, [2, "batch", HID]), H.make_tensor_value_info("c", TP.FLOAT, [2, "batch", HID])]
    outputs = [H.make_tensor_value_info("output", TP.FLOAT, ["batch", 1]), H.make_tensor_value_info("hn", TP.FLOAT, [2, "batch", HID]),
               H.make_tensor_value_info("cn", TP.FLOAT, [2, "batch", HID])]
    model = H.make_model(H.make_graph(nodes, "vad", inputs, outputs), opset_imports=[H.make_opsetid("", opset)])
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def speech_like(seconds=2.0, rate=16000, seed=0):
    """Voiced segments (harmonics of a gliding pitch, syllable envelopes) between pauses, plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    env = np.clip(np.sin(2 * np.pi * 2.5 * t), 0, None) ** 2 * (t % 1.0 < 0.7)
    return (0.3 * env * voiced + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def stream(path, audio, chunk=512, rate=16000):
    import onnxruntime as ort
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    h = np.zeros((2, 1, HID), np.float32)
    c = np.zeros_like(h)
    probs = []
    for s in range(0, len(audio) - chunk + 1, chunk):
        out, h, c = sess.run(None, {"input": audio[None, s:s + chunk], "sr": np.array(rate, np.int64), "h": h, "c": c})
        probs.append(float(out[0, 0]))
    return np.array(probs)



def build_relative_lengths(path, hidden=64, features=8, seed=0):
    """A speech-toolkit-style LSTM that takes *relative* lengths (float32 [batch] in (0, 1]) and scales them by the
    padded length inside the graph: values past 1 make sequence_lens > seq, which onnxruntime refuses."""
    rng = np.random.default_rng(seed)
    W = NH.from_array((rng.standard_normal((1, 4 * hidden, features)) * 0.3).astype(np.float32), "W")
    R = NH.from_array((rng.standard_normal((1, 4 * hidden, hidden)) / np.sqrt(hidden)).astype(np.float32), "R")
    head = NH.from_array((rng.standard_normal((hidden, 4)) / np.sqrt(hidden)).astype(np.float32), "head")
    zero = NH.from_array(np.array([0], np.int64), "zero")
    nodes = [H.make_node("Shape", ["x"], ["shape"]), H.make_node("Gather", ["shape", "zero"], ["t1"], axis=0),
             H.make_node("Cast", ["t1"], ["tf"], to=TP.FLOAT), H.make_node("Mul", ["rel_lens", "tf"], ["abs_f"]),
             H.make_node("Round", ["abs_f"], ["abs_r"]), H.make_node("Cast", ["abs_r"], ["lens"], to=TP.INT32),
             H.make_node("LSTM", ["x", "W", "R", "", "lens"], ["", "h"], hidden_size=hidden, name="lstm"),
             H.make_node("Squeeze", ["h", "zero"], ["h2"]), H.make_node("MatMul", ["h2", "head"], ["logits"], name="head")]
    graph = H.make_graph(nodes, "rel", [H.make_tensor_value_info("x", TP.FLOAT, ["time", "batch", features]),
                                        H.make_tensor_value_info("rel_lens", TP.FLOAT, ["batch"])],
                         [H.make_tensor_value_info("logits", TP.FLOAT, ["batch", 4])], [W, R, head, zero])
    onnx.save(H.make_model(graph, opset_imports=[H.make_opsetid("", 17)]), str(path))
    return path


def build_odd_size(path, hidden=64, samples=777, seed=0):
    """An LSTM file that runs at exactly `samples` inputs (a Reshape to a fixed frame count): no size quantize tries runs."""
    rng = np.random.default_rng(seed)
    W = NH.from_array((rng.standard_normal((1, 4 * hidden, 7)) * 0.3).astype(np.float32), "W")
    R = NH.from_array((rng.standard_normal((1, 4 * hidden, hidden)) / np.sqrt(hidden)).astype(np.float32), "R")
    shape = NH.from_array(np.array([samples // 7, -1, 7], np.int64), "frames")
    nodes = [H.make_node("Reshape", ["audio", "frames"], ["x"]),
             H.make_node("LSTM", ["x", "W", "R"], ["", "h"], hidden_size=hidden, name="lstm")]
    graph = H.make_graph(nodes, "odd", [H.make_tensor_value_info("audio", TP.FLOAT, ["samples", "batch"])],
                         [H.make_tensor_value_info("h", TP.FLOAT, [1, "batch", hidden])], [W, R, shape])
    onnx.save(H.make_model(graph, opset_imports=[H.make_opsetid("", 17)]), str(path))
    return path


def build_gated(path, hidden=64, features=8, seed=0):
    """An LSTM whose probability output is constant (0) on random inputs (a Relu gate far below zero) next to a
    state output that varies: the constant one cannot be judged on such inputs."""
    rng = np.random.default_rng(seed)
    W = NH.from_array((rng.standard_normal((1, 4 * hidden, features)) * 0.3).astype(np.float32), "W")
    R = NH.from_array((rng.standard_normal((1, 4 * hidden, hidden)) / np.sqrt(hidden)).astype(np.float32), "R")
    head = NH.from_array((rng.standard_normal((hidden, 1)) / np.sqrt(hidden)).astype(np.float32), "head")
    shift = NH.from_array(np.array(-100, np.float32), "shift")
    nodes = [H.make_node("LSTM", ["x", "W", "R"], ["", "h"], hidden_size=hidden, name="lstm"),
             H.make_node("MatMul", ["h", "head"], ["score"], name="head"), H.make_node("Add", ["score", "shift"], ["gate"]),
             H.make_node("Relu", ["gate"], ["speech"])]
    graph = H.make_graph(nodes, "gated", [H.make_tensor_value_info("x", TP.FLOAT, ["time", "batch", features])],
                         [H.make_tensor_value_info("speech", TP.FLOAT, [1, "batch", 1]),
                          H.make_tensor_value_info("h", TP.FLOAT, [1, "batch", hidden])], [W, R, head, shift])
    onnx.save(H.make_model(graph, opset_imports=[H.make_opsetid("", 17)]), str(path))
    return path


def build_dynamo_gru(path, seed=0):
    """A 2-layer GRU(16, 64) tagger saved by torch.onnx's own (dynamo) exporter, which builds each layer's W/R/B at run
    time from Slice/Concat/Unsqueeze of initializers; batch and seq declared dynamic. Returns the torch module."""
    import torch

    class Tagger(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.gru, self.head = torch.nn.GRU(16, 64, num_layers=2, batch_first=True), torch.nn.Linear(64, 5)

        def forward(self, x):
            return self.head(self.gru(x)[0])

    torch.manual_seed(seed)
    module = Tagger().eval()
    dims = {0: torch.export.Dim("batch"), 1: torch.export.Dim("seq")}
    torch.onnx.export(module, (torch.randn(2, 9, 16),), dynamo=True, dynamic_shapes=(dims,), verbose=False).save(str(path), external_data=False)
    return module
