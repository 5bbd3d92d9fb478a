"""The portal's own audit records: what each person searched the catalog for, kept in the accounts
database (``Settings.accounts_url``) beside their sessions and sign-ins.

A search decrypts nothing, so it is no item's custody event; but who looked for which officer's,
device's or incident's evidence, when and from where belongs in that person's trail
(``docs/access.md``). Like custody events (``evidence.custody``), each record is signed with the
service's custody signing key and names the SHA-256 of the record before it, so a record altered,
inserted or removed anywhere but the end is found by :meth:`AuditLog.verify` with public keys alone.
The table also refuses ``UPDATE`` and ``DELETE`` (database triggers): not proof against the database's
owner, who can drop a trigger, but no honest mistake or injected statement rewrites the trail.

Unlike the catalog it cannot be rebuilt from the vault: back it up with the accounts database.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from evidence.errors import ConfigError, StorageUnavailable
from evidence.signing import SigningKey, VerifyingKey
from storage.databases import open_engine, translated_errors

SEARCH_RECORD_FORMAT = "evidence-pipeline/portal-search/v1"
APPEND_ATTEMPTS = 16
READ_BATCH = 1000

metadata = sa.MetaData()

searches_table = sa.Table(
    "portal_searches",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    # seq is the record's place in the one chain: two services appending at once cannot both take it
    sa.Column("prev", sa.String(64), nullable=True),
    sa.Column("at", sa.DateTime, nullable=False),
    sa.Column("user_id", sa.String(64), nullable=False),
    sa.Column("role", sa.String(64), nullable=False),
    sa.Column("sign_in", sa.String(32), nullable=False),
    sa.Column("session", sa.String(128), nullable=False),
    sa.Column("client", sa.String(128), nullable=False),
    sa.Column("criteria", sa.Text, nullable=False),
    sa.Column("result_count", sa.Integer, nullable=False),
    sa.Column("signer", sa.String(64), nullable=False),
    sa.Column("signature", sa.Text, nullable=False),
    sa.Index("portal_searches_by_user", "user_id", "at"),
)

_SQLITE_APPEND_ONLY = (
    "CREATE TRIGGER IF NOT EXISTS portal_searches_no_{verb} BEFORE {verb} ON portal_searches "
    "BEGIN SELECT RAISE(ABORT, 'portal_searches is append-only'); END"
)
_POSTGRES_APPEND_ONLY = (
    "CREATE OR REPLACE FUNCTION portal_searches_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'portal_searches is append-only'; END $$",
    "CREATE OR REPLACE TRIGGER portal_searches_append_only BEFORE UPDATE OR DELETE ON portal_searches "
    "FOR EACH ROW EXECUTE FUNCTION portal_searches_append_only()",
)


@dataclass(frozen=True)
class SearchRecord:
    """One search a person made in the portal."""

    seq: int
    prev: str | None
    at: datetime
    """UTC."""
    user_id: str
    role: str
    sign_in: str
    session: str
    client: str
    criteria: Mapping[str, str]
    """What they asked for, as given once validated (``incident``, ``officer``, ``from``, ...)."""
    result_count: int
    signer: str = ""
    signature: str = ""

    def document(self, *, signed: bool = True) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "format": SEARCH_RECORD_FORMAT,
            "seq": self.seq,
            "prev": self.prev,
            "at": self.at.isoformat(),
            "user": self.user_id,
            "role": self.role,
            "sign_in": self.sign_in,
            "session": self.session,
            "client": self.client,
            "criteria": dict(self.criteria),
            "result_count": self.result_count,
            "signer": self.signer,
        }
        if signed:
            doc["signature"] = self.signature
        return doc

    def signed_payload(self) -> bytes:
        return SEARCH_RECORD_FORMAT.encode("ascii") + b"\x00" + _canonical(self.document(signed=False))

    def record_hash(self) -> str:
        """What the next record names as ``prev``: the SHA-256 of this one, signature included."""
        return hashlib.sha256(_canonical(self.document())).hexdigest()


@dataclass(frozen=True)
class AuditVerification:
    records: int
    problems: tuple[str, ...]
    signers: tuple[str, ...]

    @property
    def intact(self) -> bool:
        return not self.problems


class AuditLog:
    def __init__(
        self,
        url: str,
        *,
        signer: SigningKey | None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._engine = open_engine(url, "accounts_url", private=True)
        self._shown_url = sa.engine.make_url(url).render_as_string(hide_password=True)
        self._signer = signer
        self._clock = clock
        with self._translated_errors():
            metadata.create_all(self._engine)
            with self._engine.begin() as conn:
                if self._engine.dialect.name == "sqlite":
                    for verb in ("update", "delete"):
                        conn.exec_driver_sql(_SQLITE_APPEND_ONLY.format(verb=verb.upper()))
                else:
                    for statement in _POSTGRES_APPEND_ONLY:
                        conn.exec_driver_sql(statement)

    @classmethod
    def open(cls, accounts_url: str, *, signer: SigningKey | None) -> AuditLog:
        return cls(accounts_url, signer=signer)

    def close(self) -> None:
        self._engine.dispose()

    def record_search(
        self,
        *,
        user_id: str,
        role: str,
        who: Mapping[str, str],
        criteria: Mapping[str, str],
        result_count: int,
    ) -> SearchRecord:
        """Append one search (``who``: the person's ``sign_in``, ``session`` and ``client``), signed and
        chained to the record before it. Losing the race for a place re-reads and takes the next."""
        if self._signer is None:
            raise ConfigError("this service has no custody signing key to sign its audit records with")
        for _ in range(APPEND_ATTEMPTS):
            with self._translated_errors(), self._engine.connect() as conn:
                last = conn.execute(
                    sa.select(searches_table).order_by(searches_table.c.seq.desc()).limit(1)
                ).first()
            unsigned = SearchRecord(
                seq=0 if last is None else int(last.seq) + 1,
                prev=None if last is None else _record_of(last).record_hash(),
                at=self._clock().astimezone(UTC),
                user_id=user_id,
                role=role,
                sign_in=who.get("sign_in", ""),
                session=who.get("session", ""),
                client=who.get("client", ""),
                criteria=dict(criteria),
                result_count=result_count,
                signer=self._signer.key_id,
            )
            signature = base64.b64encode(self._signer.sign(unsigned.signed_payload())).decode("ascii")
            record = replace(unsigned, signature=signature)
            try:
                with self._translated_errors(), self._engine.begin() as conn:
                    conn.execute(sa.insert(searches_table).values(_row_of(record)))
            except sa.exc.IntegrityError:
                continue  # another service took this place: follow its record
            return record
        raise StorageUnavailable("the portal's audit log is busy; try again")

    def searches_by(self, user_id: str) -> Iterator[SearchRecord]:
        """Every search the person made, oldest first, a batch at a time."""
        after: int | None = None
        while True:
            stmt = sa.select(searches_table).where(searches_table.c.user_id == user_id)
            if after is not None:
                stmt = stmt.where(searches_table.c.seq > after)
            stmt = stmt.order_by(searches_table.c.seq).limit(READ_BATCH)
            with self._translated_errors(), self._engine.connect() as conn:
                rows = list(conn.execute(stmt))
            yield from (_record_of(row) for row in rows)
            if len(rows) < READ_BATCH:
                return
            after = int(rows[-1].seq)

    def verify(self, public_keys: Mapping[str, VerifyingKey]) -> AuditVerification:
        """Check every record in order: consecutive places from 0, each naming the one before by its
        SHA-256, each signed by a known key."""
        problems: list[str] = []
        signers: set[str] = set()
        expected_seq, expected_prev, count = 0, None, 0
        after = -1
        while True:
            stmt = (
                sa.select(searches_table)
                .where(searches_table.c.seq > after)
                .order_by(searches_table.c.seq)
                .limit(READ_BATCH)
            )
            with self._translated_errors(), self._engine.connect() as conn:
                rows = list(conn.execute(stmt))
            for row in rows:
                record = _record_of(row)
                count += 1
                if record.seq != expected_seq:
                    problems.append(f"record {expected_seq} is missing (the next is {record.seq})")
                elif record.prev != expected_prev:
                    problems.append(f"record {record.seq} does not follow record {record.seq - 1}")
                key = public_keys.get(record.signer)
                if key is None:
                    problems.append(f"record {record.seq} is signed by unknown key {record.signer}")
                elif not key.verify(base64.b64decode(record.signature), record.signed_payload()):
                    problems.append(f"record {record.seq} does not match its signature")
                else:
                    signers.add(record.signer)
                expected_seq, expected_prev = record.seq + 1, record.record_hash()
            if len(rows) < READ_BATCH:
                break
            after = int(rows[-1].seq)
        return AuditVerification(count, tuple(problems), tuple(sorted(signers)))

    def _translated_errors(self) -> AbstractContextManager[None]:
        return translated_errors(
            f"accounts database at {self._shown_url}",
            fix="check accounts_url",
            passing=(sa.exc.IntegrityError,),
        )


def _canonical(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _row_of(record: SearchRecord) -> dict[str, Any]:
    return {
        "seq": record.seq,
        "prev": record.prev,
        "at": record.at.astimezone(UTC).replace(tzinfo=None),
        "user_id": record.user_id,
        "role": record.role,
        "sign_in": record.sign_in,
        "session": record.session,
        "client": record.client,
        "criteria": json.dumps(dict(record.criteria), sort_keys=True),
        "result_count": record.result_count,
        "signer": record.signer,
        "signature": record.signature,
    }


def _record_of(row: Any) -> SearchRecord:
    return SearchRecord(
        seq=int(row.seq),
        prev=row.prev,
        at=row.at.replace(tzinfo=UTC),
        user_id=row.user_id,
        role=row.role,
        sign_in=row.sign_in,
        session=row.session,
        client=row.client,
        criteria=json.loads(row.criteria),
        result_count=int(row.result_count),
        signer=row.signer,
        signature=row.signature,
    )
