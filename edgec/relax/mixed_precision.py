"""fp16: a Relax module's weights and activations in half precision, accumulating in float32."""

from __future__ import annotations

from dataclasses import replace

from edgec.artifacts import RelaxModule


def to_fp16(model: RelaxModule) -> RelaxModule:
    """TVM's ToMixedPrecision: conv2d/matmul take fp16 operands and accumulate in fp32; the
    weights are cast at build time (stored as fp16), inputs and outputs stay float32."""
    from tvm import relax

    module = relax.transform.ToMixedPrecision(out_dtype="float32")(model.module)
    module = relax.transform.FoldConstant()(module)
    return replace(model, module=module, quantization={"mode": "fp16"})
