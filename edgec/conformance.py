"""ONNX's conformance cases on disk: the node tests written once into edgec's cache in the
standard layout (model.onnx, test_data_set_0/input_*.pb, output_*.pb), beside the model tests
that ship in the onnx wheel; and the expected-failure list (tests/data/onnx_expected_failures.toml).

The onnx wheel holds no node-test data: the cases are generated from onnx.backend.test.case.node
in process (about 1,900 cases, seconds), once per onnx version.
"""

from __future__ import annotations

import fnmatch
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgec.package_files import cache_dir

MODEL_KINDS = ("pytorch-converted", "pytorch-operator", "simple")  # shipped in the onnx wheel
EXPECTED_FAILURES = (
    Path(__file__).resolve().parent.parent / "tests" / "data" / "onnx_expected_failures.toml"
)


# Op category of each CNN-relevant op type (issue 12); node cases testing one of these ops are
# "the CNN set", the rest of the suite is reported under its own categories.
CNN_CATEGORIES: dict[str, tuple[str, ...]] = {
    "conv": ("Conv", "ConvTranspose"),
    "pooling": ("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LRN"),
    "normalization": ("BatchNormalization", "InstanceNormalization", "LayerNormalization"),
    "activation": (
        "Relu", "LeakyRelu", "PRelu", "Sigmoid", "Tanh", "Elu", "Selu", "HardSigmoid",
        "HardSwish", "Softplus", "Clip", "Erf", "Gelu", "Sqrt", "Exp", "Dropout",
    ),
    "shape": (
        "Reshape", "Transpose", "Concat", "Split", "Slice", "Pad", "Resize", "Flatten",
        "Squeeze", "Unsqueeze", "Gather", "Expand", "Tile", "DepthToSpace", "SpaceToDepth",
    ),
    "gemm/matmul": ("Gemm", "MatMul"),
    "softmax": ("Softmax",),
    "reduction": (
        "ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum", "ReduceProd", "ReduceL1",
        "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare",
    ),
    "elementwise": ("Add", "Sub", "Mul", "Div", "Pow", "Sum"),
}  # fmt: skip
CNN_OPS = {op: category for category, ops in CNN_CATEGORIES.items() for op in ops}


@dataclass(frozen=True)
class Case:
    """One conformance case: a graph and its data sets, with the suite's tolerances."""

    name: str  # test_conv_with_strides_padding, as BackendTest names it
    kind: str  # node, pytorch-converted, pytorch-operator or simple
    directory: Path
    rtol: float = 1e-3
    atol: float = 1e-7

    def model(self) -> Any:
        import onnx

        return onnx.load(str(self.directory / "model.onnx"))

    def data_sets(self) -> Iterator[tuple[list[np.ndarray], list[np.ndarray]]]:
        """(inputs, expected outputs) of each test_data_set_* directory."""
        for data_set in sorted(self.directory.glob("test_data_set_*")):
            yield _tensors(data_set, "input"), _tensors(data_set, "output")

    def category(self) -> str:
        return category(self.kind, self.name, self.model())


def category(kind: str, name: str, model: Any) -> str:
    """A node case's op category (when it tests one CNN-relevant op), else its group."""
    if kind != "node":
        return kind
    ops = {node.op_type for node in model.graph.node}
    if len(ops) == 1 and (op := ops.pop()) in CNN_OPS:
        return CNN_OPS[op]
    return "node: expanded functions" if "_expanded" in name else "node: other ops"


def node_test_dir() -> Path:
    """The node cases of the installed onnx version, generated on first use."""
    import onnx

    root = cache_dir("onnx-node-tests", onnx.__version__)
    if not (root / "complete").exists():
        _write_node_cases(root)
        (root / "complete").write_text("every case of onnx.backend.test.case.node\n")
    return root


def cases(kinds: tuple[str, ...] = ("node", *MODEL_KINDS)) -> list[Case]:
    """Every case of these kinds, sorted by kind then name."""
    found = []
    for kind in kinds:
        root = node_test_dir() if kind == "node" else _wheel_data_dir() / kind
        for directory in sorted(p for p in root.iterdir() if (p / "model.onnx").is_file()):
            found.append(Case(directory.name, kind, directory, *_tolerances(directory)))
    return found


def expected_failures(path: Path = EXPECTED_FAILURES) -> dict[str, str]:
    """Test name or glob → why TVM fails it (an op its importer lacks, a dynamic shape, ...)."""
    with path.open("rb") as f:
        table = tomllib.load(f)
    return {pattern: str(reason) for pattern, reason in table.get("expected", {}).items()}


def expected_reason(name: str, expected: dict[str, str]) -> str | None:
    """The reason `name` is expected to fail, or None."""
    if name in expected:
        return expected[name]
    for pattern, reason in expected.items():
        if any(c in pattern for c in "*?[") and fnmatch.fnmatchcase(name, pattern):
            return reason
    return None


def _write_node_cases(root: Path) -> None:
    import onnx
    from onnx.backend.test.case.node import collect_testcases

    for case in collect_testcases():
        directory = root / case.name
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "model.onnx").write_bytes(case.model.SerializeToString())
        (directory / "tolerances.txt").write_text(f"{case.rtol} {case.atol}\n")
        graph = case.model.graph
        for i, (inputs, outputs) in enumerate(case.data_sets):
            data_set = directory / f"test_data_set_{i}"
            data_set.mkdir(exist_ok=True)
            for prefix, values, infos in (
                ("input", inputs, graph.input),
                ("output", outputs, graph.output),
            ):
                for j, value in enumerate(values):
                    (data_set / f"{prefix}_{j}.pb").write_bytes(
                        _serialized(value, infos[j].name if j < len(infos) else "", onnx)
                    )


def _serialized(value: Any, name: str, onnx: Any) -> bytes:
    """A tensor as TensorProto bytes; sequences and optionals in their own protos."""
    from onnx import numpy_helper

    if isinstance(value, onnx.TensorProto):
        return value.SerializeToString()
    if isinstance(value, list):
        return numpy_helper.from_list(value, name).SerializeToString()
    if value is None:
        return numpy_helper.from_optional(value, name).SerializeToString()
    return numpy_helper.from_array(np.asarray(value), name).SerializeToString()


def _tensors(data_set: Path, prefix: str) -> list[np.ndarray]:
    import onnx
    from onnx import numpy_helper

    arrays = []
    for i in range(len(list(data_set.glob(f"{prefix}_*.pb")))):
        tensor = onnx.TensorProto()
        tensor.ParseFromString((data_set / f"{prefix}_{i}.pb").read_bytes())
        arrays.append(numpy_helper.to_array(tensor))
    return arrays


def _tolerances(directory: Path) -> tuple[float, float]:
    path = directory / "tolerances.txt"
    if not path.is_file():
        return 1e-3, 1e-7  # ONNX's runner's defaults for the model tests
    rtol, atol = path.read_text().split()
    return float(rtol), float(atol)


def _wheel_data_dir() -> Path:
    import onnx.backend.test

    return Path(onnx.backend.test.__file__).resolve().parent / "data"
