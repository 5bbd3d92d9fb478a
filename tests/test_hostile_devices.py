"""A docked device is untrusted input: links, special files, names built to confuse, files that change
while they are read, directories swapped under the scanner, trees too deep for a path, tens of
thousands of tiny files. Nothing crashes, nothing outside the device is read or removed, and every
entry is accounted for: ingested, duplicate, rejected, deferred or failed, with a reason.
(``test_ingest_device.py`` covers the basic hostile entries; these go further.)"""

from __future__ import annotations

import base64
import errno
import json
import os
import socket
import stat
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from evidence.device import DeviceFile, display_path, scan_device
from evidence.errors import InvalidInput
from flows.ingest import ingest_file, resolve_device
from tests.factories import make_jpeg, random_file
from tests.faults import (
    HookedStore,
    check_run_accounts_for_every_file,
    fingerprint_device,
    ingest_like_the_flow,
    install_store,
    report_figures,
    take_census,
)
from tests.station import Station, make_station

MiB = 1024 * 1024
FIGURES: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def _print_figures(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if FIGURES:
        report_figures(request, "hostile devices", FIGURES)


@pytest.fixture
def station(tmp_path: Path) -> Station:
    return make_station(tmp_path / "station")


def _outcomes(report: Any) -> dict[str, Any]:
    by_path: dict[str, Any] = {}
    for outcome in report.outcomes:
        assert outcome.source_path not in by_path, f"{outcome.source_path!r} is reported twice"
        by_path[outcome.source_path] = outcome
    return by_path


def _context(station: Station, device: Path, *, wipe: bool = True) -> Any:
    return resolve_device(station.settings, device, serial="BWC-HOSTILE", officer="PC-1", wipe=wipe)


# ------------------------------------------------------------------------------------------------
# Links and special files


def test_links_and_special_files_are_rejected_never_read_and_never_removed(
    station: Station, tmp_path: Path
) -> None:
    outside = tmp_path / "station-secrets"
    outside.mkdir()
    (outside / "vault-id.key").write_bytes(b"not for the vault")
    device = tmp_path / "BWC-LINKS"
    make_jpeg(device / "DCIM" / "IMG_0001.JPG", seed=1)
    links = {
        "to-outside-file": outside / "vault-id.key",
        "to-outside-dir": outside,
        "to-device-file": device / "DCIM" / "IMG_0001.JPG",
        "to-parent": Path(".."),
        "dangling": tmp_path / "nowhere",
        "loop-a": Path("loop-b"),
        "loop-b": Path("loop-a"),
        "DCIM/to-root": Path("/"),
    }
    for name, target in links.items():
        os.symlink(target, device / name)
    os.mkfifo(device / "fifo")
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(str(device / "socket"))
        expected_special = {"fifo": "named pipe", "socket": "socket"}
        try:
            os.mknod(device / "null-device", stat.S_IFCHR | 0o600, os.makedev(1, 3))
            expected_special["null-device"] = "device node"
        except PermissionError:
            pass  # not root: no device node, the rest still holds

        started = time.monotonic()
        report = ingest_like_the_flow(station, device, wipe=True)
        assert time.monotonic() - started < 30, "a FIFO or socket must never be opened (it would block)"

    outcomes = _outcomes(report)
    assert outcomes["DCIM/IMG_0001.JPG"].status == "ingested" and outcomes["DCIM/IMG_0001.JPG"].wiped
    for name in links:
        assert outcomes[name].status == "rejected" and "symbolic link" in str(outcomes[name].reason)
        assert (device / name).is_symlink(), f"{name} was removed"
    for name, kind in expected_special.items():
        assert outcomes[name].status == "rejected" and kind in str(outcomes[name].reason)
        assert (device / name).exists()
    assert len(outcomes) == 1 + len(links) + len(expected_special)
    assert (outside / "vault-id.key").read_bytes() == b"not for the vault"
    stored = [
        station.vault.details(station.vault.manifest(i)).source_path for i in station.vault.list_items()
    ]
    assert stored == ["DCIM/IMG_0001.JPG"], "nothing behind a link was stored"


# ------------------------------------------------------------------------------------------------
# Names


HOSTILE_NAMES: list[bytes] = [
    b"..\\..\\x.jpg",  # a Windows traversal is just a name here
    b"-rf",
    b"--help",
    b"name with\nnewline.mp4",
    b"\x01\x1b[31mred\x7f.jpg",  # control characters and a terminal escape
    b"a" * 251 + b".jpg",  # 255 bytes: the longest name Linux allows
    "é".encode() * 127 + b"x",  # 255 bytes of two-byte UTF-8
    b"\xff\xfe",  # not UTF-8
    b"\xc3\x28.jpg",  # a broken two-byte sequence
    b"\xed\xa0\x80.jpg",  # an encoded surrogate
    b"....",
    b" ",
    b"%2e%2e%2fetc%2fpasswd",
    b"*?[a].jpg",
    b"CON",
    "caf\u00e9.jpg".encode(),  # NFC
    "cafe\u0301.jpg".encode(),  # NFD: looks the same, is another file
    "\u202egpj.exe".encode(),  # right-to-left override
    b"\\xff\\xfe",  # would show like the bytes 0xff 0xfe above if backslashes were not escaped
]


def test_names_built_to_confuse_are_each_ingested_and_kept_byte_for_byte(
    station: Station, tmp_path: Path
) -> None:
    device = tmp_path / "BWC-NAMES"
    (device / "DCIM").mkdir(parents=True)
    raw_dir = os.fsencode(device / "DCIM")
    for n, name in enumerate(HOSTILE_NAMES):
        with open(raw_dir + b"/" + name, "wb") as handle:
            handle.write(b"distinct content %d " % n * 10)
    nested = raw_dir + b"/\xfe\xfd dir\n"
    os.mkdir(nested)
    with open(nested + b"/inner\xff.bin", "wb") as handle:
        handle.write(b"inside a non-UTF-8 directory")

    report = ingest_like_the_flow(station, device, wipe=True)

    outcomes = _outcomes(report)  # every path shown is distinct
    assert len(outcomes) == len(HOSTILE_NAMES) + 1
    assert {o.status for o in outcomes.values()} == {"ingested"} and all(o.wiped for o in outcomes.values())
    assert not any(device.rglob("*.*")) and not [p for p in (device / "DCIM").iterdir() if p.is_file()]
    for name in HOSTILE_NAMES:
        shown = "DCIM/" + display_path(os.fsdecode(name))
        details = station.vault.details(station.vault.manifest(str(outcomes[shown].evidence_id)))
        assert base64.b64decode(details.original_name_b64) == name
        assert details.source_path == shown
    inner = "DCIM/" + display_path(os.fsdecode(b"\xfe\xfd dir\n/inner\xff.bin"))
    assert inner in outcomes and outcomes[inner].status == "ingested"
    assert len(set(outcomes)) == len(outcomes)
    assert "DCIM/\\x5cxff\\x5cxfe" in outcomes and "DCIM/\\xff\\xfe" in outcomes


def test_names_that_look_like_console_markup_are_shown_as_they_are(
    prefect_harness: None,
    station: Station,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The station's report names each file exactly: rich once read '[bold]' in a name as a style
    and showed a different name than the one on the device."""
    from tests.test_link_incidents import front_door

    monkeypatch.setenv("EVIDENCE_DATA_DIR", str(station.settings.data_dir))
    device = tmp_path / "BWC-MARKUP"
    (device / "DCIM").mkdir(parents=True)
    names = ["[bold]IMG_0001.JPG", "IMG_[link=mailto:x]0002.JPG", "[red]"]
    an_hour_ago = time.time() - 3600  # written on patrol, not still being written
    for n, name in enumerate(names):
        path = device / "DCIM" / name
        path.write_bytes(b"frame %d " % n * 20)
        os.utime(path, (an_hour_ago, an_hour_ago))

    code, stdout, stderr = front_door(
        ["ingest", str(device), "--device", "BWC-MARKUP", "--officer", "PC-1"], capsys
    )
    assert code == 0, stderr
    listed = " ".join(stdout.split())  # the table may fold long cells
    for name in names:
        assert f"DCIM/{name}" in listed, (name, stdout)


# Names that would take over the terminal: each is shown with its hidden characters made visible
TERMINAL_NAMES = {
    "IMG_\x1b[1A\x1b[2K0001.JPG": "IMG_\\x1b[1A\\x1b[2K0001.JPG",  # cursor up, erase the line above
    "rtl\u202egpj.exe": "rtl\\u202egpj.exe",  # right-to-left override: would show as rtlexe.jpg
    "forged\nrow.jpg": "forged\\nrow.jpg",  # a newline would split the row in two
    "zero\u200bwidth.jpg": "zero\\u200bwidth.jpg",  # would look like zerowidth.jpg
    ":warning: IMG_0002.JPG": ":warning: IMG_0002.JPG",  # rich's emoji code: shown as typed
}
HIDDEN_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


def hidden_characters(shown: str) -> set[str]:
    """What a person reading a terminal cannot see as itself: controls other than the line ends of
    the output, format characters (bidi controls, zero widths), separators, surrogates."""
    return {c for c in shown if c != "\n" and unicodedata.category(c) in HIDDEN_CATEGORIES}


def test_ingest_table_shows_control_and_bidi_characters_in_file_names_escaped(
    station: Station, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli.station import _render_report

    device = tmp_path / "BWC-TERMINAL"
    (device / "DCIM").mkdir(parents=True)
    for n, name in enumerate(TERMINAL_NAMES):
        (device / "DCIM" / name).write_bytes(b"frame %d " % n * 20)
    report = ingest_like_the_flow(station, device, wipe=False)
    assert {o.source_path for o in report.outcomes} == {f"DCIM/{name}" for name in TERMINAL_NAMES}

    capsys.readouterr()
    _render_report(report)
    shown = capsys.readouterr().out

    assert not hidden_characters(shown)
    rows = [line for line in shown.splitlines() if " ev-" in line]
    assert len(rows) == len(TERMINAL_NAMES), shown  # one line per file: no row split, none forged
    for escaped in TERMINAL_NAMES.values():
        assert len([row for row in rows if f"DCIM/{escaped} " in row]) == 1, (escaped, shown)


def test_show_escapes_the_name_and_camera_metadata_a_device_supplied_and_json_keeps_them_exact(
    station: Station, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.test_export_incident import write_users
    from tests.test_link_incidents import front_door

    monkeypatch.setenv("EVIDENCE_DATA_DIR", str(station.settings.data_dir))
    write_users(station)
    device = tmp_path / "BWC-SHOW"
    make_jpeg(device / "DCIM" / "rtl\u202egpj.exe", make="Acme\x1b[2J", model="BWC\n1", seed=41)
    [outcome] = ingest_like_the_flow(station, device, wipe=False).outcomes
    evidence_id = str(outcome.evidence_id)

    code, shown, stderr = front_door(["--user", "ivy", "show", evidence_id], capsys)
    assert code == 0, stderr
    assert not hidden_characters(shown)
    for escaped in ("DCIM/rtl\\u202egpj.exe", "make=Acme\\x1b[2J", "model=BWC\\n1"):
        assert escaped in shown, (escaped, shown)

    code, printed, stderr = front_door(["--user", "ivy", "show", evidence_id, "--json"], capsys)
    assert code == 0, stderr
    doc = json.loads(printed)
    assert doc["source_path"] == "DCIM/rtl\u202egpj.exe" and doc["original_name"] == "rtl\u202egpj.exe"
    assert (doc["metadata"]["make"], doc["metadata"]["model"]) == ("Acme\x1b[2J", "BWC\n1")


def test_an_error_quoting_a_name_is_one_line_with_its_hidden_characters_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.test_link_incidents import front_door

    missing = tmp_path / "BWC\x1b[2J\u202e\nerror: forged"
    code, _, stderr = front_door(["ingest", str(missing)], capsys)

    assert code == InvalidInput.exit_code
    assert stderr.count("\n") == 1 and stderr.startswith("error: "), stderr
    assert not hidden_characters(stderr)
    assert "BWC\\x1b[2J\\u202e\\nerror: forged is not a directory" in stderr


def test_a_device_folder_name_ending_in_a_newline_is_not_taken_as_its_serial(
    station: Station, tmp_path: Path
) -> None:
    """Serials and officer ids are stored in clear manifests and logs: ``$`` in a pattern also
    matches before a final newline, so "BWC-1\\n" once passed as a serial."""
    device = tmp_path / "BWC-1\n"
    device.mkdir()
    context = resolve_device(station.settings, device, serial=None, officer=None)
    assert context.device_serial == "unidentified" and "unknown-device" in context.flags
    with pytest.raises(InvalidInput, match="officer id"):
        resolve_device(station.settings, device, serial="BWC-1", officer="PC-1\n")


HIDDEN_EXAMPLES = (
    "\\\x00\x1b\x7f\x85\xa0\xad\u061c\u200b\u200e\u2028\u202e\u2066\u034f\u3164\ufe0f\ufeff\udcff\U000e0041"
)


@given(st.text(st.one_of(st.characters(exclude_categories=()), st.sampled_from(HIDDEN_EXAMPLES))))
@example("\\x1b")  # a name spelling an escape out is not the escape itself
@example("\x1b")
def test_the_visible_form_of_any_text_hides_nothing_and_reads_back_as_that_text(text: str) -> None:
    from flows.console import visible

    shown = visible(text)
    assert shown.isprintable(), repr(shown)  # no control, format, separator, surrogate or odd space
    assert not set(shown) & set(HIDDEN_EXAMPLES[1:]), repr(shown)  # nor a character drawn as nothing
    # read as the inside of a Python string literal, it is the text again: never two texts alike
    assert shown.encode("latin-1", "backslashreplace").decode("unicode_escape") == text


# ------------------------------------------------------------------------------------------------
# Files and directories that change while the station reads them


def _hook_at(label: str, action: Callable[[], None]) -> Callable[[str], None]:
    done = []

    def hook(point: str) -> None:
        if point == label and not done:
            done.append(point)
            action()

    return hook


def _append(path: Path) -> None:
    with path.open("ab") as handle:
        handle.write(b"one more frame")


def _truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def _rewrite_same_size(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "change", [_append, _truncate, _rewrite_same_size], ids=["grows", "shrinks", "rewritten-in-place"]
)
def test_a_file_changing_while_it_is_read_is_deferred_and_nothing_of_it_is_kept(
    station: Station, tmp_path: Path, change: Callable[[Path], None]
) -> None:
    device = tmp_path / "BWC-CHANGE"
    clip = device / "clip.bin"
    random_file(clip, 3 * MiB, seed=40)
    hooked = HookedStore(station.vault.store, _hook_at("before upload.write", lambda: change(clip)))
    install_store(station.vault, hooked)

    report = ingest_like_the_flow(station, device, wipe=True)

    [outcome] = report.outcomes
    assert outcome.status == "deferred" and "will be ingested on the next run" in str(outcome.reason)
    assert clip.exists() and not outcome.wiped
    assert not list(station.vault.store.list_versions("")) or not list(station.vault.list_items())
    assert not list(station.vault.store.list_versions("objects/")), "the abandoned upload left an object"
    assert not list(station.vault.store.list_incomplete_uploads(""))
    assert station.journal.unsettled() == []


def test_a_file_written_to_throughout_the_ingest_is_deferred_then_ingested_once_it_settles(
    station: Station, tmp_path: Path
) -> None:
    device = tmp_path / "BWC-RECORDING"
    make_jpeg(device / "IMG_0001.JPG", seed=2)
    recording = device / "VID_0002.MP4"
    random_file(recording, 2 * MiB, seed=41)
    stop = threading.Event()

    def camera_still_recording() -> None:
        with recording.open("ab") as handle:
            while not stop.is_set():
                handle.write(os.urandom(4096))
                handle.flush()
                time.sleep(0.001)

    writer = threading.Thread(target=camera_still_recording)
    writer.start()
    try:
        report = ingest_like_the_flow(station, device, wipe=True)
    finally:
        stop.set()
        writer.join()

    outcomes = _outcomes(report)
    assert outcomes["IMG_0001.JPG"].status == "ingested" and outcomes["IMG_0001.JPG"].wiped
    assert outcomes["VID_0002.MP4"].status == "deferred" and recording.exists()
    assert len(list(station.vault.list_items())) == 1

    final_bytes = fingerprint_device(device)
    again = ingest_like_the_flow(station, device, wipe=True)
    assert [o.status for o in again.outcomes] == ["ingested"] and not recording.exists()
    assert (
        station.vault.details(station.vault.manifest(str(again.outcomes[0].evidence_id))).sha256
        == (final_bytes["VID_0002.MP4"])
    )


def _swap_for_link(path: Path, target: Path) -> None:
    os.rename(path, path.with_name(path.name + ".moved"))
    os.symlink(target, path)


def test_a_directory_swapped_for_a_link_during_the_scan_is_not_followed(
    station: Station, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attack: the scanner has seen ``DCIM`` is a directory; before it lists it, ``DCIM`` becomes a
    link to the station's own secrets. Listing through the link would store them and, with --wipe,
    delete them."""
    outside = tmp_path / "station-secrets"
    outside.mkdir()
    (outside / "IMG_0001.JPG").write_bytes(b"the station's private key")
    device = tmp_path / "BWC-SWAP"
    make_jpeg(device / "DCIM" / "IMG_0001.JPG", seed=3)
    make_jpeg(device / "OTHER" / "IMG_0009.JPG", seed=4)
    descending = str(device / "DCIM")
    swapped: list[str] = []

    def before_descending(path: Any) -> None:
        if not swapped and isinstance(path, str | os.PathLike) and os.fspath(path) == descending:
            swapped.append(descending)
            _swap_for_link(device / "DCIM", outside)

    real_open, real_scandir = os.open, os.scandir

    def opening(path: Any, *args: Any, **kwargs: Any) -> int:
        before_descending(path)
        return real_open(path, *args, **kwargs)

    def listing(path: Any = ".") -> Any:
        before_descending(path)
        return real_scandir(path)

    monkeypatch.setattr(os, "open", opening)
    monkeypatch.setattr(os, "scandir", listing)
    report = ingest_like_the_flow(station, device, wipe=True)
    monkeypatch.undo()

    assert swapped, "the swap never happened: the test proves nothing"
    assert (outside / "IMG_0001.JPG").read_bytes() == b"the station's private key"
    outcomes = _outcomes(report)
    assert outcomes["OTHER/IMG_0009.JPG"].status == "ingested"
    assert outcomes["DCIM"].status == "rejected" and "replaced" in str(outcomes["DCIM"].reason)
    stored = [station.vault.details(station.vault.manifest(i)).sha256 for i in station.vault.list_items()]
    assert len(stored) == 1, "nothing from behind the link was stored"


def test_a_directory_swapped_for_a_link_after_the_scan_is_neither_read_nor_wiped(
    station: Station, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "IMG_0001.JPG").write_bytes(b"someone else's file")
    device = tmp_path / "BWC-SWAP2"
    make_jpeg(device / "DCIM" / "IMG_0001.JPG", seed=5)
    [item] = scan_device(device, settle_seconds=0).files
    _swap_for_link(device / "DCIM", outside)

    outcome = ingest_file(station.vault, item, _context(station, device))

    assert outcome.status == "deferred" and "replaced" in str(outcome.reason)
    assert (outside / "IMG_0001.JPG").read_bytes() == b"someone else's file"
    assert not list(station.vault.list_items())


@pytest.mark.parametrize("swap", ["file-for-link", "directory-for-link", "file-for-other-file"])
def test_a_file_swapped_after_it_was_stored_is_kept_on_the_device(
    station: Station, tmp_path: Path, swap: str
) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "IMG_0001.JPG").write_bytes(b"someone else's file")
    device = tmp_path / "BWC-SWAP3"
    photo = device / "DCIM" / "IMG_0001.JPG"
    make_jpeg(photo, seed=6)
    original = photo.read_bytes()

    def swap_it() -> None:
        if swap == "file-for-link":
            _swap_for_link(photo, outside / "IMG_0001.JPG")
        elif swap == "directory-for-link":
            _swap_for_link(device / "DCIM", outside)
        else:
            replacement = photo.with_name("new.tmp")
            replacement.write_bytes(b"recorded over")
            os.replace(replacement, photo)

    # the last store call of an ingest is the custody record: after it, only the wipe is left
    install_store(
        station.vault, HookedStore(station.vault.store, _hook_at("after put_bytes custody", swap_it))
    )
    report = ingest_like_the_flow(station, device, wipe=True)

    [outcome] = report.outcomes
    assert outcome.status == "ingested" and not outcome.wiped
    assert "kept on device" in str(outcome.reason)
    assert (outside / "IMG_0001.JPG").read_bytes() == b"someone else's file"
    manifest = station.vault.manifest(str(outcome.evidence_id))
    assert b"".join(station.vault.read_original(manifest)) == original, "what was read is what was stored"


def _racing_wipe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, wipe: Callable[[DeviceFile], object]
) -> Path:
    """The attacker swaps the file's directory for a link to a folder holding a file of the same name
    right after the wipe checked the file (its first stat or lstat), before it removes it. Returns that
    other file."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "IMG_0001.JPG").write_bytes(b"someone else's file")
    device = tmp_path / "BWC-WIPE"
    make_jpeg(device / "DCIM" / "IMG_0001.JPG", seed=13)
    [item] = scan_device(device, settle_seconds=0).files
    swapped: list[bool] = []

    def check_then_swap(real_check: Callable[..., os.stat_result]) -> Callable[..., os.stat_result]:
        def checking(*args: Any, **kwargs: Any) -> os.stat_result:
            result = real_check(*args, **kwargs)
            if not swapped:
                swapped.append(True)
                monkeypatch.undo()  # the swap itself must see the real filesystem calls
                _swap_for_link(device / "DCIM", outside)
            return result

        return checking

    monkeypatch.setattr(os, "stat", check_then_swap(os.stat))
    monkeypatch.setattr(os, "lstat", check_then_swap(os.lstat))
    wipe(item)
    monkeypatch.undo()
    assert swapped and (device / "DCIM").is_symlink(), "the swap never happened: the test proves nothing"
    return outside / "IMG_0001.JPG"


def test_removing_a_device_file_cannot_be_redirected_outside_the_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from evidence.device import remove_device_file

    other = _racing_wipe(tmp_path, monkeypatch, remove_device_file)
    assert other.read_bytes() == b"someone else's file"
    assert not (tmp_path / "BWC-WIPE" / "DCIM.moved" / "IMG_0001.JPG").exists(), "the device file went"


def test_wiping_cannot_be_redirected_outside_the_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.ingest import FileOutcome, wipe_verified

    stored = FileOutcome("DCIM/IMG_0001.JPG", "ingested")
    wiped: list[FileOutcome] = []
    other = _racing_wipe(tmp_path, monkeypatch, lambda item: wiped.append(wipe_verified(item, stored)))
    assert other.read_bytes() == b"someone else's file", "the wipe removed a file outside the device"
    assert wiped[0].wiped


def test_a_file_vanishing_or_unreadable_after_the_scan_fails_and_is_reported(
    station: Station, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    device = tmp_path / "BWC-GONE"
    make_jpeg(device / "a.jpg", seed=7)
    make_jpeg(device / "b.jpg", seed=8)
    make_jpeg(device / "c.jpg", seed=9)
    scan = scan_device(device, settle_seconds=0)
    (device / "a.jpg").unlink()
    locked = os.fsencode(device / "b.jpg")
    real_open = os.open

    def opening(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if isinstance(path, str | bytes | os.PathLike) and os.fsencode(path) == locked:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fsdecode(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", opening)
    outcomes = {f.relative: ingest_file(station.vault, f, _context(station, device)) for f in scan.files}
    monkeypatch.undo()

    assert outcomes["a.jpg"].status == "failed" and "No such file" in str(outcomes["a.jpg"].reason)
    assert outcomes["b.jpg"].status == "failed" and "Permission denied" in str(outcomes["b.jpg"].reason)
    assert (device / "b.jpg").exists()
    assert outcomes["c.jpg"].status == "ingested" and outcomes["c.jpg"].wiped


def test_a_read_error_mid_file_fails_that_file_and_the_device_goes_on(
    station: Station, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    device = tmp_path / "BWC-EIO"
    random_file(device / "bad-sector.bin", 3 * MiB, seed=42)
    make_jpeg(device / "fine.jpg", seed=10)
    failing = (device / "bad-sector.bin").stat().st_ino
    real_fdopen = os.fdopen

    class BadSector:
        """Reads go well for the first MiB, then the medium returns an I/O error."""

        def __init__(self, raw: Any) -> None:
            self._raw = raw
            self._read = 0

        def read(self, size: int = -1) -> bytes:
            if self._read >= MiB:
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            chunk: bytes = self._raw.read(size)
            self._read += len(chunk)
            return chunk

        def __getattr__(self, name: str) -> Any:
            return getattr(self._raw, name)

        def __enter__(self) -> BadSector:
            return self

        def __exit__(self, *exc: object) -> None:
            self._raw.close()

    def fdopen(fd: int, *args: Any, **kwargs: Any) -> Any:
        raw = real_fdopen(fd, *args, **kwargs)
        return BadSector(raw) if os.fstat(fd).st_ino == failing else raw

    monkeypatch.setattr(os, "fdopen", fdopen)
    report = ingest_like_the_flow(station, device, wipe=True)
    monkeypatch.undo()

    outcomes = _outcomes(report)
    assert outcomes["bad-sector.bin"].status == "failed" and "Input/output error" in str(
        outcomes["bad-sector.bin"].reason
    )
    assert (device / "bad-sector.bin").exists()
    assert outcomes["fine.jpg"].status == "ingested"
    assert not list(station.vault.store.list_incomplete_uploads("")) and station.journal.unsettled() == []
    assert len(list(station.vault.store.list_versions("objects/"))) == 2  # fine.jpg and its thumbnail


def test_an_unreadable_directory_is_reported_and_the_rest_of_the_device_is_ingested(
    station: Station, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """chmod 000 does not stop root, so the refusal is simulated where the kernel would give it."""
    device = tmp_path / "BWC-PERM"
    make_jpeg(device / "DCIM" / "IMG_0001.JPG", seed=11)
    make_jpeg(device / "PRIVATE" / "IMG_0002.JPG", seed=12)
    refused = str(device / "PRIVATE")
    real_open, real_scandir = os.open, os.scandir

    def is_refused(path: Any) -> bool:
        if isinstance(path, int):
            return os.readlink(f"/proc/self/fd/{path}") == refused
        return isinstance(path, str | os.PathLike) and os.fspath(path) == refused

    def opening(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & os.O_DIRECTORY and is_refused(path):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), refused)
        return real_open(path, flags, *args, **kwargs)

    def listing(path: Any = ".") -> Any:
        if is_refused(path):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), refused)
        return real_scandir(path)

    monkeypatch.setattr(os, "open", opening)
    monkeypatch.setattr(os, "scandir", listing)
    report = ingest_like_the_flow(station, device, wipe=True)
    monkeypatch.undo()

    outcomes = _outcomes(report)
    assert outcomes["PRIVATE"].status == "failed" and not report.complete
    assert "unreadable directory: Permission denied" in str(outcomes["PRIVATE"].reason)
    assert outcomes["DCIM/IMG_0001.JPG"].status == "ingested"
    assert (device / "PRIVATE" / "IMG_0002.JPG").exists()


# ------------------------------------------------------------------------------------------------
# Shape of the tree


def _nest(root: Path, depth: int, name: bytes) -> bytes:
    """Directories ``depth`` deep, made relative to each other so the total may exceed PATH_MAX."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir(name, dir_fd=fd)
            inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
        file_fd = os.open(b"bottom.bin", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(file_fd, b"at the bottom of %d directories" % depth)
        os.close(file_fd)
    finally:
        os.close(fd)
    return b"/".join([name] * depth) + b"/bottom.bin"


def _unnest(top: Path, name: bytes) -> None:
    """Remove a chain made by :func:`_nest` one level at a time (``shutil.rmtree``, and so pytest's
    own clean-up of old temporary directories, recurses once per level and would fail)."""
    top_bytes = os.fsencode(top)
    chain, spare = top_bytes + b"/" + name, top_bytes + b"/.spare"
    while os.path.isdir(chain + b"/" + name):
        os.rename(chain + b"/" + name, spare)
        os.rmdir(chain)
        os.rename(spare, chain)
    os.unlink(chain + b"/bottom.bin")
    os.rmdir(chain)


@pytest.fixture
def deep_device(tmp_path: Path) -> Iterator[tuple[Path, bytes, bytes]]:
    device = tmp_path / "BWC-DEEP"
    (device / "narrow").mkdir(parents=True)
    (device / "wide").mkdir()
    narrow = _nest(device / "narrow", 1200, b"d")  # 2,400 bytes of path: far past any recursion limit
    too_deep = _nest(device / "wide", 80, b"x" * 60)  # 4,880 bytes: more than PATH_MAX (4,096)
    yield device, narrow, too_deep
    _unnest(device / "narrow", b"d")
    _unnest(device / "wide", b"x" * 60)


def test_deep_nesting_is_ingested_and_a_tree_deeper_than_a_path_can_name_is_reported(
    station: Station, deep_device: tuple[Path, bytes, bytes]
) -> None:
    device, narrow, too_deep = deep_device

    report = ingest_like_the_flow(station, device, wipe=False)

    outcomes = _outcomes(report)
    assert outcomes["narrow/" + narrow.decode()].status == "ingested"
    [too_long] = [o for o in report.outcomes if o.source_path.startswith("wide/")]
    assert too_long.status == "failed" and "name too long" in str(too_long.reason)
    assert too_deep.startswith(os.fsencode(too_long.source_path[len("wide/") :]))
    assert len(report.outcomes) == 2


def test_a_path_longer_than_the_os_allows_fails_the_run_and_stays_on_the_device(
    station: Station, tmp_path: Path
) -> None:
    """Not a deliberate refusal like a link's: the file may be evidence the station could not reach,
    so the run must not finish as if it were done (the CLI exits 9, the dock watcher retries)."""
    device = tmp_path / "BWC-LONG"
    make_jpeg(device / "DCIM" / "IMG_0001.JPG", seed=21)
    (device / "wide").mkdir()
    too_deep = _nest(device / "wide", 80, b"x" * 60)  # 4,880 bytes: more than PATH_MAX (4,096)
    try:
        report = ingest_like_the_flow(station, device, wipe=True)
        doc = report.as_json()
        assert not report.complete
        assert [o.status for o in report.outcomes] == ["ingested", "failed"]
        [entry] = doc["rejected"]
        assert str(entry["source_path"]).startswith("wide/") and "name too long" in str(entry["reason"])
        assert str(entry["reason"]).startswith("failed: ") and "left on the device" in str(entry["reason"])
        assert too_deep.startswith(os.fsencode(str(entry["source_path"])[len("wide/") :]))
    finally:
        _unnest(device / "wide", b"x" * 60)  # unlinks the bottom file: it fails if the file went


def test_many_empty_files_are_one_item_and_each_is_wiped(station: Station, tmp_path: Path) -> None:
    device = tmp_path / "BWC-EMPTY"
    for n in range(20):
        (device / f"DIR{n % 3}").mkdir(parents=True, exist_ok=True)
        (device / f"DIR{n % 3}" / f"EMPTY_{n:03d}.MP4").write_bytes(b"")
    originals = fingerprint_device(device)
    report = ingest_like_the_flow(station, device, wipe=True)
    assert report.counts == {"ingested": 1, "duplicate": 19}
    assert all(o.wiped for o in report.outcomes) and fingerprint_device(device) == {}
    take_census(station.vault, originals, station.journal).assert_exactly_once()
    manifest = station.vault.manifest(str(report.outcomes[0].evidence_id))
    assert manifest.size == 0 and "metadata-unreadable" in manifest.flags


def _tiny_files(device: Path, count: int, *, per_directory: int = 1000) -> None:
    for n in range(count):
        directory = device / "DCIM" / f"{100 + n // per_directory}MEDIA"
        if n % per_directory == 0:
            directory.mkdir(parents=True)
        # one in ten repeats content already on the device: those are duplicates, not new items
        content = b"frame %d" % (n - n % 10 if n % 10 == 9 else n)
        (directory / f"F{n:06d}.TXT").write_bytes(content)


@pytest.mark.slow
def test_fifty_thousand_tiny_files_are_each_listed_once(tmp_path: Path) -> None:
    device = tmp_path / "BWC-50K"
    _tiny_files(device, 50_000)

    started = time.monotonic()
    scan = scan_device(device, settle_seconds=0)
    seconds = time.monotonic() - started

    assert len(scan.files) == 50_000 and not scan.rejected and not scan.deferred
    assert len({f.relative for f in scan.files}) == 50_000
    assert [f.relative for f in scan.files] == sorted(f.relative for f in scan.files)
    assert seconds < 30, f"scanning 50,000 files took {seconds:.1f} s"
    FIGURES.append(f"scan of 50,000 tiny files in 50 directories: {seconds:.2f} s, each listed once")


@pytest.mark.slow
def test_a_thousand_tiny_files_ingest_each_accounted_for_and_wiped(
    station: Station, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole path at a size a test can afford; the rate is reported. fsync is skipped here: it is
    what bounds the rate on a real disk (about 33 per file) and is not what this test is about."""
    device = tmp_path / "BWC-TINY"
    _tiny_files(device, 1000, per_directory=100)
    originals = fingerprint_device(device)
    monkeypatch.setattr(os, "fsync", lambda fd: None)

    started = time.monotonic()
    report = ingest_like_the_flow(station, device, wipe=True)
    seconds = time.monotonic() - started

    check_run_accounts_for_every_file(report, originals, device, station.vault)
    assert report.counts == {"ingested": 900, "duplicate": 100}
    assert fingerprint_device(device) == {}
    FIGURES.append(
        f"ingest of 1,000 tiny files (900 distinct), wipe on, fsync skipped: {seconds:.1f} s, "
        f"{len(originals) / seconds:.0f} files/s"
    )
