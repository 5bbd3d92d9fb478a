"""Small TOML files of one table per thing (the users file, the device registry): read strictly.

They decide who may read evidence and whose footage a camera holds, so a mistake in one is a
``ConfigError`` naming the file and what to fix, never a traceback and never ignored.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from evidence.errors import ConfigError


def read_tables(
    path: Path, *, what: str, section: str, shape: str, each: str
) -> tuple[dict[str, Any], Callable[[str], ConfigError]]:
    """The ``[<section>.<key>]`` tables of ``path`` by key, and the function that words a problem in
    them with the file named. Anything beside ``section`` at the top level is refused. ``what`` names
    the file (``users file``), ``shape`` its tables (``[users.<id>] tables``), ``each`` what one is
    for (``person``)."""

    def problem(message: str) -> ConfigError:
        return ConfigError(f"{what} {path}: {message}")

    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"{what} {path} cannot be read: {err}") from err
    unknown = sorted(set(doc) - {section})
    if unknown:
        raise problem(f"unknown setting(s) {', '.join(unknown)}; it holds only {shape}")
    entries = doc.get(section, {})
    if not isinstance(entries, dict):
        raise problem(f"{section} = {entries!r} must be {shape}, one per {each}")
    return entries, problem
