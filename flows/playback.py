"""Evidence in a browser: playing an item (one HTTP Range request after another), downloading its
original, and its thumbnail. The checks and custody records around ``Vault.read_range``,
``Vault.read_original`` and ``Vault.thumbnail`` for the portal (``web/routers/content.py``), as
``flows/retrieval.py`` has them for the CLI.

Every function checks the person's role itself, verifies the item (:func:`verify_for_release`) and
records the access before it returns anything that yields plaintext. What a browser does differs from
the CLI in two ways, and both are decided here:

- **A video is played in many requests.** A player asks for ``bytes=0-``, then for the part at each
  seek, often two requests at once. One ``play`` event per item per session says what happened; one
  per request would bury the chain in noise. The session notes the first (``first_in_session``,
  passed in: one row per session, item and action), and the item's own chain decides: a request
  whose session has no ``play`` event in the chain records one, so a session whose first recording
  failed (nothing was sent) gets it on its next request. Requests of one session for one item decide
  in turn; only two service processes racing for a session's first play could both record, and a
  duplicate event is harmless where a read with none is not.
- **Seeking must be quick** (a first byte within 300 ms on a 1 GiB item). The chain verification reads
  every record of the chain, and each play adds one, so its cost grows with the item's history: on
  S3 a few requests per event. A verification is therefore kept for :data:`VERIFIED_FOR_SECONDS`
  per session and item, and renewed in the background before it runs out
  (:class:`RecentVerifications`); see its docstring for why that is safe.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from evidence.access import Action, Actor
from evidence.custody import CustodyEvent
from evidence.errors import IntegrityError, NotFound
from evidence.ids import require_evidence_id
from flows.retrieval import ByteRange, clean_purpose, known_length, record_access, verify_for_release
from storage.vault import Vault, VerifiedItem

if TYPE_CHECKING:
    from storage.catalog import Catalog

log = logging.getLogger(__name__)

VERIFIED_FOR_SECONDS = 30.0
"""How long one session may rely on a verification of one item between range requests."""
RENEW_AFTER_SECONDS = 20.0
"""From this age a verification in use is renewed in the background, before it runs out."""
RENEWERS = 2
"""Renewals run at once, at most: they are background work beside the streams they keep going."""
MAX_REMEMBERED = 10_000
"""Verifications kept at most; the oldest go first (a verification is only a time saving)."""


@dataclass(frozen=True)
class Viewer:
    """The person reading through the portal, as the records name them."""

    actor: Actor
    session: str
    """The session's public id: one ``play`` per item per session."""
    details: Mapping[str, str]
    """What every event says about who and where (``web.people.Person.access_details``)."""


@dataclass
class RecentVerifications:
    """Verifications of an item for one session, relied on for :data:`VERIFIED_FOR_SECONDS` and
    renewed in the background from :data:`RENEW_AFTER_SECONDS`, so a player streaming for minutes is
    never held up by a verification (on S3 one costs a few milliseconds per event of the chain).

    Why relying on one for half a minute releases nothing a fresh one would refuse:

    - every byte is still authenticated as it is decrypted: each segment by AES-GCM under the item's
      data key, which comes from the manifest this verification checked against the chain's ingest
      event; a changed content object fails there, whatever was kept;
    - manifests and custody records are create-once objects under Object Lock. The only change a
      fresh verification could find within the half minute is someone with storage rights removing
      or overwriting chain records; that is found by the next verification (its renewal, or at the
      latest the next request 30 s after it), by every other session, by any export or download
      (those always verify afresh), and the append of any record after it refuses a chain found
      shorter. A renewal that fails drops the verification: the next request verifies in line and
      is refused with the error;
    - it is per session: a new session, a new person, always verifies before its first byte;
    - nothing is ever released on a verification older than :data:`VERIFIED_FOR_SECONDS`: a renewal
      not finished by then is waited for, in line, like a first verification.
    """

    seconds: float = VERIFIED_FOR_SECONDS
    renew_after: float = RENEW_AFTER_SECONDS
    clock: Callable[[], float] = time.monotonic
    _verified: dict[tuple[str, str], tuple[float, VerifiedItem]] = field(default_factory=dict)
    _guard: threading.Lock = field(default_factory=threading.Lock)
    _locks: dict[tuple[str, str], threading.Lock] = field(default_factory=dict)
    _renewing: dict[tuple[str, str], Future[None]] = field(default_factory=dict)
    _renewer: ThreadPoolExecutor | None = None

    def get(self, session: str, evidence_id: str) -> VerifiedItem | None:
        """A verification younger than :attr:`seconds`, or None."""
        found = self._entry(session, evidence_id)
        return found[1] if found else None

    def _entry(self, session: str, evidence_id: str) -> tuple[float, VerifiedItem] | None:
        with self._guard:
            found = self._verified.get((session, evidence_id))
            if found is not None and self.clock() - found[0] >= self.seconds:
                del self._verified[(session, evidence_id)]
                return None
            return found

    def keep(self, session: str, evidence_id: str, item: VerifiedItem, *, verified_at: float) -> None:
        with self._guard:
            now = self.clock()
            if len(self._verified) >= MAX_REMEMBERED:
                for key in [k for k, (at, _) in self._verified.items() if now - at >= self.seconds]:
                    del self._verified[key]
                while len(self._verified) >= MAX_REMEMBERED:
                    del self._verified[next(iter(self._verified))]
            self._verified[(session, evidence_id)] = (verified_at, item)

    def with_event(
        self, session: str, evidence_id: str, item: VerifiedItem, event: CustodyEvent
    ) -> VerifiedItem:
        """``item`` with an event this session just appended, kept as verified when ``item`` was: an
        append is not a verification, and must not extend the time one is relied on."""
        extended = VerifiedItem(item.manifest, item.manifest_sha256, (*item.events, event))
        with self._guard:
            found = self._verified.get((session, evidence_id))
            if found is not None and found[1] is item:
                self._verified[(session, evidence_id)] = (found[0], extended)
        return extended

    def renew_if_due(self, session: str, evidence_id: str, verify: Callable[[], VerifiedItem]) -> None:
        """Start a renewal in the background if the verification is :attr:`renew_after` old and
        none is running; the request that noticed goes on with the current one."""
        key = (session, evidence_id)
        with self._guard:
            found = self._verified.get(key)
            if found is None or self.clock() - found[0] < self.renew_after or key in self._renewing:
                return
            if self._renewer is None:
                self._renewer = ThreadPoolExecutor(
                    max_workers=RENEWERS, thread_name_prefix="renew-verification"
                )
            self._renewing[key] = self._renewer.submit(self._renew, key, verify)

    def _renew(self, key: tuple[str, str], verify: Callable[[], VerifiedItem]) -> None:
        started = self.clock()
        try:
            item = verify()
        except Exception:
            log.warning(
                "renewing a verification failed: the session's next request verifies in line",
                extra={"evidence_id": key[1], "session": key[0]},
                exc_info=True,
            )
            with self._guard:
                self._verified.pop(key, None)
        else:
            with self._guard:
                found = self._verified.get(key)
                # an event this session appended meanwhile may be missing from what was read
                if found is None or len(found[1].events) <= len(item.events):
                    self._verified[key] = (started, item)
        finally:
            with self._guard:
                self._renewing.pop(key, None)

    def wait_for_renewals(self) -> None:
        """Block until every renewal started so far has finished (tests, shutdown)."""
        with self._guard:
            running = list(self._renewing.values())
        for renewal in running:
            renewal.result()

    @contextmanager
    def one_at_a_time(self, session: str, evidence_id: str) -> Iterator[None]:
        """Requests of one session for one item decide and record in turn: a player's two opening
        requests must not both find the item unplayed and both record a ``play``."""
        with self._guard:
            if len(self._locks) >= MAX_REMEMBERED:
                for key in [key for key, held in self._locks.items() if not held.locked()]:
                    del self._locks[key]
            lock = self._locks.setdefault((session, evidence_id), threading.Lock())
        with lock:
            yield


def verified_for_session(
    vault: Vault,
    catalog: Catalog | None,
    recent: RecentVerifications,
    evidence_id: str,
    viewer: Viewer,
) -> VerifiedItem:
    """The item verified for this session: a verification from the last :data:`VERIFIED_FOR_SECONDS`
    (renewed in the background once :data:`RENEW_AFTER_SECONDS` old), or a fresh one (chain and
    manifest, :func:`verify_for_release`)."""

    def verify() -> VerifiedItem:
        return verify_for_release(vault, evidence_id, expected_length=known_length(catalog, evidence_id))

    item = recent.get(viewer.session, evidence_id)
    if item is None:
        started = recent.clock()
        item = verify()
        recent.keep(viewer.session, evidence_id, item, verified_at=started)
    else:
        recent.renew_if_due(viewer.session, evidence_id, verify)
    return item


def recorded_in_session(events: tuple[CustodyEvent, ...], action: str, session: str) -> bool:
    return any(
        event.type == "access"
        and event.details.get("action") == action
        and event.details.get("session") == session
        and event.details.get("via") == "portal"
        for event in events
    )


def _once_per_session(
    vault: Vault,
    catalog: Catalog | None,
    recent: RecentVerifications,
    evidence_id: str,
    viewer: Viewer,
    *,
    action: str,
    role_action: Action,
    purpose: str,
    first_in_session: Callable[[], bool],
) -> VerifiedItem:
    require_evidence_id(evidence_id)
    viewer.actor.require(role_action)
    stated = clean_purpose(purpose, required=True, name="the purpose field")
    with recent.one_at_a_time(viewer.session, evidence_id):
        item = verified_for_session(vault, catalog, recent, evidence_id, viewer)
        # The chain this session verified (with its own appends) says whether the session's event is
        # there; only when it is not is the session store asked and the event written, so a seek
        # costs no write. A session that noted the item but whose record then failed (nothing was
        # sent) has no event in the chain, and gets it now.
        if not recorded_in_session(item.events, action, viewer.session):
            if not first_in_session():
                log.warning(
                    "the session noted the item but its chain has no %s event for it: recording it now",
                    action,
                    extra={"evidence_id": evidence_id, "session": viewer.session},
                )
            event = record_access(
                vault,
                catalog,
                item,
                "access",
                viewer.actor,
                {"action": action, "purpose": stated, **viewer.details},
            )
            item = recent.with_event(viewer.session, evidence_id, item, event)
    return item


# -- playing ------------------------------------------------------------------------------------


def start_playing(
    vault: Vault,
    catalog: Catalog | None,
    recent: RecentVerifications,
    evidence_id: str,
    viewer: Viewer,
    *,
    purpose: str,
    first_in_session: Callable[[], bool],
) -> VerifiedItem:
    """Check a request for an item's bytes and record the session's ``play`` if it is the first;
    then :func:`played_bytes` may release them."""
    return _once_per_session(
        vault,
        catalog,
        recent,
        evidence_id,
        viewer,
        action="play",
        role_action="get",
        purpose=purpose,
        first_in_session=first_in_session,
    )


def played_bytes(vault: Vault, item: VerifiedItem, part: ByteRange) -> Iterator[bytes]:
    """Plaintext ``[start, stop)`` of a verified, recorded item: only the segments that hold it are
    fetched, each authenticated (AES-GCM) before any of its bytes are yielded."""
    if part.length == 0:
        return iter(())
    return vault.read_range(item.manifest, part.start, part.stop)


def check_viewer(
    vault: Vault, catalog: Catalog | None, recent: RecentVerifications, evidence_id: str, viewer: Viewer
) -> VerifiedItem:
    """What a HEAD request needs: the role and a verified item; no plaintext, so nothing recorded."""
    require_evidence_id(evidence_id)
    viewer.actor.require("get")
    return verified_for_session(vault, catalog, recent, evidence_id, viewer)


# -- downloading --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Download:
    item: VerifiedItem
    original_name: bytes
    """The name on the device, as its exact bytes: the caller makes a safe file name of it."""
    chunks: Iterator[bytes]
    """The whole original; see :func:`download_original` for what it holds back."""


def download_original(
    vault: Vault,
    catalog: Catalog | None,
    evidence_id: str,
    viewer: Viewer,
    *,
    purpose: str,
) -> Download:
    """Record a ``download`` and return the whole original to stream.

    A browser saves whatever arrives, and the response's length is declared up front, so the only
    way to keep a wrong copy from looking complete is never to send its last bytes: each decrypted
    piece is sent only once the next one is in hand, and the last only after the SHA-256 of the
    whole matched the one taken at ingest. On a mismatch the iterator raises instead: the server
    drops the connection, the client holds fewer bytes than the declared length (a failed download),
    and the failure is logged and recorded in the item's chain.

    Always verified afresh: a download is one request, and the copy may go to court."""
    require_evidence_id(evidence_id)
    viewer.actor.require("get")
    stated = clean_purpose(purpose, required=True, name="the purpose field")
    item = verify_for_release(vault, evidence_id, expected_length=known_length(catalog, evidence_id))
    name = base64.b64decode(vault.details(item.manifest).original_name_b64)
    event = record_access(
        vault,
        catalog,
        item,
        "access",
        viewer.actor,
        {"action": "download", "purpose": stated, **viewer.details},
    )
    recorded = VerifiedItem(item.manifest, item.manifest_sha256, (*item.events, event))
    chunks = _held_back(vault, catalog, recorded, viewer)
    if item.manifest.size == 0:
        chunks = iter(list(chunks))  # nothing to hold back: check the (empty) whole before answering
    return Download(recorded, name, chunks)


def _held_back(vault: Vault, catalog: Catalog | None, item: VerifiedItem, viewer: Viewer) -> Iterator[bytes]:
    pending: bytes | None = None
    try:
        for piece in vault.read_original(item.manifest):
            if pending is not None:
                yield pending
            pending = piece
    except IntegrityError as failure:
        _note_aborted(vault, catalog, item, viewer, failure)
        raise
    if pending is not None:
        yield pending


def _note_aborted(
    vault: Vault, catalog: Catalog | None, item: VerifiedItem, viewer: Viewer, failure: IntegrityError
) -> None:
    evidence_id = item.manifest.evidence_id
    log.error(
        "download aborted: the decrypted original failed its check",
        extra={"evidence_id": evidence_id, "session": viewer.session, "problem": str(failure)},
    )
    try:
        record_access(
            vault,
            catalog,
            item,
            "access",
            viewer.actor,
            {"action": "download-aborted", "problem": str(failure), **viewer.details},
        )
    except Exception:  # the failure itself is what matters; the log line above has it
        log.exception("could not record the aborted download", extra={"evidence_id": evidence_id})


# -- thumbnails ---------------------------------------------------------------------------------


def item_thumbnail(
    vault: Vault,
    catalog: Catalog | None,
    recent: RecentVerifications,
    evidence_id: str,
    viewer: Viewer,
    *,
    purpose: str,
    first_in_session: Callable[[], bool],
) -> bytes:
    """The decrypted preview JPEG, with one ``thumbs`` event per item per session. ``NotFound`` for an
    item stored without one (checked before anything is recorded)."""
    require_evidence_id(evidence_id)
    viewer.actor.require("thumbs")
    item = verified_for_session(vault, catalog, recent, evidence_id, viewer)
    if item.manifest.thumbnail is None:
        raise NotFound(f"{evidence_id} has no thumbnail (it was stored without a preview)")
    item = _once_per_session(
        vault,
        catalog,
        recent,
        evidence_id,
        viewer,
        action="thumbs",
        role_action="thumbs",
        purpose=purpose,
        first_in_session=first_in_session,
    )
    preview = vault.thumbnail(item.manifest)
    assert preview is not None
    return preview
