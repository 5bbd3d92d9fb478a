"""Signing people in to the portal in tests: a portal over a test station with a clock the test moves,
accounts enrolled as ``evidence users add`` would, and clients signed in through the real sign-in form
(password and TOTP code), so every portal test goes through the same checks a browser does."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

from fastapi.testclient import TestClient
from httpx import Response

from evidence.access import Role
from evidence.accounts import TOTP_STEP_SECONDS, hash_password, new_totp_secret, totp_code, totp_step
from flows.accounts import enrol
from storage.accounts import Accounts
from tests.station import Station, make_station
from web.app import create_app
from web.portal import Portal
from web.sessions import SIGN_IN_FORM_COOKIE

PASSWORD = "lantern orchard 7 quietly"
"""Passes the password policy; every test account has it unless a test says otherwise."""
START = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)


@dataclass
class MovableClock:
    """The portal's "now": tests move it to expire sessions and locks instead of waiting."""

    now: datetime = field(default=START)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class TestPortal:
    __test__ = False  # not a test class, whatever its name

    station: Station
    portal: Portal
    clock: MovableClock

    @property
    def accounts(self) -> Accounts:
        return self.portal.accounts

    def client(self) -> TestClient:
        # https: the session cookie is Secure, and httpx sends it only over HTTPS
        return TestClient(create_app(self.portal), base_url="https://testserver", follow_redirects=False)

    def enrol(self, user_id: str, *roles: Role, totp: bool = True, password: str = PASSWORD) -> str | None:
        """An account as ``evidence users add`` makes it; returns its TOTP secret."""
        if password != PASSWORD:
            enrol(self.accounts, user_id, frozenset(roles), password, with_totp=totp)
        else:
            # the same real Argon2id hash of PASSWORD for every test account: hashing costs a fifth of
            # a second, and enrol() itself is tested through `evidence users add`
            self.accounts.add(user_id, frozenset(roles), password_hash(), new_totp_secret() if totp else None)
        account = self.accounts.account(user_id)
        assert account is not None
        return account.totp_secret

    def next_code(self, user_id: str) -> str:
        """A code the account has not used yet: now's, else the next step's (moving the clock if even
        that was used), as a person would wait for their app to show a new one."""
        account = self.accounts.account(user_id)
        assert account is not None and account.totp_secret is not None
        step = totp_step(self.clock.now)
        if account.totp_last_step is not None and account.totp_last_step >= step:
            step = account.totp_last_step + 1
            if step > totp_step(self.clock.now) + 1:
                self.clock.advance(seconds=TOTP_STEP_SECONDS)
        return totp_code(account.totp_secret, datetime.fromtimestamp(step * TOTP_STEP_SECONDS, UTC))

    def sign_in(
        self,
        client: TestClient,
        user_id: str,
        *,
        password: str = PASSWORD,
        code: str | None = None,
        next: str = "",
    ) -> Response:
        """Fill in and send the sign-in form; the answer is returned unfollowed."""
        if code is None:
            account = self.accounts.account(user_id)
            code = self.next_code(user_id) if account is not None and account.has_totp else ""
        # a browser already signed in is sent on from /sign-in; its form cookie still holds the token
        token = client.cookies.get(SIGN_IN_FORM_COOKIE) or form_token(client.get("/sign-in"))
        return client.post(
            "/sign-in",
            data={"user": user_id, "password": password, "totp": code, "csrf_token": token, "next": next},
        )

    def signed_in_client(self, user_id: str, *roles: Role) -> TestClient:
        """A client signed in as ``user_id`` (enrolled first, with ``roles``, if not yet)."""
        if self.accounts.account(user_id) is None:
            self.enrol(user_id, *roles)
        client = self.client()
        answer = self.sign_in(client, user_id)
        assert answer.status_code == 303, answer.text
        return client


@cache
def password_hash() -> str:
    return hash_password(PASSWORD)


def make_test_portal(data_dir: Path) -> TestPortal:
    station = make_station(data_dir)
    clock = MovableClock()
    accounts = Accounts(station.settings.accounts_url, clock=clock)
    portal = Portal(
        settings=station.settings, vault=station.vault, catalog=station.catalog, accounts=accounts
    )
    return TestPortal(station, portal, clock)


def form_token(page: Response) -> str:
    """The CSRF token a page's forms carry."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text[:2000]
    return found.group(1)
