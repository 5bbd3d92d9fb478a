"""The retention run (``evidence retention run``; Prefect flow ``retention``; ``docs/retention.md``).

Two passes. The *decision pass* reads only the catalog: one pure decision per item
(``evidence.retention.decide``), so 100,000 items take seconds and items that need nothing never touch
the vault. The *action pass* takes the few items that need something (dispose, extend the lock, finish
an interrupted disposal) and, for each, first re-reads the item's custody chain and stored objects and
decides again from those: the catalog is an index that may lag behind the vault (a hold set on another
machine), and nothing irreversible is done on an index's word.

Without ``apply`` the action pass only reads, and the report says what would happen; ``extend_locks``
alone applies the extensions and nothing else, because a longer lock only ever protects (the nightly
deployment runs so: storage locks keep up with links every night, disposal waits for a person's
``apply``). With ``apply``:

- dispose: the chain must verify; the policy must say dispose at the run's clock *and* at the real
  date; no legal hold in the chain or on any stored version; no lock in force on any stored version
  (GOVERNANCE or COMPLIANCE) by the real clock. Then the ``disposal`` event is appended (intent, rule,
  policy, who) *before* any deletion, every version is deleted (never with a governance bypass: the
  store refuses what is still locked), and the chain's own lock is extended by
  ``records_after_disposal``: the record of the deletion outlives the evidence. A run interrupted
  part-way is finished by the next (the event is not written twice), under the same conditions.
- extend: every version's Object Lock moves to the policy's date, then a ``retention`` event.

One item's failure (storage error, broken chain) is reported and the run goes on. Review-due items are
only listed: a person decides.

A simulated clock (``now`` given) is a rehearsal: a dry run says what a run at that moment would do.
Applied, it can never do more than a run at the real time would: evidence deleted early cannot be
brought back, so a clock someone typed is never enough to destroy it. Every custody event such a run
writes names the simulated moment (``simulated_now``), and so do its report, CSV and artifact.
"""

from __future__ import annotations

import csv
import functools
import logging
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from evidence.access import Actor, UserDirectory
from evidence.errors import EvidenceError, IntegrityError, LockedError, NotFound
from evidence.retention import (
    Decision,
    RetentionFacts,
    RetentionPolicy,
    as_utc,
    decide,
    load_policy,
    lock_extension,
)
from evidence.settings import Settings, load_settings
from evidence.times import parse_time
from flows.holds import chain_state
from flows.records import open_catalog, record
from flows.retention_facts import catalog_lock, facts_from_catalog, policy_path
from storage import lifecycle
from storage.catalog import Catalog, CatalogItem
from storage.vault import Vault

log = logging.getLogger(__name__)

REVIEW_OUTCOME = "listed for review: a person decides (evidence retention review ID --keep-for P | --dispose)"

ACTION_BATCH = 100
ARTIFACT_ROWS = 500
ACTION_WORKERS = 4
LINE_FIELDS = ("evidence_id", "action", "outcome", "category", "keep_until", "rule", "reason")
CSV_FIELDS = (*LINE_FIELDS, "simulated_now")
"""Every CSV row says whether its run decided on a simulated clock: a row read on its own, months
later, must not pass for what happened at the real date."""


# -- the decision pass ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedAction:
    evidence_id: str
    kind: str
    """``dispose``, ``extend``, ``review``, ``held`` (kept past its date by a hold) or ``unfinished``."""
    decision: Decision | None
    lock_until: datetime | None = None
    custody_length: int | None = None


@dataclass(frozen=True)
class RetentionLine:
    evidence_id: str
    action: str
    outcome: str
    category: str = ""
    keep_until: str = ""
    rule: str = ""
    reason: str = ""

    def row(self) -> dict[str, str]:
        return {name: str(getattr(self, name)) for name in LINE_FIELDS}


@dataclass
class DecisionPass:
    counts: Counter[str] = field(default_factory=Counter)
    planned: list[PlannedAction] = field(default_factory=list)


def decide_catalog(
    items: Iterator[CatalogItem],
    policy: RetentionPolicy,
    settings: Settings,
    now: datetime,
    *,
    real_now: datetime | None = None,
    on_kept: Callable[[RetentionLine], None] | None = None,
) -> DecisionPass:
    """One decision per catalogued item; collects the items that need the vault. ``on_kept`` hears
    every item that needs nothing (for the CSV), so the pass holds only the actionable ones."""
    real_now = real_now or datetime.now(UTC)
    result = DecisionPass()
    for item in items:
        if item.disposed_at is not None:
            if item.disposal_finished:
                result.counts["disposed before"] += 1
            else:  # checked for leftovers of an interrupted disposal, every run until none are left
                result.planned.append(PlannedAction(item.evidence_id, "unfinished", None))
            continue
        decision = decide(facts_from_catalog(item), policy, now)
        locked = catalog_lock(item, settings)
        if decision.action == "dispose":
            kind = "dispose"
        elif decision.action == "review":
            kind = "review"
        elif lock_extension(decision, locked, max(real_now, as_utc(now))) is not None:
            kind = "extend"
        elif decision.held and as_utc(now) >= decision.keep_until:
            kind = "held"
        else:
            result.counts["keep"] += 1
            if on_kept is not None:
                on_kept(_line(decision, "keep", "kept: nothing to do"))
            continue
        result.planned.append(PlannedAction(item.evidence_id, kind, decision, locked, item.custody_length))
    return result


def _line(decision: Decision, action: str, outcome: str) -> RetentionLine:
    return RetentionLine(
        decision.evidence_id,
        action,
        outcome,
        decision.category,
        decision.keep_until.astimezone(UTC).isoformat(),
        decision.rule,
        decision.reason,
    )


# -- the action pass ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunContext:
    """What every action needs besides the vault: the policy, the clocks, who runs it, and whether
    anything may change."""

    policy: RetentionPolicy
    now: datetime
    """The run's clock: the real time the run started, or a simulated moment."""
    actor: Actor
    apply: bool
    """Dispose of what has elapsed (and extend locks)."""
    extend_locks: bool
    """Extend storage locks to the policy's dates; true whenever ``apply`` is."""
    simulated: bool = False
    """``now`` was given rather than read from the real clock."""

    @classmethod
    def of_run(
        cls,
        policy: RetentionPolicy,
        now: datetime,
        actor: Actor,
        *,
        apply: bool,
        extend_locks: bool,
        simulated: bool,
    ) -> RunContext:
        return cls(policy, as_utc(now), actor, apply, apply or extend_locks, simulated)

    @property
    def simulated_now(self) -> str | None:
        return self.now.isoformat() if self.simulated else None

    def may_dispose(
        self, facts: RetentionFacts, objects: lifecycle.ItemObjects
    ) -> tuple[Decision, str | None]:
        """:func:`check_disposal` for this run, against the real clock as it reads now."""
        return check_disposal(
            facts, objects, self.policy, now=self.now, real_now=datetime.now(UTC), applying=self.apply
        )

    def clock_details(self) -> dict[str, str]:
        """What every custody event of a simulated run adds: the chain must never pass such an event
        off as a decision taken at the real date (the event's own time is the real one)."""
        return {} if self.simulated_now is None else {"simulated_now": self.simulated_now}

    def report(
        self,
        counts: Counter[str],
        lines: list[RetentionLine],
        csv_path: str | None,
        *,
        real_now: datetime,
    ) -> RetentionReport:
        return RetentionReport(
            self.now,
            self.apply,
            self.extend_locks,
            self.policy.label,
            self.actor.user_id,
            summarise(counts, lines),
            lines,
            csv_path,
            simulated=self.simulated,
            real_now=real_now,
        )


def act_on(
    vault: Vault, catalog: Catalog | None, planned: PlannedAction, context: RunContext
) -> RetentionLine:
    """Carry out (or with ``apply`` false, describe) one planned action. Errors become a ``failed``
    line: one item never stops the run."""
    try:
        if planned.kind == "unfinished":
            return _finish_disposal(vault, catalog, planned, context)
        assert planned.decision is not None
        if planned.kind == "review":
            return _line(planned.decision, "review", REVIEW_OUTCOME)
        if planned.kind == "held":
            return _line(planned.decision, "keep", "kept past its date: legal hold")
        state = chain_state(vault, planned.evidence_id)
        if state.disposed_at is not None:
            # the catalog missed the disposal event: a disposal started but may not have finished
            return _finish_disposal(vault, catalog, planned, context)
        decision = decide(state.facts, context.policy, context.now)
        if decision.action == "dispose":
            return _dispose(vault, catalog, state.facts, planned, context)
        if decision.action == "review":
            return _line(decision, "review", REVIEW_OUTCOME)
        return _extend(vault, catalog, decision, state.retain_until, context)
    except EvidenceError as err:
        log.warning("retention action failed", extra={"evidence_id": planned.evidence_id, "error": str(err)})
        return _failed(planned, str(err))
    except Exception as err:
        # a fault this program did not foresee (an untranslated storage error, a bug) is still one
        # item's: the others are disposed of or extended, and each line says what really happened
        log.exception("retention action failed unexpectedly", extra={"evidence_id": planned.evidence_id})
        return _failed(planned, f"unexpected {type(err).__name__}: {err} (details in the run's log)")


def _failed(planned: PlannedAction, why: str) -> RetentionLine:
    if planned.decision is None:
        return RetentionLine(planned.evidence_id, planned.kind, f"failed: {why}")
    return _line(planned.decision, planned.kind, f"failed: {why}")


def check_disposal(
    facts: RetentionFacts,
    objects: lifecycle.ItemObjects,
    policy: RetentionPolicy,
    *,
    now: datetime,
    real_now: datetime,
    applying: bool,
) -> tuple[Decision, str | None]:
    """Whether the item may be disposed of, and the decision that says so (the one its ``disposal``
    event records), or the decision that keeps it and why. Pure: the caller reads the clocks.

    Applying, the policy must say dispose at the run's clock *and* at the real date, and no stored
    version may be held or locked at the real clock, the one the store itself judges by. Deleted
    evidence cannot be brought back: a clock someone typed (``--now``) may make a run do less than a
    run at the real time, never more. The decision that permits a disposal is the real date's, so
    the record gives the reason that actually held. A dry run is a rehearsal of the run at ``now``:
    the policy at ``now``, and storage locks as they will stand then (a lock that has already run out
    does not come back, hence the later of the two clocks)."""
    at_run_clock = decide(facts, policy, now)
    if at_run_clock.action != "dispose":
        return at_run_clock, _kept_by(at_run_clock, "at the run's time")
    decision, lock_clock = at_run_clock, max(as_utc(now), as_utc(real_now))
    if applying:
        decision, lock_clock = decide(facts, policy, real_now), as_utc(real_now)
        if decision.action != "dispose":
            return decision, _kept_by(decision, "at the real date")
    try:
        lifecycle.refuse_if_undisposable(objects, lock_clock)
    except LockedError as err:
        return decision, str(err)
    return decision, None


def _kept_by(decision: Decision, clock: str) -> str:
    if decision.held:
        return f"policy {clock} keeps it: {decision.reason}"
    if decision.action == "review":
        return f"policy {clock} lists it for review, not disposal"
    return f"policy {clock} keeps it until {_moment(decision.keep_until)}"


def _dispose(
    vault: Vault,
    catalog: Catalog | None,
    facts: RetentionFacts,
    planned: PlannedAction,
    context: RunContext,
) -> RetentionLine:
    verification = vault.custody.verify(facts.evidence_id, expected_length=planned.custody_length)
    if not verification.intact:
        problem = verification.problems[0]
        raise IntegrityError(
            f"custody chain is broken (event {problem.position}: {problem.message}); not disposed of"
        )
    objects = lifecycle.item_objects(vault, facts.evidence_id)
    decision, refusal = context.may_dispose(facts, objects)
    if refusal is not None:
        return _line(decision, "dispose", f"not disposed: {refusal}")
    if not context.apply:
        return _line(
            decision,
            "dispose",
            f"would dispose of {len(objects.all)} stored version(s){_today(facts, objects, context)}",
        )
    record(
        vault,
        catalog,
        decision.evidence_id,
        "disposal",
        actor=context.actor.user_id,
        role=context.actor.role,
        details={
            "rule": decision.category,
            "policy": context.policy.label,
            "reason": decision.reason,
            "objects_deleted": len(objects.all),
        }
        | context.clock_details(),
    )
    deleted = lifecycle.dispose(vault, objects)
    _lock_records(vault, decision.evidence_id, context)
    _note_finished(catalog, decision.evidence_id)
    return _line(decision, "dispose", f"disposed: {deleted} stored version(s) deleted, key destroyed")


def _today(facts: RetentionFacts, objects: lifecycle.ItemObjects, context: RunContext) -> str:
    """A rehearsal's note when ``--apply`` at the real time would not dispose of the item (yet)."""
    if not context.simulated:
        return ""
    _, refusal = check_disposal(
        facts, objects, context.policy, now=context.now, real_now=datetime.now(UTC), applying=True
    )
    return "" if refusal is None else f" (at the simulated time; --apply today would not: {refusal})"


def _finish_disposal(
    vault: Vault, catalog: Catalog | None, planned: PlannedAction, context: RunContext
) -> RetentionLine:
    objects = lifecycle.item_objects(vault, planned.evidence_id)
    if objects.empty:
        _note_finished(catalog, planned.evidence_id)
        return RetentionLine(planned.evidence_id, "disposed", "disposal complete")
    refusal = _refuse_to_finish(vault, objects, context)
    if refusal is not None:
        return RetentionLine(
            planned.evidence_id,
            "disposed",
            f"not disposed: {refusal}; the {len(objects.all)} stored version(s) left by an interrupted "
            "disposal stay until then",
        )
    if not context.apply:
        return RetentionLine(
            planned.evidence_id,
            "disposed",
            f"disposal unfinished: would delete the {len(objects.all)} stored version(s) left",
        )
    deleted = lifecycle.dispose(vault, objects)
    _lock_records(vault, planned.evidence_id, context)
    _note_finished(catalog, planned.evidence_id)
    return RetentionLine(
        planned.evidence_id, "disposed", f"interrupted disposal finished: {deleted} stored version(s) deleted"
    )


def _refuse_to_finish(vault: Vault, objects: lifecycle.ItemObjects, context: RunContext) -> str | None:
    """An interrupted disposal is finished only as a new one would be started: the disposal event
    already written may come from a run that should not have begun it (a simulated clock before
    this check existed, a policy since lengthened)."""
    try:
        facts = chain_state(vault, objects.evidence_id).facts
    except NotFound:
        # The manifest, the only holder of the item's wrapped key, is gone: nobody can decrypt what
        # is left, so only storage's own rules remain to check.
        try:
            lifecycle.refuse_if_undisposable(objects)
        except LockedError as err:
            return str(err)
        return None
    return context.may_dispose(facts, objects)[1]


def _note_finished(catalog: Catalog | None, evidence_id: str) -> None:
    """Only once the vault holds nothing of the item does the run stop checking it."""
    if catalog is not None:
        catalog.note_disposal_finished(evidence_id)


def _lock_records(vault: Vault, evidence_id: str, context: RunContext) -> None:
    """The disposal record must outlive the evidence: lock the chain for ``records_after_disposal``."""
    lifecycle.extend_records(
        vault, evidence_id, context.policy.records_after_disposal.after(datetime.now(UTC))
    )


def _extend(
    vault: Vault,
    catalog: Catalog | None,
    decision: Decision,
    recorded_lock: datetime | None,
    context: RunContext,
) -> RetentionLine:
    objects = lifecycle.item_objects(vault, decision.evidence_id)
    locked_until = objects.locked_until()
    target = lock_extension(decision, locked_until, max(datetime.now(UTC), as_utc(context.now)))
    if target is None:
        return _line(decision, "keep", "kept: storage lock already reaches the policy date")
    shown = "none" if locked_until is None else _moment(locked_until)
    if not context.extend_locks:
        return _line(decision, "extend", f"would extend the storage lock from {shown} to {_moment(target)}")
    change = lifecycle.extend_lock(vault, decision.evidence_id, target, objects=objects)
    previous = change.previous_retain_until or recorded_lock
    record(
        vault,
        catalog,
        decision.evidence_id,
        "retention",
        actor=context.actor.user_id,
        role=context.actor.role,
        details={
            "category": decision.category,
            "rule": decision.rule,
            "retain_until": target.isoformat(),
            "previous_retain_until": None if previous is None else previous.astimezone(UTC).isoformat(),
        }
        | context.clock_details(),
    )
    lifecycle.extend_records(vault, decision.evidence_id, target)  # the event just written, too
    return _line(decision, "extend", f"storage lock extended from {shown} to {_moment(target)}")


def _moment(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


# -- the whole run as plain calls -----------------------------------------------------------------


@dataclass
class RetentionReport:
    now: datetime
    applied: bool
    locks_extended: bool
    """Storage locks were extended (with ``apply``, or ``extend_locks`` alone)."""
    policy: str
    actor: str
    counts: dict[str, int]
    lines: list[RetentionLine]
    csv_path: str | None = None
    simulated: bool = False
    """``now`` was a simulated moment, not the real clock."""
    real_now: datetime | None = None
    """When the run started, by the real clock."""

    @property
    def kind(self) -> str:
        if self.applied:
            kind = "run (applied)"
        else:
            kind = "dry run, storage locks extended" if self.locks_extended else "dry run"
        return f"{kind} on a SIMULATED clock" if self.simulated else kind

    @property
    def failures(self) -> list[RetentionLine]:
        return [line for line in self.lines if line.outcome.startswith("failed")]

    def as_json(self) -> dict[str, Any]:
        return {
            "now": self.now.isoformat(),
            "simulated": self.simulated,
            "real_now": None if self.real_now is None else self.real_now.isoformat(),
            "applied": self.applied,
            "locks_extended": self.locks_extended,
            "policy": self.policy,
            "actor": self.actor,
            "counts": self.counts,
            "csv": self.csv_path,
            "items": [line.row() for line in self.lines],
        }


def parse_now(text: str | None, *, option: str = "--now") -> datetime:
    """A time option (``--now``) as an aware UTC time; a time without a zone is UTC; none is now.
    Never overflows at the ends of the calendar (``evidence.times.parse_time``)."""
    if not text:
        return datetime.now(UTC)
    return parse_time(text, option)


def resolve_actor(settings: Settings, user: str | None) -> Actor:
    return UserDirectory.load(settings.users_file).resolve(user or settings.user)


def default_csv_path(
    settings: Settings, now: datetime, applied: bool, locks_extended: bool = False, simulated: bool = False
) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    kind = "applied" if applied else "locks-extended" if locks_extended else "dry-run"
    if simulated:
        kind += "-simulated"
    return settings.data_dir / "reports" / f"retention-{stamp}-{kind}.csv"


def summarise(counts: Counter[str], lines: Sequence[RetentionLine]) -> dict[str, int]:
    summary = Counter(counts)
    for line in lines:
        summary[_outcome_class(line)] += 1
    return dict(sorted(summary.items()))


def _outcome_class(line: RetentionLine) -> str:
    outcome = line.outcome
    if outcome.startswith("failed"):
        return "failed"
    if outcome.startswith("not disposed: policy at the real date"):
        return "kept at the real date"
    if outcome.startswith("not disposed: policy"):
        return "kept by the policy"
    if outcome.startswith("not disposed"):
        return "locked by storage"
    if outcome.startswith("would dispose"):
        return "would dispose"
    if outcome.startswith("disposed:"):
        return "disposed"
    if outcome.startswith(("would extend", "storage lock extended")):
        return "lock extended" if outcome.startswith("storage") else "would extend lock"
    if line.action == "review":
        return "review due"
    if line.action == "disposed":
        return "disposal finished" if "finished" in outcome or "would" in outcome else "disposed before"
    if outcome.startswith("kept past"):
        return "held past date"
    return "keep"


def run_retention(
    vault: Vault,
    catalog: Catalog,
    policy: RetentionPolicy,
    actor: Actor,
    *,
    now: datetime | None = None,
    apply: bool = False,
    extend_locks: bool = False,
    csv_path: Path | None = None,
) -> RetentionReport:
    """The run without Prefect: decisions, actions (one at a time), CSV. The flow does the same with
    the actions spread over task runs."""
    actor.require("retention")
    started = datetime.now(UTC)
    moment = as_utc(now) if now is not None else started
    context = RunContext.of_run(
        policy, moment, actor, apply=apply, extend_locks=extend_locks, simulated=now is not None
    )
    with _csv_writer(csv_path, context.simulated_now) as write:
        decisions = decide_catalog(
            catalog.iter_items(include_disposed=True),
            policy,
            vault.settings,
            moment,
            on_kept=write,
        )
        lines = [act_on(vault, catalog, planned, context) for planned in decisions.planned]
        for line in lines:
            write(line)
    return context.report(
        decisions.counts, lines, None if csv_path is None else str(csv_path), real_now=started
    )


@contextmanager
def _csv_writer(
    path: Path | None, simulated_now: str | None, *, append: bool = False
) -> Iterator[Callable[[RetentionLine], None]]:
    if path is None:
        yield lambda line: None
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a" if append else "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        if not append:
            writer.writeheader()

        def write(line: RetentionLine) -> None:
            writer.writerow(line.row() | {"simulated_now": simulated_now or ""})

        yield write


# -- Prefect ----------------------------------------------------------------------------------------


@functools.cache
def _vault(settings: Settings) -> Vault:
    return Vault.open(settings)


@functools.cache
def _catalog(settings: Settings) -> Catalog:
    return open_catalog(settings)


@task(cache_policy=NO_CACHE, persist_result=False, task_run_name="retention-decisions")
def decision_task(settings: Settings, now: datetime, csv_path: str, simulated: bool = False) -> DecisionPass:
    policy = load_policy(policy_path(settings))
    catalog = _catalog(settings)
    with _csv_writer(Path(csv_path), now.isoformat() if simulated else None) as write:
        return decide_catalog(
            catalog.iter_items(include_disposed=True),
            policy,
            settings,
            now,
            on_kept=write,
        )


@task(cache_policy=NO_CACHE, persist_result=False, task_run_name="retention-actions-{batch}")
def action_task(
    settings: Settings,
    planned: list[PlannedAction],
    now: datetime,
    user: str,
    apply: bool,
    extend_locks: bool,
    batch: int,
    simulated: bool = False,
) -> list[RetentionLine]:
    policy = load_policy(policy_path(settings))
    context = RunContext.of_run(
        policy,
        now,
        resolve_actor(settings, user),
        apply=apply,
        extend_locks=extend_locks,
        simulated=simulated,
    )
    vault, catalog = _vault(settings), _catalog(settings)
    return [act_on(vault, catalog, item, context) for item in planned]


@flow(
    name="retention",
    persist_result=False,
    log_prints=False,
    task_runner=ThreadPoolTaskRunner(max_workers=ACTION_WORKERS),
)
def retention(
    apply: bool = False,
    now: str | None = None,
    user: str | None = None,
    csv_path: str | None = None,
    settings_overrides: dict[str, Any] | None = None,
    extend_locks: bool = False,
) -> RetentionReport:
    """Retention run: a dry run by default (what would be disposed of, kept, extended or due for
    review, and why); ``apply=True`` disposes of what has elapsed and extends storage locks;
    ``extend_locks=True`` alone extends the locks and disposes of nothing."""
    settings = load_settings(**(settings_overrides or {}))
    logger = get_run_logger()
    actor = resolve_actor(settings, user)
    actor.require("retention")
    policy = load_policy(policy_path(settings))
    started = datetime.now(UTC)
    moment = parse_now(now) if now else started
    simulated = bool(now)
    context = RunContext.of_run(
        policy, moment, actor, apply=apply, extend_locks=extend_locks, simulated=simulated
    )
    path = csv_path or str(default_csv_path(settings, moment, apply, extend_locks, simulated))
    decisions = decision_task(settings, moment, path, simulated)
    clock = (
        f"SIMULATED {moment.isoformat()} (real time {started.isoformat()})"
        if simulated
        else moment.isoformat()
    )
    logger.info(
        "retention decisions at %s under %s: %d item(s) need the vault; %s",
        clock,
        policy.label,
        len(decisions.planned),
        dict(decisions.counts),
    )
    batches = [
        decisions.planned[i : i + ACTION_BATCH] for i in range(0, len(decisions.planned), ACTION_BATCH)
    ]
    futures = [
        action_task.submit(settings, batch, moment, actor.user_id, apply, extend_locks, n, simulated)
        for n, batch in enumerate(batches)
    ]
    lines: list[RetentionLine] = []
    for future, batch in zip(futures, batches, strict=True):
        try:
            lines.extend(future.result())
        except Exception as err:  # the batch never ran (its task could not open the vault, say)
            lines.extend(RetentionLine(p.evidence_id, p.kind, f"failed: {err}") for p in batch)
    with _csv_writer(Path(path), context.simulated_now, append=True) as write:
        for line in lines:
            write(line)
    report = context.report(decisions.counts, lines, path, real_now=started)
    create_table_artifact(
        key="retention-report",
        table=[{"evidence_id": "(clock)", "action": "simulated" if simulated else "real", "outcome": clock}]
        + [{"evidence_id": "(total)", "action": name, "outcome": str(n)} for name, n in report.counts.items()]
        + [
            {"evidence_id": line.evidence_id, "action": line.action, "outcome": line.outcome}
            for line in lines[:ARTIFACT_ROWS]
        ],
        description=(
            f"Retention {report.kind} at {clock} under {policy.label} by {actor.user_id}; full report: {path}"
        ),
    )
    logger.info("retention done: %s", report.counts)
    return report
