"""Chain of custody, format v1 (``docs/custody.md``): append-only, hash-chained, signed events per item.

Each event names the previous event's SHA-256, so removing, reordering or altering any event breaks
the chain at that point; each is signed (Ed25519) by the station or workstation key that wrote it, so a
third party holding only public keys can check who recorded what. Pure functions; storage is
``storage.custody``.

What a chain cannot show on its own: that events were cut off its *end*. Object Lock prevents that
deletion; ``verify_chain`` also takes the length a catalog or an earlier report saw (``expected_length``).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal, get_args

from evidence.errors import IntegrityError
from evidence.ids import require_evidence_id
from evidence.manifest import load_record
from evidence.signing import SigningKey, VerifyingKey

CUSTODY_FORMAT = "evidence-pipeline/custody/v1"

EventType = Literal[
    "ingest",
    "link",
    "unlink",
    "closure",
    "reopen",
    "access",
    "export",
    "hold",
    "release",
    "review",
    "retention",
    "disposal",
    "fixity",
]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)


@dataclass(frozen=True)
class CustodyEvent:
    evidence_id: str
    seq: int
    prev: str | None
    """Hex SHA-256 of the previous event's stored bytes; None only for event 0."""
    type: str
    at: datetime
    actor: str
    """The person (user id) or, for ingest, the station that acted."""
    role: str
    station: str
    details: Mapping[str, Any]
    signer: str = ""
    """Key id of the Ed25519 key that signed (``evidence.signing``)."""
    signature: str = ""
    format: str = field(default=CUSTODY_FORMAT)

    def to_document(self, *, signed: bool = True) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "format": self.format,
            "evidence_id": self.evidence_id,
            "seq": self.seq,
            "prev": self.prev,
            "type": self.type,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "role": self.role,
            "station": self.station,
            "details": dict(self.details),
            "signer": self.signer,
        }
        if signed:
            doc["signature"] = self.signature
        return doc


def _canonical(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def signed_payload(event: CustodyEvent) -> bytes:
    """What the signature covers: every field but the signature itself, canonically encoded."""
    return b"evidence-pipeline/custody/v1\x00" + _canonical(event.to_document(signed=False))


def encode_event(event: CustodyEvent) -> bytes:
    return _canonical(event.to_document())


def event_hash(encoded: bytes) -> str:
    return hashlib.sha256(encoded).hexdigest()


def new_event(
    previous: bytes | None,
    *,
    evidence_id: str,
    seq: int,
    type: str,
    at: datetime,
    actor: str,
    role: str,
    station: str,
    details: Mapping[str, Any],
    signer: SigningKey,
) -> CustodyEvent:
    """The next event after ``previous`` (its stored bytes), signed."""
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown custody event type {type!r}")
    if at.tzinfo is None:
        raise ValueError("custody times must be timezone-aware")
    unsigned = CustodyEvent(
        evidence_id=require_evidence_id(evidence_id),
        seq=seq,
        prev=None if previous is None else event_hash(previous),
        type=type,
        at=at,
        actor=actor,
        role=role,
        station=station,
        details=dict(details),
        signer=signer.key_id,
    )
    signature = base64.b64encode(signer.sign(signed_payload(unsigned))).decode("ascii")
    return replace(unsigned, signature=signature)


def decode_event(data: bytes) -> CustodyEvent:
    doc = load_record(data, "custody record")
    try:
        if doc.get("format") != CUSTODY_FORMAT:
            raise IntegrityError(f"unsupported custody record format {doc.get('format')!r}")
        return CustodyEvent(
            evidence_id=str(doc["evidence_id"]),
            seq=int(doc["seq"]),
            prev=doc["prev"],
            type=str(doc["type"]),
            at=datetime.fromisoformat(doc["at"]),
            actor=str(doc["actor"]),
            role=str(doc["role"]),
            station=str(doc["station"]),
            details=dict(doc["details"]),
            signer=str(doc["signer"]),
            signature=str(doc["signature"]),
        )
    except IntegrityError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError) as err:
        raise IntegrityError(f"custody record is damaged or not a custody record: {err}") from err


@dataclass(frozen=True)
class ChainProblem:
    position: int
    message: str


@dataclass(frozen=True)
class LostRace:
    """A later version at a chain position, written by an append that lost the race for it (§6):
    validly signed by a known key, about this item and position, following the same predecessor as
    the record there. The record (the position's first version) is what the chain holds; this
    version adds nothing to it and takes nothing away, so it is no sign of tampering."""

    position: int
    event: CustodyEvent
    in_chain_at: int | None
    """Where the chain holds what this version records: the position its event was appended at
    after losing (its own position: the record itself, written twice; 0 for a second ingest event
    recording the same manifest as the first), or ``None``: its writer stopped before appending it
    again (or is doing so now), and the event is only here."""

    def describe(self) -> str:
        what = f"{self.event.type} event by {self.event.actor} at {self.event.at.isoformat()}"
        if self.in_chain_at is None:
            return (
                f"a second version, signed by {self.event.signer}, lost the race for this position; "
                f"its {what} was not appended again, so it is not in the chain"
            )
        if self.in_chain_at == self.position and self.event.type == "ingest" and self.position == 0:
            return (
                f"a second version, signed by {self.event.signer}, lost the race for this position; "
                "it records the same ingest (manifest and content) as the event here"
            )
        if self.in_chain_at == self.position:
            return "the record was written twice (a write repeated after its answer was lost)"
        return (
            f"a second version, signed by {self.event.signer}, lost the race for this position; "
            f"its {what} is the chain's event {self.in_chain_at}"
        )


@dataclass(frozen=True)
class ChainVerification:
    evidence_id: str
    events: tuple[CustodyEvent, ...]
    problems: tuple[ChainProblem, ...]
    signers: tuple[str, ...]
    """Key ids whose signatures were checked and held."""
    lost_races: tuple[LostRace, ...] = ()
    """Later versions at a position that are lost races (``judge_later_versions``), not problems."""

    @property
    def intact(self) -> bool:
        return not self.problems

    def raise_if_broken(self) -> None:
        if self.problems:
            listed = "; ".join(f"event {p.position}: {p.message}" for p in self.problems[:5])
            raise IntegrityError(f"custody chain of {self.evidence_id} is broken: {listed}")


def check_recorded_manifest(
    evidence_id: str, ingest: CustodyEvent, *, manifest_sha256: str, content_sha256: str
) -> None:
    """Refuse a manifest other than the one the item's ingest event recorded.

    The manifest says which stored objects hold the item and how they were encrypted, so whoever can
    replace it (a second version, an edited file) could make a read return other bytes as "verified".
    The ingest event is signed and chained: its hashes are what the manifest must still match.
    """
    recorded = ingest.details
    if ingest.type != "ingest" or ingest.seq != 0:
        raise IntegrityError(f"{evidence_id}: the chain does not start with its ingest event")
    if recorded.get("manifest_sha256") != manifest_sha256 or recorded.get("content_sha256") != content_sha256:
        raise IntegrityError(
            f"{evidence_id}: the stored manifest is not the one its ingest custody event recorded"
        )


def verify_chain(
    evidence_id: str,
    stored: Sequence[tuple[int, bytes]],
    public_keys: Mapping[str, VerifyingKey],
    *,
    expected_length: int | None = None,
) -> ChainVerification:
    """Check a chain given as ``(position from the object key, stored bytes)`` pairs.

    Names every event that is missing (a gap), out of place (its own ``seq`` differs from where it
    is stored), altered (signature fails), not following its predecessor (``prev`` mismatch), signed
    by an unknown key, or about another item.
    """
    problems: list[ChainProblem] = []
    events: list[CustodyEvent] = []
    signers: set[str] = set()
    ordered = sorted(stored, key=lambda pair: pair[0])
    previous_bytes: bytes | None = None
    expected_position = 0
    for position, data in ordered:
        while expected_position < position:
            problems.append(ChainProblem(expected_position, "missing: the record was removed"))
            expected_position += 1
            previous_bytes = None  # what followed a gap cannot be checked against it
        expected_position = position + 1
        try:
            event = decode_event(data)
        except IntegrityError as err:
            problems.append(ChainProblem(position, str(err)))
            previous_bytes = data
            continue
        events.append(event)
        if event.evidence_id != evidence_id:
            problems.append(ChainProblem(position, f"belongs to another item ({event.evidence_id})"))
        if event.seq != position:
            problems.append(ChainProblem(position, f"is event {event.seq} stored out of place: reordered"))
        if position == 0:
            if event.prev is not None:
                problems.append(ChainProblem(position, "first event names a predecessor"))
            if event.type != "ingest":
                problems.append(ChainProblem(position, f"first event is {event.type!r}, not the ingest"))
        elif previous_bytes is not None and event.prev != event_hash(previous_bytes):
            problems.append(
                ChainProblem(position, "does not follow the event before it: altered, removed or reordered")
            )
        if event.signer not in public_keys:
            problems.append(ChainProblem(position, f"signed by unknown key {event.signer!r}"))
        elif _signature_holds(event, public_keys):
            signers.add(event.signer)
        else:
            problems.append(ChainProblem(position, "signature does not match: the record was altered"))
        previous_bytes = data
    if not ordered:
        problems.append(ChainProblem(0, "no custody records at all"))
    if expected_length is not None and expected_length > expected_position:
        problems.append(
            ChainProblem(
                expected_position, f"chain ends early: {expected_length} events were recorded before"
            )
        )
    return ChainVerification(evidence_id, tuple(events), tuple(problems), tuple(sorted(signers)))


def _signature_holds(event: CustodyEvent, public_keys: Mapping[str, VerifyingKey]) -> bool:
    key = public_keys.get(event.signer)
    if key is None:
        return False
    try:
        signature = base64.b64decode(event.signature, validate=True)
    except ValueError:
        return False
    return key.verify(signature, signed_payload(event))


def _what_happened(event: CustodyEvent) -> dict[str, Any]:
    """An event without its place in the chain: what an append that lost a race writes again."""
    doc = event.to_document(signed=False)
    del doc["seq"], doc["prev"]
    return doc


def judge_later_versions(
    evidence_id: str,
    records: Sequence[tuple[int, bytes]],
    later: Mapping[int, Sequence[bytes | None]],
    public_keys: Mapping[str, VerifyingKey],
) -> tuple[tuple[ChainProblem, ...], tuple[LostRace, ...]]:
    """Versions written after a position's record (``later``: their bytes in write order, ``None``
    for a delete marker) judged against the chain (``records``: each position's first version).

    On a server that honours If-None-Match there are none. On one that ignores it (Ceph RGW), two
    appends racing for one position both write a version there, and the one whose version came
    second appends its event again further on (``storage.custody``). Such a version is a lost race,
    not tampering, exactly when it is validly signed by a known key, is about this item and this
    position, follows the same predecessor as the record, and either its event (all but position,
    predecessor and signature: type, time, actor, details, signer) is in the chain further on, or it
    is the record's own bytes again, or, at position 0, an ingest event recording the same manifest and content as the
    record. Anything else (a delete marker, bytes that are not a record, an altered or unknown
    signature, another predecessor) is a problem: a record was overwritten. A lost race whose event
    is not in the chain is reported (``LostRace.in_chain_at`` is None) but not a problem: it changes
    nothing the chain says, and whoever could sign it could as well have appended it.
    """
    recorded = dict(records)
    chain: list[tuple[int, CustodyEvent]] = []
    for position, record in sorted(records, key=lambda pair: pair[0]):
        try:
            chain.append((position, decode_event(record)))
        except IntegrityError:
            continue  # verify_chain names it
    events = dict(chain)
    problems: list[ChainProblem] = []
    races: list[LostRace] = []
    for position in sorted(later):
        versions = later[position]
        reasons: list[str] = []
        seen: set[bytes] = set()
        for version in versions:
            if version is not None and version in seen:
                continue  # the same losing write stored twice: one race
            verdict = _judge_one(
                evidence_id, position, version, recorded.get(position), events, chain, public_keys
            )
            if isinstance(verdict, LostRace):
                races.append(verdict)
                if version is not None:
                    seen.add(version)
            else:
                reasons.append(verdict)
        if reasons:
            problems.append(
                ChainProblem(
                    position,
                    f"has {len(versions) + 1} versions: a record was overwritten "
                    f"({'; '.join(dict.fromkeys(reasons))})",
                )
            )
    return tuple(problems), tuple(races)


def _judge_one(
    evidence_id: str,
    position: int,
    data: bytes | None,
    record: bytes | None,
    events: Mapping[int, CustodyEvent],
    chain: Sequence[tuple[int, CustodyEvent]],
    public_keys: Mapping[str, VerifyingKey],
) -> LostRace | str:
    """One later version: the lost race it is, or why it is not one."""
    if data is None:
        return "a delete marker over it"
    try:
        event = decode_event(data)
    except IntegrityError:
        return "a later version that is not a custody record"
    record_event = events.get(position)
    if record is None or record_event is None:
        return "a later version over a record that cannot be read"
    if event.evidence_id != evidence_id or event.seq != position:
        return f"a later version that is event {event.seq} of {event.evidence_id}"
    if event.signer not in public_keys:
        return f"a later version signed by unknown key {event.signer!r}"
    if not _signature_holds(event, public_keys):
        return "a later version whose signature does not match: altered"
    if event.prev != record_event.prev:
        return "a later version that follows another event"
    if data == record:
        return LostRace(position, event, position)
    if position == 0:
        same_ingest = event.type == record_event.type == "ingest" and all(
            event.details.get(name) == record_event.details.get(name)
            for name in ("manifest_sha256", "content_sha256")
        )
        if same_ingest:
            return LostRace(position, event, 0)
        return "a later version at position 0 that is not the same ingest"
    # An append that loses again and again leaves one lost version per position it tried, all of
    # the same event, and one record of it where it finally won: that record vouches for them all.
    happened = _what_happened(event)
    for later_position, chained in chain:
        if later_position > position and _what_happened(chained) == happened:
            return LostRace(position, event, later_position)
    return LostRace(position, event, None)
