"""torchvision's classification models as a corpus no one here wrote, exported to ONNX.

The one place that imports torchvision (tests and bench/coverage.py use this module; edgec itself
never does). torchvision 0.28.0 from PyPI is a CUDA build: its compiled ops (`_C.so`) need
libtorch_cuda and do not load beside the CPU torch, and `import torchvision` then fails in
`torchvision/_meta_registrations.py` ("operator torchvision::nms does not exist"). An empty module
in its place lets the pure-Python model zoo import; detection ops such as nms stay unavailable.
"""

from __future__ import annotations

import contextlib
import io
import sys
import types
import warnings
from functools import cache
from pathlib import Path
from typing import Any

SEED = 0
# Models whose forward pass needs a fixed input size (position embeddings, window partitions);
# AlexNet and VGG pool adaptively to 6×6 / 7×7, which the exporter only takes from a multiple;
# every other classifier ends in adaptive pooling and takes smaller images.
FIXED_224 = ("vit_", "swin_", "maxvit_", "alexnet", "vgg", "inception_v3")
MIN_SIDE = {"inception_v3": 75, "googlenet": 32}
# No auxiliary classifiers (eval mode ignores them); an explicit init_weights silences
# torchvision's FutureWarning about its default (the weights are random either way).
OPTIONS = {
    "googlenet": {"aux_logits": False, "init_weights": False},
    "inception_v3": {"aux_logits": False, "init_weights": False},
}


@cache
def torchvision() -> Any:
    """The torchvision module, its pure-Python part importable beside the CPU torch."""
    sys.modules.setdefault(
        "torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations")
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Failed to load image Python extension"
        import torchvision as tv
    return tv


def classifiers() -> list[str]:
    """Every classification model torchvision lists (detection etc. live in submodules)."""
    tv = torchvision()
    return list(tv.models.list_models(module=tv.models))


def input_side(name: str, wanted: int) -> int:
    """The image side to export `name` at: `wanted`, unless the model needs more."""
    if name.startswith(FIXED_224):
        return 224
    return max(wanted, MIN_SIDE.get(name, 32))


def make(name: str) -> Any:
    """The model with seeded random weights, in eval mode (no download)."""
    import torch

    torch.manual_seed(SEED)
    return torchvision().models.get_model(name, weights=None, **OPTIONS.get(name, {})).eval()


def export(name: str, opset: int, side: int, directory: Path) -> Path:
    """`name` exported with the TorchScript exporter (as edgec's export stage does) at `opset`
    for a 1×3×side×side input; cached by file name."""
    import torch

    side = input_side(name, side)
    path = directory / f"{name}-op{opset}-{side}.onnx"
    if path.is_file():
        return path
    directory.mkdir(parents=True, exist_ok=True)
    model = make(name)
    x = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(SEED))
    from edgec.staging import replace_written

    def write(partial: Path) -> None:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (x,),
                str(partial),
                opset_version=opset,
                input_names=["input"],
                output_names=["output"],
                dynamo=False,
            )

    replace_written(path, write)
    return path


def parameters(name: str) -> int:
    """The model's parameter count (to skip the giants in a quick run)."""
    return sum(p.numel() for p in make(name).parameters())
