"""Names shared by the torch side (exporters/ops.py) and the torch-free ONNX-to-ONNX lowerings.

rnnedge's own ONNX domain and the node that carries one PyTorch recurrent layer (its options and its
weights in PyTorch layout) from torch.onnx to the lowerings (native, scan, unrolled).
"""

DOMAIN = "rnnedge"  # the ONNX domain of rnnedge's own nodes
NODE = "TorchRecurrent"  # op type of the node exporters/ops.py emits for each recurrent layer
