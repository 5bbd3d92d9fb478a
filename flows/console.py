"""The two consoles every command writes to. rich assumes 80 columns when output is not a terminal;
logs and pipes read better wider.

Markup is off: what is printed comes from people and devices (file names, references, reasons, error
messages quoting them), and rich would read ``[bold]`` in a file name as a style, showing a name
other than the real one, or fail on ``[/x]`` typed as a reference. Fixed labels are styled with
:func:`styled`."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.text import Text

out = Console(width=None if sys.stdout.isatty() else 160, markup=False)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160, markup=False)


def styled(label: str, style: str, rest: str = "") -> Text:
    """A label in a style, then plain text shown exactly as it is."""
    return Text.assemble((label, style), rest)
