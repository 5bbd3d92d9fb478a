"""Incident feeds from the records system: reading an export, and matching items to incidents
(``docs/feed.md`` is the format's contract: §1 format, §2 what is accepted, §3 matching).

A feed is a CSV (header row) or JSON (a list of objects) export with one row per incident and officer:
``incident_ref``, ``officer_id``, ``start``, ``end`` and optionally ``category`` (``domestic-abuse``) and
``closed_at`` (when the case closed, for retention counted from closure; empty while it is open).
Every row is hostile input: a row whose reference, officer, times or category cannot be accepted is
reported as rejected with its row number, and the rest of the feed goes on.

Matching rules (``match_feed``), chosen so that a feed never guesses:

- the item's officer must be the row's officer, exactly;
- the item's *recording* time must fall in ``[start - tolerance, end + tolerance]``. Only the start of a
  recording is in the clear manifest (its duration is sealed), so the start is what is compared; the
  tolerance covers a camera switched on just before the call was logged. An item without a recording
  time is never matched by its ingest time, which is usually the end of a shift and would link it to
  whatever incident was open then: it is reported as ``undated`` (if it was ingested after the
  officer's first window in the feed opened) for a person to link by hand;
- times without an offset, in a feed as on a device, are taken as UTC (``storage.catalog`` does the
  same), so a force whose cameras and records system both keep local time still lines them up;
- a row's ``start``, ``end`` and ``closed_at`` must be plausible (``evidence.times.require_plausible``:
  not before 2000, not more than a day ahead of this machine's clock): a window a feed links by, or a
  closure retention counts from, is recorded in chains for good, so a reset clock's ``0001-01-01`` or a
  mistyped year is that row's rejection, never a link;
- an item that fits two or more incidents is ambiguous: reported with every candidate, never linked;
- an item already linked to an incident that fits is left as it is (a person or an earlier run decided),
  and an incident a person unlinked an item from is never linked to it again by a feed.

Pure: no I/O beyond reading the stream handed in (a piece at a time: ``read_feed``).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO, Literal

from evidence.devices import require_identifier
from evidence.errors import EvidenceError, InvalidInput
from evidence.incident import IncidentRef, parse_incident_ref
from evidence.settings import DEFAULT_INCIDENT_REF_PATTERN
from evidence.times import earlier, in_utc, later, parse_time, require_plausible

FeedFormat = Literal["csv", "json"]
REQUIRED_COLUMNS = ("incident_ref", "officer_id", "start", "end")
MAX_WINDOW = timedelta(days=31)
"""Longer windows are refused: a mistyped year would otherwise link months of an officer's video."""
MAX_FEED_BYTES = 256 * 1024 * 1024
READ_CHUNK = 64 * 1024
"""Bytes read from a feed at a time: the file is never held whole (a 500,000-row export was 18 times
its size in memory when it was)."""
_LINE_END = re.compile(r"\r\n?|\n")
_JSON_SPACE = re.compile(r"[ \t\n\r]*")
_CATEGORY = re.compile(r"[a-z0-9][a-z0-9-]{0,63}", re.ASCII)


@dataclass(frozen=True, slots=True)  # slots: a large feed keeps hundreds of thousands of them
class FeedIncident:
    row: int
    """CSV: the line the row ends on (header is line 1); JSON: the object's position, from 1."""
    incident: IncidentRef
    officer_id: str
    start: datetime
    """UTC."""
    end: datetime
    category: str | None
    closed_at: datetime | None = None
    """UTC; None while the case is open (or the export does not say)."""


@dataclass(frozen=True, slots=True)
class RejectedRow:
    row: int
    reason: str


@dataclass(frozen=True)
class Feed:
    incidents: tuple[FeedIncident, ...]
    rejected: tuple[RejectedRow, ...]

    def categories(self) -> dict[str, str]:
        """Incident -> category, for incidents the feed gives one (rows never disagree: see parse_rows)."""
        known: dict[str, str] = {}
        for incident in self.incidents:
            if incident.category:
                known.setdefault(incident.incident.value, incident.category)
        return known

    def closures(self) -> dict[str, tuple[datetime, int]]:
        """Incident -> (when its case closed, the first row saying so), for closed incidents."""
        known: dict[str, tuple[datetime, int]] = {}
        for incident in self.incidents:
            if incident.closed_at is not None:
                known.setdefault(incident.incident.value, (incident.closed_at, incident.row))
        return known


@dataclass(frozen=True)
class DatedItem:
    """What matching needs to know about one catalogued item."""

    evidence_id: str
    officer_id: str | None
    recorded_at: datetime | None
    linked: frozenset[str] = frozenset()
    """Incidents the item is linked to now."""
    unlinked: frozenset[str] = frozenset()
    """Incidents a person has unlinked the item from."""


@dataclass(frozen=True)
class FeedLink:
    evidence_id: str
    incident: str
    category: str | None
    row: int


@dataclass(frozen=True)
class AmbiguousItem:
    evidence_id: str
    incidents: tuple[str, ...]


@dataclass(frozen=True)
class FeedMatch:
    to_link: tuple[FeedLink, ...]
    already_linked: tuple[tuple[str, str], ...]
    """(evidence id, incident): fits and is linked already; nothing to do."""
    ambiguous: tuple[AmbiguousItem, ...]
    kept_unlinked: tuple[tuple[str, str], ...]
    """(evidence id, incident): fits, but a person unlinked it from that incident; left alone."""
    undated: tuple[str, ...]
    """Items of a feed officer with no recording time: cannot be matched, for a person to look at."""


# -- reading ----------------------------------------------------------------------------------------


def feed_format(name: str, text: str) -> FeedFormat:
    """By the file's name, else by how its text (``text``: at least its start) begins."""
    lowered = name.lower()
    if lowered.endswith(".json"):
        return "json"
    if lowered.endswith(".csv"):
        return "csv"
    return "json" if text.lstrip().startswith("[") else "csv"


def parse_feed(
    data: bytes,
    *,
    name: str = "feed",
    pattern: str = DEFAULT_INCIDENT_REF_PATTERN,
    fmt: FeedFormat | None = None,
    now: datetime | None = None,
) -> Feed:
    """An export already in memory (tests, small feeds): ``read_feed`` over it."""
    if len(data) > MAX_FEED_BYTES:
        raise InvalidInput(f"{name} is {len(data)} bytes; a feed may be at most {MAX_FEED_BYTES} bytes")
    return read_feed(io.BytesIO(data), name=name, pattern=pattern, fmt=fmt, now=now)


def read_feed(
    stream: BinaryIO,
    *,
    name: str = "feed",
    pattern: str = DEFAULT_INCIDENT_REF_PATTERN,
    fmt: FeedFormat | None = None,
    now: datetime | None = None,
) -> Feed:
    """Read an export from ``stream`` a piece at a time (``feed_rows``): only the accepted rows are
    kept, never the file's text. Raises ``InvalidInput`` only when the file as a whole is unusable (not
    UTF-8 text, not CSV or a JSON list, a required column missing, too large); bad rows are returned
    as rejected."""
    return parse_rows(feed_rows(stream, name=name, fmt=fmt), pattern=pattern, now=now)


def feed_rows(
    stream: BinaryIO, *, name: str = "feed", fmt: FeedFormat | None = None
) -> Iterator[tuple[int, Any]]:
    """The export's rows as (row number, row), each read from ``stream`` when it is asked for: a CSV
    row as a dict of its columns (or the ``csv.Error`` that broke it), a JSON list's item as decoded."""
    text = _FeedText(stream, name)
    chosen = fmt or feed_format(name, text.beginning())
    return _json_rows(text, name) if chosen == "json" else _csv_rows(text, name)


def parse_rows(
    rows: Iterable[tuple[int, Any]],
    *,
    pattern: str = DEFAULT_INCIDENT_REF_PATTERN,
    now: datetime | None = None,
) -> Feed:
    """Accept or reject every row; ``now`` (default: this machine's clock) bounds plausible times."""
    clock = in_utc(now or datetime.now(UTC))
    incidents: list[FeedIncident] = []
    rejected: list[RejectedRow] = []
    categories: dict[str, tuple[str, int]] = {}
    closures: dict[str, tuple[datetime, int]] = {}
    seen: set[tuple[str, str, datetime, datetime]] = set()
    shared: dict[object, Any] = {}  # one copy of each reference, officer and category the rows repeat
    for number, row in rows:
        try:
            incident = _incident(number, row, pattern, clock, shared)
        except EvidenceError as err:
            rejected.append(RejectedRow(number, str(err)))
            continue
        ref = incident.incident.value
        if incident.category is not None:
            known = categories.setdefault(ref, (incident.category, number))
            if known[0] != incident.category:
                rejected.append(
                    RejectedRow(
                        number,
                        f"category {incident.category!r} conflicts with {known[0]!r} given for {ref} "
                        f"in row {known[1]}",
                    )
                )
                continue
        if incident.closed_at is not None:
            closed = closures.setdefault(ref, (incident.closed_at, number))
            if closed[0] != incident.closed_at:
                # a case closes once: rows that disagree leave the date to a person (a row that says
                # nothing does not disagree: exports often give the closure on one row of several)
                rejected.append(
                    RejectedRow(
                        number,
                        f"closed_at {incident.closed_at.isoformat()} conflicts with "
                        f"{closed[0].isoformat()} given for {ref} in row {closed[1]}",
                    )
                )
                continue
        key = (ref, incident.officer_id, incident.start, incident.end)
        if key not in seen:
            seen.add(key)
            incidents.append(incident)
    return Feed(tuple(incidents), tuple(rejected))


class _FeedText:
    """An export's text, read and decoded a piece at a time: UTF-8 (a leading byte-order mark, which
    spreadsheets write, dropped), at most ``MAX_FEED_BYTES`` bytes however the file grows while it is
    read. An invalid byte refuses the whole file, naming its offset."""

    def __init__(self, stream: BinaryIO, name: str) -> None:
        self._stream, self._name = stream, name
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._bytes_read = 0
        self._ended = False
        self._first = True
        self._unread: list[str] = []

    def read(self) -> str:
        """The next piece of text; "" at the end."""
        if self._unread:
            return self._unread.pop(0)
        while not self._ended:
            data = self._stream.read(READ_CHUNK)
            self._bytes_read += len(data)
            if self._bytes_read > MAX_FEED_BYTES:
                raise InvalidInput(f"{self._name} is over {MAX_FEED_BYTES} bytes; a feed may be at most that")
            pending = len(self._decoder.getstate()[0])
            try:
                piece = self._decoder.decode(data, final=not data)
            except UnicodeDecodeError as err:
                offset = self._bytes_read - len(data) - pending + err.start
                raise InvalidInput(
                    f"{self._name} is not UTF-8 text (byte {offset}); export the feed as UTF-8"
                ) from None
            self._ended = not data
            if self._first and piece:
                self._first = False
                piece = piece.removeprefix("\ufeff")
            if piece:
                return piece
        return ""

    def beginning(self) -> str:
        """Text up to the first character that is not white space (or the end), left to be read."""
        while True:
            piece = self.read()
            self._unread.append(piece)
            if not piece or piece.strip():
                return "".join(self._unread)

    def lines(self) -> Iterator[str]:
        """Lines as ``open(newline="")`` gives them, ending (kept) in CR LF, CR or LF: what the csv
        module needs, and what it saw when a whole file was one string."""
        parts: list[str] = []  # the line so far, when it spans pieces
        while piece := self.read():
            start = 0
            if parts and parts[-1].endswith("\r") and not piece.startswith("\n"):
                yield "".join(parts)  # a lone \r ended the last piece, and the line
                parts = []
            for match in _LINE_END.finditer(piece):
                if match.end() == len(piece) and match.group() == "\r":
                    break  # the \n of a \r\n may open the next piece
                parts.append(piece[start : match.end()])
                yield "".join(parts)
                parts, start = [], match.end()
            if start < len(piece):
                parts.append(piece[start:])
        if parts:
            yield "".join(parts)


def _csv_rows(text: _FeedText, name: str) -> Iterator[tuple[int, Any]]:
    reader = csv.DictReader(text.lines())
    try:
        header = reader.fieldnames
    except csv.Error as err:
        raise InvalidInput(f"{name} is not a CSV file: {err}") from None
    columns = [str(c).strip().lower() for c in header or []]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise InvalidInput(
            f"{name} has no column {', '.join(missing)}: a feed needs a header row with "
            f"{', '.join(REQUIRED_COLUMNS)} (and optionally category, closed_at)"
        )
    reader.fieldnames = columns
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            yield reader.line_num, err  # a broken row is rejected; the rest is still read
            continue
        yield reader.line_num, row


def _json_rows(text: _FeedText, name: str) -> Iterator[tuple[int, Any]]:
    return _JsonList(text, name).items()


class _JsonList:
    """The items of a JSON list, decoded one at a time as the text arrives. The json module has no
    incremental reader, but ``raw_decode`` reads one value at a position: an item cut off by the end
    of what was read is decoded again with more text, and a number or literal that touches that end
    too (``12`` may be ``123``). Each retry reads at least as much again as is held, so even a huge
    item is decoded a logarithmic number of times, never once per piece."""

    def __init__(self, text: _FeedText, name: str) -> None:
        self._text, self._name = text, name
        self._decoder = json.JSONDecoder()
        self._held, self._at, self._ended = "", 0, False

    def items(self) -> Iterator[tuple[int, Any]]:
        if self._next_character() != "[":
            raise InvalidInput(f"{self._name} must hold a JSON list of incident objects")
        self._at += 1
        number = 0
        if self._next_character() == "]":
            self._at += 1
        else:
            while True:
                number += 1
                yield number, self._value(number)
                following = self._next_character()
                self._at += 1
                if following == "]":
                    break
                if following != ",":
                    raise InvalidInput(f"{self._name} is not JSON: ',' or ']' expected after item {number}")
                self._next_character()
        if self._next_character():
            raise InvalidInput(f"{self._name} is not JSON: text after the end of the list")

    def _value(self, number: int) -> Any:
        while True:
            try:
                value, end = self._decoder.raw_decode(self._held, self._at)
            except json.JSONDecodeError as err:
                if self._more():
                    continue
                raise InvalidInput(f"{self._name} is not JSON: {err.msg} (item {number})") from None
            if end == len(self._held) and self._more():
                continue
            self._at = end
            return value

    def _next_character(self) -> str:
        """The next character that is not JSON white space, not consumed; "" at the end."""
        while True:
            space = _JSON_SPACE.match(self._held, self._at)
            self._at = space.end() if space else self._at
            if self._at < len(self._held):
                return self._held[self._at]
            if not self._more():
                return ""

    def _more(self) -> bool:
        """Read at least as much text again as is held from the current position; False at the end."""
        if self._ended:
            return False
        held = self._held[self._at :]
        pieces, wanted = [held], max(len(held), 1)
        while wanted > 0:
            piece = self._text.read()
            if not piece:
                self._ended = True
                break
            pieces.append(piece)
            wanted -= len(piece)
        self._held, self._at = "".join(pieces), 0
        return len(pieces) > 1


def _incident(number: int, row: Any, pattern: str, now: datetime, shared: dict[object, Any]) -> FeedIncident:
    """The row as an incident; references, officers and categories that rows repeat are kept once
    (``shared``), which is most of a large feed's memory."""
    if isinstance(row, csv.Error):
        raise InvalidInput(f"not a CSV row: {row}")
    if not isinstance(row, Mapping):
        raise InvalidInput("not an object with incident_ref, officer_id, start and end")
    fields = {str(k).strip().lower(): v for k, v in row.items() if k is not None}
    missing = [c for c in REQUIRED_COLUMNS if fields.get(c) in (None, "")]
    if missing:
        raise InvalidInput(f"missing {', '.join(missing)}")
    parsed = parse_incident_ref(_as_text(fields["incident_ref"], "incident_ref"), pattern)
    incident: IncidentRef = shared.setdefault(parsed, parsed)
    officer = require_identifier(_as_text(fields["officer_id"], "officer_id").strip(), "officer id")
    officer = shared.setdefault(officer, officer)
    start = require_plausible(parse_time(fields["start"], "start"), "start", now=now)
    end = require_plausible(parse_time(fields["end"], "end"), "end", now=now)
    if end < start:
        raise InvalidInput(f"end {end.isoformat()} is before start {start.isoformat()}")
    if end - start > MAX_WINDOW:
        raise InvalidInput(f"window of {end - start} is longer than {MAX_WINDOW.days} days; check the dates")
    closed_at = (
        None
        if fields.get("closed_at") in (None, "")
        else require_plausible(parse_time(fields["closed_at"], "closed_at"), "closed_at", now=now)
    )
    if closed_at is not None and closed_at < start:
        raise InvalidInput(
            f"closed_at {closed_at.isoformat()} is before the incident's start {start.isoformat()}"
        )
    category = _category(fields.get("category"))
    if category is not None:
        category = shared.setdefault(category, category)
    return FeedIncident(number, incident, officer, start, end, category, closed_at)


def _category(value: Any) -> str | None:
    if value in (None, ""):
        return None
    text = _as_text(value, "category").strip().lower()
    if not text:
        return None
    if not _CATEGORY.fullmatch(text):
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise InvalidInput(f"category {shown!r} is not valid: use lower-case letters, digits and '-'")
    return text


def _as_text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be text, not {type(value).__name__}")
    return value


# -- matching ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Windows:
    """One officer's incidents, sorted by start. Windows are widened by the tolerance when asked, not
    stored widened: an index over a 500,000-row feed then holds no times of its own."""

    starts: list[datetime]
    incidents: list[FeedIncident]
    longest: timedelta
    """The longest window, without the tolerance."""

    def fitting(self, moment: datetime, tolerance: timedelta) -> list[FeedIncident]:
        # every window that opens (start - tolerance) no later than the moment and no earlier than the
        # longest window before it; of those, the ones still open (end + tolerance). A bisect, not a
        # scan over every incident. Shifts stop at the calendar's ends (no overflow), which keeps the
        # test exact: a window reaching past an end includes everything up to it.
        try:
            reach = self.longest + tolerance
        except OverflowError:
            reach = timedelta.max
        first = bisect_left(self.starts, earlier(moment, reach))
        last = bisect_right(self.starts, later(moment, tolerance))
        closing = earlier(moment, tolerance)
        return [incident for incident in self.incidents[first:last] if incident.end >= closing]


def _index(incidents: Iterable[FeedIncident]) -> dict[str, _Windows]:
    by_officer: dict[str, list[FeedIncident]] = {}
    for incident in incidents:
        by_officer.setdefault(incident.officer_id, []).append(incident)
    index = {}
    for officer, listed in by_officer.items():
        listed.sort(key=lambda incident: (incident.start, incident.end, incident.row))
        longest = max(incident.end - incident.start for incident in listed)
        index[officer] = _Windows([incident.start for incident in listed], listed, longest)
    return index


def match_feed(feed: Feed, items: Iterable[DatedItem], tolerance: timedelta) -> FeedMatch:
    """Decide, for every item, what the feed says about it (rules in the module docstring)."""
    if tolerance < timedelta(0):
        raise InvalidInput("the link tolerance cannot be negative")
    index = _index(feed.incidents)
    categories = feed.categories()
    to_link: list[FeedLink] = []
    already: list[tuple[str, str]] = []
    ambiguous: list[AmbiguousItem] = []
    kept_unlinked: list[tuple[str, str]] = []
    undated: list[str] = []
    for item in items:
        windows = index.get(item.officer_id or "")
        if windows is None:
            continue
        if item.recorded_at is None:
            undated.append(item.evidence_id)
            continue
        fitting: dict[str, FeedIncident] = {}
        for incident in windows.fitting(in_utc(item.recorded_at), tolerance):
            fitting.setdefault(incident.incident.value, incident)
        if not fitting:
            continue
        decided = sorted(ref for ref in fitting if ref in item.linked)
        if decided:
            already.extend((item.evidence_id, ref) for ref in decided)
            continue
        refused = sorted(ref for ref in fitting if ref in item.unlinked)
        kept_unlinked.extend((item.evidence_id, ref) for ref in refused)
        candidates = sorted(ref for ref in fitting if ref not in item.unlinked)
        if len(candidates) == 1:
            chosen = fitting[candidates[0]]
            to_link.append(
                FeedLink(item.evidence_id, candidates[0], categories.get(candidates[0]), chosen.row)
            )
        elif candidates:
            ambiguous.append(AmbiguousItem(item.evidence_id, tuple(candidates)))
    return FeedMatch(tuple(to_link), tuple(already), tuple(ambiguous), tuple(kept_unlinked), tuple(undated))
