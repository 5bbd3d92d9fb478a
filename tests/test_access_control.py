"""Who may read evidence back: investigators only, named in the users file, each access recorded with
who, when and why. Officers, storage admins, unknown and anonymous users are refused before anything is
decrypted or recorded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.commands import app
from evidence.access import Actor
from evidence.errors import AccessDenied, ConfigError, InvalidInput
from flows.export import export_items
from flows.retrieval import export_thumbnails, get_original, get_range
from tests.factories import make_device
from tests.station import Station, make_station
from tests.test_export_incident import INCIDENT, INVESTIGATOR, OFFICER, ingested_ids, link, write_users

STORAGE_ADMIN = Actor("sam", frozenset({"storage-admin"}))
runner = CliRunner()


@pytest.fixture
def station(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Station:
    station = make_station(tmp_path / "station")
    write_users(station)
    monkeypatch.setenv("EVIDENCE_DATA_DIR", str(station.settings.data_dir))
    return station


@pytest.fixture
def device(tmp_path: Path) -> Path:
    return make_device(tmp_path / "BWC-ACL01", photos=2, videos=1)


@pytest.fixture
def linked(station: Station, device: Path) -> list[str]:
    ids = ingested_ids(station, device)
    link(station, ids)
    return ids


def chain_types(station: Station, evidence_id: str) -> list[str]:
    return [event.type for event in station.vault.custody.events(evidence_id)]


@pytest.mark.parametrize("actor", [OFFICER, STORAGE_ADMIN], ids=["officer", "storage-admin"])
def test_only_investigators_read_back(
    station: Station, linked: list[str], actor: Actor, tmp_path: Path
) -> None:
    vault, first = station.vault, linked[0]
    attempts = {
        "get": lambda: get_original(vault, first, actor, tmp_path / "x.jpg", purpose="look"),
        "range": lambda: get_range(vault, first, actor, "0-9", tmp_path / "x.bin"),
        "export": lambda: export_items(vault, linked, INCIDENT, actor, "court", tmp_path / "bag"),
        "thumbs": lambda: export_thumbnails(vault, linked, INCIDENT, actor, tmp_path / "thumbs"),
    }
    for name, attempt in attempts.items():
        with pytest.raises(AccessDenied, match=f"user {actor.user_id} .* may not .*investigator"):
            attempt()
        assert not list(tmp_path.glob("x.*")) and not (tmp_path / "bag").exists(), name
        assert not (tmp_path / "thumbs").exists(), name
    for evidence_id in linked:  # a refused attempt is not an access
        assert chain_types(station, evidence_id) == ["ingest", "link"]


def test_get_records_who_when_and_why(
    station: Station, device: Path, linked: list[str], tmp_path: Path
) -> None:
    out = tmp_path / "exhibit.jpg"
    result = runner.invoke(
        app, ["--user", "ivy", "get", linked[0], "--out", str(out), "--purpose", "interview preparation"]
    )
    assert result.exit_code == 0, result.output
    details = station.vault.details(station.vault.manifest(linked[0]))
    assert out.read_bytes() == (device / details.source_path).read_bytes()
    event = station.vault.custody.events(linked[0])[-1]
    assert (event.type, event.actor, event.role) == ("access", "ivy", "investigator")
    assert event.details == {"action": "get", "purpose": "interview preparation"}
    assert event.at.tzinfo is not None
    assert station.vault.custody.verify(linked[0]).intact


def test_user_can_come_from_the_environment(
    station: Station, linked: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVIDENCE_USER", "ivy")
    result = runner.invoke(app, ["get", linked[0], "--out", str(tmp_path / "a.jpg")])
    assert result.exit_code == 0, result.output
    assert station.vault.custody.events(linked[0])[-1].actor == "ivy"


@pytest.mark.parametrize(
    ("user", "message"),
    [
        (["--user", "mallory"], "not in the users file"),
        ([], "no user given"),
        (["--user", "oscar"], "may not get"),
        (["--user", "../ivy"], "user id"),
    ],
)
def test_cli_refuses_unknown_anonymous_and_wrong_role(
    station: Station, linked: list[str], tmp_path: Path, user: list[str], message: str
) -> None:
    out = tmp_path / "x.jpg"
    result = runner.invoke(app, [*user, "get", linked[0], "--out", str(out)])
    assert isinstance(result.exception, AccessDenied), result.output
    assert message in str(result.exception)
    assert not out.exists()
    assert chain_types(station, linked[0]) == ["ingest", "link"]


def test_access_denied_is_one_line_and_exit_code_5(
    station: Station, linked: list[str], tmp_path: Path
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cli", "--user", "mallory", "get", linked[0], "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 5, result.stderr
    assert "mallory" in result.stderr and "users file" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_export_without_purpose_is_refused(station: Station, linked: list[str], tmp_path: Path) -> None:
    bag = tmp_path / "bag"
    result = runner.invoke(app, ["--user", "ivy", "export", "--incident", INCIDENT.value, "--out", str(bag)])
    assert isinstance(result.exception, InvalidInput) and "--purpose" in str(result.exception)
    assert not bag.exists()
    with pytest.raises(InvalidInput, match="purpose"):
        export_items(station.vault, linked, INCIDENT, INVESTIGATOR, "", bag)
    assert not bag.exists()


def test_thumbs_writes_previews_and_records_each_access(
    station: Station, linked: list[str], tmp_path: Path
) -> None:
    out = tmp_path / "thumbs"
    report = export_thumbnails(station.vault, linked, INCIDENT, INVESTIGATOR, out, purpose="triage")
    assert {evidence_id for evidence_id, _ in report.written} == set(linked)
    for evidence_id, path in report.written:
        assert path == out / f"{evidence_id}.jpg"
        assert path.read_bytes() == station.vault.thumbnail(station.vault.manifest(evidence_id))
        assert path.read_bytes()[:3] == b"\xff\xd8\xff"  # JPEG
        event = station.vault.custody.events(evidence_id)[-1]
        assert (event.type, event.actor, event.details) == (
            "access",
            "ivy",
            {"action": "thumbs", "purpose": "triage"},
        )


MALFORMED_USERS_FILES = [
    pytest.param(b"users = 5\n", "users = 5 must be [users.<id>] tables", id="users-not-tables"),
    pytest.param(
        b'[users]\nalice = "investigator"\n', "[users.alice] must be a table", id="user-not-a-table"
    ),
    pytest.param(b'[users.alice]\nroles = "investigator"\n', "must be a non-empty list", id="roles-a-string"),
    pytest.param(b"[users.alice]\nroles = []\n", "must be a non-empty list", id="roles-empty"),
    pytest.param(b'[users.alice]\nrole = ["officer"]\n', "must be one role in quotes", id="role-a-list"),
    pytest.param(b'[users.alice]\nroles = ["detective"]\n', "unknown role(s) 'detective'", id="unknown-role"),
    pytest.param(b"[users.alice]\n", "names no role", id="no-role"),
    pytest.param(
        b'[users.alice]\nrole = "officer"\nexpires = 2027-01-01\n', "unknown key(s) expires", id="unknown-key"
    ),
    pytest.param(
        b'admins = ["alice"]\n[users.alice]\nrole = "officer"\n',
        "unknown setting(s) admins",
        id="unknown-top-level-key",
    ),
    pytest.param(
        b'[users.alice]\nrole = "officer"\nroles = ["investigator"]\n',
        "gives both role and roles",
        id="role-beside-roles",
    ),
    pytest.param(
        b'[users."alice smith"]\nrole = "officer"\n', "user id 'alice smith' is not valid", id="bad-user-id"
    ),
    pytest.param(b'[users.alice]\nrole = "caf\xe9"\n', "cannot be read", id="not-utf-8"),
    pytest.param(b'[users.alice\nrole = "officer"\n', "cannot be read", id="not-toml"),
]


@pytest.mark.parametrize(("content", "what_to_fix"), MALFORMED_USERS_FILES)
def test_a_malformed_users_file_is_one_line_naming_the_file_and_what_to_fix(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    content: bytes,
    what_to_fix: str,
) -> None:
    """The users file decides who reads evidence: a mistake in it is never a traceback, and never
    ignored (a second role line, or a misspelt key, would give someone other rights than meant)."""
    from tests.test_link_incidents import front_door

    users = tmp_path / "users.toml"
    users.write_bytes(content)
    monkeypatch.setenv("EVIDENCE_USERS_FILE", str(users))
    code, _, stderr = front_door(["--user", "alice", "items", "list"], capsys)
    assert code == ConfigError.exit_code, stderr
    assert stderr.startswith(f"error: users file {users}") and stderr.count("\n") == 1, stderr
    assert what_to_fix in stderr, stderr
