"""The accounts store: people's local accounts, their portal sessions, what a session remembers, and a
record of every sign-in, failure, lock-out, sign-out and expiry. SQLite beside the service by default,
PostgreSQL by URL (``Settings.accounts_url``), through SQLAlchemy Core as the catalog is.

Unlike the catalog this cannot be rebuilt from the vault: it holds password hashes and TOTP secrets,
so the SQLite file is created readable by its owner only, and a deployment backs it up.

A session's cookie carries a random secret; only its SHA-256 is kept here, so a copy of this database
does not let anyone take over a live session. Records name a session by its separate public id.

Everything that two requests or two processes could race on is one conditional statement or one
unique row: a TOTP step is spent by ``UPDATE ... WHERE last step < this step``, a failure count grows
in one ``UPDATE``, "first time in this session" is an insert that only one caller wins.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from evidence.access import ROLES, Role
from evidence.accounts import LOCKOUT, LockoutPolicy
from evidence.errors import InvalidInput
from storage.databases import open_engine, translated_errors

if TYPE_CHECKING:
    from evidence.settings import Settings

SignInEvent = Literal["sign-in", "failure", "lock-out", "throttled", "sign-out", "expiry"]
"""What a sign-in record says happened."""

metadata = sa.MetaData()

accounts_table = sa.Table(
    "accounts",
    metadata,
    sa.Column("user_id", sa.String(64), primary_key=True),
    sa.Column("roles", sa.String(128), nullable=False),
    sa.Column("password_hash", sa.String(256), nullable=False),
    sa.Column("totp_secret", sa.String(64), nullable=True),
    sa.Column("totp_last_step", sa.BigInteger, nullable=True),
    sa.Column("failed_attempts", sa.Integer, nullable=False, default=0),
    sa.Column("last_failure_at", sa.DateTime, nullable=True),
    sa.Column("locked_until", sa.DateTime, nullable=True),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

sessions_table = sa.Table(
    "sessions",
    metadata,
    sa.Column("secret_sha256", sa.String(64), primary_key=True),
    sa.Column("session_id", sa.String(32), nullable=False, unique=True),
    sa.Column("user_id", sa.String(64), nullable=False),
    sa.Column("roles", sa.String(128), nullable=False),
    sa.Column("method", sa.String(16), nullable=False),
    sa.Column("client_address", sa.String(64), nullable=False),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("last_seen_at", sa.DateTime, nullable=False),
    sa.Column("ended_at", sa.DateTime, nullable=True),
    sa.Index("sessions_by_user", "user_id", "ended_at"),
)

session_notes_table = sa.Table(
    "session_notes",
    metadata,
    sa.Column("session_id", sa.String(32), primary_key=True),
    sa.Column("evidence_id", sa.String(64), primary_key=True),
    sa.Column("note", sa.String(32), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("at", sa.DateTime, nullable=False),
)

sign_ins_table = sa.Table(
    "sign_ins",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime, nullable=False),
    sa.Column("event", sa.String(16), nullable=False),
    sa.Column("user_id", sa.String(64), nullable=True),
    sa.Column("method", sa.String(16), nullable=True),
    sa.Column("client_address", sa.String(64), nullable=True),
    sa.Column("session_id", sa.String(32), nullable=True),
    sa.Column("detail", sa.String(128), nullable=False, default=""),
    sa.Index("sign_ins_by_user", "user_id", "at"),
    sa.Index("sign_ins_by_client", "client_address", "event", "at"),
)

SCHEMA_LOCK_KEY = 0x65766964656E6301
"""PostgreSQL advisory lock held while the tables are created ("evidenc" and 1)."""

TOUCH_AFTER_SECONDS = 15
"""A session's last-seen time is written at most this often: a page's dozen thumbnail requests need
not each write, and the idle timeout is counted in minutes."""


@dataclass(frozen=True)
class Account:
    user_id: str
    roles: frozenset[Role]
    password_hash: str
    totp_secret: str | None
    totp_last_step: int | None
    failed_attempts: int
    last_failure_at: datetime | None
    locked_until: datetime | None
    created_at: datetime

    @property
    def has_totp(self) -> bool:
        return self.totp_secret is not None

    def locked_at(self, now: datetime) -> bool:
        return self.locked_until is not None and now < self.locked_until


@dataclass(frozen=True)
class SessionRecord:
    session_id: str
    """Public: names the session in records and custody events."""
    user_id: str
    roles: frozenset[Role]
    method: str
    client_address: str
    csrf_token: str
    created_at: datetime
    last_seen_at: datetime
    ended_at: datetime | None


@dataclass(frozen=True)
class NewSession:
    secret: str
    """For the cookie only: never stored, logged or shown."""
    record: SessionRecord


@dataclass(frozen=True)
class SignInRecord:
    at: datetime
    event: str
    user_id: str | None
    method: str | None
    client_address: str | None
    session_id: str | None
    detail: str


def utc_now() -> datetime:
    return datetime.now(UTC)


class Accounts:
    def __init__(
        self, url: str, clock: Callable[[], datetime] = utc_now, lockout: LockoutPolicy = LOCKOUT
    ) -> None:
        self.url = url
        self.clock = clock
        """What time it is; tests replace it to expire sessions and locks without waiting."""
        self.lockout = lockout
        """When failed sign-ins lock an account or hold off a client address."""
        self._engine = open_engine(url, "accounts_url", private=True)
        self._shown_url = sa.engine.make_url(url).render_as_string(hide_password=True)
        with self._translated_errors():
            self._create_tables()

    def _create_tables(self) -> None:
        """Create what is missing, safely while other processes open the same new store."""
        for attempt in range(len(metadata.tables) + 1):
            try:
                with self._engine.begin() as conn:
                    if conn.dialect.name == "postgresql":
                        # PostgreSQL's DDL is transactional: holding this lock to commit makes the
                        # second opener find the tables made, not fail on a half-made catalog entry
                        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
                    metadata.create_all(conn)
                return
            except sa.exc.OperationalError as err:
                # SQLite: another opener created a table between our check and our CREATE; look again
                if "already exists" not in str(err) or attempt == len(metadata.tables):
                    raise

    @classmethod
    def open(cls, settings: Settings) -> Accounts:
        return cls(settings.accounts_url)

    def close(self) -> None:
        self._engine.dispose()

    def now(self) -> datetime:
        return self.clock()

    # -- accounts -----------------------------------------------------------------------------------

    def add(self, user_id: str, roles: frozenset[Role], password_hash: str, totp_secret: str | None) -> None:
        """Create an account; refuses an existing user id (two concurrent adds: one wins)."""
        row = {
            "user_id": user_id,
            "roles": _roles_text(roles),
            "password_hash": password_hash,
            "totp_secret": totp_secret,
            "totp_last_step": None,
            "failed_attempts": 0,
            "created_at": _to_db(self.now()),
        }
        try:
            with self._translated_errors(), self._engine.begin() as conn:
                conn.execute(accounts_table.insert().values(row))
        except sa.exc.IntegrityError:
            raise InvalidInput(
                f"an account {user_id!r} already exists; use `evidence users reset-password` or "
                "`evidence users remove`"
            ) from None

    def account(self, user_id: str) -> Account | None:
        with self._translated_errors(), self._engine.connect() as conn:
            row = conn.execute(sa.select(accounts_table).where(accounts_table.c.user_id == user_id)).first()
        return None if row is None else _account(row)

    def accounts(self) -> list[Account]:
        with self._translated_errors(), self._engine.connect() as conn:
            rows = conn.execute(sa.select(accounts_table).order_by(accounts_table.c.user_id)).all()
        return [_account(row) for row in rows]

    def roles_of(self, user_id: str) -> frozenset[Role] | None:
        account = self.account(user_id)
        return None if account is None else account.roles

    def set_password_hash(self, user_id: str, password_hash: str) -> None:
        self._update_account(user_id, password_hash=password_hash)

    def reset_credentials(self, user_id: str, password_hash: str, totp_secret: str | None) -> None:
        """A new password (and second factor), the lock lifted, and every session of theirs ended: whoever
        knew the old password is signed out too."""
        self._update_account(
            user_id,
            password_hash=password_hash,
            totp_secret=totp_secret,
            totp_last_step=None,
            failed_attempts=0,
            last_failure_at=None,
            locked_until=None,
        )
        self.end_sessions_of(user_id, "credentials reset")

    def remove(self, user_id: str) -> None:
        self.end_sessions_of(user_id, "account removed")
        with self._translated_errors(), self._engine.begin() as conn:
            done = conn.execute(accounts_table.delete().where(accounts_table.c.user_id == user_id))
        if done.rowcount != 1:
            raise InvalidInput(f"there is no account {user_id!r}")

    def _update_account(self, user_id: str, **values: Any) -> None:
        with self._translated_errors(), self._engine.begin() as conn:
            done = conn.execute(
                accounts_table.update().where(accounts_table.c.user_id == user_id).values(**values)
            )
        if done.rowcount != 1:
            raise InvalidInput(f"there is no account {user_id!r}")

    # -- what sign-in needs --------------------------------------------------------------------------

    def spend_totp_step(self, user_id: str, step: int) -> bool:
        """Mark TOTP time step ``step`` used; False when it (or a later one) already was: a replay."""
        last = accounts_table.c.totp_last_step
        with self._translated_errors(), self._engine.begin() as conn:
            done = conn.execute(
                accounts_table.update()
                .where(accounts_table.c.user_id == user_id, sa.or_(last.is_(None), last < step))
                .values(totp_last_step=step)
            )
        return done.rowcount == 1

    def record_failure(
        self, user_id: str, policy: LockoutPolicy, *, client_address: str, method: str, detail: str
    ) -> bool:
        """Count a failed sign-in against the account and record it; when it reaches the policy's limit
        the account is locked (and that is recorded too). True when this failure locked it."""
        now = self.now()
        with self._translated_errors(), self._engine.begin() as conn:
            # the row lock taken by this UPDATE serialises concurrent failures: none is lost
            conn.execute(
                accounts_table.update()
                .where(accounts_table.c.user_id == user_id)
                .values(
                    failed_attempts=sa.case(
                        (
                            sa.or_(
                                accounts_table.c.last_failure_at.is_(None),
                                accounts_table.c.last_failure_at < _to_db(now - policy.window),
                            ),
                            1,
                        ),
                        else_=accounts_table.c.failed_attempts + 1,
                    ),
                    last_failure_at=_to_db(now),
                )
            )
            failures = conn.execute(
                sa.select(accounts_table.c.failed_attempts).where(accounts_table.c.user_id == user_id)
            ).scalar_one_or_none()
            self._record(conn, "failure", user_id, method, client_address, None, detail)
            if failures is None or not policy.locks(failures):
                return False
            conn.execute(
                accounts_table.update()
                .where(accounts_table.c.user_id == user_id)
                .values(failed_attempts=0, locked_until=_to_db(now + policy.lock_for))
            )
            self._record(
                conn, "lock-out", user_id, method, client_address, None, f"{failures} failures; locked"
            )
            return True

    def clear_failures(self, user_id: str) -> None:
        self._update_account(user_id, failed_attempts=0, last_failure_at=None)

    def failures_from(self, client_address: str, policy: LockoutPolicy) -> int:
        """Failed sign-ins from ``client_address`` within the policy's window."""
        since = _to_db(self.now() - policy.window)
        table = sign_ins_table
        with self._translated_errors(), self._engine.connect() as conn:
            count = conn.execute(
                sa.select(sa.func.count())
                .select_from(table)
                .where(
                    table.c.client_address == client_address, table.c.event == "failure", table.c.at >= since
                )
            ).scalar_one()
        return int(count)

    def record(
        self,
        event: SignInEvent,
        *,
        user_id: str | None,
        method: str | None = None,
        client_address: str | None = None,
        session_id: str | None = None,
        detail: str = "",
    ) -> None:
        with self._translated_errors(), self._engine.begin() as conn:
            self._record(conn, event, user_id, method, client_address, session_id, detail)

    def _record(
        self,
        conn: Connection,
        event: SignInEvent,
        user_id: str | None,
        method: str | None,
        client_address: str | None,
        session_id: str | None,
        detail: str,
    ) -> None:
        conn.execute(
            sign_ins_table.insert().values(
                at=_to_db(self.now()),
                event=event,
                user_id=user_id,
                method=method,
                client_address=client_address[:64] if client_address else client_address,
                session_id=session_id,
                detail=detail[:128],
            )
        )

    def sign_ins(self, user_id: str | None = None, *, limit: int = 100) -> list[SignInRecord]:
        """The newest sign-in records first, of one person or of everyone."""
        query = sa.select(sign_ins_table).order_by(sign_ins_table.c.id.desc()).limit(limit)
        if user_id is not None:
            query = query.where(sign_ins_table.c.user_id == user_id)
        with self._translated_errors(), self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            SignInRecord(
                _from_db(row.at),
                row.event,
                row.user_id,
                row.method,
                row.client_address,
                row.session_id,
                row.detail,
            )
            for row in rows
        ]

    # -- sessions ---------------------------------------------------------------------------------------

    def start_session(
        self, user_id: str, roles: frozenset[Role], method: str, client_address: str
    ) -> NewSession:
        """A new session (and its sign-in record): a fresh secret every time, so a session id planted
        in a browser before sign-in is never the one signed in (no session fixation)."""
        now = _to_db(self.now())
        secret = secrets.token_urlsafe(32)
        session_id = secrets.token_hex(8)
        row: dict[str, Any] = {
            "secret_sha256": _secret_key(secret),
            "session_id": session_id,
            "user_id": user_id,
            "roles": _roles_text(roles),
            "method": method,
            "client_address": client_address[:64],
            "csrf_token": secrets.token_urlsafe(32),
            "created_at": now,
            "last_seen_at": now,
            "ended_at": None,
        }
        with self._translated_errors(), self._engine.begin() as conn:
            conn.execute(sessions_table.insert().values(row))
            self._record(conn, "sign-in", user_id, method, client_address, session_id, "")
        return NewSession(secret, _session(row))

    def session(self, secret: str) -> SessionRecord | None:
        """The session a cookie's secret names (ended or not), or None."""
        with self._translated_errors(), self._engine.connect() as conn:
            row = conn.execute(
                sa.select(sessions_table).where(sessions_table.c.secret_sha256 == _secret_key(secret))
            ).first()
        return None if row is None else _session(row._mapping)

    def touch(self, record: SessionRecord) -> None:
        now = self.now()
        if (now - record.last_seen_at).total_seconds() < TOUCH_AFTER_SECONDS:
            return
        with self._translated_errors(), self._engine.begin() as conn:
            conn.execute(
                sessions_table.update()
                .where(sessions_table.c.session_id == record.session_id, sessions_table.c.ended_at.is_(None))
                .values(last_seen_at=_to_db(now))
            )

    def end_session(
        self,
        session_id: str,
        event: Literal["sign-out", "expiry"],
        detail: str = "",
        *,
        client_address: str = "",
    ) -> bool:
        """End a live session and record why; False when it had already ended (nothing recorded twice)."""
        with self._translated_errors(), self._engine.begin() as conn:
            row = conn.execute(
                sa.select(sessions_table.c.user_id, sessions_table.c.method).where(
                    sessions_table.c.session_id == session_id
                )
            ).first()
            done = conn.execute(
                sessions_table.update()
                .where(sessions_table.c.session_id == session_id, sessions_table.c.ended_at.is_(None))
                .values(ended_at=_to_db(self.now()))
            )
            if done.rowcount != 1 or row is None:
                return False
            self._record(conn, event, row.user_id, row.method, client_address or None, session_id, detail)
        return True

    def end_sessions_of(self, user_id: str, detail: str) -> int:
        with self._translated_errors(), self._engine.connect() as conn:
            live = conn.execute(
                sa.select(sessions_table.c.session_id).where(
                    sessions_table.c.user_id == user_id, sessions_table.c.ended_at.is_(None)
                )
            ).all()
        return sum(self.end_session(row.session_id, "sign-out", detail) for row in live)

    # -- what a session remembers -----------------------------------------------------------------------

    def purpose(self, session_id: str, evidence_id: str) -> str | None:
        table = session_notes_table
        with self._translated_errors(), self._engine.connect() as conn:
            value = conn.execute(
                sa.select(table.c.value).where(
                    table.c.session_id == session_id,
                    table.c.evidence_id == evidence_id,
                    table.c.note == "purpose",
                )
            ).scalar_one_or_none()
        return None if value is None else str(value)

    def remember_purpose(self, session_id: str, evidence_id: str, purpose: str) -> None:
        table = session_notes_table
        key = (
            table.c.session_id == session_id,
            table.c.evidence_id == evidence_id,
            table.c.note == "purpose",
        )
        values = {"value": purpose, "at": _to_db(self.now())}
        with self._translated_errors():
            with self._engine.begin() as conn:
                if conn.execute(table.update().where(*key).values(values)).rowcount:
                    return
            try:
                with self._engine.begin() as conn:
                    conn.execute(
                        table.insert().values(
                            session_id=session_id, evidence_id=evidence_id, note="purpose", **values
                        )
                    )
            except sa.exc.IntegrityError:
                # another request of the same session inserted it first: the later purpose wins
                with self._engine.begin() as conn:
                    conn.execute(table.update().where(*key).values(values))

    def first_in_session(self, session_id: str, evidence_id: str, what: str) -> bool:
        """True for exactly one caller per (session, item, what), however many race: a unique row."""
        row = {
            "session_id": session_id,
            "evidence_id": evidence_id,
            "note": f"first:{what}"[:32],
            "value": "",
            "at": _to_db(self.now()),
        }
        try:
            with self._translated_errors(), self._engine.begin() as conn:
                conn.execute(session_notes_table.insert().values(row))
        except sa.exc.IntegrityError:
            return False
        return True

    # -- errors ---------------------------------------------------------------------------------------

    def _translated_errors(self) -> AbstractContextManager[None]:
        """IntegrityError passes through for callers that expect a unique row to be taken."""
        return translated_errors(
            f"accounts store at {self._shown_url}",
            fix="check accounts_url",
            passing=(sa.exc.IntegrityError,),
        )


def stored_roles(settings: Settings, user_id: str) -> frozenset[Role] | None:
    """The roles of ``user_id`` in the accounts store, or None when it has no such account. A SQLite
    store that does not exist yet is not created just to be asked (commands that never touch the portal
    must not leave an accounts file behind)."""
    parsed = sa.engine.make_url(settings.accounts_url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and not Path(parsed.database).exists():
        return None
    accounts = Accounts(settings.accounts_url)
    try:
        return accounts.roles_of(user_id)
    finally:
        accounts.close()


# -- helpers ----------------------------------------------------------------------------------------


def _secret_key(secret: str) -> str:
    # a hash is enough (no salt, no stretching): the secret is 256 random bits, not a password
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _roles_text(roles: frozenset[Role]) -> str:
    return ",".join(role for role in ROLES if role in roles)


def _roles(text: str) -> frozenset[Role]:
    named = text.split(",")
    return frozenset(role for role in ROLES if role in named)


def _account(row: Any) -> Account:
    return Account(
        user_id=row.user_id,
        roles=_roles(row.roles),
        password_hash=row.password_hash,
        totp_secret=row.totp_secret,
        totp_last_step=row.totp_last_step,
        failed_attempts=row.failed_attempts,
        last_failure_at=_from_db_or_none(row.last_failure_at),
        locked_until=_from_db_or_none(row.locked_until),
        created_at=_from_db(row.created_at),
    )


def _session(row: Mapping[Any, Any]) -> SessionRecord:
    return SessionRecord(
        session_id=row["session_id"],
        user_id=row["user_id"],
        roles=_roles(row["roles"]),
        method=row["method"],
        client_address=row["client_address"],
        csrf_token=row["csrf_token"],
        created_at=_from_db(row["created_at"]),
        last_seen_at=_from_db(row["last_seen_at"]),
        ended_at=_from_db_or_none(row["ended_at"]),
    )


def _to_db(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None)


def _from_db(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC)


def _from_db_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else _from_db(value)
