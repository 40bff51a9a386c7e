"""A target profile's TVM target, with the host CPU resolved."""

from __future__ import annotations

from typing import Any

from edgec.targets import TargetProfile


def resolved_target(profile: TargetProfile) -> dict[str, Any]:
    """The profile's TVM target dict, `mcpu = "host"` replaced by LLVM's name for this CPU and
    `arch = "host"` by this machine's GPU (edgec.targets.with_cuda_arch)."""
    target = dict(profile.tvm_target)
    if target.get("arch") == "host":
        from edgec.gpu import host_arch

        target["arch"] = host_arch()
    if target.get("mcpu") == "host":
        from tvm.target import codegen

        target["mcpu"] = codegen.llvm_get_system_cpu()
        target.setdefault("num-cores", profile.capabilities.cores)
    return target


def tvm_target(profile: TargetProfile) -> Any:
    """The tvm.target.Target to compile for (with its host, for device targets)."""
    import tvm

    target = resolved_target(profile)
    if profile.tvm_host is not None:
        return tvm.target.Target(target, host=profile.tvm_host)
    return tvm.target.Target(target)
