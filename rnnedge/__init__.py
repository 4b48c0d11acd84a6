"""rnnedge: recurrent models from PyTorch to ONNX Runtime, verified."""
__version__ = "0.1.0"
