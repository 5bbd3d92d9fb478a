"""Previewing part of a long video: `evidence get ID --range START-END` returns exactly those plaintext
bytes (both ends included, as HTTP Range) and fetches only the encrypted segments that hold them."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.commands import app
from evidence import stream
from evidence.errors import IntegrityError, InvalidInput
from flows.retrieval import get_range, parse_byte_range
from tests.factories import random_file
from tests.station import Station, make_station
from tests.test_export_incident import INVESTIGATOR, flip_stored_byte, write_users

SEGMENT = 4096
SIZE = 20 * SEGMENT + 123  # 21 segments, the last one short
runner = CliRunner()


@pytest.fixture
def station(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Station:
    station = make_station(tmp_path / "station", segment_size=SEGMENT)
    write_users(station)
    monkeypatch.setenv("EVIDENCE_DATA_DIR", str(station.settings.data_dir))
    monkeypatch.setenv("EVIDENCE_SEGMENT_SIZE", str(SEGMENT))
    return station


@pytest.fixture
def original(tmp_path: Path) -> Path:
    return random_file(tmp_path / "device" / "VID_0001.MP4", SIZE, seed=3)


@pytest.fixture
def evidence_id(station: Station, original: Path) -> str:
    [outcome] = station.ingest(original.parent).by_status("ingested")
    return str(outcome.evidence_id)


def read(station: Station, evidence_id: str, text: str) -> bytes:
    sink = io.BytesIO()
    get_range(station.vault, evidence_id, INVESTIGATOR, text, sink)
    return sink.getvalue()


@pytest.mark.parametrize(
    ("text", "start", "stop"),
    [
        ("0-0", 0, 1),
        ("0-499", 0, 500),
        (f"{SEGMENT - 1}-{SEGMENT}", SEGMENT - 1, SEGMENT + 1),  # straddles a segment boundary
        (f"{SEGMENT}-{2 * SEGMENT - 1}", SEGMENT, 2 * SEGMENT),  # exactly one segment
        (f"{SIZE - 1}-{SIZE - 1}", SIZE - 1, SIZE),  # the very last byte
        (f"{SIZE - 200}-{SIZE + 10_000}", SIZE - 200, SIZE),  # an end past the item is cut, as HTTP
        (f"{3 * SEGMENT + 5}-", 3 * SEGMENT + 5, SIZE),
        ("-1", SIZE - 1, SIZE),
        (f"-{SEGMENT + 7}", SIZE - SEGMENT - 7, SIZE),
        (f"-{SIZE * 2}", 0, SIZE),
        ("0-", 0, SIZE),
    ],
)
def test_range_matches_slicing_the_original(
    station: Station, evidence_id: str, original: Path, text: str, start: int, stop: int
) -> None:
    assert read(station, evidence_id, text) == original.read_bytes()[start:stop]


@pytest.mark.parametrize(
    "text", ["", "-", "-0", "abc", "5-3", "1-2-3", "0x10-20", f"{SIZE}-", f"{SIZE}-{SIZE + 5}", "٣-٤"]
)
def test_unsatisfiable_or_malformed_ranges_are_refused(station: Station, evidence_id: str, text: str) -> None:
    with pytest.raises(InvalidInput, match="range"):
        read(station, evidence_id, text)


def test_empty_item_has_no_satisfiable_range() -> None:
    with pytest.raises(InvalidInput, match="empty"):
        parse_byte_range("0-0", 0)


def test_only_the_needed_segments_are_fetched(
    station: Station, evidence_id: str, original: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    content = station.vault.manifest(evidence_id).content
    fetched: list[tuple[int, int | None]] = []
    real_get = station.vault.store.get

    def spy(
        key: str, *, version_id: str | None = None, start: int = 0, end: int | None = None
    ) -> Iterator[bytes]:
        if key == content.key:
            fetched.append((start, end))
        return real_get(key, version_id=version_id, start=start, end=end)

    monkeypatch.setattr(station.vault.store, "get", spy)
    stored_segment = SEGMENT + stream.TAG_SIZE

    # bytes 10 past the start of segment 7 to 10 past the start of segment 8: two segments
    start = 7 * SEGMENT + 10
    assert (
        read(station, evidence_id, f"{start}-{start + SEGMENT - 1}")
        == original.read_bytes()[start : start + SEGMENT]
    )
    header, span = fetched
    assert header == (0, stream.HEADER_SIZE)
    assert span == (stream.HEADER_SIZE + 7 * stored_segment, stream.HEADER_SIZE + 9 * stored_segment)

    # the last byte: only the short final segment, whose end is the object's end
    fetched.clear()
    assert read(station, evidence_id, "-1") == original.read_bytes()[-1:]
    assert fetched[1] == (stream.HEADER_SIZE + 20 * stored_segment, content.size)
    assert all(end is not None for _, end in fetched), "never a read to the end of the object"


def test_damaged_segment_in_range_is_refused_but_others_still_read(
    station: Station, evidence_id: str, original: Path
) -> None:
    flip_stored_byte(station, evidence_id)  # the middle of the object: segment 10
    with pytest.raises(IntegrityError):
        read(station, evidence_id, f"{10 * SEGMENT}-{10 * SEGMENT + 99}")
    assert read(station, evidence_id, "0-99") == original.read_bytes()[:100]


def test_range_is_recorded_in_the_chain_of_custody(station: Station, evidence_id: str) -> None:
    sink = io.BytesIO()
    get_range(station.vault, evidence_id, INVESTIGATOR, "100-", sink, purpose="preview for interview")
    event = station.vault.custody.events(evidence_id)[-1]
    assert (event.type, event.actor, event.role) == ("access", "ivy", "investigator")
    assert event.details == {"action": "get", "purpose": "preview for interview", "range": f"100-{SIZE - 1}"}


def test_cli_streams_a_range_to_stdout_or_writes_a_new_file(
    station: Station, evidence_id: str, original: Path, tmp_path: Path
) -> None:
    result = runner.invoke(app, ["--user", "ivy", "get", evidence_id, "--range", "4000-4199"])
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == original.read_bytes()[4000:4200]

    out = tmp_path / "clip.bin"
    result = runner.invoke(app, ["--user", "ivy", "get", evidence_id, "--range", "-300", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == original.read_bytes()[-300:]
    with pytest.raises(InvalidInput, match="already exists"):
        get_range(station.vault, evidence_id, INVESTIGATOR, "0-1", out)
    assert out.read_bytes() == original.read_bytes()[-300:]

    # a whole item is only written to a file, after its SHA-256 matched
    result = runner.invoke(app, ["--user", "ivy", "get", evidence_id])
    assert isinstance(result.exception, InvalidInput) and "--out" in str(result.exception)
