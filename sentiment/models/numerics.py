"""CPU numeric paths pinned for training, so that its bytes do not depend on the machine.

torch picks its kernels by CPU: ATen by the widest vector unit it finds (AVX-512 or AVX2),
MKL by its code branch, oneDNN by its instruction set, and float sums split by the thread
count. Each choice changes the trained weights' bytes. ``pinned_environment`` fixes every one
at AVX2, which every x86-64 CPU of the last ten years has; the libraries read these variables
when they load, so ``run_pinned`` runs the command again in a fresh interpreter whenever the
caller's environment says otherwise. On other architectures (ARM) only the thread counts are
pinned: their kernels have no such switches, and their bytes differ from x86-64's.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping
from pathlib import Path

X86_PINS = {
    "ATEN_CPU_CAPABILITY": "avx2",  # ATen's vectorised kernels (softmax, GELU, AdamW, ...)
    "MKL_CBWR": "AVX2",  # MKL's conditional numerical reproducibility branch (GEMM)
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # oneDNN's kernels (linear layers it takes over)
}
X86_MACHINES = ("x86_64", "amd64")


def cpu_pins(threads: int, machine: str | None = None) -> dict[str, str]:
    """The environment variables that fix training's numeric paths on ``machine``."""
    machine = (machine or platform.machine()).lower()
    thread_pins = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    return (X86_PINS if machine in X86_MACHINES else {}) | thread_pins


def pinned_environment(environ: Mapping[str, str], threads: int) -> dict[str, str]:
    """``environ`` with the pins set, whatever it said about them."""
    return dict(environ) | cpu_pins(threads)


def run_pinned(threads: int) -> None:
    """Return when this process already runs pinned; otherwise replace it by the same
    command (``sys.orig_argv``) under the pinned environment."""
    environment = pinned_environment(os.environ, threads)
    if environment == dict(os.environ):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], environment)


# The instruction-set extensions that tell CPUs apart for float kernels.
SIGNATURE_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "avx_vnni",
    "amx_tile",
)


def cpu_signature(cpuinfo: str | None = None) -> str:
    """The CPU's vendor, family, model and float-relevant extensions, e.g.
    ``GenuineIntel 6/143 avx2 fma avx512f ...``: pinned training has given other bytes on
    CPUs whose signatures differ (docs/pipeline.md), never on one signature."""
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text() if path.is_file() else ""
    first = cpuinfo.split("\n\n")[0]
    fields = dict(
        (key.strip(), value.strip())
        for key, _, value in (line.partition(":") for line in first.splitlines())
    )
    if not fields.get("flags"):
        return f"{platform.machine()} {platform.processor()}".strip()
    flags = set(fields["flags"].split())
    present = " ".join(flag for flag in SIGNATURE_FLAGS if flag in flags)
    return f"{fields.get('vendor_id')} {fields.get('cpu family')}/{fields.get('model')} {present}"


def numerics_record(threads: int) -> dict[str, str]:
    """What ``meta.json`` keeps of the pins: the variables and the ATen kernels used."""
    import torch

    return cpu_pins(threads) | {"aten_capability_used": torch.backends.cpu.get_cpu_capability()}
