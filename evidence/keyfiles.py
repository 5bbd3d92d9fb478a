"""Key files: one header line naming what the key is, one line of base64 (``docs/format.md`` §6)."""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from evidence.errors import ConfigError

_FIX = "run `evidence keys init` to create one, or point keys_dir at the right directory"


def key_file_text(header: str, raw: bytes) -> str:
    return f"{header}\n{base64.b64encode(raw).decode('ascii')}\n"


def read_key_file(path: Path, header: str, *, what: str, size: int) -> bytes:
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise ConfigError(f"{what} file {path} does not exist; {_FIX}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read {what} file {path}: {err}; {_FIX}") from None
    lines = text.strip().splitlines()
    if len(lines) != 2 or lines[0].strip() != header:
        raise ConfigError(
            f"{path} is not an evidence-pipeline {what} file (expected first line {header!r}); {_FIX}"
        )
    try:
        raw = base64.b64decode(lines[1].strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{what} file {path} is damaged: its key is not valid base64; {_FIX}") from None
    if len(raw) != size:
        raise ConfigError(f"{what} file {path} is damaged: key is {len(raw)} bytes, not {size}; {_FIX}")
    return raw


def write_key_file(path: Path, text: str, *, mode: int) -> None:
    # O_EXCL: never follow or replace whatever is already there, even if it appeared after our check
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(descriptor, "w", encoding="ascii") as file:
        os.fchmod(descriptor, mode)  # the umask may have narrowed it; 0644 for a public file is wanted
        file.write(text)
        file.flush()
        os.fsync(descriptor)
