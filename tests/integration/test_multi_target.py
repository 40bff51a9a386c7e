"""`edgec build -t a,b,c`: a target that fails does not stop the others."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from edgec.cli import main
from tests.conftest import EXAMPLE, needs

pytestmark = pytest.mark.integration

# (targets, the one that fails, its message): the float example CNN on an int8-only core
FAILING_TARGET = [
    pytest.param(
        ["x86", "cortex-m0plus", "rpi4"],
        "cortex-m0plus",
        "cortex-m0plus runs int8 only",
        id="middle-of-three",
    ),
    pytest.param(["cortex-m0plus", "x86"], "cortex-m0plus", "runs int8 only", id="first-of-two"),
]


@needs("aarch64-linux-gnu-g++")
@pytest.mark.parametrize(("targets", "failing", "message"), FAILING_TARGET)
def test_a_failing_target_does_not_stop_the_others_and_the_exit_code_says_so(
    targets: list[str], failing: str, message: str, tmp_path: Path
) -> None:
    args = ["build", EXAMPLE, "-t", ",".join(targets), "--no-measure", "-o", str(tmp_path)]
    result = CliRunner().invoke(main, args)
    errors = [line for line in result.stderr.splitlines() if line.startswith("edgec: error: ")]
    assert result.exit_code == 2, result.output
    assert len(errors) == 1 and errors[0].startswith(f"edgec: error: {failing}: "), errors
    assert message in errors[0]
    for target in targets:
        bundle = tmp_path / f"cnn-{target}"
        if target == failing:
            assert not bundle.exists()
        else:
            assert (bundle / "model.so").is_file() and (bundle / "report.json").is_file()
            assert f"cnn-{target}" in result.stdout  # its row in the comparison table
