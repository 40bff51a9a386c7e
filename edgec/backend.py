"""edgec as an ONNX backend (onnx.backend.base.Backend), so ONNX's own test suite runs against it.

`prepare` keeps the graph; `run` compiles it for the host with edgec's pipeline (TVM's ONNX
importer, edgec's rewrites and schedules) and runs it on the Relax VM in this process. Inputs that
carry shapes, axes, pads, sizes or scales are data to ONNX but must be constants to TVM's
importer: `run` knows their values, so it folds them into the graph and compiles for that
signature, once (compiled signatures are cached per process).

    import edgec.backend
    outputs = edgec.backend.run_model(onnx_model, [x])
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.backend.base import Backend, BackendRep

from edgec import onnx_rewrites
from edgec.errors import first_line

# (op type → input positions) whose value TVM's importer needs as a constant: "Only constant
# axes currently supported", "Reshape requires the input new shape to be Shape", "Type Var for
# size/scale is currently unsupported", "Dynamic Split/pads".
VALUE_INPUTS: dict[str, tuple[int, ...]] = {
    "Reshape": (1,),
    "Expand": (1,),
    "Tile": (1,),
    "Slice": (1, 2, 3, 4),
    "Pad": (1, 2, 3),
    "Resize": (1, 2, 3),
    "Upsample": (1,),
    "Split": (1,),
    "Squeeze": (1,),
    "Unsqueeze": (1,),
    "ReduceMean": (1,),
    "ReduceMax": (1,),
    "ReduceMin": (1,),
    "ReduceSum": (1,),
    "ReduceProd": (1,),
    "ReduceL1": (1,),
    "ReduceL2": (1,),
    "ReduceLogSum": (1,),
    "ReduceLogSumExp": (1,),
    "ReduceSumSquare": (1,),
    "TopK": (1,),
    "ConstantOfShape": (0,),
    "Range": (0, 1, 2),
    "OneHot": (1,),
    "CumSum": (1,),
    "Clip": (1, 2),
    "Dropout": (1, 2),
    "Trilu": (1,),
    "CenterCropPad": (1,),
    "NonMaxSuppression": (2, 3, 4),
    "MaxUnpool": (2,),
    "AffineGrid": (1,),
    "Col2Im": (1, 2),
    "DFT": (1, 2),
}

_FLOATS = ("float16", "float32", "float64", "bfloat16")


@dataclass(frozen=True)
class Signature:
    """What one compiled executable is specialized for."""

    folded: tuple[tuple[str, str, tuple[int, ...], bytes], ...]  # name, dtype, shape, value
    inputs: tuple[tuple[str, str, tuple[int, ...]], ...]  # the rest: name, dtype, shape


class Compiler:
    """Which pipeline compiles a graph: edgec's (the default) or TVM's plain one (the
    yardstick), and whether edgec's specialization and ONNX-level rewrites apply."""

    name: ClassVar[str] = "edgec"
    specialize: ClassVar[bool] = True

    @staticmethod
    def rewrite(graph: onnx.ModelProto) -> onnx.ModelProto:
        """The exact ONNX-level rewrites every graph gets before import (after folding)."""
        return onnx_rewrites.importable(graph)

    @staticmethod
    def compile(graph: onnx.ModelProto, inputs: dict[str, np.ndarray]) -> Any:
        from edgec.relax import inprocess
        from edgec.targets import get_target

        module = inprocess.import_graph(graph, *_signature_dicts(inputs))
        return inprocess.compile_edgec(module, get_target("x86"))


class PlainTVM(Compiler):
    """from_onnx → tvm.compile for generic llvm → Relax VM: no folding, no rewrite."""

    name: ClassVar[str] = "plain TVM"
    specialize: ClassVar[bool] = False

    @staticmethod
    def rewrite(graph: onnx.ModelProto) -> onnx.ModelProto:
        return graph

    @staticmethod
    def compile(graph: onnx.ModelProto, inputs: dict[str, np.ndarray]) -> Any:
        from edgec.relax import inprocess

        return inprocess.compile_plain(inprocess.import_graph(graph, *_signature_dicts(inputs)))


@dataclass(frozen=True)
class Attempt:
    """One way to compile a graph for a run: inputs folded as constants, functions expanded."""

    folded: tuple[str, ...]
    expand: bool = False  # ONNX functions replaced by their bodies, static shape math folded

    def describe(self) -> str:
        folded = f"{', '.join(self.folded)} folded" if self.folded else "nothing folded"
        return folded + (", functions expanded" if self.expand else "")


# Per process: (compiler, graph digest, attempt, signature) → executable, or the error it raised.
_COMPILED: dict[tuple[str, str, Attempt, Signature], Any] = {}
_MAX_COMPILED = 512


@dataclass
class EdgecRep(BackendRep):
    """A prepared graph; each input signature is compiled on its first `run`."""

    graph: onnx.ModelProto
    compiler: type[Compiler] = Compiler
    fallbacks: dict[str, str] = field(default_factory=dict)  # of the last compiled signature
    attempt: Attempt | None = None  # how the last run's executable was made
    compilations: int = 0  # signatures this rep compiled (not found in the process's cache)

    def __post_init__(self) -> None:
        self._digest = hashlib.sha256(self.graph.SerializeToString()).hexdigest()
        initializers = {i.name for i in self.graph.graph.initializer}
        self._inputs = [i.name for i in self.graph.graph.input if i.name not in initializers]
        self._value_inputs = _value_inputs(self.graph, set(self._inputs))

    @property
    def folded(self) -> tuple[str, ...]:
        return self.attempt.folded if self.attempt else ()

    def run(self, inputs: Any, **kwargs: Any) -> tuple[Any, ...]:
        """Outputs for `inputs` (a list in graph order, or a dict by name)."""
        arrays = self._arrays(inputs)
        errors = []
        for attempt in self._attempts(arrays):
            compiled = self._compiled(attempt, arrays)
            if isinstance(compiled, Exception):
                errors.append(f"{attempt.describe()}: {first_line(compiled)}")
                continue
            outputs = compiled([arrays[n] for n in self._inputs if n not in attempt.folded])
            if (mismatch := _declared_mismatch(outputs, self.graph)) is not None:
                # e.g. TVM's importer drops LayerNormalization's Mean and InvStdDev outputs
                errors.append(f"{attempt.describe()}: {mismatch}")
                continue
            self.fallbacks, self.attempt = dict(compiled.fallbacks), attempt
            return tuple(outputs)
        raise RuntimeError(f"{self.compiler.name} cannot compile this graph: " + "; ".join(errors))

    def _compiled(self, attempt: Attempt, arrays: dict[str, np.ndarray]) -> Any:
        """The executable for `attempt` and these inputs, or the error compiling it raised."""
        key = (self.compiler.name, self._digest, attempt, _signature(arrays, attempt.folded))
        if key in _COMPILED:
            return _COMPILED[key]
        self.compilations += 1
        try:
            graph = _with_constants(self.graph, {n: arrays[n] for n in attempt.folded})
            graph = self.compiler.rewrite(graph)
            if attempt.expand:
                graph = onnx_rewrites.expand_functions(graph)
            rest = {n: a for n, a in arrays.items() if n not in attempt.folded}
            compiled = self.compiler.compile(graph, rest)
        except Exception as e:
            compiled = e
        if len(_COMPILED) >= _MAX_COMPILED:
            _COMPILED.pop(next(iter(_COMPILED)))
        _COMPILED[key] = compiled
        return compiled

    def _arrays(self, inputs: Any) -> dict[str, np.ndarray]:
        if isinstance(inputs, dict):
            values = [inputs[n] for n in self._inputs]
        else:
            values = list(inputs) if isinstance(inputs, Sequence) else [inputs]
        if len(values) != len(self._inputs):
            raise ValueError(f"the graph has {len(self._inputs)} inputs, {len(values)} were given")
        return {n: np.asarray(v) for n, v in zip(self._inputs, values, strict=True)}

    def _attempts(self, arrays: dict[str, np.ndarray]) -> list[Attempt]:
        """The ways to compile, in the order tried: the inputs whose value the importer needs
        folded; nothing folded; every input that is not floating point folded too (an index
        that reaches a shape through a Cast, say); ONNX functions expanded."""
        if not self.compiler.specialize:
            return [Attempt(())]
        values = tuple(sorted(self._value_inputs))
        non_float = {n for n, a in arrays.items() if a.dtype.name not in _FLOATS}
        attempts = [
            Attempt(values),
            Attempt(()),
            Attempt(tuple(sorted(non_float | self._value_inputs))),
            Attempt(values, expand=True),
        ]
        return list(dict.fromkeys(attempts))


class EdgecBackend(Backend):
    """ONNX's Backend interface over edgec's host pipeline; CPU only."""

    compiler: ClassVar[type[Compiler]] = Compiler

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> EdgecRep:
        if not cls.supports_device(device):
            raise ValueError(f"edgec's ONNX backend runs on CPU, not {device}")
        return EdgecRep(model, cls.compiler)

    @classmethod
    def run_node(
        cls,
        node: onnx.NodeProto,
        inputs: Any,
        device: str = "CPU",
        outputs_info: Any = None,
        **kwargs: Any,
    ) -> tuple[Any, ...]:
        """One node as a one-node graph (input dtypes and shapes from `inputs`)."""
        arrays = [np.asarray(x) for x in inputs]
        names = [n for n in node.input if n]
        graph = onnx.helper.make_graph(
            [node],
            "node",
            [
                onnx.helper.make_tensor_value_info(
                    n, onnx.helper.np_dtype_to_tensor_dtype(a.dtype), a.shape
                )
                for n, a in zip(names, arrays, strict=True)
            ],
            [onnx.helper.make_empty_tensor_value_info(n) for n in node.output if n],
        )
        opset = kwargs.get("opset_version", onnx.defs.onnx_opset_version())
        model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])
        return cls.prepare(model, device).run(arrays)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device.split(":")[0] == "CPU"


class PlainTVMBackend(EdgecBackend):
    """The yardstick: TVM's plain pipeline with no specialization."""

    compiler: ClassVar[type[Compiler]] = PlainTVM


# ONNX's BackendTest takes a module with these functions.
prepare = EdgecBackend.prepare
run_model = EdgecBackend.run_model
run_node = EdgecBackend.run_node
supports_device = EdgecBackend.supports_device


def _value_inputs(graph: onnx.ModelProto, inputs: set[str]) -> set[str]:
    """Graph inputs that feed a position whose value TVM's importer needs."""
    found = set()
    for node in graph.graph.node:
        for position in VALUE_INPUTS.get(node.op_type, ()):
            if position < len(node.input) and node.input[position] in inputs:
                found.add(node.input[position])
    return found


def _signature(arrays: dict[str, np.ndarray], folded: tuple[str, ...]) -> Signature:
    return Signature(
        tuple((n, arrays[n].dtype.str, arrays[n].shape, arrays[n].tobytes()) for n in folded),
        tuple((n, a.dtype.str, a.shape) for n, a in arrays.items() if n not in folded),
    )


def _signature_dicts(
    inputs: dict[str, np.ndarray],
) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    return {n: a.shape for n, a in inputs.items()}, {n: a.dtype.name for n, a in inputs.items()}


def _with_constants(graph: onnx.ModelProto, values: dict[str, np.ndarray]) -> onnx.ModelProto:
    """`graph` with these inputs turned into initializers holding `values`."""
    if not values:
        return graph
    graph = copy.deepcopy(graph)
    kept = [i for i in graph.graph.input if i.name not in values]
    del graph.graph.input[:]
    graph.graph.input.extend(kept)
    graph.graph.initializer.extend(numpy_helper.from_array(v, n) for n, v in values.items())
    if graph.ir_version < 4:  # before IR 4, every initializer must also be a graph input
        graph.ir_version = 4
    return graph


def _declared_mismatch(outputs: list[np.ndarray], graph: onnx.ModelProto) -> str | None:
    """How `outputs` contradict the graph's declared outputs (count, dtype, static shape)."""
    declared = graph.graph.output
    if len(outputs) != len(declared):
        return f"{len(outputs)} outputs, the graph declares {len(declared)}"
    for array, info in zip(outputs, declared, strict=True):
        tensor = info.type.tensor_type
        if not info.type.HasField("tensor_type") or not tensor.elem_type:
            continue
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)
        if array.dtype != dtype:
            return f"output {info.name} is {array.dtype}, the graph declares {dtype}"
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
        if tensor.HasField("shape") and None not in dims and tuple(dims) != array.shape:
            return f"output {info.name} has shape {array.shape}, the graph declares {tuple(dims)}"
    return None
