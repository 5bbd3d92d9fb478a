"""Fault injection for tests: kill a station at any store call, make S3 fail like a real network, and
count what a vault holds afterwards.

- :class:`KillingStore` wraps the vault's object store and raises :class:`Killed` (a ``BaseException``,
  like the SIGKILL it stands for) at the n-th *kill point*: before and after every store call and every
  call on an upload. Once killed, every later call dies too, so no clean-up runs, as in a dead process.
- :class:`S3Faults` takes moto's place in a boto3 client's ``before-send`` event, so a seeded share of
  requests fail with S3's throttling, 5xx, timeouts and resets. botocore's real retries and the S3
  store's real error translation handle them. "After processing" faults let moto do the work and then
  lose the answer, the case where a retry repeats a request that already succeeded.
- :func:`take_census` checks the vault against the originals: each stored once, readable, verified,
  no duplicate item, no upload left open, every unreferenced object known to the journal.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import os
import random
import sqlite3
import stat
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from evidence import layout
from evidence.device import display_path, scan_device
from evidence.errors import EvidenceError, NotFound
from flows.ingest import (
    IngestReport,
    build_report,
    failed_outcome,
    ingest_file,
    resolve_device,
    skipped_outcomes,
)
from flows.journal import IngestJournal
from storage.base import IncompleteUpload, ObjectInfo, ObjectStore, ObjectUpload, Retention
from storage.vault import Vault
from tests.station import Station

DEAD_OWNER = "999999999:0"
"""A journal owner no process can be: the pid is above every kernel's pid_max."""


# -- running an ingest the way the flow does -------------------------------------------------------


def ingest_like_the_flow(
    station: Station, device: Path, *, wipe: bool, serial: str = "BWC-FAULT01"
) -> IngestReport:
    """``flows.ingest_flow.ingest_device`` without Prefect: recover, scan, then each file on its own,
    an error reported as that file "failed" while the rest of the device goes on. (The flow also
    retries a file a few times on ``StorageUnavailable``; without those retries more files fail here,
    which only makes the test stricter.)"""
    context = resolve_device(station.settings, device, serial=serial, officer="PC-1", wipe=wipe)
    recovery = station.journal.recover(station.vault.store)
    scan = scan_device(device, settle_seconds=station.settings.settle_seconds)
    outcomes = skipped_outcomes(scan)
    for item in scan.files:
        try:
            outcomes.append(ingest_file(station.vault, item, context))
        except Exception as err:
            outcomes.append(failed_outcome(item, err))
    return build_report(
        context, outcomes, recovered_uploads=recovery.aborted, orphaned_objects=station.journal.orphans()
    )


def restart(station: Station) -> Station:
    """The same station after its process was restarted: new vault and journal objects over the same
    data directory (and a new S3 client, built by ``open_store``)."""
    with contextlib.suppress(Exception):
        station.journal.close()
    journal = IngestJournal.for_station(station.settings.journal_dir)
    return dataclasses.replace(station, vault=Vault.open(station.settings, journal=journal), journal=journal)


def bury(station: Station) -> None:
    """Mark every unsettled upload in the journal as owned by a dead process, as after a real kill: an
    in-process "kill" leaves this process alive, and recovery must treat the killed run's uploads as
    another, dead process's, never as in flight."""
    with contextlib.closing(sqlite3.connect(station.settings.journal_dir / "ingest.sqlite")) as db, db:
        db.execute("update uploads set owner = ? where state != 'settled'", (DEAD_OWNER,))


def install_store(vault: Vault, store: ObjectStore) -> None:
    """Make ``store`` the one the vault and its custody log write through. Fails if the vault keeps its
    original store anywhere else, where writes would bypass the wrapper unseen."""
    original = vault.store
    vault.store = store
    vault.custody.store = store
    holders = [f"vault.{name}" for name, value in vars(vault).items() if value is original]
    holders += [f"vault.custody.{name}" for name, value in vars(vault.custody).items() if value is original]
    assert not holders, f"the vault also holds its store in {holders}: wrap those too"


# -- killing a station at any store call ------------------------------------------------------------


class Killed(BaseException):
    """The station process died here (a simulated SIGKILL). Not an ``Exception``: nothing on the way
    out may treat it as an ordinary failure and tidy up."""


def _kind_of_key(key: str) -> str:
    # keys are random or keyed ids; what kind of object a call touches is what makes a point readable
    return key.split("/", 1)[0] if "/" in key else key


class KillingStore:
    """An object store that kills its process at kill point ``kill_at`` (1-based) or at the first point
    labelled ``kill_on`` (such as ``"after upload.commit"``); with neither it only counts the points
    of a clean run."""

    def __init__(self, store: ObjectStore, kill_at: int | None = None, *, kill_on: str | None = None) -> None:
        self._store = store
        self.url = store.url
        self.kill_at = kill_at
        self.kill_on = kill_on
        self.points: list[str] = []
        self.killed_at: str | None = None

    def point(self, label: str) -> None:
        if self.killed_at is not None:
            raise Killed(f"the process is dead (killed {self.killed_at})")
        self.points.append(label)
        if label == self.kill_on or (self.kill_at is not None and len(self.points) == self.kill_at):
            self.kill_at = len(self.points)
            self.killed_at = f"#{self.kill_at} {label}"
            raise Killed(self.killed_at)

    def around(self, label: str, call: Callable[[], Any]) -> Any:
        self.point(f"before {label}")
        result = call()
        if isinstance(result, Iterator):
            return self._drained(result, label)
        self.point(f"after {label}")
        return result

    def _drained(self, results: Iterator[Any], label: str) -> Iterator[Any]:
        # a lazy result is "returned" once the caller has read all of it
        yield from results
        self.point(f"after {label}")

    def check(self) -> list[str]:
        return self.around("check", self._store.check)  # type: ignore[no-any-return]

    def initialise(self) -> list[str]:
        return self.around("initialise", self._store.initialise)  # type: ignore[no-any-return]

    def begin_upload(
        self, key: str, *, retention: Retention | None, content_type: str = "application/octet-stream"
    ) -> ObjectUpload:
        upload = self.around(
            f"begin_upload {_kind_of_key(key)}",
            lambda: self._store.begin_upload(key, retention=retention, content_type=content_type),
        )
        return _KillingUpload(self, upload)

    def put_bytes(
        self, key: str, data: bytes, *, retention: Retention | None, if_absent: bool = False
    ) -> ObjectInfo:
        return self.around(  # type: ignore[no-any-return]
            f"put_bytes {_kind_of_key(key)}",
            lambda: self._store.put_bytes(key, data, retention=retention, if_absent=if_absent),
        )

    def get(
        self, key: str, *, version_id: str | None = None, start: int = 0, end: int | None = None
    ) -> Iterator[bytes]:
        return self.around(  # type: ignore[no-any-return]
            f"get {_kind_of_key(key)}",
            lambda: self._store.get(key, version_id=version_id, start=start, end=end),
        )

    def head(self, key: str, *, version_id: str | None = None) -> ObjectInfo:
        return self.around(  # type: ignore[no-any-return]
            f"head {_kind_of_key(key)}", lambda: self._store.head(key, version_id=version_id)
        )

    def first_version(self, key: str) -> str:
        return self.around(  # type: ignore[no-any-return]
            f"first_version {_kind_of_key(key)}", lambda: self._store.first_version(key)
        )

    def exists(self, key: str) -> bool:
        return self.around(f"exists {_kind_of_key(key)}", lambda: self._store.exists(key))  # type: ignore[no-any-return]

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        return self.around(f"list {_kind_of_key(prefix)}", lambda: self._store.list(prefix))  # type: ignore[no-any-return]

    def list_versions(self, prefix: str) -> Iterator[ObjectInfo]:
        return self.around(  # type: ignore[no-any-return]
            f"list_versions {_kind_of_key(prefix)}", lambda: self._store.list_versions(prefix)
        )

    def delete_version(self, key: str, version_id: str, *, bypass_governance: bool = False) -> None:
        self.around(
            f"delete_version {_kind_of_key(key)}",
            lambda: self._store.delete_version(key, version_id, bypass_governance=bypass_governance),
        )

    def extend_retention(self, key: str, version_id: str, retention: Retention) -> None:
        self.around(
            f"extend_retention {_kind_of_key(key)}",
            lambda: self._store.extend_retention(key, version_id, retention),
        )

    def get_retention(self, key: str, version_id: str) -> Retention | None:
        return self.around(  # type: ignore[no-any-return]
            f"get_retention {_kind_of_key(key)}", lambda: self._store.get_retention(key, version_id)
        )

    def get_legal_hold(self, key: str, version_id: str) -> bool:
        return self.around(  # type: ignore[no-any-return]
            f"get_legal_hold {_kind_of_key(key)}", lambda: self._store.get_legal_hold(key, version_id)
        )

    def set_legal_hold(self, key: str, version_id: str, on: bool) -> None:
        self.around(
            f"set_legal_hold {_kind_of_key(key)}", lambda: self._store.set_legal_hold(key, version_id, on)
        )

    def list_incomplete_uploads(self, prefix: str) -> Iterator[IncompleteUpload]:
        return self.around(  # type: ignore[no-any-return]
            "list_incomplete_uploads", lambda: self._store.list_incomplete_uploads(prefix)
        )

    def abort_incomplete_upload(self, upload: IncompleteUpload) -> None:
        self.around("abort_incomplete_upload", lambda: self._store.abort_incomplete_upload(upload))


class _KillingUpload:
    def __init__(self, store: KillingStore, upload: ObjectUpload) -> None:
        self._killer = store
        self._upload = upload
        self.key = upload.key

    @property
    def checksum_is_sha256(self) -> bool:
        return self._upload.checksum_is_sha256

    @property
    def bytes_written(self) -> int:
        return self._upload.bytes_written

    @property
    def expected_checksum(self) -> str | None:
        return self._upload.expected_checksum

    def write(self, data: bytes) -> None:
        self._killer.around("upload.write", lambda: self._upload.write(data))

    def commit(self) -> ObjectInfo:
        return self._killer.around("upload.commit", self._upload.commit)  # type: ignore[no-any-return]

    def abort(self) -> None:
        self._killer.around("upload.abort", self._upload.abort)


class HookedStore(KillingStore):
    """Runs ``hook(label)`` at every kill point instead of killing: to change the world (a device file)
    at an exact moment of the write order."""

    def __init__(self, store: ObjectStore, hook: Callable[[str], None]) -> None:
        super().__init__(store)
        self._hook = hook

    def point(self, label: str) -> None:
        self.points.append(label)
        self._hook(label)


# -- S3 failing like a real network -------------------------------------------------------------------


class _RawBody(io.BytesIO):
    def stream(self, **_: Any) -> Iterator[bytes]:
        while chunk := self.read(64 * 1024):
            yield chunk


def _error_response(request: Any, status: int, code: str, message: str) -> Any:
    from botocore.awsrequest import AWSResponse

    body = (
        f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message>'
        "<RequestId>FAULT0INJECTED0</RequestId></Error>"
    ).encode()
    headers = {"Content-Type": "application/xml", "x-amz-request-id": "FAULT0INJECTED0"}
    return AWSResponse(request.url, status, headers, _RawBody(b"" if request.method == "HEAD" else body))


def _raise(error: type[Exception], **fields: Any) -> Callable[[Any, Any], Any]:
    def strike(request: Any, answer: Any) -> Any:
        raise error(endpoint_url=request.url, **fields)

    return strike


def _respond(status: int, code: str, message: str) -> Callable[[Any, Any], Any]:
    return lambda request, answer: _error_response(request, status, code, message)


def _cut_short(request: Any, answer: Any) -> Any:
    """The real answer, its body cut off halfway (a connection dropped while streaming)."""
    from botocore.awsrequest import AWSResponse

    if answer is None or answer.status_code >= 300:
        return answer
    body = b"".join(answer.raw.stream())
    return AWSResponse(answer.url, answer.status_code, dict(answer.headers), _RawBody(body[: len(body) // 2]))


@dataclass(frozen=True)
class FaultKind:
    name: str
    after_processing: bool
    """The store did the work and only the answer was lost (a retry repeats a request that succeeded)."""
    strike: Callable[[Any, Any], Any]
    """(request, the store's answer if it processed the request) -> what the client gets, or raises."""


def fault_kinds() -> dict[str, FaultKind]:
    from botocore.exceptions import (
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        ReadTimeoutError,
    )

    kinds = [
        FaultKind("throttled", False, _respond(503, "SlowDown", "Please reduce your request rate.")),
        FaultKind(
            "internal-error", False, _respond(500, "InternalError", "We encountered an internal error.")
        ),
        FaultKind(
            "unavailable", False, _respond(503, "ServiceUnavailable", "Service is unable to handle request.")
        ),
        FaultKind("connect-timeout", False, _raise(ConnectTimeoutError)),
        FaultKind("unreachable", False, _raise(EndpointConnectionError)),
        FaultKind("reset", False, _raise(ConnectionClosedError)),
        FaultKind("read-timeout-after-processing", True, _raise(ReadTimeoutError)),
        FaultKind("reset-after-processing", True, _raise(ConnectionClosedError)),
        FaultKind(
            "internal-error-after-processing",
            True,
            _respond(500, "InternalError", "We encountered an internal error."),
        ),
        FaultKind("body-cut-short", True, _cut_short),
    ]
    return {kind.name: kind for kind in kinds}


REJECTED_KINDS = ("throttled", "internal-error", "unavailable", "connect-timeout", "unreachable", "reset")
"""Faults where the request never took effect."""
ALL_KINDS = (
    *REJECTED_KINDS,
    "read-timeout-after-processing",
    "reset-after-processing",
    "internal-error-after-processing",
)
"""Those, and answers lost after the store did the work. (``body-cut-short``, a download dropped
midway, is chosen on its own: it only means something for reads.)"""


class S3Faults:
    """A seeded share of S3 requests fail. Whether a request fails depends only on the seed, the
    operation, the part number and how many such requests came before, never on thread timing, so a
    run is reproducible although parts go up in parallel."""

    def __init__(
        self,
        *,
        rate: float,
        seed: int,
        kinds: Iterable[str] = REJECTED_KINDS,
        operations: Iterable[str] | None = None,
        path_contains: str = "",
        limit: int | None = None,
    ) -> None:
        """``operations`` (S3 API names) and ``path_contains`` (part of the request path, such as
        ``"/custody/"``) narrow which requests may fail; ``limit`` stops after that many faults."""
        catalogue = fault_kinds()
        self.rate = rate
        self.seed = seed
        self.kinds = tuple(catalogue[name] for name in kinds)
        self.operations = None if operations is None else frozenset(operations)
        self.path_contains = path_contains
        self.limit = limit
        self.armed = False
        self.requests = 0
        self.injected: Counter[str] = Counter()
        self.injected_by_operation: Counter[str] = Counter()
        self.log: list[str] = []
        self._seen: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def attach(self, client: Any) -> Any:
        """Take moto's place in ``client``'s request path (moto in-process, ``mock_aws``)."""
        from moto.core.models import botocore_stubber

        assert botocore_stubber.enabled, "S3Faults wraps moto in-process: use it inside mock_aws()"
        client.meta.events.unregister("before-send", botocore_stubber)
        client.meta.events.register("before-send", self._send)
        return client

    def _choose(self, event_name: str, request: Any) -> FaultKind | None:
        operation = event_name.rsplit(".", 1)[-1]
        part = parse_qs(urlsplit(request.url).query).get("partNumber", [""])[0]
        with self._lock:
            if not self.armed:
                return None
            self.requests += 1
            if self.operations is not None and operation not in self.operations:
                return None
            if self.path_contains not in urlsplit(request.url).path:
                return None
            if self.limit is not None and sum(self.injected.values()) >= self.limit:
                return None
            self._seen[(operation, part)] += 1
            draw = random.Random(f"{self.seed}|{operation}|{part}|{self._seen[(operation, part)]}")
            if draw.random() >= self.rate:
                return None
            kind = draw.choice(self.kinds)
            self.injected[kind.name] += 1
            self.injected_by_operation[operation] += 1
            self.log.append(f"{kind.name} {request.method} {urlsplit(request.url).path}")
            return kind

    def _send(self, event_name: str, request: Any, **kwargs: Any) -> Any:
        from moto.core.models import botocore_stubber

        fault = self._choose(event_name, request)
        if fault is None:
            return botocore_stubber(event_name=event_name, request=request, **kwargs)
        answer = (
            botocore_stubber(event_name=event_name, request=request, **kwargs)
            if fault.after_processing
            else None
        )
        return fault.strike(request, answer)


def no_backoff(monkeypatch: Any) -> None:
    """botocore's retries keep their decisions (what is retryable, how many attempts, the retry quota)
    but do not sleep: throttling backs off for seconds, which tests need not wait for."""
    from botocore.retries import standard

    monkeypatch.setattr(standard.ExponentialBackoff, "delay_amount", lambda self, context: 0.0)


def faulty_clients(monkeypatch: Any, faults: S3Faults, *, attempts: int | None = None) -> None:
    """Every S3 client the project builds from now on (``storage.s3.default_client``) goes through
    ``faults``: the project's own client, or one like it making ``attempts`` attempts in all (botocore's
    ``total_max_attempts``; its ``max_attempts`` counts retries only). Clients are shared (a boto3
    client is thread-safe and costs ~0.2 s to build)."""
    import functools

    import boto3
    import botocore.config

    import storage.s3

    project_client = storage.s3.default_client

    @functools.cache
    def build(concurrency: int = 4) -> Any:
        if attempts is None:
            return faults.attach(project_client(concurrency))
        config = botocore.config.Config(
            retries={"mode": "standard", "total_max_attempts": attempts},
            connect_timeout=10,
            read_timeout=60,
            max_pool_connections=max(10, concurrency + 4),
        )
        return faults.attach(boto3.session.Session().client("s3", config=config))

    monkeypatch.setattr(storage.s3, "default_client", build)


# -- what the vault holds afterwards ----------------------------------------------------------------


def fingerprint_device(device: Path) -> dict[str, str]:
    """SHA-256 of every regular file on a device, by its path as reports show it (links not followed)."""
    found: dict[str, str] = {}
    for directory, _subdirectories, names in os.walk(device):
        for name in names:
            path = Path(directory) / name
            if not stat.S_ISREG(path.lstat().st_mode):
                continue
            digest = hashlib.sha256()
            with path.open("rb") as handle:
                while chunk := handle.read(1024 * 1024):
                    digest.update(chunk)
            found[display_path(str(path.relative_to(device)))] = digest.hexdigest()
    return found


@dataclass(frozen=True)
class Census:
    originals: int
    items: int
    lost: tuple[str, ...]
    """Originals with no item that verifies and reads back byte-identical."""
    duplicate_items: tuple[str, ...]
    """Manifest keys with more than one version, or items no original accounts for."""
    stray_versions: tuple[str, ...]
    """Further versions of a referenced object: the same bytes sent twice."""
    orphans: tuple[str, ...]
    """Content objects no manifest references (ciphertext whose key was never stored)."""
    unreported_orphans: tuple[str, ...]
    """Orphans neither a run's report nor the journal names."""
    incomplete_uploads: tuple[str, ...]
    custody_problems: tuple[str, ...]
    """Items without an ingest event, or whose chain does not verify."""
    repeated_ingest_events: tuple[str, ...]
    """Items whose custody chain records the ingest more than once."""
    distinct_originals: int

    def problems(self, *, allow: Iterable[str] = ()) -> dict[str, list[str]]:
        """What keeps the vault from holding each original exactly once and cleanly, by category;
        ``allow`` names categories to overlook ("stray versions", "repeated ingest events",
        "unreported orphans"). Lost originals and duplicate items are never overlooked."""
        allowed = set(allow)
        assert not allowed & {"lost", "duplicate items"}, "losing or duplicating evidence is never allowed"
        found = {
            "lost": self.lost,
            "duplicate items": self.duplicate_items,
            "unreported orphans": self.unreported_orphans,
            "incomplete uploads": self.incomplete_uploads,
            "custody": self.custody_problems,
            "stray versions": self.stray_versions,
            "repeated ingest events": self.repeated_ingest_events,
        }
        return {name: list(keys) for name, keys in found.items() if keys and name not in allowed}

    def assert_exactly_once(self, *, allow: Iterable[str] = ()) -> None:
        found = self.problems(allow=allow)
        assert not found, f"the vault does not hold every original exactly once: {found}"
        assert self.items == self.distinct_originals, "one item per distinct original"


def take_census(
    vault: Vault,
    originals: Mapping[str, str],
    journal: IngestJournal,
    reported_orphans: Iterable[str] = (),
    *,
    verify_custody: bool = True,
) -> Census:
    """Compare the vault with the originals (path -> SHA-256). Reads every item back in full; with
    ``verify_custody`` also checks every custody chain's hashes and signatures."""
    store = vault.store
    expected = {vault.evidence_id_for(sha256): sha256 for sha256 in originals.values()}
    manifests: Counter[str] = Counter()
    for info in store.list_versions(layout.ITEMS_PREFIX):
        if info.key.endswith("/manifest.json") and not info.is_delete_marker:
            manifests[info.key.split("/")[1]] += 1
    duplicates = [f"{item} ({n} versions)" for item, n in manifests.items() if n > 1]
    duplicates += [f"{item} (no original)" for item in manifests if item not in expected]

    readable: set[str] = set()
    referenced: dict[str, str] = {}
    custody: list[str] = []
    repeated: list[str] = []
    for item, sha256 in expected.items():
        try:
            manifest = vault.manifest(item)
            vault.verify_stored(manifest)
            digest = hashlib.sha256()
            for chunk in vault.read_original(manifest):
                digest.update(chunk)
        except EvidenceError as err:
            if not isinstance(err, NotFound):
                custody.append(f"{item}: {err}")
            continue
        if digest.hexdigest() == sha256:
            readable.add(sha256)
        referenced[manifest.content.key] = manifest.content.version_id
        if manifest.thumbnail is not None:
            referenced[manifest.thumbnail.key] = manifest.thumbnail.version_id
        ingest_events = [e for e in vault.custody.events(item) if e.type == "ingest"]
        if not ingest_events:
            custody.append(f"{item}: no ingest event")
        elif len(ingest_events) > 1:
            repeated.append(f"{item}: {len(ingest_events)} ingest events")
        if verify_custody and not vault.custody.verify(item).intact:
            custody.append(f"{item}: custody chain does not verify")
    lost = sorted(path for path, sha256 in originals.items() if sha256 not in readable)

    versions: Counter[str] = Counter()
    for info in store.list_versions(layout.OBJECTS_PREFIX):
        versions[info.key] += 1
    stray = [f"{key} ({n} versions)" for key, n in versions.items() if key in referenced and n > 1]
    orphans = sorted(key for key in versions if key not in referenced)
    known = set(reported_orphans) | {key for key, state in journal.unsettled() if state == "committed"}
    return Census(
        originals=len(originals),
        distinct_originals=len(expected),
        items=len(manifests),
        lost=tuple(lost),
        duplicate_items=tuple(sorted(duplicates)),
        stray_versions=tuple(sorted(stray)),
        orphans=tuple(orphans),
        unreported_orphans=tuple(key for key in orphans if key not in known),
        incomplete_uploads=tuple(u.key for u in store.list_incomplete_uploads("")),
        custody_problems=tuple(custody),
        repeated_ingest_events=tuple(repeated),
    )


def check_run_accounts_for_every_file(
    report: IngestReport, before: Mapping[str, str], device: Path, vault: Vault
) -> None:
    """After any run, however it went: every file is in the report once; whatever left the device is
    stored and verified; whatever failed or was deferred is still on the device, unchanged."""
    paths = [o.source_path for o in report.outcomes]
    assert sorted(paths) == sorted(before), "every file on the device is in exactly one list"
    now = fingerprint_device(device)
    for outcome in report.outcomes:
        path = outcome.source_path
        if outcome.wiped or path not in now:
            assert outcome.status in ("ingested", "duplicate") and outcome.wiped, (
                f"{path} left the device without being reported stored and wiped: {outcome}"
            )
            manifest = vault.manifest(str(outcome.evidence_id))
            vault.verify_stored(manifest)
            assert vault.details(manifest).sha256 == before[path], f"{path} was wiped but stored differently"
        else:
            assert now[path] == before[path], f"{path} changed on the device"


def assert_gone_files_are_stored(vault: Vault, originals: Mapping[str, str], device: Path) -> int:
    """Whatever left the device (however the run ended) is stored, verified and the same bytes.
    Returns how many files had left."""
    gone = set(originals) - set(fingerprint_device(device))
    for path in gone:
        manifest = vault.manifest(vault.evidence_id_for(originals[path]))
        vault.verify_stored(manifest)
        assert vault.details(manifest).sha256 == originals[path], f"{path} was wiped but stored differently"
    return len(gone)


def report_figures(request: Any, title: str, rows: Iterable[str]) -> None:
    """Print figures under the test session's output (visible without ``-s``). In a pytest-xdist worker,
    whose output nobody sees, they go to the controller, which prints them at the end (conftest)."""
    lines = [f"{title}:"] + [f"  {row}" for row in rows]
    worker_output = getattr(request.config, "workeroutput", None)
    if worker_output is not None:
        worker_output.setdefault("figures", []).append("\n".join(lines))
        return
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print("\n" + "\n".join(lines), flush=True)
