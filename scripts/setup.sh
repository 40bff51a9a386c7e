#!/usr/bin/env bash
# One-shot set-up: system packages, the .venv with pinned Python packages, edgec installed editable.
# Idempotent: a second run installs nothing and takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  g++ make                                               # x86/cuda runner builds; the firmware Makefile test
  gcc-aarch64-linux-gnu g++-aarch64-linux-gnu qemu-user   # rpi4: cross compiler + user-mode emulator
  binutils-aarch64-linux-gnu                             # objdump: the sdot count test
  gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm  # cortex-m: bare-metal toolchain + board emulator
  openssh-server openssh-client                          # ssh boards, tested against a loopback sshd
  chromium                                               # the compare page's screenshot test
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  python3 -m venv .venv
fi
stamp=.venv/.edgec-requirements.sha256
# torchvision: the model corpus of tests/integration/test_corpus.py and bench/coverage.py only
# (edgec does not import it). Its wheel is a CUDA build: --no-deps keeps pip off CUDA torch, and
# bench/zoo.py imports its pure-Python model zoo beside the CPU torch.
TORCHVISION=torchvision==0.28.0
want=$( (sha256sum requirements.lock pyproject.toml; echo "$TORCHVISION") | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing pinned Python packages (requirements.lock)"
  .venv/bin/pip install -q --upgrade pip
  # torch 2.13.0 (CPU) comes from the wheel on disk; pinning it exactly keeps pip off the CUDA build.
  .venv/bin/pip install -q -r requirements.lock
  .venv/bin/pip install -q --no-deps "$TORCHVISION"
  .venv/bin/pip install -q --no-deps -e .
  echo "$want" > "$stamp"
fi
echo "setup: ready (.venv/bin/edgec)"
