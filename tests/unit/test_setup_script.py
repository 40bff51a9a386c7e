"""scripts/setup.sh installs every system command the toolchains and the tests run."""

from __future__ import annotations

import re
import shlex

import pytest

from edgec.targets import all_targets
from tests.conftest import ROOT

# command → the Debian package that provides it
COMMANDS = {
    "g++": "g++",
    "make": "make",
    "aarch64-linux-gnu-g++": "g++-aarch64-linux-gnu",
    "aarch64-linux-gnu-objdump": "binutils-aarch64-linux-gnu",
    "qemu-aarch64": "qemu-user",
    "arm-none-eabi-gcc": "gcc-arm-none-eabi",
    "qemu-system-arm": "qemu-system-arm",
    "sshd": "openssh-server",
    "ssh": "openssh-client",
}


def _apt_packages() -> set[str]:
    text = (ROOT / "scripts" / "setup.sh").read_text()
    block = re.search(r"APT_PACKAGES=\((.*?)\n\)", text, re.S)
    assert block is not None, "setup.sh has no APT_PACKAGES=( ... ) list"
    words = shlex.split(block[1], comments=True)
    return set(words)


@pytest.mark.parametrize(("command", "package"), list(COMMANDS.items()), ids=list(COMMANDS))
def test_setup_installs_the_package_of_each_command_used(command: str, package: str) -> None:
    assert package in _apt_packages(), f"{command} comes from {package}: add it to APT_PACKAGES"


def test_every_target_toolchain_is_one_setup_installs() -> None:
    missing = {p.cxx for p in all_targets().values()} - set(COMMANDS)
    assert not missing, f"toolchains setup.sh is not checked for: {sorted(missing)}"
