"""Fold reshapes and transposes of constants (weights, biases) in numpy, before FoldConstant.

TVM's FoldConstant evaluates a constant expression by building it as a kernel with LLVM: ~0.2-0.4 s
for each distinct shape. Layout conversion puts a `permute_dims` on every convolution weight (to
HWIO) and the ONNX importer a `reshape` on every bias (to 1×C×1×1), so a CNN paid tens of seconds
of LLVM builds for data movement numpy does in microseconds (ResNet-50, SqueezeNet: about half of
the compile stage). What is left (anything else on constants) FoldConstant still folds.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgec.relax import traverse


def fold_weight_layouts(mod: Any) -> Any:
    """`mod` with every `permute_dims` and `reshape` of a constant replaced by its result."""
    import tvm
    from tvm import relax
    from tvm.relax.expr_functor import PyExprMutator, mutator

    permute, reshape = tvm.ir.Op.get("relax.permute_dims"), tvm.ir.Op.get("relax.reshape")

    @mutator
    class Fold(PyExprMutator):
        def visit_call_(self, call: Any) -> Any:
            call = self.visit_expr_post_order(call)
            if call.op not in (permute, reshape):
                return call
            source = call.args[0]
            if isinstance(source, relax.Var):  # a bias reshaped, then transposed
                source = self.lookup_binding(source)
            if not isinstance(source, tvm.ir.expr.Constant):
                return call
            array = source.value.numpy()
            if call.op == permute:
                axes = call.attrs.axes
                folded = np.transpose(array, None if axes is None else [int(a) for a in axes])
            else:
                shape = call.args[1]
                if not isinstance(shape, relax.ShapeExpr) or not all(
                    isinstance(d, tvm.tirx.IntImm) for d in shape.values
                ):
                    return call
                folded = array.reshape([int(d) for d in shape.values])
            return relax.const(np.ascontiguousarray(folded), str(array.dtype))

    return traverse.rewrite_functions(Fold(mod), mod)
