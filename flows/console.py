"""The two consoles every command writes to. rich assumes 80 columns when output is not a terminal;
logs and pipes read better wider."""

from __future__ import annotations

import sys

from rich.console import Console

out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
