"""An ONNX graph compiled for the host and run in this process on the Relax VM (edgec.backend)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgec.targets import TargetProfile


@dataclass(frozen=True)
class HostExecutable:
    """A compiled graph and the VM that runs it; call it with numpy arrays in graph order."""

    vm: Any
    fallbacks: dict[str, str]

    def __call__(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        import tvm

        # np.ascontiguousarray would make a 0-d input 1-d
        arrays = (x if x.flags.c_contiguous else x.copy(order="C") for x in inputs)
        result = self.vm["main"](*(tvm.runtime.tensor(x) for x in arrays))
        return _flatten(result)


def import_graph(graph: Any, shapes: dict[str, tuple[int, ...]], dtypes: dict[str, str]) -> Any:
    """TVM's ONNX frontend on an in-memory graph whose inputs have these shapes and dtypes."""
    from tvm.relax.frontend.onnx import from_onnx

    return from_onnx(graph, shape_dict={k: list(v) for k, v in shapes.items()}, dtype_dict=dtypes)


def compile_edgec(module: Any, profile: TargetProfile) -> HostExecutable:
    """edgec's lowering (its rewrites, schedules and fallbacks) for a host target."""
    import tvm
    from tvm import relax

    from edgec.relax.compile import lower

    built = lower(module, profile)
    return HostExecutable(relax.VirtualMachine(built.executable, tvm.cpu()), built.fallbacks)


def compile_plain(module: Any) -> HostExecutable:
    """TVM's plain pipeline for generic llvm: the yardstick edgec is measured against."""
    import tvm
    from tvm import relax

    executable = tvm.compile(module, target=tvm.target.Target({"kind": "llvm"}))
    return HostExecutable(relax.VirtualMachine(executable, tvm.cpu()), {})


def _flatten(value: Any) -> list[np.ndarray]:
    """The VM's result (a tensor, a scalar or nested tuples of them) as a flat list of arrays."""
    import tvm

    if isinstance(value, tvm.runtime.Tensor):
        return [value.numpy()]
    if isinstance(value, (list, tuple)) or type(value).__name__ == "Array":
        return [a for v in value for a in _flatten(v)]
    return [np.asarray(value)]
