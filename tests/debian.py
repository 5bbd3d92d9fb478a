"""Debian packages the suite needs (Ceph RGW, Chromium), installed as root when missing.

One installer at a time on the machine, whichever test run, worker or ``tests.prepare`` asks: apt
holds its own locks only while it runs, and a second apt-get meeting them would fail or wait.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

INSTALL_LOCK = Path("/tmp/evidence-pipeline-apt-install.lock")


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` between processes (released by the kernel if its holder dies)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def install(packages: Sequence[str], log: Path, *, recommends: bool = True) -> bool:
    """``apt-get install`` the packages, output appended to ``log``; the package lists are updated only
    if the install fails without (they may be missing or stale on a fresh machine). True when apt
    succeeded. Call it as root, holding ``locked(INSTALL_LOCK)``."""
    environment = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", "install", "-y", "-q"]
    if not recommends:
        command.append("--no-install-recommends")
    command += ["-o", "DPkg::Lock::Timeout=300", *packages]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as output:

        def apt(arguments: list[str]) -> bool:
            done = subprocess.run(
                arguments, stdout=output, stderr=subprocess.STDOUT, env=environment, check=False
            )
            return done.returncode == 0

        return apt(command) or (apt(["apt-get", "update", "-q"]) and apt(command))


def tail(log: Path, lines: int = 15) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""
