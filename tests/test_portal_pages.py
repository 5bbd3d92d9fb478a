"""The portal's pages as investigators, officers and storage admins use them: search, an incident, an
item, audit trails, and linking, unlinking and holds (``web/routers/{search,incidents,items,audit,links,
holds}.py`` over ``flows/``).

One station for the module (a few real photos with EXIF GPS, a short MP4, a photo whose file name is
markup), shared by every test; tests that change state use their own incident so the others' views
stay as set up."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import parse_qs, urlparse

import pytest
from fastapi import Request
from fastapi.testclient import TestClient

from evidence.access import Actor, Role
from evidence.errors import AccessDenied, StorageUnavailable
from evidence.incident import IncidentRef
from flows import search as searching
from flows.holds import set_hold
from flows.linking import link_items
from storage.audit_log import AuditLog
from tests.factories import DEFAULT_TAKEN, make_jpeg, make_mp4
from tests.station import Station, make_station
from web import sessions
from web.app import create_app
from web.people import Person
from web.portal import Portal

INCIDENT = "KNT-2026-000123"
SLASHED = "37/12345/26"
HOSTILE_NAME = "<img src=x onerror=alert(1)>.jpg"
IVY = Actor("ivy", frozenset({"investigator"}))
TWO_DAYS_LATER = DEFAULT_TAKEN + timedelta(days=2)


# -- the portal under test ----------------------------------------------------------------------------


@dataclass
class PagesPortal:
    station: Station
    portal: Portal
    ids: dict[str, str]
    """Evidence id by the file name it was ingested from."""
    purposes: dict[tuple[str, str], str] = field(default_factory=dict)
    people: dict[str, Person] = field(default_factory=dict)

    def client(self, user_id: str, *roles: Role) -> TestClient:
        person = Person(
            Actor(user_id, frozenset(roles)),
            "password+totp",
            f"session-{user_id}-{len(self.people)}",
            "testclient",
            f"csrf-{user_id}-{len(self.people)}",
        )
        self.people[person.session_id] = person
        client = TestClient(create_app(self.portal), base_url="https://testserver", follow_redirects=False)
        app = client.app
        assert hasattr(app, "dependency_overrides")
        app.dependency_overrides[sessions.signed_in] = lambda: person

        async def csrf_checked(request: Request) -> Person:
            form = await request.form()
            if form.get("csrf_token") != person.csrf_token:
                raise AccessDenied("CSRF check failed")
            return person

        app.dependency_overrides[sessions.csrf_checked] = csrf_checked
        return client


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PagesPortal]:
    root = tmp_path_factory.mktemp("pages")
    station = make_station(root / "station")
    first = root / "BWC-PAGES1" / "DCIM"
    make_jpeg(first / "IMG_0001.JPG", size=(64, 48), taken=DEFAULT_TAKEN, gps=(51.501, -0.1419), seed=1)
    make_jpeg(first / HOSTILE_NAME, size=(64, 48), taken=TWO_DAYS_LATER, gps=(53.4808, -2.2426), seed=2)
    make_mp4(first / "VID_0001.MP4", seconds=1.0, size=(64, 48), fps=5, seed=3)
    second = root / "BWC-PAGES2" / "DCIM"
    make_jpeg(second / "IMG_0101.JPG", size=(64, 48), gps=(52.2053, 0.1218), seed=4, taken=None)
    station.ingest(root / "BWC-PAGES1", serial="BWC-PAGES1", officer="PC-11")
    station.ingest(root / "BWC-PAGES2", serial="BWC-PAGES2", officer="PC-22")
    ids: dict[str, str] = {}
    for item in station.catalog.items():
        details = station.vault.details(station.vault.manifest(item.evidence_id))
        ids[details.original_name] = item.evidence_id
    vault, catalog = station.vault, station.catalog
    first_ids = [ids["IMG_0001.JPG"], ids[HOSTILE_NAME], ids["VID_0001.MP4"]]
    link_items(vault, catalog, first_ids, IncidentRef(INCIDENT), IVY, reason="scene photos")
    link_items(vault, catalog, [ids["IMG_0101.JPG"]], IncidentRef(SLASHED), IVY, reason="found later")
    set_hold(vault, catalog, IncidentRef(INCIDENT), "Crown Court trial listed", IVY)
    portal = Portal(settings=station.settings, vault=vault, catalog=catalog, accounts=None)  # type: ignore[arg-type]

    def purpose_for(_portal: Portal, person: Person, evidence_id: str) -> str | None:
        return harness.purposes.get((person.session_id, evidence_id))

    def remember_purpose(_portal: Portal, person: Person, evidence_id: str, purpose: str) -> None:
        harness.purposes[(person.session_id, evidence_id)] = purpose

    harness = PagesPortal(station, portal, ids)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sessions, "purpose_for", purpose_for)
        patch.setattr(sessions, "remember_purpose", remember_purpose)
        yield harness


def events_of(pages: PagesPortal, evidence_id: str) -> list[dict[str, object]]:
    return [
        {"type": e.type, "actor": e.actor, **e.details} for e in pages.station.vault.custody.events(evidence_id)
    ]


def result_ids(html: str) -> list[str]:
    return re.findall(r'class="evidence-id" href="/items/(ev-[a-z2-7]{26})"', html)


def form_token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html[:2000]
    return found.group(1)


# -- search ---------------------------------------------------------------------------------------------


def test_search_finds_by_each_criterion_and_shows_what_the_catalog_knows(pages: PagesPortal) -> None:
    ivy = pages.client("ivy", "investigator")
    ids = pages.ids
    everything = set(ids.values())

    def found(**query: str) -> set[str]:
        answer = ivy.get("/search", params=query)
        assert answer.status_code == 200, answer.text
        return set(result_ids(answer.text))

    assert found(incident=INCIDENT) == {ids["IMG_0001.JPG"], ids[HOSTILE_NAME], ids["VID_0001.MP4"]}
    assert found(incident=SLASHED.lower()) == {ids["IMG_0101.JPG"]}
    assert found(officer="PC-22") == {ids["IMG_0101.JPG"]}
    assert found(device="BWC-PAGES1") == everything - {ids["IMG_0101.JPG"]}
    assert found(media="video") == {ids["VID_0001.MP4"]}
    assert found(media="photo") == everything - {ids["VID_0001.MP4"]}
    assert found(media="audio") == set() and found(media="other") == set()
    # the photo taken 2026-03-14 21:05 +01:00 is 20:05 UTC that day, as is the video; the other photo
    # two days later; the undated one counts by its ingest time (today, later than all of them)
    assert found(**{"from": "2026-03-14", "to": "2026-03-14"}) == {ids["IMG_0001.JPG"], ids["VID_0001.MP4"]}
    assert found(**{"from": "2026-03-15", "to": "2026-03-16"}) == {ids[HOSTILE_NAME]}
    assert found(**{"from": "2026-03-17"}) == {ids["IMG_0101.JPG"]}
    assert found(to="2026-03-13") == set()
    assert found(incident=INCIDENT, media="video", officer="PC-11") == {ids["VID_0001.MP4"]}
    row = ivy.get("/search", params={"media": "video"}).text
    for shown in ("2026-03-14 20:", "PC-11", "BWC-PAGES1", "video/mp4", f'href="/incidents/{INCIDENT}"'):
        assert shown in row
    slashed = ivy.get("/search", params={"officer": "PC-22"}).text
    assert 'href="/incidents/37/12345/26"' in slashed and "unknown-device" in slashed


def test_search_pages_carry_the_criteria_in_a_stable_order(
    pages: PagesPortal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(searching, "PAGE_SIZE", 2)
    ivy = pages.client("ivy", "investigator")
    first = ivy.get("/search", params={"device": "BWC-PAGES1"})
    assert "Items 1&ndash;2 of 3" in first.text and 'id="previous-page"' not in first.text
    next_link = re.search(r'id="next-page" href="([^"]+)"', first.text)
    assert next_link is not None
    target = next_link.group(1).replace("&amp;", "&")
    assert parse_qs(urlparse(target).query) == {"device": ["BWC-PAGES1"], "page": ["2"]}
    second = ivy.get(target)
    assert "Items 3&ndash;3 of 3" in second.text and 'id="next-page"' not in second.text
    back = re.search(r'id="previous-page" href="([^"]+)"', second.text)
    assert back is not None and ivy.get(back.group(1).replace("&amp;", "&")).text == first.text
    shown = result_ids(first.text) + result_ids(second.text)
    assert len(set(shown)) == 3
    catalogued = [i.evidence_id for i in pages.station.catalog.items(device="BWC-PAGES1")]
    assert shown == catalogued  # recording time, then id: what the catalog orders by


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"incident": "KNT-26-1"}, "is not an incident reference"),
        ({"incident": "КNT-2026-000123"}, "outside plain ASCII"),
        ({"officer": "PC 11; DROP TABLE items"}, "officer id"),
        ({"device": "../../etc"}, "device serial"),
        ({"from": "14/03/2026"}, "from date"),
        ({"from": "2026-03-15", "to": "2026-03-14"}, "before the from date"),
        ({"media": "hologram"}, "media type"),
        ({"page": "0"}, "page"),
        ({"page": "9" * 500}, "page"),
    ],
)
def test_bad_search_input_is_a_400_page_saying_what_is_wrong(
    pages: PagesPortal, query: dict[str, str], message: str
) -> None:
    ivy = pages.client("ivy", "investigator")
    answer = ivy.get("/search", params=query)
    assert answer.status_code == 400
    problem = re.search(r'id="search-problem">([^<]*)<', answer.text)
    assert problem is not None and message in problem.group(1)
    assert "Traceback" not in answer.text and 'id="results"' not in answer.text


def test_each_search_is_recorded_signed_with_who_how_where_and_what(pages: PagesPortal) -> None:
    olly = pages.client("olly", "officer")
    answer = olly.get("/search", params={"officer": "PC-11", "media": "photo", "page": "1"})
    assert answer.status_code == 200
    person = next(p for p in pages.people.values() if p.user_id == "olly")
    audit_log = pages.portal.audit_log
    recorded = list(audit_log.searches_by("olly"))
    assert len(recorded) == 1
    search = recorded[0]
    assert (search.role, search.sign_in, search.session, search.client) == (
        "officer",
        "password+totp",
        person.session_id,
        "testclient",
    )
    assert dict(search.criteria) == {"officer": "PC-11", "media": "photo", "page": "1"}
    assert search.result_count == 2
    keys = pages.station.vault.custody.public_keys()
    assert audit_log.verify(keys).intact
    assert search.signer == pages.station.vault.custody.signer.key_id


def test_the_search_log_refuses_changes_and_its_verification_finds_them(pages: PagesPortal) -> None:
    url = pages.station.settings.accounts_url
    signer = pages.station.vault.custody.signer
    keys = {signer.key_id: signer.verifying_key}
    log = AuditLog(url.replace("accounts.sqlite", "search-log-test.sqlite"), signer=signer)
    for count in range(3):
        log.record_search(
            user_id="ivy",
            role="investigator",
            who={"sign_in": "oidc", "session": "s1", "client": "10.0.0.9"},
            criteria={"incident": INCIDENT},
            result_count=count,
        )
    assert log.verify(keys).intact and log.verify(keys).records == 3
    import sqlalchemy as sa

    engine = sa.create_engine(url.replace("accounts.sqlite", "search-log-test.sqlite"))
    with engine.begin() as conn:
        for statement in ("UPDATE portal_searches SET result_count = 9", "DELETE FROM portal_searches"):
            with pytest.raises(sa.exc.IntegrityError, match="append-only"):
                conn.exec_driver_sql(statement)
    with engine.begin() as conn:  # the owner of the file can drop the guard; the chain still shows it
        conn.exec_driver_sql("DROP TRIGGER portal_searches_no_UPDATE")
        conn.exec_driver_sql("DROP TRIGGER portal_searches_no_DELETE")
        conn.exec_driver_sql("UPDATE portal_searches SET result_count = 9 WHERE seq = 1")
        conn.exec_driver_sql("DELETE FROM portal_searches WHERE seq = 0")
    problems = log.verify(keys).problems
    assert any("record 0 is missing" in p for p in problems)
    assert any("record 1 does not match its signature" in p for p in problems)
    engine.dispose()
    log.close()
