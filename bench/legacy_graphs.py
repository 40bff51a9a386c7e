"""Graphs in the style of old ONNX converters, written with onnx.helper: opsets 7-9, Dropout and
LRN nodes, Flatten, Sum of three inputs, Gemm with transB, Reshape from a constant shape tensor,
a 5-D channel shuffle, BatchNormalization, MaxPool, Concat, Split.

The one module that builds them; tests/integration/test_corpus.py and bench/coverage.py use it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

SIDE = 16  # 1×3×16×16 inputs: these graphs check coverage, not speed


class _Graph:
    """Nodes and seeded random initializers of one graph under construction."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[Any] = []
        self.inits: list[Any] = []

    def weight(self, name: str, *shape: int, scale: float = 0.1) -> str:
        from onnx import numpy_helper

        array = (self.rng.standard_normal(shape) * scale).astype(np.float32)
        self.inits.append(numpy_helper.from_array(array, name))
        return name

    def constant(self, name: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(array, name))
        return name

    def node(self, op: str, inputs: list[str], outputs: list[str], **attrs: Any) -> str:
        from onnx import helper

        self.nodes.append(helper.make_node(op, inputs, outputs, **attrs))
        return outputs[0]

    def batch_norm(self, x: str, out: str, channels: int) -> str:
        scale = self.constant(f"{out}_scale", 1 + 0.1 * self.rng.random(channels, np.float32))
        bias = self.weight(f"{out}_bias", channels)
        mean = self.weight(f"{out}_mean", channels)
        var = self.constant(f"{out}_var", 0.5 + self.rng.random(channels, np.float32))
        return self.node("BatchNormalization", [x, scale, bias, mean, var], [out], epsilon=1e-5)

    def model(self, name: str, opset: int, classes: int, inits_as_inputs: bool = False) -> Any:
        import onnx
        from onnx import TensorProto, helper

        inputs = [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, SIDE, SIDE])]
        if inits_as_inputs:  # IR 3 converters listed every weight as a graph input too
            inputs += [
                helper.make_tensor_value_info(i.name, i.data_type, list(i.dims)) for i in self.inits
            ]
        graph = helper.make_graph(
            self.nodes,
            name,
            inputs,
            [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, classes])],
            self.inits,
        )
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="legacy-style"
        )
        model.ir_version = 3 if inits_as_inputs else 4
        onnx.checker.check_model(model)
        return model


def alexnet_style() -> Any:
    """Opset 8: Conv, LRN, MaxPool, BatchNormalization, Dropout, Flatten, Gemm(transB)."""
    g = _Graph(1)
    x = g.node("Conv", ["data", g.weight("w1", 16, 3, 5, 5), g.weight("b1", 16)], ["c1"],
               pads=[2, 2, 2, 2], kernel_shape=[5, 5], strides=[2, 2])  # fmt: skip
    x = g.node("Relu", [x], ["r1"])
    x = g.node("LRN", [x], ["n1"], size=5, alpha=1e-4, beta=0.75, bias=1.0)
    x = g.node("MaxPool", [x], ["p1"], kernel_shape=[3, 3], strides=[2, 2])
    x = g.batch_norm(x, "bn1", 16)
    x = g.node("Dropout", [x], ["d1"], ratio=0.5)
    x = g.node("Flatten", [x], ["f"], axis=1)
    g.node("Gemm", [x, g.weight("fc_w", 10, 16 * 3 * 3), g.weight("fc_b", 10)], ["prob"], transB=1)
    return g.model("alexnet_style", 8, 10)


def shufflenet_style() -> Any:
    """Opset 9: 5-D channel shuffle (Reshape from constant shape tensors, Transpose), Split,
    Sum of three inputs, GlobalAveragePool, Flatten, Gemm(transB)."""
    g = _Graph(2)
    x = g.node("Conv", ["data", g.weight("w1", 8, 3, 3, 3), g.weight("b1", 8)], ["c1"],
               pads=[1, 1, 1, 1], kernel_shape=[3, 3])  # fmt: skip
    x = g.node("Relu", [x], ["r1"])
    shape5 = g.constant("shape5", np.array([1, 2, 4, SIDE, SIDE], np.int64))
    x = g.node("Reshape", [x, shape5], ["s5"])
    x = g.node("Transpose", [x], ["t5"], perm=[0, 2, 1, 3, 4])
    x = g.node("Reshape", [x, g.constant("shape4", np.array([1, 8, SIDE, SIDE], np.int64))], ["s4"])
    x = g.node("Conv", [x, g.weight("w2", 8, 8, 1, 1)], ["c2"], kernel_shape=[1, 1])
    a, b = "half_a", "half_b"
    g.node("Split", [x], [a, b], axis=1, split=[4, 4])
    x = g.node("Sum", [a, b, a], ["sum3"])
    x = g.node("GlobalAveragePool", [x], ["gap"])
    x = g.node("Flatten", [x], ["f"])
    g.node("Gemm", [x, g.weight("fc_w", 10, 4), g.weight("fc_b", 10)], ["prob"], transB=1)
    return g.model("shufflenet_style", 9, 10)


def inception_style() -> Any:
    """Opset 7, weights also listed as graph inputs (IR 3): parallel branches into Concat,
    MaxPool and AveragePool, Dropout, Reshape from a Constant node, Gemm(transB), Softmax."""
    g = _Graph(3)
    stem = g.node("Conv", ["data", g.weight("w0", 8, 3, 3, 3)], ["c0"], kernel_shape=[3, 3],
                  pads=[1, 1, 1, 1])  # fmt: skip
    stem = g.node("Relu", [stem], ["r0"])
    b1 = g.node("Conv", [stem, g.weight("w1", 4, 8, 1, 1)], ["b1"], kernel_shape=[1, 1])
    b3 = g.node("Conv", [stem, g.weight("w3", 4, 8, 3, 3)], ["b3"], kernel_shape=[3, 3],
                pads=[1, 1, 1, 1])  # fmt: skip
    bp = g.node("MaxPool", [stem], ["bp"], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1])
    x = g.node("Concat", [b1, b3, bp], ["cat"], axis=1)
    x = g.node("Relu", [x], ["r1"])
    x = g.node("AveragePool", [x], ["ap"], kernel_shape=[4, 4], strides=[4, 4])
    x = g.node("Dropout", [x], ["d1"], ratio=0.4)
    shape = np.array([1, 16 * 4 * 4], np.int64)
    from onnx import numpy_helper

    g.node("Constant", [], ["flat_shape"], value=numpy_helper.from_array(shape, "flat_shape"))
    x = g.node("Reshape", [x, "flat_shape"], ["flat"])
    x = g.node("Gemm", [x, g.weight("fc_w", 12, 256), g.weight("fc_b", 12)], ["fc"], transB=1,
               alpha=1.0, beta=1.0)  # fmt: skip
    g.node("Softmax", [x], ["prob"], axis=1)
    return g.model("inception_style", 7, 12, inits_as_inputs=True)


def squeezenet_style() -> Any:
    """Opset 9: fire modules (Concat of 1×1 and 3×3 expands), Dropout with its mask output,
    BatchNormalization, Sum of three inputs, Flatten, Gemm(transB)."""
    g = _Graph(4)
    x = g.node(
        "Conv",
        ["data", g.weight("w0", 8, 3, 3, 3), g.weight("b0", 8)],
        ["c0"],
        kernel_shape=[3, 3],
        strides=[2, 2],
    )  # fmt: skip  (16 → 7)
    x = g.node("Relu", [x], ["r0"])
    squeeze = g.node("Conv", [x, g.weight("ws", 4, 8, 1, 1)], ["sq"], kernel_shape=[1, 1])
    squeeze = g.node("Relu", [squeeze], ["sqr"])
    e1 = g.node("Conv", [squeeze, g.weight("we1", 4, 4, 1, 1)], ["e1"], kernel_shape=[1, 1])
    e3 = g.node("Conv", [squeeze, g.weight("we3", 4, 4, 3, 3)], ["e3"], kernel_shape=[3, 3],
                pads=[1, 1, 1, 1])  # fmt: skip
    fire = g.node("Concat", [e1, e3], ["fire"], axis=1)
    fire = g.batch_norm(fire, "bn", 8)
    x = g.node("Sum", [fire, x, fire], ["sum3"])
    g.node("Dropout", [x], ["drop", "drop_mask"], ratio=0.5)
    x = g.node("MaxPool", ["drop"], ["mp"], kernel_shape=[2, 2], strides=[2, 2])  # 7 → 3
    x = g.node("Flatten", [x], ["f"], axis=1)
    g.node("Gemm", [x, g.weight("fc_w", 10, 8 * 3 * 3), g.weight("fc_b", 10)], ["prob"],
           transB=1, beta=0.5)  # fmt: skip
    return g.model("squeezenet_style", 9, 10)


GRAPHS: dict[str, Callable[[], Any]] = {
    "alexnet_style": alexnet_style,
    "shufflenet_style": shufflenet_style,
    "inception_style": inception_style,
    "squeezenet_style": squeezenet_style,
}


def write(name: str, directory: Path) -> Path:
    """Save graph `name` as directory/name.onnx."""
    import onnx

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.onnx"
    onnx.save(GRAPHS[name](), str(path))
    return path


def wheel_cases(names: list[str]) -> list[Path]:
    """model.onnx of the named cases in the onnx wheel's pytorch-converted test data (many are
    stamped opset 6, which ONNX Runtime refuses)."""
    import onnx

    root = Path(onnx.__file__).parent / "backend" / "test" / "data" / "pytorch-converted"
    return [root / name / "model.onnx" for name in names]
