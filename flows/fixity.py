"""Fixity checks (``evidence fixity``; Prefect flow ``fixity``; ``docs/retention.md`` §6).

Stored bytes can rot, be altered by someone with storage access, or be lost, and nobody notices
until a court asks for the item. A fixity check re-reads every byte of an item's stored objects and
compares them with what was recorded when they were written:

- ``checksum`` level (no key needed; what a storage admin can run): the manifest is the one the
  ingest event hashed; each object's size and store checksum match the manifest; the SHA-256 of the
  stored (encrypted) bytes, re-computed over a full read, matches the manifest's ``sha256``; the
  custody chain verifies.
- ``plaintext`` level (where this machine holds a key that opens the item): the same single read is
  also decrypted and authenticated segment by segment, and the original's SHA-256 and size match the
  sealed details; the thumbnail opens.

Each checked item gets a ``fixity`` custody event (``result``, ``level``, ``problem``); problems are
described without any sealed value (no original hash, no file name). A storage outage is not a fixity
result: such items are reported as errors and get no event.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import random
import secrets
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from evidence import layout, stream
from evidence.access import Actor, UserDirectory
from evidence.custody import check_recorded_manifest
from evidence.errors import AccessDenied, EvidenceError, IntegrityError, InvalidInput, NotFound
from evidence.manifest import Manifest, StoredObject, decode_manifest, open_details
from evidence.settings import Settings, load_settings
from flows.records import open_catalog, record
from storage.catalog import Catalog
from storage.vault import Vault

log = logging.getLogger(__name__)

BATCH = 20
WORKERS = 2
DEFAULT_SAMPLE = 25


@dataclass(frozen=True)
class FixityResult:
    evidence_id: str
    result: str
    """``ok``, ``failed`` (integrity) or ``error`` (could not check: storage unavailable, ...)."""
    level: str
    """``checksum`` or ``plaintext``."""
    problem: str | None = None
    bytes_read: int = 0


@dataclass
class FixityReport:
    seed: int | None
    """The sample's random seed (None for ``--all``): re-running with it checks the same items."""
    chosen: int
    results: list[FixityResult] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(f"{r.result} ({r.level})" for r in self.results).items()))

    @property
    def failed(self) -> list[FixityResult]:
        return [r for r in self.results if r.result != "ok"]

    def as_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "chosen": self.chosen,
            "counts": self.counts,
            "items": [
                {
                    "evidence_id": r.evidence_id,
                    "result": r.result,
                    "level": r.level,
                    "problem": r.problem,
                    "bytes_read": r.bytes_read,
                }
                for r in self.results
            ],
        }


# -- choosing items -------------------------------------------------------------------------------


def choose_items(
    catalog: Catalog, *, sample: int | None, all_items: bool, seed: int | None
) -> tuple[list[str], int | None]:
    """The items to check and the seed used. A sample is drawn uniformly from every item not disposed
    of; the seed is chosen at random unless given, and reported so the draw can be repeated."""
    if all_items == (sample is not None):
        raise InvalidInput("give either --sample N or --all")
    ids = [item.evidence_id for item in catalog.iter_items()]
    if all_items:
        return ids, None
    assert sample is not None
    if sample < 1:
        raise InvalidInput(f"--sample {sample}: give a number of items, at least 1")
    chosen_seed = seed if seed is not None else secrets.randbelow(2**31)
    # S311: a reproducible audit sample, not a secret
    picked = random.Random(chosen_seed).sample(ids, min(sample, len(ids)))  # noqa: S311
    return sorted(picked), chosen_seed


# -- checking one item ----------------------------------------------------------------------------


def check_item(vault: Vault, evidence_id: str, *, expected_length: int | None = None) -> FixityResult:
    """Re-read and verify one item; see the module docstring for what each level proves."""
    problems: list[str] = []
    level = "checksum"
    read = 0
    try:
        raw = vault.record(layout.manifest_key(evidence_id))
        manifest = decode_manifest(raw)
        chain = vault.custody.verify(evidence_id, expected_length=expected_length)
        if not chain.intact:
            first = chain.problems[0]
            problems.append(f"custody chain broken at event {first.position}: {first.message}")
        if chain.events and chain.events[0].seq == 0:
            try:
                check_recorded_manifest(
                    evidence_id,
                    chain.events[0],
                    manifest_sha256=hashlib.sha256(raw).hexdigest(),
                    content_sha256=manifest.content.sha256,
                )
            except IntegrityError:
                problems.append("manifest differs from the one the ingest event recorded")
        data_key = _data_key(vault, manifest, problems)
        if data_key is not None:
            level = "plaintext"
        read += _check_content(vault, manifest, data_key, problems)
        if manifest.thumbnail is not None:
            read += _check_thumbnail(vault, manifest.thumbnail, data_key, problems)
    except NotFound as err:
        problems.append(f"missing: {err}")
    except IntegrityError as err:
        problems.append(str(err))
    except EvidenceError as err:
        return FixityResult(evidence_id, "error", level, f"not checked: {err}", read)
    if problems:
        return FixityResult(evidence_id, "failed", level, "; ".join(problems)[:1000], read)
    return FixityResult(evidence_id, "ok", level, None, read)


def _data_key(vault: Vault, manifest: Manifest, problems: list[str]) -> bytes | None:
    try:
        return vault.data_key(manifest)
    except AccessDenied:
        return None  # no key here: the checksum level is all this machine can prove
    except IntegrityError as err:
        problems.append(f"wrapped data key: {err}")
        return None


def _stored_chunks(vault: Vault, ref: StoredObject, digest: Any, counter: list[int]) -> Iterator[bytes]:
    for chunk in vault.store.get(ref.key, version_id=ref.version_id):
        digest.update(chunk)
        counter[0] += len(chunk)
        yield chunk


def _check_stored(vault: Vault, name: str, ref: StoredObject, problems: list[str]) -> None:
    info = vault.store.head(ref.key, version_id=ref.version_id)
    if info.size != ref.size:
        problems.append(f"{name} object: stored size {info.size}, manifest says {ref.size}")
    if ref.checksum is not None and info.checksum != ref.checksum:
        problems.append(f"{name} object: the store's checksum differs from the one recorded at ingest")


def _check_content(vault: Vault, manifest: Manifest, data_key: bytes | None, problems: list[str]) -> int:
    ref = manifest.content
    _check_stored(vault, "content", ref, problems)
    digest, counter = hashlib.sha256(), [0]
    chunks = _stored_chunks(vault, ref, digest, counter)
    if data_key is None:
        for _ in chunks:
            pass
    else:
        # one read serves both levels: the stored bytes are hashed as they are decrypted
        plain, size = hashlib.sha256(), 0
        try:
            for piece in stream.decrypt_chunks(data_key, chunks):
                plain.update(piece)
                size += len(piece)
        except IntegrityError as err:
            problems.append(f"content does not decrypt: {err}")
            for _ in chunks:  # finish the stored-bytes hash all the same
                pass
        else:
            details = open_details(data_key, manifest)
            if plain.hexdigest() != details.sha256 or size != details.size:
                problems.append("decrypted content does not match the original's SHA-256 taken at ingest")
    if counter[0] != ref.size or digest.hexdigest() != ref.sha256:
        problems.append("content object: stored bytes do not match the SHA-256 recorded at ingest")
    return counter[0]


def _check_thumbnail(vault: Vault, ref: StoredObject, data_key: bytes | None, problems: list[str]) -> int:
    _check_stored(vault, "thumbnail", ref, problems)
    sealed = b"".join(vault.store.get(ref.key, version_id=ref.version_id))  # thumbnails are small
    if hashlib.sha256(sealed).hexdigest() != ref.sha256:
        problems.append("thumbnail object: stored bytes do not match the SHA-256 recorded at ingest")
    elif data_key is not None:
        try:
            stream.open_sealed(data_key, sealed)
        except IntegrityError as err:
            problems.append(f"thumbnail does not decrypt: {err}")
    return len(sealed)


def record_result(vault: Vault, catalog: Catalog | None, result: FixityResult, actor: Actor) -> None:
    if result.result == "error":
        return  # not a finding about the item: nothing was proven either way
    record(
        vault,
        catalog,
        result.evidence_id,
        "fixity",
        actor=actor.user_id,
        role=actor.role,
        details={"result": result.result, "level": result.level, "problem": result.problem},
    )


def check_items(
    vault: Vault, catalog: Catalog | None, evidence_ids: Sequence[str], actor: Actor
) -> list[FixityResult]:
    results = []
    for evidence_id in evidence_ids:
        known = catalog.item(evidence_id) if catalog is not None else None
        result = check_item(vault, evidence_id, expected_length=known.custody_length if known else None)
        if result.result != "ok":
            log.warning("fixity %s", result.result, extra={"evidence_id": evidence_id})
        try:
            record_result(vault, catalog, result, actor)
        except EvidenceError as err:
            result = FixityResult(evidence_id, "error", result.level, f"result not recorded: {err}", 0)
        results.append(result)
    return results


def run_fixity(
    vault: Vault,
    catalog: Catalog,
    actor: Actor,
    *,
    sample: int | None = DEFAULT_SAMPLE,
    all_items: bool = False,
    seed: int | None = None,
) -> FixityReport:
    """The check without Prefect (the flow spreads the same work over task runs)."""
    actor.require("fixity")
    chosen, used_seed = choose_items(
        catalog, sample=None if all_items else sample, all_items=all_items, seed=seed
    )
    return FixityReport(used_seed, len(chosen), check_items(vault, catalog, chosen, actor))


# -- Prefect ----------------------------------------------------------------------------------------


@functools.cache
def _vault(settings: Settings) -> Vault:
    return Vault.open(settings)


@functools.cache
def _catalog(settings: Settings) -> Catalog:
    return open_catalog(settings)


def _actor(settings: Settings, user: str | None) -> Actor:
    return UserDirectory.load(settings.users_file).resolve(user or settings.user)


@task(cache_policy=NO_CACHE, persist_result=False, task_run_name="fixity-{batch}")
def fixity_task(settings: Settings, evidence_ids: list[str], user: str, batch: int) -> list[FixityResult]:
    return check_items(_vault(settings), _catalog(settings), evidence_ids, _actor(settings, user))


@flow(
    name="fixity",
    persist_result=False,
    log_prints=False,
    task_runner=ThreadPoolTaskRunner(max_workers=WORKERS),
)
def fixity(
    sample: int | None = DEFAULT_SAMPLE,
    all_items: bool = False,
    seed: int | None = None,
    user: str | None = None,
    settings_overrides: dict[str, Any] | None = None,
) -> FixityReport:
    """Re-read stored objects and verify them (a random sample, or every item)."""
    settings = load_settings(**(settings_overrides or {}))
    logger = get_run_logger()
    actor = _actor(settings, user)
    actor.require("fixity")
    chosen, used_seed = choose_items(
        _catalog(settings), sample=None if all_items else sample, all_items=all_items, seed=seed
    )
    logger.info("fixity: %d item(s) chosen (seed %s)", len(chosen), used_seed)
    batches = [chosen[i : i + BATCH] for i in range(0, len(chosen), BATCH)]
    futures = [fixity_task.submit(settings, batch, actor.user_id, n) for n, batch in enumerate(batches)]
    report = FixityReport(used_seed, len(chosen))
    for future, batch in zip(futures, batches, strict=True):
        try:
            report.results.extend(future.result())
        except Exception as err:  # a batch that failed as a whole is reported per item
            report.results.extend(FixityResult(i, "error", "checksum", f"not checked: {err}") for i in batch)
    create_table_artifact(
        key="fixity-report",
        table=[
            {"evidence_id": "(total)", "result": name, "level": "", "problem": str(n)}
            for name, n in report.counts.items()
        ]
        + [
            {"evidence_id": r.evidence_id, "result": r.result, "level": r.level, "problem": r.problem or ""}
            for r in report.results
            if r.result != "ok"
        ],
        description=f"Fixity of {len(chosen)} item(s) (seed {used_seed}) by {actor.user_id}",
    )
    logger.info("fixity done: %s", report.counts)
    return report
