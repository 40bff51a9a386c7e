"""Small image-classification data sets for fine-tuning and distillation: digits, .npz, folders.

No image library is installed beside torch here (no Pillow, torchvision or OpenCV), so a
folder's images are read as .npy arrays or as PGM/PPM files, parsed below.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgec.errors import EdgecError

VAL_SHARE = 0.2
# Mean and standard deviation of all 1,797 sklearn digits scaled to [0, 1]: fixed, so the
# preprocessing a deployed digits model expects does not depend on the seed or the split.
DIGITS_MEAN, DIGITS_STD = 0.3053, 0.3760
NETPBM = (".pgm", ".ppm", ".pnm")
# Formats that need an image library: named in an error rather than silently skipped.
UNREADABLE = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
# Magic, then width, height and maxval, each after whitespace or comment lines; then one
# whitespace character before the raster.
_NETPBM_HEADER = re.compile(rb"(P[2356])" + rb"(?:\s+|#[^\n]*\n)+(\d+)" * 3 + rb"\s")


@dataclass(frozen=True)
class Dataset:
    """Train and validation images (float32, NCHW) with int64 labels in [0, classes).

    The images are already preprocessed as the model sees them: (pixel - mean) / std.
    """

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    classes: int
    mean: float = 0.0
    std: float = 1.0


SYNTHETIC = "synthetic"
SYNTHETIC_SAMPLES = 80  # 64 to calibrate on after the 80/20 split


def load_dataset(
    spec: str,
    input_shape: tuple[int, ...],
    seed: int = 0,
    classes: int | None = None,
    dtype: str = "float32",
) -> Dataset:
    """Load SPEC for a model taking `input_shape`, split 80/20 by `seed`.

    SPEC is "digits" (resized to the input), an .npz holding `x` and `y` (and optionally
    `classes`), a folder with one sub-folder of .npy/.pgm/.ppm images per class (labels in
    sorted sub-folder order), or "synthetic": seeded random inputs of any shape and `dtype`
    (calibration for timing only: its ranges say nothing of real data). `classes`, the model's
    output count, bounds the labels when given. Only an .npz and synthetic data take inputs
    other than NCHW images (sequences, token ids).
    """
    path = Path(spec)
    if spec == SYNTHETIC:
        return _synthetic(input_shape, dtype, seed)
    images = spec == "digits" or path.is_dir()
    if len(input_shape) != 4 and images:
        raise EdgecError(
            f"data {spec!r} is NCHW images; the model takes {tuple(input_shape)}: give an .npz "
            "of inputs of that shape, or 'synthetic'"
        )
    mean, std = 0.0, 1.0
    if spec == "digits":
        x, y, own = _digits(input_shape)
        mean, std = DIGITS_MEAN, DIGITS_STD
    elif path.is_dir():
        x, y, own = _folder(path)
    elif path.is_file() and path.suffix == ".npz":
        x, y, own = _npz(path, integer=np.issubdtype(np.dtype(dtype), np.integer))
    else:
        raise EdgecError(
            f"data {spec!r} not found; give 'digits', an .npz with x and y, or a folder of "
            "class sub-folders"
        )
    x = _fit(x, input_shape, spec, dtype)
    if y.shape != (len(x),):
        raise EdgecError(f"data {spec!r} has {len(x)} images but labels of shape {y.shape}")
    if len(x) < 2:
        raise EdgecError(f"data {spec!r} has {len(x)} images; the 80/20 split needs at least 2")
    bound = classes if classes is not None else own if own is not None else int(y.max()) + 1
    outside = y[(y < 0) | (y >= bound)]
    if len(outside):
        raise EdgecError(f"data {spec!r} has label {int(outside[0])} outside [0, {bound})")
    order = np.random.default_rng(seed).permutation(len(x))
    cut = len(x) - max(1, round(VAL_SHARE * len(x)))
    train, val = order[:cut], order[cut:]
    return Dataset(spec, x[train], y[train], x[val], y[val], bound, mean, std)


def _synthetic(input_shape: tuple[int, ...], dtype: str, seed: int) -> Dataset:
    """Standard normal floats; integers (token ids) 0 and 1, valid in any vocabulary."""
    rng = np.random.default_rng(seed)
    shape = (SYNTHETIC_SAMPLES, *input_shape[1:])
    if np.issubdtype(np.dtype(dtype), np.integer):
        x = rng.integers(0, 2, shape).astype(dtype)
    else:
        x = rng.standard_normal(shape).astype(dtype)
    y = np.zeros(SYNTHETIC_SAMPLES, np.int64)
    cut = SYNTHETIC_SAMPLES - round(VAL_SHARE * SYNTHETIC_SAMPLES)
    return Dataset(SYNTHETIC, x[:cut], y[:cut], x[cut:], y[cut:], 1)


def _digits(input_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, int]:
    import torch
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
    _, channels, height, width = input_shape
    resized = torch.nn.functional.interpolate(
        images, size=(height, width), mode="bilinear", align_corners=False
    )
    x = (resized.repeat(1, channels, 1, 1).numpy() - DIGITS_MEAN) / DIGITS_STD
    return x, digits.target.astype(np.int64), 10


def _npz(path: Path, integer: bool = False) -> tuple[np.ndarray, np.ndarray, int | None]:
    """`integer`: the model takes integers (token ids), kept as they are, not scaled pixels."""
    with np.load(path) as data:
        if "x" not in data or "y" not in data:
            raise EdgecError(f"{path} needs arrays named x and y; it has {sorted(data.files)}")
        classes = int(data["classes"]) if "classes" in data else None
        x = data["x"] if integer else _pixels(data["x"])
        return x, _labels(data["y"], path), classes


def _folder(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    names = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    images: list[np.ndarray] = []
    labels: list[int] = []
    for label, name in enumerate(names):
        for file in sorted((path / name).iterdir()):
            suffix = file.suffix.lower()
            if suffix in UNREADABLE:
                raise EdgecError(
                    f"cannot read {file}: no image library is installed; convert the images "
                    "to .npy, .pgm or .ppm"
                )
            if suffix == ".npy":
                images.append(_chw(_pixels(np.load(file)), file))
            elif suffix in NETPBM:
                images.append(_read_netpbm(file))
            else:
                continue  # README files and the like
            labels.append(label)
    if not images:
        raise EdgecError(
            f"folder {path} holds no images; give one sub-folder per class of .npy, .pgm or "
            ".ppm files"
        )
    shapes = {image.shape for image in images}
    if len(shapes) > 1:
        raise EdgecError(f"folder {path} mixes image shapes {sorted(shapes)}")
    return np.stack(images), np.asarray(labels, dtype=np.int64), len(names)


def _read_netpbm(path: Path) -> np.ndarray:
    """A PGM (gray) or PPM (RGB) image, binary or ASCII, as C×H×W floats in [0, 1]."""
    raw = path.read_bytes()
    header = _NETPBM_HEADER.match(raw)
    if header is None:
        raise EdgecError(f"{path} is not a PGM/PPM image (P2, P3, P5 or P6 header)")
    magic, width, height, maxval = header[1], *(int(v) for v in header.groups()[1:])
    channels = 3 if magic in (b"P3", b"P6") else 1
    count = width * height * channels
    if magic in (b"P5", b"P6"):
        dtype = ">u1" if maxval < 256 else ">u2"  # 16-bit samples are big-endian
        pixels = np.frombuffer(raw, dtype, offset=header.end())[:count]
    else:
        pixels = np.array(raw[header.end() :].split()[:count], dtype=np.int64)
    if len(pixels) != count or not 0 < maxval < 65536:
        raise EdgecError(f"{path} is a truncated or invalid PGM/PPM image")
    image = pixels.reshape(height, width, channels).transpose(2, 0, 1)
    return image.astype(np.float32) / maxval


def _pixels(x: np.ndarray) -> np.ndarray:
    # 8-bit images are scaled to [0, 1]; float arrays are taken as already preprocessed
    return x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)


def _chw(image: np.ndarray, path: Path) -> np.ndarray:
    if image.ndim == 2:
        return image[None]
    if image.ndim != 3:
        raise EdgecError(f"{path} has shape {image.shape}; give H×W or C×H×W images")
    return image


def _labels(y: np.ndarray, path: Path) -> np.ndarray:
    if not np.issubdtype(y.dtype, np.integer) and not np.array_equal(y, np.round(y)):
        raise EdgecError(f"{path} has labels that are not whole numbers ({y.dtype})")
    return y.astype(np.int64)


def _fit(x: np.ndarray, input_shape: tuple[int, ...], spec: str, dtype: str) -> np.ndarray:
    if x.ndim == 3 and len(input_shape) == 4 and input_shape[1] == 1:
        x = x[:, None]  # N×H×W is single-channel
    if x.ndim != len(input_shape) or x.shape[1:] != tuple(input_shape[1:]):
        raise EdgecError(
            f"data {spec!r} has inputs of shape {tuple(x.shape[1:])} but the model takes "
            f"{tuple(input_shape[1:])}"
        )
    if np.issubdtype(np.dtype(dtype), np.integer) and not np.issubdtype(x.dtype, np.integer):
        raise EdgecError(f"data {spec!r} holds {x.dtype} values; the model takes {dtype}")
    return np.ascontiguousarray(x, dtype=dtype)
