"""What machine produced a result: CPU, the kernels torch picked, versions, threads.

Why it is recorded: a GRPO run's trajectory depends on float rounding, and the
rounding depends on which CPU kernels torch dispatches to (AVX2 vs AVX-512
reduce in other orders). The same config and seed repeat a run exactly only on
a machine that rounds the same way, so every stored result says where it came
from, and a re-run elsewhere is read as a replication, not a repeat. For the
same reason a result says which code computed it (`git_revision`).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

from vgrout.paths import REPO

FLAGS_OF_INTEREST = ("avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_bf16", "amx_tile")
"""CPU flags that change which matmul and reduction kernels run (so how results round)."""


def cpu_info(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict:
    """{"model": ..., "flags": [...]} from /proc/cpuinfo; platform's answer elsewhere."""
    model, flags = platform.processor() or platform.machine(), set()
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and value.strip():
                model = value.strip()
            elif key == "flags":
                flags = set(value.split())
            if model and flags:
                break
    return {"model": model, "flags": [f for f in FLAGS_OF_INTEREST if f in flags]}


def machine_record() -> dict:
    """CPU model and flags, torch's CPU capability, versions, cores and torch threads.

    torch is imported only if it is already loaded or importable; a record made
    without it says so rather than guessing.
    """
    rec = {
        "cpu": cpu_info(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
    }
    try:
        import numpy

        rec["numpy"] = numpy.__version__
    except ImportError:
        rec["numpy"] = None
    try:
        import torch
    except ImportError:
        rec["torch"] = None
        return rec
    rec["torch"] = torch.__version__
    rec["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    rec["torch_threads"] = torch.get_num_threads()
    return rec


def git_revision(repo: Path = REPO) -> dict:
    """{"commit": sha, "dirty": bool, "dirty_files": [...]} of the repository (None without git).

    dirty_files lists the tracked files that differ from the commit, so a
    manifest written from an edited tree says which edits its figures include.
    """

    def git(*args):
        try:
            r = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
        except FileNotFoundError:  # no git on this machine: the record says None
            return None
        return r.stdout if r.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    commit = commit.strip() if commit else None
    status = git("status", "--porcelain", "--untracked-files=no")
    if status is None:
        return {"commit": commit, "dirty": None, "dirty_files": None}
    files = sorted(line[3:] for line in status.splitlines() if line.strip())  # "XY path"
    return {"commit": commit, "dirty": bool(files), "dirty_files": files}
