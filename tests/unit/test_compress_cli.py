"""edgec prune / distill and build's compression flags: errors, the project file, the report."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgec.cli import main
from tests.conftest import ROOT

pytest.importorskip("torch_pruning")
DIGITS = f"{ROOT / 'examples' / 'digits.py'}:make_model"
WEIGHTS = ROOT / "examples" / "digits.pth"


def _files(tmp: Path) -> dict[str, str]:
    np.savez(tmp / "small.npz", x=np.zeros((8, 1, 8, 8), np.float32), y=np.arange(8) % 10)
    np.savez(tmp / "labels.npz", x=np.zeros((8, 1, 32, 32), np.float32), y=np.arange(8) + 5)
    for name, classes in (("five", 5), ("linear", 10)):
        (tmp / f"{name}.py").write_text(
            "from torch import nn\nINPUT_SHAPE = (1, 1, 32, 32)\ndef make():\n"
            f"    return nn.Sequential(nn.Flatten(), nn.Linear(1024, {classes}))\n"
        )
    (tmp / "bad.pth").write_bytes(b"not a state dict")
    return {"tmp": str(tmp)}


BAD_INPUTS = [
    pytest.param(["--prune", "1.0"], r"prune ratio 1.0 is outside \[0, 1\)", id="ratio-high"),
    pytest.param(["--prune", "-0.1"], r"prune ratio -0.1 is outside \[0, 1\)", id="ratio-low"),
    pytest.param(
        ["--prune", "0.5", "--importance", "l3"], "unknown prune importance 'l3'", id="importance"
    ),
    pytest.param(
        ["--model", "{tmp}/linear.py:make", "--prune", "0.5"],
        "nothing to prune in Sequential",
        id="nothing-prunable",
    ),
    pytest.param(
        ["--distill", "--data", "digits", "--teacher", "{tmp}/five.py:make"],
        r"student outputs \(2, 10\) but teacher outputs \(2, 5\)",
        id="teacher-student-shapes",
    ),
    pytest.param(
        ["--prune", "0.5", "--data", "{tmp}/small.npz"],
        r"inputs of shape \(1, 8, 8\) but the model takes \(1, 32, 32\)",
        id="data-shape",
    ),
    pytest.param(
        ["--prune", "0.5", "--data", "{tmp}/labels.npz"],
        r"label 10 outside \[0, 10\)",
        id="labels-out-of-range",
    ),
    pytest.param(["--distill", "--data", "digits"], "--distill needs a teacher", id="no-teacher"),
    pytest.param(["--prune", "0.5", "--distill"], "--distill trains on data", id="no-data"),
    pytest.param(["--epochs", "3"], "go with --distill", id="epochs-without-distill"),
    pytest.param(
        ["--prune", "0.5", "--distill", "--data", "digits", "--hint", "features"],
        "expected STUDENT_LAYER:TEACHER_LAYER",
        id="hint-syntax",
    ),
    pytest.param(
        ["--model", "{tmp}/../cnn.onnx", "--prune", "0.5"], "not found", id="onnx-missing"
    ),
    pytest.param(["--weights", "{tmp}/bad.pth"], "is not a torch state dict", id="weights-junk"),
    pytest.param(
        ["--weights", "{tmp}/missing.pth"],
        "weights file .*missing.pth not found",
        id="weights-gone",
    ),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUTS)
def test_bad_compression_input_is_one_line_exit_2_and_no_output(
    tmp_path: Path, args: list[str], message: str
) -> None:
    names = _files(tmp_path)
    args = [a.format(**names) for a in args]
    model = DIGITS
    if "--model" in args:
        i = args.index("--model")
        model = args[i + 1]
        del args[i : i + 2]
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["build", model, "-t", "x86", *args, "-o", str(out)])
    lines = [line for line in result.stderr.splitlines() if line.startswith("edgec: ")]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("edgec: error: "), result.output
    assert re.search(message, lines[0]), lines[0]
    assert "Traceback" not in result.output
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_weights_that_do_not_fit_the_model_name_the_file(tmp_path: Path) -> None:
    _files(tmp_path)
    import torch

    torch.save({"weight": torch.zeros(3)}, tmp_path / "other.pth")
    result = CliRunner().invoke(
        main,
        ["build", DIGITS, "-t", "x86", "--weights", str(tmp_path / "other.pth"), "--no-measure"],
    )
    assert result.exit_code == 2
    assert "other.pth does not fit" in result.stderr


def test_prune_then_build_the_saved_model(tmp_path: Path) -> None:
    out = tmp_path / "pruned.pt"
    runner = CliRunner()
    result = runner.invoke(
        main,
        ["prune", DIGITS, "--ratio", "0.5", "--target", "x86", "--data", "digits", "-o", str(out)],
    )
    assert result.exit_code == 0, result.output
    rows = {line.split("|")[1].strip(): line for line in result.stdout.splitlines()[2:]}
    assert set(rows) == {"load", "prune"}
    import torch

    from edgec.stages.load import load

    model = load(str(out), None, tmp_path)  # the input shape travels inside the .pt
    assert model.inputs[0].shape == (1, 1, 32, 32)
    widths = [m.out_channels for m in model.module.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(w % 8 == 0 for w in widths) and sum(widths) <= (32 + 64 * 4 + 128) // 2 + 8


def test_prune_output_must_be_a_pt_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["prune", DIGITS, "--ratio", "0.5", "-o", str(tmp_path / "x.onnx")]
    )
    assert result.exit_code == 2 and "name it .pt" in result.stderr
    assert not list(tmp_path.iterdir())


def test_distill_needs_a_teacher(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["distill", DIGITS, "--data", "digits", "-o", str(tmp_path / "s.pt")]
    )
    assert result.exit_code == 2 and "needs --teacher" in result.stderr


def test_project_file_gives_defaults_and_flags_override_it(tmp_path: Path) -> None:
    config = tmp_path / "edgec.toml"
    config.write_text('[prune]\nratio = 0.75\ntarget = "x86"\nkeep-layer = ["features.0"]\n')
    out = tmp_path / "p.pt"
    runner = CliRunner()
    base = ["--config", str(config), "prune", DIGITS, "-o", str(out)]
    from_file = runner.invoke(main, base)
    overridden = runner.invoke(main, [*base, "--ratio", "0.25"])
    assert from_file.exit_code == 0 and overridden.exit_code == 0, from_file.output

    def params(result: object) -> int:
        line = next(row for row in result.stdout.splitlines() if row.startswith("| prune"))  # type: ignore[attr-defined]
        return int(line.split("|")[2].replace(",", ""))

    assert params(from_file) < params(overridden)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("[biuld]\nratio = 1\n", r"\[biuld\] is not a command's table", id="table"),
        pytest.param("[prune]\nratoi = 0.5\n", "has no option 'ratoi'", id="option"),
        pytest.param("[prune\n", "is not valid TOML", id="syntax"),
    ],
)
def test_bad_project_file_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "edgec.toml").write_text(text)
    result = CliRunner().invoke(main, ["--config", str(tmp_path / "edgec.toml"), "targets"])
    assert result.exit_code == 2
    assert re.search(message, result.stderr) and len(result.stderr.splitlines()) == 1
