"""Bench stage: latency, throughput and peak fraction of ONNX files against torch (`latency`, `flops`)."""
