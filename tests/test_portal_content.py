"""An investigator plays, saves and previews evidence in the portal, and exports an incident as one zip:
HTTP Range byte for byte against the original, one ``play`` event per item per session, a download
that can never arrive complete and wrong, and a streamed BagIt zip a standard validator accepts."""

from __future__ import annotations

import hashlib
import io
import struct
import threading
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bagit
import httpx
import pytest
import uvicorn
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

import flows.export_zip
from evidence.access import Role
from evidence.incident import parse_incident_ref
from flows.playback import RecentVerifications
from storage.accounts import Accounts
from storage.vault import Vault
from tests.factories import DEVICE_FOLDER, make_jpeg, make_mp4, random_file
from tests.signing_in import MovableClock, TestPortal
from tests.station import Station, make_station
from tests.test_export_incident import link
from web.portal import Portal
from web.ranges import answer_for
from web.sessions import SESSION_COOKIE

SEGMENT = 4096
PURPOSE = "review for charging decision"
INCIDENT = parse_incident_ref("37/12345/26")


# -- the portal with signed-in people -------------------------------------------------------------


@dataclass
class Browser:
    """One person's browser, signed in through the real form: one session of the portal's own."""

    client: TestClient
    user_id: str
    session_id: str
    csrf_token: str
    cookie: str
    """The session cookie's secret, for a client of the real server (the cookie is ``Secure``)."""
    accounts: Accounts

    def give_purpose(self, evidence_id: str, purpose: str = PURPOSE) -> None:
        """State why, on the item page's form, as a person does before anything of the item is shown."""
        answer = self.client.post(
            f"/items/{evidence_id}/purpose", data={"purpose": purpose, "csrf_token": self.csrf_token}
        )
        assert answer.status_code == 303, answer.text

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.client.get(url, **kwargs)


@dataclass
class PortalUnderTest:
    station: Station
    signing_in: TestPortal

    @property
    def portal(self) -> Portal:
        return self.signing_in.portal

    def browser(self, user_id: str = "ivy", role: Role = "investigator") -> Browser:
        client = self.signing_in.signed_in_client(user_id, role)
        secret = client.cookies[SESSION_COOKIE]
        session = self.portal.accounts.session(secret)
        assert session is not None
        return Browser(client, user_id, session.session_id, session.csrf_token, secret, self.portal.accounts)

    def events(self, evidence_id: str) -> list[Any]:
        return self.station.vault.custody.events(evidence_id)

    def accesses(self, evidence_id: str, action: str) -> list[Any]:
        return [
            e for e in self.events(evidence_id) if e.type == "access" and e.details.get("action") == action
        ]


def open_portal_for(station: Station) -> PortalUnderTest:
    clock = MovableClock()
    accounts = Accounts(station.settings.accounts_url, clock=clock)
    portal = Portal(
        settings=station.settings, vault=station.vault, catalog=station.catalog, accounts=accounts
    )
    return PortalUnderTest(station, TestPortal(station, portal, clock))


@pytest.fixture(autouse=True)
def quick_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2id at its lowest cost: every sign-in here still goes through the real form, hash and TOTP
    check, but what these tests are about is what happens after it (the cost is tests/test_portal_accounts')."""
    import evidence.accounts

    monkeypatch.setattr(
        evidence.accounts, "_HASHER", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    )


@pytest.fixture
def station(tmp_path: Path) -> Station:
    return make_station(tmp_path / "station", segment_size=SEGMENT)


@pytest.fixture
def portal(station: Station) -> PortalUnderTest:
    return open_portal_for(station)


@dataclass(frozen=True)
class Ingested:
    evidence_id: str
    original: bytes

    @property
    def size(self) -> int:
        return len(self.original)


def ingest_one(station: Station, path: Path) -> Ingested:
    [outcome] = station.ingest(path.parent).by_status("ingested")
    return Ingested(str(outcome.evidence_id), path.read_bytes())


@pytest.fixture
def video(station: Station, tmp_path: Path) -> Ingested:
    path = make_mp4(tmp_path / "BWC-1" / DEVICE_FOLDER / "VID_0001.MP4", seconds=2, size=(320, 240))
    item = ingest_one(station, path)
    assert item.size > 10 * SEGMENT, "the video should span many segments"
    return item


# -- Range --------------------------------------------------------------------------------------


def range_cases(size: int) -> list[tuple[str | None, int, int, int]]:
    """(Range header, status, start, stop) of the bytes expected."""
    return [
        (None, 200, 0, size),
        ("bytes=0-", 206, 0, size),  # what a <video> asks first
        ("bytes=0-99", 206, 0, 100),
        (f"bytes={SEGMENT - 10}-{3 * SEGMENT + 10}", 206, SEGMENT - 10, 3 * SEGMENT + 11),  # middle
        ("bytes=-500", 206, size - 500, size),  # suffix
        (f"bytes={size - 1000}-", 206, size - 1000, size),  # open
        (f"bytes={size - 10}-{size + 5000}", 206, size - 10, size),  # an end past the item is cut
        (f"bytes=-{size * 3}", 206, 0, size),  # a suffix longer than the item is all of it
        ("bytes=0-1,5-9", 200, 0, size),  # several ranges: ignored
        ("bytes=9-3", 200, 0, size),  # not valid syntax: ignored
        ("items=0-9", 200, 0, size),  # another unit: ignored
        ("bytes=", 200, 0, size),
    ]


def test_range_requests_answer_exactly_the_bytes_of_the_original(
    portal: PortalUnderTest, video: Ingested
) -> None:
    browser = portal.browser()
    browser.give_purpose(video.evidence_id)
    url = f"/items/{video.evidence_id}/content"
    for header, status, start, stop in range_cases(video.size):
        answer = browser.get(url, headers={"Range": header} if header else {})
        assert answer.status_code == status, header
        assert answer.content == video.original[start:stop], header
        assert answer.headers["content-length"] == str(stop - start)
        assert answer.headers["accept-ranges"] == "bytes"
        assert answer.headers["content-type"] == "video/mp4"
        assert answer.headers["cache-control"] == "no-store"
        assert answer.headers["content-disposition"] == "inline"
        if status == 206:
            assert answer.headers["content-range"] == f"bytes {start}-{stop - 1}/{video.size}", header
        else:
            assert "content-range" not in answer.headers


def test_unsatisfiable_range_is_416_and_releases_nothing(portal: PortalUnderTest, video: Ingested) -> None:
    browser = portal.browser()
    browser.give_purpose(video.evidence_id)
    for header in (f"bytes={video.size}-", f"bytes={video.size}-{video.size + 10}", "bytes=-0"):
        answer = browser.get(f"/items/{video.evidence_id}/content", headers={"Range": header})
        assert answer.status_code == 416, header
        assert answer.headers["content-range"] == f"bytes */{video.size}"
        assert answer.content == b""
    assert portal.accesses(video.evidence_id, "play") == []


def test_if_range_for_another_version_gets_the_whole_item(portal: PortalUnderTest, video: Ingested) -> None:
    browser = portal.browser()
    browser.give_purpose(video.evidence_id)
    url = f"/items/{video.evidence_id}/content"
    etag = browser.get(url, headers={"Range": "bytes=0-0"}).headers["etag"]
    same = browser.get(url, headers={"Range": "bytes=10-19", "If-Range": etag})
    assert same.status_code == 206 and same.content == video.original[10:20]
    other = browser.get(url, headers={"Range": "bytes=10-19", "If-Range": '"another"'})
    assert other.status_code == 200 and other.content == video.original


def test_head_describes_the_item_and_releases_nothing(portal: PortalUnderTest, video: Ingested) -> None:
    browser = portal.browser()
    browser.give_purpose(video.evidence_id)
    answer = browser.client.head(f"/items/{video.evidence_id}/content", headers={"Range": "bytes=0-9"})
    assert answer.status_code == 200  # range handling is defined for GET only
    assert answer.headers["content-length"] == str(video.size)
    assert answer.headers["accept-ranges"] == "bytes"
    assert answer.headers["content-type"] == "video/mp4"
    assert answer.content == b""
    assert portal.accesses(video.evidence_id, "play") == []


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, (200, 0, 1000)),
        ("bytes=0-0", (206, 0, 1)),
        ("bytes=999-", (206, 999, 1000)),
        ("bytes=1000-", (416, None, None)),
        ("bytes=-0", (416, None, None)),
        ("bytes=-1", (206, 999, 1000)),
        ("BYTES=1-2", (206, 1, 3)),
        ("bytes = 1-2", (200, 0, 1000)),
        ("bytes=1-2, 4-5", (200, 0, 1000)),
        ("bytes=-", (200, 0, 1000)),
        ("bytes=1-2-3", (200, 0, 1000)),
        ("bytes=0x1-2", (200, 0, 1000)),
        ("bytes=\u0663-\u0664", (200, 0, 1000)),  # Arabic-Indic digits are not HTTP digits
        ("bytes=99999999999999999999999-", (416, None, None)),
    ],
)
def test_range_header_decisions(header: str | None, expected: tuple[int, int | None, int | None]) -> None:
    answer = answer_for(header, 1000)
    found = (answer.status, *((answer.part.start, answer.part.stop) if answer.part else (None, None)))
    assert found == expected


def test_range_is_ignored_for_head_and_empty_items() -> None:
    assert answer_for("bytes=0-9", 1000, method="HEAD").status == 200
    assert answer_for("bytes=0-9", 0).status == 200
    assert answer_for("bytes=0-9", 1000, if_range="Tue, 15 Nov 1994 08:12:31 GMT", etag='"x"').status == 200


# -- purpose and roles ----------------------------------------------------------------------------


def test_nothing_is_released_before_a_purpose_is_given(portal: PortalUnderTest, video: Ingested) -> None:
    browser = portal.browser()
    for url in ("content", "content?download=1", "thumbnail"):
        answer = browser.get(f"/items/{video.evidence_id}/{url}", headers={"Range": "bytes=0-9"})
        assert answer.status_code == 403, url
        assert f'href="/items/{video.evidence_id}"' in answer.text
        assert "give a purpose" in answer.text
    assert [e.type for e in portal.events(video.evidence_id)] == ["ingest"]


def test_an_officer_may_not_play_download_preview_or_export(
    portal: PortalUnderTest, station: Station, video: Ingested
) -> None:
    link(station, [video.evidence_id], INCIDENT)
    browser = portal.browser("oscar", "officer")
    refused_purpose = browser.client.post(
        f"/items/{video.evidence_id}/purpose", data={"purpose": PURPOSE, "csrf_token": browser.csrf_token}
    )
    assert refused_purpose.status_code == 403
    # even with a purpose in the session (put there behind the item page's back), the role decides
    browser.accounts.remember_purpose(browser.session_id, video.evidence_id, PURPOSE)
    for url in ("content", "content?download=1", "thumbnail"):
        answer = browser.get(f"/items/{video.evidence_id}/{url}")
        assert answer.status_code == 403, url
        assert "may not" in answer.text
    refused = browser.client.post(
        f"/incidents/{INCIDENT}/export", data={"purpose": PURPOSE, "csrf_token": browser.csrf_token}
    )
    assert refused.status_code == 403 and "may not export" in refused.text
    assert [e.type for e in portal.events(video.evidence_id)] == ["ingest", "link"]


def test_a_malformed_evidence_id_is_a_clear_400(portal: PortalUnderTest) -> None:
    answer = portal.browser().get("/items/not-an-id/content")
    assert answer.status_code == 400


# -- recording ------------------------------------------------------------------------------------


def test_one_play_event_per_item_per_session(portal: PortalUnderTest, video: Ingested) -> None:
    first = portal.browser()
    first.give_purpose(video.evidence_id)
    url = f"/items/{video.evidence_id}/content"
    for start in range(0, video.size, video.size // 7):
        assert first.get(url, headers={"Range": f"bytes={start}-{start + 999}"}).status_code == 206
    assert first.get(url).status_code == 200
    [play] = portal.accesses(video.evidence_id, "play")
    assert play.actor == "ivy" and play.role == "investigator"
    assert play.details["purpose"] == PURPOSE
    assert play.details["session"] == first.session_id
    assert play.details["via"] == "portal" and play.details["sign_in"] == "password+totp"
    assert play.details["client"] == "testclient"

    second = portal.browser()
    second.give_purpose(video.evidence_id, "second look")
    assert second.get(url, headers={"Range": "bytes=0-"}).status_code == 206
    assert second.get(url, headers={"Range": "bytes=100-200"}).status_code == 206
    plays = portal.accesses(video.evidence_id, "play")
    assert [p.details["session"] for p in plays] == [first.session_id, second.session_id]
    assert plays[1].details["purpose"] == "second look"


def test_a_play_whose_record_failed_is_recorded_by_the_next_request(
    portal: PortalUnderTest, video: Ingested, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session notes the first play before it is recorded; if the record then fails, nothing is
    released, and the chain (which has no play for the session) makes the next request record it."""
    import flows.playback
    from evidence.errors import StorageUnavailable

    real = flows.playback.record_access
    calls = []

    def fail_once(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        if len(calls) == 1:
            raise StorageUnavailable("custody store timed out")
        return real(*args, **kwargs)

    monkeypatch.setattr(flows.playback, "record_access", fail_once)
    browser = portal.browser()
    browser.give_purpose(video.evidence_id)
    url = f"/items/{video.evidence_id}/content"
    failed = browser.get(url, headers={"Range": "bytes=0-99"})
    assert failed.status_code == 503 and failed.content[:100] != video.original[:100]
    assert portal.accesses(video.evidence_id, "play") == []
    assert browser.get(url, headers={"Range": "bytes=0-99"}).content == video.original[:100]
    assert browser.get(url, headers={"Range": "bytes=100-199"}).content == video.original[100:200]
    assert len(portal.accesses(video.evidence_id, "play")) == 1


def test_a_verification_is_reused_for_seconds_only(
    portal: PortalUnderTest, station: Station, video: Ingested
) -> None:
    """Seeks within VERIFIED_FOR_SECONDS of a verification reuse it (the play recorded meanwhile does
    not extend that time); after that the chain is verified again, and a chain cut short behind the
    program's back stops playback."""
    now = [1000.0]
    portal.portal.recent = RecentVerifications(seconds=30, renew_after=30, clock=lambda: now[0])
    browser = portal.browser()
    browser.give_purpose(video.evidence_id)
    url = f"/items/{video.evidence_id}/content"
    assert browser.client.head(url).status_code == 200  # verified at 1000
    now[0] += 20
    assert browser.get(url, headers={"Range": "bytes=0-9"}).status_code == 206  # the play recorded
    remove_last_custody_record(station, video.evidence_id)  # the play event just written

    now[0] += 9
    assert browser.get(url, headers={"Range": "bytes=10-19"}).content == video.original[10:20]
    now[0] += 2
    refused = browser.get(url, headers={"Range": "bytes=20-29"})
    assert refused.status_code == 409 and "ends early" in refused.text
    other_session = portal.browser()
    other_session.give_purpose(video.evidence_id)
    assert other_session.get(url, headers={"Range": "bytes=0-9"}).status_code == 409


def test_a_verification_in_use_is_renewed_in_the_background(
    portal: PortalUnderTest, station: Station, video: Ingested, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A player streaming for minutes never waits for a verification: from 20 s one is renewed beside
    the stream; and a renewal that fails is not relied on: the next request verifies and is refused."""
    import flows.playback

    verifications: list[float] = []
    real = flows.playback.verify_for_release

    def counted(*args: Any, **kwargs: Any) -> Any:
        verifications.append(now[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(flows.playback, "verify_for_release", counted)
    now = [1000.0]
    recent = portal.portal.recent = RecentVerifications(seconds=30, renew_after=20, clock=lambda: now[0])
    browser = portal.browser()
    browser.give_purpose(video.evidence_id)
    url = f"/items/{video.evidence_id}/content"

    def seek(at: float, start: int) -> httpx.Response:
        now[0] = at
        answer = browser.get(url, headers={"Range": f"bytes={start}-{start + 9}"})
        recent.wait_for_renewals()
        return answer

    for at in (1000, 1010, 1021, 1035, 1045, 1052, 1060):
        assert seek(at, at - 1000).content == video.original[at - 1000 : at - 990], at
    assert verifications == [1000, 1021, 1045]  # in line once; then from 20 s old, in the background

    remove_last_custody_record(station, video.evidence_id)
    assert seek(1066, 0).status_code == 206  # the renewal this starts finds the chain cut short
    refused = seek(1067, 10)
    assert refused.status_code == 409 and "ends early" in refused.text


def remove_last_custody_record(station: Station, evidence_id: str) -> None:
    """What only someone with raw disk access could do: delete the newest record of a chain."""
    import shutil

    from evidence import layout

    last = max(
        layout.custody_position(i.key) for i in station.vault.store.list(layout.custody_prefix(evidence_id))
    )
    shutil.rmtree(station.settings.data_dir / "vault" / "objects" / layout.custody_key(evidence_id, last))


# -- downloads ------------------------------------------------------------------------------------


def test_download_is_the_original_by_its_ingest_hash(
    portal: PortalUnderTest, station: Station, video: Ingested
) -> None:
    browser = portal.browser()
    browser.give_purpose(video.evidence_id)
    answer = browser.get(f"/items/{video.evidence_id}/content?download=1", headers={"Range": "bytes=0-9"})
    assert answer.status_code == 200  # a download is always the whole file: only that can be checked
    ingest_sha256 = station.vault.details(station.vault.manifest(video.evidence_id)).sha256
    assert hashlib.sha256(answer.content).hexdigest() == ingest_sha256
    assert answer.headers["content-disposition"] == (
        "attachment; filename=\"VID_0001.MP4\"; filename*=UTF-8''VID_0001.MP4"
    )
    assert answer.headers["accept-ranges"] == "none"
    [download] = portal.accesses(video.evidence_id, "download")
    assert download.details["purpose"] == PURPOSE
    assert download.details["session"] == browser.session_id
    browser.get(f"/items/{video.evidence_id}/content?download=1")
    assert len(portal.accesses(video.evidence_id, "download")) == 2  # one per download


def test_hostile_original_name_is_saved_under_a_safe_name(
    portal: PortalUnderTest, station: Station, tmp_path: Path
) -> None:
    path = random_file(tmp_path / "BWC-2" / DEVICE_FOLDER / "..\u202egpj.exe café.MP4", 3 * SEGMENT)
    item = ingest_one(station, path)
    browser = portal.browser()
    browser.give_purpose(item.evidence_id)
    answer = browser.get(f"/items/{item.evidence_id}/content?download=1")
    assert answer.content == item.original
    disposition = answer.headers["content-disposition"]
    assert (
        disposition
        == "attachment; filename=\"_.._gpj.exe caf_.MP4\"; filename*=UTF-8''_.._gpj.exe%20caf%C3%A9.MP4"
    )
    assert answer.headers["content-type"] == "application/octet-stream"  # not sniffed as media


@pytest.fixture
def served(portal: PortalUnderTest) -> Iterator[Callable[[Browser], httpx.Client]]:
    """The portal on a real HTTP server on 127.0.0.1, to see what a client sees when a response is
    cut off (the test client only re-raises the server's exception); the client carries the
    browser's session cookie (``Secure``, so set by hand over plain HTTP on loopback)."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def serve(browser: Browser) -> httpx.Client:
        config = uvicorn.Config(
            browser.client.app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the test server did not start")
            threading.Event().wait(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        return httpx.Client(base_url=f"http://127.0.0.1:{port}", cookies={SESSION_COOKIE: browser.cookie})

    yield serve
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)


def plaintext_altered_after_decryption(monkeypatch: pytest.MonkeyPatch) -> None:
    """AES-GCM stops any change to stored bytes, so make the decrypted plaintext differ instead: the
    case the final SHA-256 check exists for (a bug, or a manifest recording another file's hash)."""
    import storage.vault
    from evidence import stream

    real = stream.decrypt_chunks

    def altered(data_key: bytes, chunks: Any) -> Iterator[bytes]:
        for index, piece in enumerate(real(data_key, chunks)):
            yield piece[:-1] + bytes([piece[-1] ^ 1]) if index == 2 and piece else piece

    monkeypatch.setattr(storage.vault.stream, "decrypt_chunks", altered)


def test_a_download_failing_its_hash_never_arrives_complete(
    portal: PortalUnderTest,
    video: Ingested,
    served: Callable[[Browser], httpx.Client],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    browser = portal.browser()
    browser.give_purpose(video.evidence_id)
    plaintext_altered_after_decryption(monkeypatch)

    received = bytearray()
    with (
        served(browser) as client,
        pytest.raises(httpx.RemoteProtocolError),
        client.stream("GET", f"/items/{video.evidence_id}/content?download=1") as answer,
    ):
        assert answer.status_code == 200
        assert answer.headers["content-length"] == str(video.size)
        for piece in answer.iter_raw():
            received += piece
    assert 0 < len(received) < video.size
    last_segment = video.size % SEGMENT or SEGMENT
    assert len(received) <= video.size - last_segment, "the last segment was held back"
    [aborted] = portal.accesses(video.evidence_id, "download-aborted")
    assert "SHA-256" in aborted.details["problem"]
    assert aborted.details["session"] == browser.session_id


# -- thumbnails -----------------------------------------------------------------------------------


def test_thumbnail_is_the_decrypted_preview_recorded_once_per_session(
    portal: PortalUnderTest, station: Station, tmp_path: Path
) -> None:
    photo = ingest_one(station, make_jpeg(tmp_path / "BWC-3" / DEVICE_FOLDER / "IMG_0001.JPG"))
    browser = portal.browser()
    browser.give_purpose(photo.evidence_id)
    for _ in range(3):
        answer = browser.get(f"/items/{photo.evidence_id}/thumbnail")
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "image/jpeg"
        assert answer.content == station.vault.thumbnail(station.vault.manifest(photo.evidence_id))
        assert answer.content.startswith(b"\xff\xd8") and len(answer.content) < len(photo.original)
    [thumbs] = portal.accesses(photo.evidence_id, "thumbs")
    assert thumbs.details["purpose"] == PURPOSE and thumbs.details["session"] == browser.session_id


def test_an_item_without_a_thumbnail_is_404_and_records_nothing(
    portal: PortalUnderTest, station: Station, tmp_path: Path
) -> None:
    item = ingest_one(station, random_file(tmp_path / "BWC-4" / DEVICE_FOLDER / "DATA.BIN", 1000))
    browser = portal.browser()
    browser.give_purpose(item.evidence_id)
    assert browser.get(f"/items/{item.evidence_id}/thumbnail").status_code == 404
    assert [e.type for e in portal.events(item.evidence_id)] == ["ingest"]


# -- export ---------------------------------------------------------------------------------------


@pytest.fixture
def incident_items(station: Station, tmp_path: Path, video: Ingested) -> list[Ingested]:
    photo = ingest_one(station, make_jpeg(tmp_path / "BWC-5" / DEVICE_FOLDER / "IMG_0002.JPG", seed=5))
    items = [video, photo]
    link(station, [item.evidence_id for item in items], INCIDENT)
    return items


def export(browser: Browser, purpose: str = "CPS disclosure") -> httpx.Response:
    return browser.client.post(
        f"/incidents/{INCIDENT}/export", data={"purpose": purpose, "csrf_token": browser.csrf_token}
    )


@pytest.mark.parametrize("zip64", [False, True], ids=["zip", "zip64"])
def test_export_is_a_zip_holding_a_valid_bag(
    portal: PortalUnderTest,
    station: Station,
    incident_items: list[Ingested],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    zip64: bool,
) -> None:
    if zip64:  # as for an original of a GiB or more
        monkeypatch.setattr(flows.export_zip, "ZIP64_FROM", 0)
    browser = portal.browser()
    answer = export(browser)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/zip"
    disposition = answer.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="37_12345_26-export-') and disposition.endswith(
        ".zip"
    )

    assert first_entry_is_zip64(answer.content) == zip64
    with zipfile.ZipFile(io.BytesIO(answer.content)) as archive:
        assert archive.testzip() is None
        archive.extractall(tmp_path / "unzipped")
    [bag_dir] = (tmp_path / "unzipped").iterdir()
    bag = bagit.Bag(str(bag_dir))
    bag.validate()
    assert bag.info["External-Identifier"] == "37/12345/26"
    assert bag.info["Internal-Sender-Description"] == "CPS disclosure"
    assert bag.info["Evidence-Item-Count"] == "2"
    for item in incident_items:
        [original] = (bag_dir / "data" / item.evidence_id).iterdir()
        assert original.read_bytes() == item.original
        [event] = [e for e in portal.events(item.evidence_id) if e.type == "export"]
        assert event.actor == "ivy"
        assert event.details["purpose"] == "CPS disclosure"
        assert event.details["session"] == browser.session_id
        assert event.details["incident"] == "37/12345/26" and event.details["bag"] == bag_dir.name
        report = (bag_dir / "data" / "reports" / f"{item.evidence_id}.json").read_text()
        assert browser.session_id in report  # the report includes the export that made it


def first_entry_is_zip64(data: bytes) -> bool:
    """Whether the first local file header carries a ZIP64 extra field (header id 0x0001)."""
    assert data[:4] == b"PK\x03\x04"
    name_length, extra_length = struct.unpack("<HH", data[26:30])
    extra = data[30 + name_length : 30 + name_length + extra_length]
    return extra[:2] == b"\x01\x00"


def test_export_needs_a_purpose_and_records_nothing_without_one(
    portal: PortalUnderTest, incident_items: list[Ingested]
) -> None:
    answer = export(portal.browser(), purpose="  ")
    assert answer.status_code == 400 and "purpose" in answer.text
    assert all(e.type != "export" for item in incident_items for e in portal.events(item.evidence_id))


def test_export_of_an_unknown_or_malformed_incident(portal: PortalUnderTest) -> None:
    browser = portal.browser()
    form = {"purpose": "x", "csrf_token": browser.csrf_token}
    nothing = browser.client.post("/incidents/KNT-2026-000999/export", data=form)
    assert nothing.status_code == 404
    malformed = browser.client.post("/incidents/DROP TABLE/export", data=form)
    assert malformed.status_code == 400


def test_an_export_without_the_session_form_token_is_refused(
    portal: PortalUnderTest, incident_items: list[Ingested]
) -> None:
    answer = portal.browser().client.post(f"/incidents/{INCIDENT}/export", data={"purpose": "CPS"})
    assert answer.status_code == 403
    assert all(e.type != "export" for item in incident_items for e in portal.events(item.evidence_id))


def test_signed_out_requests_are_not_served(portal: PortalUnderTest, video: Ingested) -> None:
    client = portal.signing_in.client()
    answer = client.get(f"/items/{video.evidence_id}/content", headers={"Range": "bytes=0-9"})
    assert answer.status_code == 303 and answer.headers["location"].startswith("/sign-in?next=")
    assert client.post(f"/incidents/{INCIDENT}/export", data={"purpose": "x"}).status_code == 401
    assert [e.type for e in portal.events(video.evidence_id)] == ["ingest"]


def test_an_export_whose_original_fails_its_hash_never_arrives_as_a_zip(
    portal: PortalUnderTest,
    incident_items: list[Ingested],
    served: Callable[[Browser], httpx.Client],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    browser = portal.browser()
    plaintext_altered_after_decryption(monkeypatch)
    received = bytearray()
    form = {"purpose": "CPS", "csrf_token": browser.csrf_token}
    with (
        served(browser) as client,
        pytest.raises(httpx.RemoteProtocolError),
        client.stream("POST", f"/incidents/{INCIDENT}/export", data=form) as answer,
    ):
        assert answer.status_code == 200
        for piece in answer.iter_raw():
            received += piece
    assert received, "the zip had started"
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(io.BytesIO(bytes(received)))


# -- S3 -------------------------------------------------------------------------------------------


def test_playing_and_downloading_from_an_s3_vault(moto_endpoint: str, tmp_path: Path) -> None:
    station = make_station(
        tmp_path / "s3-station", vault_url="s3://portal-evidence/vault", segment_size=SEGMENT
    )
    assert isinstance(station.vault, Vault) and station.vault.store.url.startswith("s3://")
    portal = open_portal_for(station)
    item = ingest_one(station, make_mp4(tmp_path / "BWC-6" / DEVICE_FOLDER / "VID_0002.MP4", seconds=1))
    browser = portal.browser()
    browser.give_purpose(item.evidence_id)
    url = f"/items/{item.evidence_id}/content"
    for header, status, start, stop in range_cases(item.size)[:8]:
        answer = browser.get(url, headers={"Range": header} if header else {})
        assert (answer.status_code, answer.content) == (status, item.original[start:stop]), header
    whole = browser.get(f"{url}?download=1")
    assert hashlib.sha256(whole.content).hexdigest() == hashlib.sha256(item.original).hexdigest()
    assert len(portal.accesses(item.evidence_id, "play")) == 1
    assert len(portal.accesses(item.evidence_id, "download")) == 1
