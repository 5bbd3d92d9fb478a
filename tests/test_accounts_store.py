"""The accounts store on SQLite and PostgreSQL alike: what two requests or two processes could race on
(a TOTP step, a failure count, "first in this session", creating the tables) has exactly one winner."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from evidence.accounts import LOCKOUT, hash_password
from evidence.errors import InvalidInput
from storage.accounts import Accounts, metadata
from tests.signing_in import MovableClock

T = TypeVar("T")
HASH = hash_password("lantern orchard 7 quietly")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'accounts.sqlite'}"
        return
    url = request.getfixturevalue("postgres_url")
    yield url
    cleanup = Accounts(url)
    metadata.drop_all(cleanup._engine)
    cleanup.close()


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
def store(store_url: str, clock: MovableClock) -> Iterator[Accounts]:
    accounts = Accounts(store_url, clock=clock)
    yield accounts
    accounts.close()


def all_at_once(count: int, work: Callable[[], T]) -> list[T]:
    """``work`` run by ``count`` threads released together; the first exception any raised is raised."""
    start = threading.Barrier(count)
    results: list[T] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run() -> None:
        start.wait()
        try:
            result = work()
        except BaseException as error:
            with lock:
                errors.append(error)
            return
        with lock:
            results.append(result)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def test_opening_a_new_store_from_many_processes_at_once_creates_it_once(store_url: str) -> None:
    opened = all_at_once(6, lambda: Accounts(store_url))
    opened[0].add("DC-1", frozenset({"investigator"}), HASH, "JBSWY3DPEHPK3PXP")
    assert all(accounts.roles_of("DC-1") == {"investigator"} for accounts in opened)
    for accounts in opened:
        accounts.close()


def test_an_id_is_added_once(store: Accounts) -> None:
    store.add("DC-1", frozenset({"officer", "investigator"}), HASH, None)
    with pytest.raises(InvalidInput, match="already exists"):
        store.add("DC-1", frozenset({"officer"}), HASH, None)
    results = all_at_once(4, lambda: _added(store, "DC-2"))
    assert sorted(results) == [False, False, False, True]
    account = store.account("DC-1")
    assert (
        account is not None and account.roles == {"officer", "investigator"} and account.totp_secret is None
    )


def _added(store: Accounts, user_id: str) -> bool:
    try:
        store.add(user_id, frozenset({"officer"}), HASH, None)
    except InvalidInput:
        return False
    return True


def test_a_totp_step_is_spent_once_and_never_an_earlier_one(store: Accounts) -> None:
    store.add("DC-1", frozenset({"investigator"}), HASH, "JBSWY3DPEHPK3PXP")
    assert sorted(all_at_once(6, lambda: store.spend_totp_step("DC-1", 1000))) == [False] * 5 + [True]
    assert not store.spend_totp_step("DC-1", 999)
    assert store.spend_totp_step("DC-1", 1001)


def test_failures_within_the_window_lock_and_concurrent_ones_are_all_counted(
    store: Accounts, clock: MovableClock
) -> None:
    store.add("DC-1", frozenset({"investigator"}), HASH, "JBSWY3DPEHPK3PXP")

    def fail() -> bool:
        return store.record_failure(
            "DC-1", LOCKOUT, client_address="10.0.0.9", method="password+totp", detail="x"
        )

    assert sorted(all_at_once(LOCKOUT.max_failures, fail)) == [False] * (LOCKOUT.max_failures - 1) + [True]
    account = store.account("DC-1")
    assert account is not None and account.locked_until == clock.now + LOCKOUT.lock_for
    assert account.locked_at(clock.now) and not account.locked_at(clock.now + LOCKOUT.lock_for)
    assert store.failures_from("10.0.0.9", LOCKOUT) == LOCKOUT.max_failures
    assert store.sign_ins("DC-1")[0].event == "lock-out"

    clock.advance(minutes=30)
    assert store.failures_from("10.0.0.9", LOCKOUT) == 0
    for _ in range(LOCKOUT.max_failures + 1):  # spread out: each older than the window
        assert not fail()
        clock.advance(seconds=LOCKOUT.window.total_seconds() + 1)


def test_sessions_are_found_by_their_secret_and_end_once(store: Accounts, clock: MovableClock) -> None:
    new = store.start_session("DC-1", frozenset({"investigator"}), "password+totp", "10.0.0.9")
    found = store.session(new.secret)
    assert found == new.record and found.ended_at is None
    assert store.session(new.secret + "x") is None
    clock.advance(minutes=5)
    store.touch(found)
    touched = store.session(new.secret)
    assert touched is not None and touched.last_seen_at == clock.now
    assert sorted(all_at_once(4, lambda: store.end_session(found.session_id, "sign-out"))) == [False] * 3 + [
        True
    ]
    ended = store.session(new.secret)
    assert ended is not None and ended.ended_at == clock.now
    assert [r.event for r in store.sign_ins("DC-1")] == ["sign-out", "sign-in"]


def test_first_in_session_has_one_winner_and_purposes_are_remembered(store: Accounts) -> None:
    new = store.start_session("DC-1", frozenset({"investigator"}), "password+totp", "10.0.0.9")
    session_id = new.record.session_id
    assert sorted(all_at_once(8, lambda: store.first_in_session(session_id, "ev_1", "play"))) == [
        False
    ] * 7 + [True]
    assert store.first_in_session(session_id, "ev_1", "thumbs")
    all_at_once(4, lambda: store.remember_purpose(session_id, "ev_1", "file review"))
    assert store.purpose(session_id, "ev_1") == "file review"
    store.remember_purpose(session_id, "ev_1", "disclosure")
    assert store.purpose(session_id, "ev_1") == "disclosure"
    assert store.purpose(session_id, "ev_2") is None


def test_removing_an_account_ends_its_sessions(store: Accounts, clock: MovableClock) -> None:
    store.add("DC-1", frozenset({"investigator"}), HASH, None)
    new = store.start_session("DC-1", frozenset({"investigator"}), "password", "10.0.0.9")
    clock.advance(seconds=1)
    store.remove("DC-1")
    ended = store.session(new.secret)
    assert store.account("DC-1") is None and ended is not None and ended.ended_at is not None
    with pytest.raises(InvalidInput, match="no account"):
        store.remove("DC-1")
