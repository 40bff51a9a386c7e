"""Per-layer sensitivity: the model's output error with one layer alone in int8.

With one layer L in int8, everything upstream of L is the float model and everything
downstream is float again. So the float activations are computed once (ONNX Runtime, every
probe image, only the tensors some layer reads), and each layer costs only its own int8 part
(the "island": L, the casts around it and layout ops on its int8 output, run by the numpy
reference) and the float part downstream of it (an ONNX Runtime session on the nodes between
L's float views and the model's output). Re-running the whole model in numpy per layer took
ResNet-18 207 s.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgec import int8
from edgec.int8 import QGraph, from_onnx


@dataclass(frozen=True)
class _Cut:
    """One layer's graph split at the float boundary: its island, the ONNX tensors the island's
    float views stand for, and the upstream float tensors it and the downstream part read."""

    island: QGraph  # inputs: clean float tensors; outputs: the float views of int8 tensors
    stands_for: dict[str, str]  # island output → the ONNX tensor it replaces downstream
    downstream: tuple[Any, ...]  # ONNX nodes from the island's views to the model's output
    clean: tuple[str, ...]  # upstream float tensors the downstream part reads


def layer_errors(
    model: Any, graphs: Iterable[tuple[str, QGraph]], probe: np.ndarray
) -> dict[str, float]:
    """Each layer's relative RMS output error on `probe` (N samples, batched) when `graphs`
    gives, per layer, the QGraph with only that layer in int8. The same figures as running each
    whole graph in the numpy reference (a test compares), up to float rounding downstream."""
    cuts: dict[str, _Cut | QGraph] = {}
    for layer, graph in graphs:
        cuts[layer] = _cut(model, graph) or graph  # a graph not cut keeps the whole-graph path
    if not cuts:
        return {}
    wanted = {n for c in cuts.values() if isinstance(c, _Cut) for n in (*c.island.inputs, *c.clean)}
    output = model.graph.output[0].name
    with tempfile.TemporaryDirectory(prefix="edgec-sensitivity-") as tmp:
        parts = _Parts(model, Path(tmp))
        values = parts.float_values(probe, sorted(wanted))
        result: dict[str, float] = {}
        for layer, cut in cuts.items():
            result[layer] = error(parts.run(cut, values), values[output])
    return result


def error(got: np.ndarray, expected: np.ndarray) -> float:
    """Relative RMS error of the outputs."""
    scale = float(np.sqrt(np.mean(expected.astype(np.float64) ** 2))) or 1.0
    return float(np.sqrt(np.mean((got.astype(np.float64) - expected) ** 2))) / scale


def _cut(model: Any, graph: QGraph) -> _Cut | None:
    """`graph` split into clean float nodes, the island, and float nodes downstream; None if
    its shape is not the one this module understands (then the whole graph runs in numpy)."""
    onnx_tensors = {graph.inputs[0], *(o for n in model.graph.node for o in n.output)}
    clean = {graph.inputs[0]}
    island, internal, stands_for, dirty = [], set(), {}, set()
    for node in graph.nodes:
        if node.op != "dequantize" and node.precision == "float":
            if all(i in clean for i in node.inputs):
                clean.add(node.output)
            elif all(i in clean or i in stands_for or i in dirty for i in node.inputs):
                dirty.add(node.output)
            else:
                return None  # a float node reading an int8 tensor
            continue
        if any(i not in clean and i not in internal for i in node.inputs):
            return None  # the island reads a value computed downstream
        island.append(node)
        if node.op == "dequantize":
            source = node.inputs[0]
            stands_for[node.output] = source if source in onnx_tensors else node.output
        else:
            internal.add(node.output)
    if not island or not clean <= onnx_tensors:
        return None
    fed = {tensor: name for name, tensor in stands_for.items()}
    downstream, reads = _downstream(model, set(fed), clean)
    produced = {o for n in downstream for o in n.output}
    if produced & (internal | set(fed)):
        return None  # the float model would recompute part of the island
    inputs = tuple(sorted({i for n in island for i in n.inputs} & clean))
    outputs = tuple(stands_for)
    island_graph = QGraph(tuple(island), graph.scales, graph.shapes, inputs, outputs)
    return _Cut(island_graph, stands_for, tuple(downstream), tuple(sorted(reads & clean)))


def _downstream(model: Any, fed: set[str], clean: set[str]) -> tuple[list[Any], set[str]]:
    """The ONNX nodes that compute the model's output from `fed` and `clean` tensors (in
    graph order), and which of those tensors they read."""
    producer = {o: n for n in model.graph.node for o in n.output}
    constants = {i.name for i in model.graph.initializer}
    needed: set[int] = set()
    reads: set[str] = set()
    stack = [model.graph.output[0].name]
    seen: set[str] = set()
    while stack:
        tensor = stack.pop()
        if tensor in seen or not tensor:
            continue
        seen.add(tensor)
        if tensor in fed or tensor in clean:
            reads.add(tensor)
            continue
        if tensor in constants or tensor not in producer:
            continue
        node = producer[tensor]
        needed.add(id(node))
        stack.extend(node.input)
    return [n for n in model.graph.node if id(n) in needed], reads


class _Parts:
    """ONNX Runtime sessions on parts of the float model. Its weights are written once to one
    file beside the parts, which refer to them: no part re-serializes them (45 MB each for
    ResNet-18)."""

    def __init__(self, model: Any, folder: Path) -> None:
        import onnx

        self.folder = folder
        self.model = onnx.ModelProto()
        self.model.CopyFrom(model)
        onnx.save_model(
            self.model,
            str(folder / "float.onnx"),
            save_as_external_data=True,
            location="weights.bin",
            size_threshold=1024,
        )  # self.model's initializers now point into weights.bin
        self.input = model.graph.input[0].name
        self.output = model.graph.output[0].name
        self.types = from_onnx.elem_types(model)  # token ids, shapes: not every tensor is float
        self.threads = 1  # the host is shared (spinning pool threads cost more than they save)
        self.count = 0

    def session(self, nodes: list[Any], inputs: list[str], outputs: list[str]) -> Any:
        """A session on `nodes` with `inputs` and `outputs`."""
        import onnx
        from onnx import helper

        from edgec.reference import session

        def floats(names: list[str]) -> list[Any]:
            float32 = onnx.TensorProto.FLOAT
            return [
                helper.make_tensor_value_info(n, self.types.get(n, float32), None) for n in names
            ]

        read = {i for n in nodes for i in n.input}
        graph = helper.make_graph(
            nodes,
            "edgec-sensitivity",
            floats(inputs),
            floats(outputs),
            [i for i in self.model.graph.initializer if i.name in read],
        )
        part = helper.make_model(
            graph, opset_imports=self.model.opset_import, ir_version=self.model.ir_version
        )
        self.count += 1
        path = self.folder / f"part{self.count}.onnx"
        onnx.save_model(part, str(path))
        return session(path, self.threads)

    def float_values(self, probe: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
        """The model's output and the tensors `names` on every probe sample (batch 1: the shape
        the model was exported with)."""
        names = [n for n in names if n not in (self.input, self.output)]
        sess = self.session(list(self.model.graph.node), [self.input], [self.output, *names])
        runs = [sess.run(None, {self.input: probe[i : i + 1]}) for i in range(len(probe))]
        kept = {
            n: np.concatenate([r[k] for r in runs]) for k, n in enumerate([self.output, *names])
        }
        return {self.input: probe, **kept}

    def run(self, cut: _Cut | QGraph, values: dict[str, np.ndarray]) -> np.ndarray:
        """The model's output on the probe samples with the cut's layer alone in int8."""
        if isinstance(cut, QGraph):
            return int8.run(cut, [values[self.input]])[0]
        views = int8.run(cut.island, [values[n] for n in cut.island.inputs])
        feeds = dict(zip((cut.stands_for[n] for n in cut.island.outputs), views, strict=True))
        if self.output in feeds:
            return feeds[self.output]
        if not cut.downstream:  # the output does not depend on the layer
            return values[self.output]
        inputs = {**{n: values[n] for n in cut.clean}, **feeds}
        used = sorted({i for node in cut.downstream for i in node.input} & set(inputs))
        sess = self.session(list(cut.downstream), used, [self.output])
        count = len(values[self.output])
        runs = [sess.run(None, {n: inputs[n][i : i + 1] for n in used})[0] for i in range(count)]
        return np.concatenate(runs)
