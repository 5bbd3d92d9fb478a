"""The two consoles every command writes to, and what passes through before it reaches them. rich
assumes 80 columns when output is not a terminal; logs and pipes read better wider.

Markup and emoji codes are off: what is printed comes from people and devices (file names, references,
reasons, error messages quoting them), and rich would read ``[bold]`` in a file name as a style, or
``:warning:`` as an emoji, showing a name other than the real one, or fail on ``[/x]`` typed as a
reference. Fixed labels are styled with :func:`styled`.

Values people or devices supplied go through :func:`visible`; messages this program composed around
them (errors, reasons, notes) through :func:`visible_message`. For people only: ``--json`` prints the
exact strings (JSON's escaping already makes them safe), and stored records keep the exact originals.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping

from rich.console import Console
from rich.text import Text

out = Console(width=None if sys.stdout.isatty() else 160, markup=False, emoji=False)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160, markup=False, emoji=False)

_NAMED_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}

# Characters Python counts as printable that are still escaped: the backslash, which starts every
# escape, and the Default_Ignorable_Code_Points of Unicode that are not format characters (a
# combining grapheme joiner, Hangul fillers, variation selectors): terminals draw them as nothing,
# so "IMG<U+FE0F>.JPG" would look exactly like "IMG.JPG".
_PRINTABLE_BUT_ESCAPED = re.compile(
    "[\\\\\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180d\u180f\u3164\ufe00-\ufe0f\uffa0\U000e0100-\U000e01ef]"
)


def visible(text: str) -> str:
    r"""A value people or devices supplied (a file name, an EXIF make, a serial, a reference, a
    reason, a path) as it is safe to show on a terminal: nothing hidden, nothing ambiguous.

    A device chooses its file names, and a camera its EXIF make and model: an ESC sequence in one
    could move the cursor and rewrite lines of a report, U+202E shows ``rtl\u202egpj.exe`` as
    ``rtlexe.jpg``, a newline would forge a row of a table, and a zero-width character makes two
    names look the same. So every character that is not printable (C0 and C1 controls, DEL, bidi
    controls and every other format character, line and paragraph separators, spaces other than the
    plain space, lone surrogates left by undecodable bytes, private-use and unassigned code points)
    or that renderers draw as nothing, is shown as the escape a Python string literal would use:
    ``\n``, ``\r``, ``\t``, ``\xNN`` up to U+00FF, else ``\uNNNN`` or ``\UNNNNNNNN``. A backslash
    itself is shown doubled (``\\``), so reading the result as the inside of a Python string
    literal gives back the exact text: two different values never show the same.

    Letters that merely look alike (Cyrillic and Latin ``a``, ``é`` precomposed or as ``e`` and a
    combining accent) are printable and shown as they are; the evidence id tells such items apart.
    """
    return _escaped(text, backslash=True)


def visible_message(text: str) -> str:
    r"""A message this program composed (an error, a reason, a note) as it is safe to show: every
    hidden character escaped as :func:`visible` does, backslashes left as written. Messages quote
    the values they name with Python's ``repr``, which already escapes them and doubles their
    backslashes; doubling again would show a newline someone typed as ``\\n``. A message is prose,
    not a value: where it names a path without quotes, a backslash in that path shows as one."""
    return _escaped(text, backslash=False)


def _escaped(text: str, *, backslash: bool) -> str:
    if text.isprintable() and not _PRINTABLE_BUT_ESCAPED.search(text):
        return text  # the common case: nothing to escape
    return "".join(c if c == "\\" and not backslash else _visible_character(c) for c in text)


def _visible_character(character: str) -> str:
    named = _NAMED_ESCAPES.get(character)
    if named is not None:
        return named
    if character.isprintable() and not _PRINTABLE_BUT_ESCAPED.match(character):
        return character
    code = ord(character)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def visible_value(value: object) -> str:
    """A field of a record (text, number, list or table of them) on one line, every text in it made
    :func:`visible`. For people; ``--json`` shows the structure exactly."""
    if isinstance(value, Mapping):
        return "; ".join(f"{visible(str(key))}={_nested(item)}" for key, item in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_nested(item) for item in value)
    return visible(str(value))


def _nested(value: object) -> str:
    if isinstance(value, Mapping):
        return "{" + visible_value(value) + "}"
    if isinstance(value, list | tuple):
        return "[" + visible_value(value) + "]"
    return visible_value(value)


def styled(label: str, style: str, rest: str = "") -> Text:
    """A fixed label in a style, then plain text: pass what people or devices supplied through
    :func:`visible` (a message quoting it, through :func:`visible_message`) first."""
    return Text.assemble((label, style), rest)
