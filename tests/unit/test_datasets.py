"""Data sets for compression: sklearn digits, .npz files, class folders, and their errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgec.datasets import DIGITS_MEAN, DIGITS_STD, load_dataset
from edgec.errors import EdgecError

SHAPE = (1, 1, 16, 16)
pytest.importorskip("torch")  # digits are resized with torch
pytest.importorskip("sklearn")


@pytest.mark.parametrize("channels", [1, 3])
def test_digits_fit_the_model_input(channels: int) -> None:
    data = load_dataset("digits", (1, channels, 12, 20))
    assert data.train_x.shape[1:] == (channels, 12, 20) and data.train_x.dtype == np.float32
    assert len(data.train_x) + len(data.val_x) == 1797 and len(data.val_x) == 359
    pixels = np.concatenate([data.train_x, data.val_x]) * DIGITS_STD + DIGITS_MEAN
    assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5
    assert data.classes == 10 and data.train_y.dtype == np.int64


def test_split_is_deterministic_per_seed() -> None:
    a, b, c = (load_dataset("digits", SHAPE, seed=s) for s in (0, 0, 1))
    assert np.array_equal(a.val_y, b.val_y) and np.array_equal(a.val_x, b.val_x)
    assert not np.array_equal(a.val_x, c.val_x)


@pytest.mark.parametrize("image", [(10, 16, 16), (10, 1, 16, 16)], ids=["NHW", "NCHW"])
def test_npz_is_read(image: tuple[int, ...], tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.ones(image), y=np.arange(10) % 3)
    data = load_dataset(str(path), SHAPE)
    assert data.train_x.shape == (8, 1, 16, 16) and data.classes == 3


# calibration data for models whose input is no image: sequences of features, token ids
SEQUENCES = [
    pytest.param("npz", (1, 128, 256), "float32", id="npz-sequence-features"),
    pytest.param("synthetic", (1, 128, 256), "float32", id="synthetic-sequence-features"),
    pytest.param("synthetic", (1, 16), "int64", id="synthetic-token-ids"),
    pytest.param("npz-int", (1, 16), "int64", id="npz-token-ids"),
    pytest.param("synthetic", (1, 3, 8, 8), "float32", id="synthetic-images"),
]


@pytest.mark.parametrize(("spec", "shape", "dtype"), SEQUENCES)
def test_non_image_inputs_are_read_in_the_model_shape_and_dtype(
    spec: str, shape: tuple[int, ...], dtype: str, tmp_path: Path
) -> None:
    if spec.startswith("npz"):
        kind = np.int64 if spec == "npz-int" else np.float64
        spec = _npz(tmp_path, x=np.ones((10, *shape[1:]), kind), y=np.zeros(10))
    data = load_dataset(spec, shape, dtype=dtype)
    assert data.train_x.shape[1:] == shape[1:] and data.train_x.dtype == np.dtype(dtype)
    assert len(data.train_x) >= 8


def test_synthetic_token_ids_are_valid_in_any_vocabulary() -> None:
    ids = load_dataset("synthetic", (1, 32), dtype="int64").train_x
    assert set(np.unique(ids)) == {0, 1}


def test_image_data_for_a_sequence_model_names_what_to_give() -> None:
    with pytest.raises(EdgecError, match=r"NCHW images; the model takes \(1, 128, 256\)"):
        load_dataset("digits", (1, 128, 256))


def test_uint8_images_are_scaled_to_unit_range(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.full((4, 16, 16), 255, np.uint8), y=np.arange(4) % 2)
    data = load_dataset(str(tmp_path / "d.npz"), SHAPE)
    assert float(data.train_x.max()) == 1.0


def test_folder_labels_follow_sorted_sub_folders(tmp_path: Path) -> None:
    for label, name in enumerate(["cat", "dog"]):
        (tmp_path / name).mkdir()
        for i in range(5):
            np.save(tmp_path / name / f"{i}.npy", np.full((1, 16, 16), label, np.float32))
    data = load_dataset(str(tmp_path), SHAPE)
    assert data.classes == 2
    x = np.concatenate([data.train_x, data.val_x])
    y = np.concatenate([data.train_y, data.val_y])
    assert np.array_equal(x[:, 0, 0, 0], y.astype(np.float32))


@pytest.mark.parametrize("binary", [True, False], ids=["P5", "P2"])
def test_pgm_images_are_read(binary: bool, tmp_path: Path) -> None:
    raster = np.arange(256, dtype=np.uint8).reshape(16, 16)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(2):
            if binary:
                body = b"P5\n# made by a test\n16 16\n255\n" + raster.tobytes()
            else:
                body = b"P2\n16 16\n255\n" + " ".join(map(str, raster.flat)).encode()
            (tmp_path / name / f"{i}.pgm").write_bytes(body)
    data = load_dataset(str(tmp_path), SHAPE)
    assert np.allclose(data.train_x[0, 0], raster / 255.0)


def _bad_folder(root: Path) -> str:
    (root / "a").mkdir()
    np.save(root / "a" / "0.npy", np.zeros((1, 16, 16), np.float32))
    (root / "b").mkdir()
    np.save(root / "b" / "0.npy", np.zeros((1, 8, 8), np.float32))
    return str(root)


def _png_folder(root: Path) -> str:
    (root / "a").mkdir()
    (root / "a" / "0.png").write_bytes(b"\x89PNG")
    return str(root)


def _npz(root: Path, **arrays: np.ndarray) -> str:
    np.savez(root / "d.npz", **arrays)
    return str(root / "d.npz")


DATA_ERRORS = [
    pytest.param(lambda p: "cifar", "data 'cifar' not found", id="unknown-spec"),
    pytest.param(lambda p: str(p / "none.npz"), "not found", id="missing-path"),
    pytest.param(lambda p: str(p), "holds no images", id="empty-folder"),
    pytest.param(_bad_folder, "mixes image shapes", id="mixed-folder"),
    pytest.param(_png_folder, "no image library is installed", id="png"),
    pytest.param(
        lambda p: _npz(p, x=np.zeros((4, 1, 8, 8)), y=np.zeros(4)),
        "inputs of shape (1, 8, 8) but the model takes (1, 16, 16)",
        id="shape-mismatch",
    ),
    pytest.param(
        lambda p: _npz(p, x=np.zeros((4, 16, 16)), y=np.zeros(3)),
        "4 images but labels of shape (3,)",
        id="label-count",
    ),
    pytest.param(
        lambda p: _npz(p, x=np.zeros((4, 16, 16)), y=np.array([0, 1, 2, 1]), classes=2),
        "label 2 outside [0, 2)",
        id="label-too-big",
    ),
    pytest.param(
        lambda p: _npz(p, x=np.zeros((4, 16, 16)), y=np.array([0, 1, -1, 1])),
        "label -1 outside [0, 2)",
        id="label-negative",
    ),
    pytest.param(
        lambda p: _npz(p, x=np.zeros((4, 16, 16)), y=np.array([0, 0.5, 1, 1])),
        "labels that are not whole numbers",
        id="label-fraction",
    ),
    pytest.param(lambda p: _npz(p, images=np.zeros(1)), "needs arrays named x and y", id="keys"),
]


@pytest.mark.parametrize(("make", "message"), DATA_ERRORS)
def test_bad_data_is_a_one_line_error(make: object, message: str, tmp_path: Path) -> None:
    with pytest.raises(EdgecError) as caught:
        load_dataset(make(tmp_path), SHAPE)  # type: ignore[operator]
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_model_class_count_bounds_the_labels(tmp_path: Path) -> None:
    path = _npz(tmp_path, x=np.zeros((4, 16, 16)), y=np.array([0, 1, 2, 3]))
    with pytest.raises(EdgecError, match=r"label 3 outside \[0, 3\)"):
        load_dataset(path, SHAPE, classes=3)
