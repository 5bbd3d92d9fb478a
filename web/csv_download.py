"""Audit trails as CSV files people open in a spreadsheet: streamed a row at a time, and with every
cell that a spreadsheet would take for a formula made inert.

A purpose, a reason or a device's file name is typed by someone; in a cell, ``=HYPERLINK(...)`` or
``+cmd|...`` runs when the file is opened (CSV injection, OWASP). A cell starting with ``=``, ``+``,
``-``, ``@``, a tab or a carriage return gets a leading apostrophe, which spreadsheets show as text.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Mapping, Sequence

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def inert(cell: str) -> str:
    """The cell as a spreadsheet will show it, never run it."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def csv_lines(columns: Sequence[str], rows: Iterable[Mapping[str, str]]) -> Iterator[str]:
    """The header, then one CSV line per row (cells made inert), as they are produced."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    yield _taken(buffer)
    for row in rows:
        writer.writerow([inert(row.get(name, "")) for name in columns])
        yield _taken(buffer)


def _taken(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text
