"""Per-kernel AArch64 instructions per inference of an edgec rpi4/rpi5 bundle, under qemu.

    .venv/bin/python bench/armprof.py BUNDLE_DIR [--top 25] [--mix SUBSTRING ...] [--cpu CPU]

Runs the bundle's runner at --repeat 1 and 3 (warmup 0, one thread) under `qemu-aarch64` with a
plugin (bench/armprof_tb.c) that counts each translated block's executions; per inference =
(repeat 3 - repeat 1) / 2, as `../shared/armcount/count.sh` counts (the totals agree). Blocks map
to model.so's symbols by the load base where most block starts fall on `nm` addresses; --mix
prints, for the kernels whose name holds SUBSTRING, the executed mnemonics (from `objdump -d`,
with the first vector operand's arrangement). Needs qemu-user, gcc, aarch64-linux-gnu binutils
and armcount's cached sysroot (run `../shared/armcount/count.sh selftest` or any count first).
Instructions are not cycles; emulated time means nothing.
"""

from __future__ import annotations

import argparse
import bisect
import collections
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("ARMCOUNT_CACHE", Path.home() / ".cache/edgec-armcount"))
OUTSIDE = "(outside model.so)"


def fail(message: str) -> None:
    raise SystemExit(f"armprof.py: error: {message}")


def plugin() -> Path:
    """The counting plugin, built once per source change."""
    source = HERE / "armprof_tb.c"
    out = CACHE / f"libarmprof-{hashlib.sha256(source.read_bytes()).hexdigest()[:12]}.so"
    if not out.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(out), str(source)], check=True)
    return out


def blocks(bundle: Path, man: dict, cpu: str, repeat: int, tmp: Path) -> dict[int, tuple[int, int]]:
    """{guest address: (instructions, executions)} of one run of the bundle's runner."""
    out = tmp / f"blocks-{repeat}.txt"
    args = ["--output-dir", str(tmp / "out"), "--repeat", str(repeat), "--warmup", "0"]
    for i in range(len(man["inputs"])):
        args += ["--input", str(tmp / f"input_{i}.npy")]
    cmd = ["nice", "-n", "19", "qemu-aarch64", "-cpu", cpu, "-plugin", f"{plugin()},out={out}",
           f"./{man['runner']}", man["library"], *args, "--threads", "1"]  # fmt: skip
    env = dict(os.environ, QEMU_LD_PREFIX=str(CACHE / f"sysroot-{cpu}"))
    done = subprocess.run(cmd, cwd=bundle, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        fail(f"the runner failed under qemu: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    counts: dict[int, tuple[int, int]] = {}
    for line in out.read_text().splitlines():
        address, insns, execs = line.split()
        _, seen = counts.get(int(address, 16), (0, 0))  # a block translated again
        counts[int(address, 16)] = (int(insns), seen + int(execs))
    return counts


def symbols(library: Path) -> list[tuple[int, str]]:
    listing = subprocess.run(["nm", "-n", "--defined-only", str(library)], capture_output=True,
                             text=True, check=True).stdout  # fmt: skip
    found = []
    for line in listing.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "tTwW":
            found.append((int(parts[0], 16), parts[2]))
    return sorted(found)


def mnemonics(library: Path) -> dict[int, str]:
    """{offset: mnemonic[.arrangement of the first vector operand]} of model.so."""
    listing = subprocess.run(
        ["aarch64-linux-gnu-objdump", "-d", "--no-show-raw-insn", str(library)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    table = {}
    for line in listing.splitlines():
        parts = line.strip().split(None, 2)
        if len(parts) < 2 or not parts[0].endswith(":"):
            continue
        try:
            offset = int(parts[0][:-1], 16)
        except ValueError:
            continue
        first = parts[2].split(",")[0] if len(parts) > 2 else ""
        vector = first.startswith("v") and "." in first
        table[offset] = parts[1] + ("." + first.split(".")[-1] if vector else "")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--top", type=int, default=25, help="kernels listed (default 25)")
    parser.add_argument("--mix", nargs="*", default=[], help="kernel name substrings")
    parser.add_argument("--cpu", help="qemu CPU (default: the bundle's mcpu)")
    args = parser.parse_args()
    bundle = args.bundle.resolve()
    if not (bundle / "manifest.json").is_file():
        fail(f"{args.bundle} holds no manifest.json; give an edgec rpi4/rpi5 bundle directory")
    man = json.loads((bundle / "manifest.json").read_text())
    cpu = args.cpu or man.get("tvm_target", {}).get("mcpu", "cortex-a72")
    if not (CACHE / f"sysroot-{cpu}").is_dir():
        fail(f"no sysroot-{cpu} in {CACHE}; run ../shared/armcount/count.sh on a bundle first")
    library = bundle / man["library"]
    with tempfile.TemporaryDirectory(prefix="armprof-") as name:
        tmp = Path(name)
        rng = np.random.default_rng(0)  # armcount's input
        for i, spec in enumerate(man["inputs"]):
            x = rng.standard_normal(spec["shape"]).astype(spec["dtype"])
            np.save(tmp / f"input_{i}.npy", x)
        once, thrice = (blocks(bundle, man, cpu, r, tmp) for r in (1, 3))
    per = {a: (n, (e - once.get(a, (n, 0))[1]) / 2) for a, (n, e) in thrice.items()}
    table = symbols(library)
    starts = [s for s, _ in table]
    bases = collections.Counter(a - s for a in per for s in starts if a > s and (a - s) % 4096 == 0)
    if not bases:
        fail("no executed block starts on a model.so symbol")
    base = bases.most_common(1)[0][0]
    end = starts[-1] + (1 << 20)
    owner = {}
    totals: collections.Counter[str] = collections.Counter()
    for a, (n, e) in per.items():
        i = bisect.bisect_right(starts, a - base) - 1
        owner[a] = table[i][1] if i >= 0 and a - base < end else OUTSIDE
        totals[owner[a]] += n * e
    total = sum(totals.values())
    print(f"{bundle.name} ({cpu}): {total / 1e6:.2f}M instructions per inference, "
          f"{(total - totals[OUTSIDE]) / 1e6:.2f}M in model.so")  # fmt: skip
    for kernel, count in totals.most_common(args.top):
        print(f"{count / 1e6:9.3f}M  {kernel}")
    codes = mnemonics(library) if args.mix else {}
    for pattern in args.mix:
        mix: collections.Counter[str] = collections.Counter()
        for a, (n, e) in per.items():
            if pattern in owner[a] and e:
                for k in range(n):
                    mix[codes.get(a - base + 4 * k, "?")] += e
        print(f"\n{pattern}: {sum(mix.values()) / 1e6:.3f}M")
        for code, count in mix.most_common(40):
            print(f"  {count / 1e6:8.3f}M  {code}")


if __name__ == "__main__":
    sys.exit(main())
