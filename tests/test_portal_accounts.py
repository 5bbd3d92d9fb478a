"""Investigators sign in to the portal with a password and a TOTP code, stay signed in for a bounded
time, and sign out; failures lock accounts; every sign-in, failure, lock-out, sign-out and expiry is on
record. Through the real app (TestClient over HTTPS, so Secure cookies travel) and the accounts store."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pyotp
import pytest
from fastapi import FastAPI, Request, Response
from fastapi.responses import RedirectResponse
from typer.testing import CliRunner, Result

from cli.app import acting_user, invocation
from cli.commands import app
from cli.serve import is_loopback, require_private_identity_key
from evidence.access import Actor
from evidence.accounts import LOCKOUT, password_problem
from evidence.errors import ConfigError, InvalidInput
from evidence.settings import load_settings
from storage.accounts import Accounts
from tests.signing_in import PASSWORD, TestPortal, form_token, make_test_portal
from tests.station import make_station
from web.people import Person
from web.sessions import (
    SESSION_COOKIE,
    first_in_session,
    local_path,
    purpose_for,
    remember_purpose,
    start_session,
)

USER = "DC-2093"


@pytest.fixture
def tp(tmp_path: Path) -> TestPortal:
    return make_test_portal(tmp_path / "station")


def events(tp: TestPortal, user_id: str | None = USER) -> list[tuple[str, str]]:
    """(event, detail) of the user's sign-in records, oldest first."""
    return [(r.event, r.detail) for r in reversed(tp.accounts.sign_ins(user_id))]


def session_cookie_header(answer_headers: list[str]) -> str:
    [header] = [h for h in answer_headers if h.startswith(f"{SESSION_COOKIE}=")]
    return header


def test_password_and_code_sign_in_and_the_cookie_is_httponly_secure_and_strict(tp: TestPortal) -> None:
    tp.enrol(USER, "investigator")
    client = tp.client()
    answer = tp.sign_in(client, USER, next="/account/sign-ins")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/account/sign-ins"
    cookie = session_cookie_header(answer.headers.get_list("set-cookie"))
    attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "secure", "samesite=strict", "path=/"} <= attributes
    assert not any(a.startswith(("max-age", "expires", "domain")) for a in attributes)

    page = client.get("/account/sign-ins")
    assert page.status_code == 200 and USER in page.text
    [record] = tp.accounts.sign_ins(USER)
    assert (record.event, record.method, record.client_address) == ("sign-in", "password+totp", "testclient")
    # the cookie's secret is nowhere in the store: only its hash
    secret = client.cookies[SESSION_COOKIE]
    assert secret not in (tp.station.settings.data_dir / "accounts.sqlite").read_bytes().decode("latin-1")
    assert record.session_id and record.session_id not in secret


def test_front_page_goes_to_sign_in_or_search(tp: TestPortal) -> None:
    assert tp.client().get("/").headers["location"] == "/sign-in"
    assert tp.signed_in_client(USER, "investigator").get("/").headers["location"] == "/search"


@pytest.mark.parametrize("wrong", ["password", "code", "user"])
def test_a_wrong_password_code_or_user_id_is_refused_with_the_same_message(
    tp: TestPortal, wrong: str
) -> None:
    secret = tp.enrol(USER, "investigator")
    assert secret
    client = tp.client()
    if wrong == "password":
        answer = tp.sign_in(client, USER, password=PASSWORD + "x")
    elif wrong == "code":
        right = tp.next_code(USER)
        answer = tp.sign_in(client, USER, code=f"{(int(right) + 1) % 1000000:06d}")
    else:
        answer = tp.sign_in(client, "DC-2094")
    assert answer.status_code == 401
    assert "the user id, password or code is not right" in answer.text
    assert SESSION_COOKIE not in client.cookies
    assert client.get("/account/sign-ins").status_code == 303
    expected = {"password": "wrong password", "code": "wrong code", "user": "no such account"}[wrong]
    user = None if wrong == "user" else USER
    assert ("failure", expected) in events(tp, user)


def test_a_code_is_used_once(tp: TestPortal) -> None:
    tp.enrol(USER, "investigator")
    code = tp.next_code(USER)
    first = tp.client()
    assert tp.sign_in(first, USER, code=code).status_code == 303
    # the same code again, seconds later, while it is still "valid": refused
    tp.clock.advance(seconds=5)
    again = tp.client()
    assert tp.sign_in(again, USER, code=code).status_code == 401
    assert events(tp)[-1] == ("failure", "code already used")
    assert tp.sign_in(again, USER).status_code == 303  # the next code works


def test_failures_lock_the_account_even_for_the_right_password_until_the_lock_ends(tp: TestPortal) -> None:
    tp.enrol(USER, "investigator")
    client = tp.client()
    for _ in range(LOCKOUT.max_failures):
        assert tp.sign_in(client, USER, password="not the password at all").status_code == 401
    assert events(tp)[-2:] == [("failure", "wrong password"), ("lock-out", "5 failures; locked")]
    account = tp.accounts.account(USER)
    assert account is not None and account.locked_at(tp.clock.now)

    answer = tp.sign_in(client, USER)  # right password, right code
    assert answer.status_code == 401 and "the user id, password or code is not right" in answer.text
    assert events(tp)[-1] == ("failure", "locked")

    tp.clock.advance(minutes=14)
    assert tp.sign_in(client, USER).status_code == 401
    tp.clock.advance(minutes=2)
    assert tp.sign_in(client, USER).status_code == 303
    assert events(tp)[-1] == ("sign-in", "")


def test_failures_spread_out_over_more_than_the_window_do_not_lock(tp: TestPortal) -> None:
    tp.accounts.lockout = replace(LOCKOUT, max_failures=2)  # as 5, with fewer slow password checks
    tp.enrol(USER, "investigator")
    client = tp.client()
    for _ in range(tp.accounts.lockout.max_failures + 1):
        assert tp.sign_in(client, USER, password="not the password at all").status_code == 401
        tp.clock.advance(minutes=16)
    assert "lock-out" not in [event for event, _ in events(tp)]
    assert tp.sign_in(client, USER).status_code == 303


def test_one_address_failing_for_many_user_ids_is_throttled(tp: TestPortal) -> None:
    tp.accounts.lockout = replace(LOCKOUT, address_max_failures=3)  # 20 by default: the same, slower
    tp.enrol(USER, "investigator")
    client = tp.client()
    for n in range(tp.accounts.lockout.address_max_failures):
        assert tp.sign_in(client, f"guess-{n}", password="spraying-password-1").status_code == 401
    answer = tp.sign_in(client, USER)
    assert answer.status_code == 429 and "Too many failed sign-ins from this address" in answer.text
    assert [e for e, _ in events(tp, None)][-1] == "throttled"
    tp.clock.advance(minutes=16)
    assert tp.sign_in(client, USER).status_code == 303


def test_idle_sessions_end_and_the_page_goes_to_sign_in(tp: TestPortal) -> None:
    client = tp.signed_in_client(USER, "investigator")
    idle = tp.station.settings.session_idle_minutes
    tp.clock.advance(minutes=idle - 1)
    assert client.get("/account/sign-ins").status_code == 200  # use keeps it alive
    tp.clock.advance(minutes=idle - 1)
    assert client.get("/account/sign-ins").status_code == 200
    tp.clock.advance(minutes=idle)
    answer = client.get("/account/sign-ins?x=1")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/sign-in?next=%2Faccount%2Fsign-ins%3Fx%3D1"
    assert events(tp)[-1] == ("expiry", "idle")
    # the ended session stays ended, even if the clock were to go back
    tp.clock.advance(minutes=-idle)
    assert client.get("/account/sign-ins").status_code == 303
    assert [e for e, _ in events(tp)].count("expiry") == 1


def test_sessions_end_after_the_absolute_limit_however_busy(tp: TestPortal) -> None:
    client = tp.signed_in_client(USER, "investigator")
    hours = tp.station.settings.session_absolute_hours
    for _ in range(int(hours * 60 / 10) - 1):
        tp.clock.advance(minutes=10)
        assert client.get("/account/sign-ins").status_code == 200
    tp.clock.advance(minutes=10)
    assert client.get("/account/sign-ins").status_code == 303
    assert events(tp)[-1] == ("expiry", "absolute")


def test_sign_out_ends_the_session_on_the_server(tp: TestPortal) -> None:
    client = tp.signed_in_client(USER, "investigator")
    stolen = client.cookies[SESSION_COOKIE]
    page = client.get("/account/sign-ins")
    answer = client.post("/sign-out", data={"csrf_token": form_token(page)})
    assert answer.status_code == 303 and answer.headers["location"] == "/sign-in"
    assert SESSION_COOKIE not in client.cookies
    assert events(tp)[-1] == ("sign-out", "")

    replay = tp.client()
    replay.cookies.set(SESSION_COOKIE, stolen, domain="testserver.local")
    assert replay.get("/account/sign-ins").status_code == 303
    assert replay.post("/sign-out", data={"csrf_token": form_token(page)}).status_code == 401


def test_every_sign_in_gets_a_new_session_and_ends_the_old_one(tp: TestPortal) -> None:
    tp.enrol(USER, "investigator")
    client = tp.client()
    token = form_token(client.get("/sign-in"))  # a second tab's sign-in form, loaded before the first sign-in
    assert tp.sign_in(client, USER).status_code == 303
    before = client.cookies[SESSION_COOKIE]
    data = {"user": USER, "password": PASSWORD, "totp": tp.next_code(USER), "csrf_token": token}
    assert client.post("/sign-in", data=data).status_code == 303
    after = client.cookies[SESSION_COOKIE]
    assert after != before
    assert events(tp)[-2:] == [("sign-in", ""), ("sign-out", "new sign-in in the same browser")]
    old = tp.client()
    old.cookies.set(SESSION_COOKIE, before, domain="testserver.local")
    assert old.get("/account/sign-ins").status_code == 303


def test_posts_without_the_sessions_csrf_token_are_refused(tp: TestPortal) -> None:
    client = tp.signed_in_client(USER, "investigator")
    assert client.post("/sign-out").status_code == 403
    assert client.post("/sign-out", data={"csrf_token": "guess"}).status_code == 403
    other = tp.signed_in_client(USER)  # another session: another token
    their_token = form_token(other.get("/account/sign-ins"))
    assert client.post("/sign-out", data={"csrf_token": their_token}).status_code == 403
    assert client.get("/account/sign-ins").status_code == 200  # still signed in
    token = form_token(client.get("/account/sign-ins"))
    assert client.post("/sign-out", headers={"X-CSRF-Token": token}).status_code == 303


def test_the_sign_in_form_needs_its_own_token_and_cookie(tp: TestPortal) -> None:
    tp.enrol(USER, "investigator")
    client = tp.client()
    data = {"user": USER, "password": PASSWORD, "totp": tp.next_code(USER)}
    assert client.post("/sign-in", data=data).status_code == 403  # no token, no cookie: a forged form
    token = form_token(client.get("/sign-in"))
    fresh = tp.client()  # a token copied into another browser, without its cookie
    assert fresh.post("/sign-in", data=data | {"csrf_token": token}).status_code == 403
    assert client.post("/sign-in", data=data | {"csrf_token": token}).status_code == 303


def test_a_request_without_a_session_is_sent_to_sign_in_or_refused(tp: TestPortal) -> None:
    client = tp.client()
    answer = client.get("/account/sign-ins")
    assert answer.status_code == 303 and answer.headers["location"] == "/sign-in?next=%2Faccount%2Fsign-ins"
    refused = client.post("/sign-out", data={"csrf_token": "x"})
    assert refused.status_code == 401 and "sign in again" in refused.text


def test_sign_in_never_sends_anyone_off_the_portal(tp: TestPortal) -> None:
    tp.enrol(USER, "investigator")
    client = tp.client()
    for target in ("//evil.example/x", ""):
        answer = tp.sign_in(client, USER, next=target)
        assert answer.status_code == 303 and answer.headers["location"] == "/search", target
    # signed in, the sign-in page sends people on at once, through the same check
    for target in (
        "//evil.example/x",
        "/\\evil.example",
        "https://evil.example/",
        "javascript:alert(1)",
        "evil.example",
        "/\t/evil.example",
        "/sign-out",
    ):
        assert client.get("/sign-in", params={"next": target}).headers["location"] == "/search", target
    assert client.get("/sign-in", params={"next": "/items/ev_1"}).headers["location"] == "/items/ev_1"


def test_sign_in_goes_on_to_the_page_asked_for() -> None:
    assert local_path("/items/ev_1?play=1") == "/items/ev_1?play=1"
    assert local_path("/incidents/KNT-2026-000123") == "/incidents/KNT-2026-000123"


def test_a_session_remembers_purposes_and_firsts(tp: TestPortal) -> None:
    client = tp.signed_in_client(USER, "investigator")
    client.get("/account/sign-ins")
    [record] = [r for r in tp.accounts.sign_ins(USER) if r.event == "sign-in"]
    session = tp.accounts.session(client.cookies[SESSION_COOKIE])
    assert session is not None and session.session_id == record.session_id
    person = Person(
        Actor(USER, session.roles), "password+totp", session.session_id, "testclient", session.csrf_token
    )
    assert purpose_for(tp.portal, person, "ev_1") is None
    remember_purpose(tp.portal, person, "ev_1", "file review")
    remember_purpose(tp.portal, person, "ev_1", "disclosure check")
    assert purpose_for(tp.portal, person, "ev_1") == "disclosure check"
    assert purpose_for(tp.portal, person, "ev_2") is None

    results: list[bool] = []
    threads = [
        threading.Thread(target=lambda: results.append(first_in_session(tp.portal, person, "ev_1", "play")))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 7 + [True]
    assert first_in_session(tp.portal, person, "ev_2", "play") is True
    assert first_in_session(tp.portal, person, "ev_1", "thumbs") is True

    # another session of the same person starts afresh
    other = tp.signed_in_client(USER, "investigator")
    second = tp.accounts.session(other.cookies[SESSION_COOKIE])
    assert second is not None
    person2 = Person(
        Actor(USER, second.roles), "password+totp", second.session_id, "testclient", second.csrf_token
    )
    assert purpose_for(tp.portal, person2, "ev_1") is None
    assert first_in_session(tp.portal, person2, "ev_1", "play") is True


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("short-pass1", "at least 12"),
        ("password1234", "too common"),
        ("P@ssw0rd2026!", "too common"),
        ("qwertyuiop12", "too common"),
        ("iloveyou1234", "too common"),
        ("abcdefghijklmn", "sequence"),
        ("123456789012", "sequence"),
        ("abcabcabcabc", "too few"),
        ("blueblueblueblue", "too few"),
        ("kp4-DC-2093-route", "user id"),
        ("x" * 129, "at most 128"),
    ],
)
def test_weak_passwords_are_refused(password: str, why: str) -> None:
    problem = password_problem(password, USER)
    assert problem is not None and why in problem


@pytest.mark.parametrize(
    "password",
    [
        PASSWORD,
        "Tr0ub4dor&3-horse",
        "correct horse battery staple",
        "ünïcode wörds ok",
        "a long passphrase of sixty-four characters or more is welcome!! " + "z" * 50,
    ],
)
def test_good_passwords_pass(password: str) -> None:
    assert password_problem(password, USER) is None


# -- evidence users ---------------------------------------------------------------------------------

runner = CliRunner()


def users_add(*args: str, password: str = PASSWORD) -> Result:
    return runner.invoke(app, ["users", "add", *args, "--password-stdin"], input=password + "\n")


def test_users_add_stores_a_hash_enrols_totp_and_shows_the_uri_once(tmp_path: Path) -> None:
    result = users_add(USER, "--role", "investigator")
    assert result.exit_code == 0, result.output
    uri = re.search(r"otpauth://totp/\S+", result.output)
    assert uri and "will not be shown again" in result.output
    accounts = Accounts.open(load_settings())
    account = accounts.account(USER)
    assert account is not None and account.roles == {"investigator"}
    assert account.password_hash.startswith("$argon2id$") and PASSWORD not in account.password_hash
    assert pyotp.parse_uri(uri.group(0)).secret == account.totp_secret

    listed = runner.invoke(app, ["users", "list", "--json"])
    assert listed.exit_code == 0
    assert json.loads(listed.output) == [
        {
            "user_id": USER,
            "roles": ["investigator"],
            "totp": True,
            "locked_until": None,
            "created_at": account.created_at.isoformat(),
        }
    ]
    assert str(account.totp_secret) not in listed.output and "argon2" not in listed.output

    # the CLI acts with the roles the account has
    invocation.user = USER
    try:
        assert acting_user(load_settings()) == Actor(USER, frozenset({"investigator"}))
    finally:
        invocation.user = None


def test_users_add_prompts_twice_without_echo(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["users", "add", USER, "--role", "officer"], input=f"{PASSWORD}\n{PASSWORD}\n"
    )
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    differ = runner.invoke(app, ["users", "add", "PC-1", "--role", "officer"], input=f"{PASSWORD}\nother\n")
    assert isinstance(differ.exception, InvalidInput) and "differ" in str(differ.exception)


@pytest.mark.parametrize(
    ("password", "why"),
    [("short-pass1", "at least 12"), ("password1234", "too common"), ("Monkey123456!", "too common")],
)
def test_users_add_refuses_weak_passwords(password: str, why: str) -> None:
    result = users_add(USER, "--role", "investigator", password=password)
    assert isinstance(result.exception, InvalidInput) and why in str(result.exception)
    assert result.exception.exit_code == 2
    assert Accounts.open(load_settings()).account(USER) is None


def test_users_add_refuses_an_existing_id_a_bad_id_and_no_totp_for_investigators() -> None:
    assert users_add(USER, "--role", "investigator").exit_code == 0
    again = users_add(USER, "--role", "officer")
    assert isinstance(again.exception, InvalidInput) and "already exists" in str(again.exception)
    bad = users_add("DC 2093;", "--role", "officer")
    assert isinstance(bad.exception, InvalidInput) and "user id" in str(bad.exception)
    no_totp = users_add("DC-3000", "--role", "officer", "--role", "investigator", "--no-totp")
    assert isinstance(no_totp.exception, InvalidInput) and "second factor" in str(no_totp.exception)
    role = users_add("DC-3001", "--role", "detective")
    assert isinstance(role.exception, InvalidInput) and "unknown role" in str(role.exception)


def test_an_officer_without_totp_signs_in_with_the_password(tp: TestPortal) -> None:
    assert users_add("PC-4471", "--role", "officer", "--no-totp").exit_code == 0
    client = tp.client()
    assert tp.sign_in(client, "PC-4471").status_code == 303
    assert tp.accounts.sign_ins("PC-4471")[0].method == "password"


def test_reset_password_lifts_the_lock_and_ends_sessions(tp: TestPortal) -> None:
    tp.accounts.lockout = replace(LOCKOUT, max_failures=2)
    client = tp.signed_in_client(USER, "investigator")
    for _ in range(tp.accounts.lockout.max_failures):
        tp.sign_in(tp.client(), USER, password="not the password at all")
    new_password = "harbour lights 9 slowly"
    result = runner.invoke(
        app, ["users", "reset-password", USER, "--password-stdin"], input=new_password + "\n"
    )
    assert result.exit_code == 0, result.output
    assert "otpauth://" in result.output
    assert client.get("/account/sign-ins").status_code == 303
    assert tp.sign_in(tp.client(), USER, password=new_password).status_code == 303
    assert runner.invoke(app, ["users", "remove", USER]).exit_code == 0
    assert tp.accounts.account(USER) is None


# -- evidence serve ---------------------------------------------------------------------------------


def test_serve_refuses_an_identity_key_others_can_read_or_a_missing_one(tmp_path: Path) -> None:
    settings = make_station(tmp_path / "station").settings
    key = settings.keys_path / "vault-identity.key"
    assert require_private_identity_key(settings) == key
    key.chmod(0o640)
    with pytest.raises(ConfigError, match=f"chmod 600 {re.escape(str(key))}$") as refused:
        require_private_identity_key(settings)
    assert refused.value.exit_code == 2 and "\n" not in str(refused.value)
    result = runner.invoke(app, ["serve", "--port", "1"])
    assert isinstance(result.exception, ConfigError)  # refused before anything is opened or bound
    key.unlink()
    with pytest.raises(ConfigError, match="does not exist"):
        require_private_identity_key(settings)


def test_loopback_hosts() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0")  # noqa: S104 and not is_loopback("10.1.2.3") and not is_loopback("portal.example")


def test_evidence_serve_serves_the_sign_in_page(tmp_path: Path) -> None:
    make_station(tmp_path / "station")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", "--port", str(port)],
        cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/sign-in", timeout=5)
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline, (
                    server.stdout and server.stdout.read()
                )
                time.sleep(0.1)
        assert answer.status_code == 200 and 'name="totp"' in answer.text
        assert "server" not in answer.headers
        assert "evidence_sign_in_form=" in answer.headers["set-cookie"]
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_sign_in_proved_elsewhere_starts_a_session_the_same_way(tp: TestPortal) -> None:
    """``start_session`` is what the OIDC callback uses once the identity provider has vouched."""
    client = tp.signed_in_client(USER, "investigator")
    before = client.cookies[SESSION_COOKIE]
    app = client.app
    assert isinstance(app, FastAPI)

    @app.get("/test-provider-callback")
    def _callback(request: Request) -> Response:
        response = RedirectResponse("/account/sign-ins", status_code=303)
        start_session(request, response, tp.portal, USER, frozenset({"investigator"}), "oidc")
        return response

    assert client.get("/test-provider-callback").status_code == 303
    assert client.cookies[SESSION_COOKIE] != before
    assert client.get("/account/sign-ins").status_code == 200
    session = tp.accounts.session(client.cookies[SESSION_COOKIE])
    assert session is not None and session.method == "oidc"
    assert events(tp)[-2:] == [("sign-out", "new sign-in in the same browser"), ("sign-in", "")]
    assert tp.accounts.sign_ins(USER)[0].method == "oidc"
