"""edgec: a PyTorch/ONNX model to a small, fast, verified artifact for an edge device."""

__version__ = "0.1.0"
