"""Retention reviews (``evidence retention review``): a person's decision on items the policy brought
up for review, recorded so that the nightly run acts on it instead of listing the item again.

The policy never disposes of evidential material on its own: at the review date a person looks. Two
decisions are recorded as a ``review`` event in the item's custody chain (who, when, why, under which
policy and rule):

- **keep** for a further period: the item gets a new date, and another review when it comes;
- **dispose**: the review date that was due is settled as a disposal, so the next retention run with
  ``--apply`` disposes of the item (a hold still stops it). Dates still to come, such as a link made
  after the review, are not settled by it and get their own review.

Only items due for review are accepted; anything else is reported with the policy's reason and left
as it is. Re-running with the same decision writes it again (a second, identical decision is harmless
and shows the item was looked at twice).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from evidence.access import Actor
from evidence.errors import InvalidInput
from evidence.ids import require_evidence_id
from evidence.retention import Period, RetentionPolicy, as_utc, decide
from flows.holds import chain_state, clean_reason
from flows.outcomes import ItemOutcome, failures, for_each_item
from flows.records import record
from storage.catalog import Catalog
from storage.vault import Vault

ReviewDecision = Literal["keep", "dispose"]


@dataclass
class ReviewReport:
    decision: ReviewDecision
    outcomes: list[ItemOutcome] = field(default_factory=list)
    """Statuses: ``kept``, ``disposal decided``, ``not due``, ``disposed before`` or ``failed``."""

    @property
    def failed(self) -> list[ItemOutcome]:
        return failures(self.outcomes)

    def as_json(self) -> dict[str, object]:
        return {
            "decision": self.decision,
            "items": [outcome.as_json() for outcome in self.outcomes],
        }


def review_items(
    vault: Vault,
    catalog: Catalog | None,
    evidence_ids: Sequence[str],
    *,
    keep_for: Period | None,
    dispose: bool,
    reason: str,
    actor: Actor,
    policy: RetentionPolicy,
    now: datetime | None = None,
) -> ReviewReport:
    """Record one review decision for each item that is due for review."""
    actor.require("review")
    if (keep_for is None) == (not dispose):
        raise InvalidInput("decide one thing: --keep-for PERIOD (e.g. '2 years') or --dispose")
    stated = clean_reason(reason)
    ids = [require_evidence_id(e) for e in evidence_ids]
    if not ids:
        raise InvalidInput("name the evidence ids reviewed (the retention report lists those due)")
    moment = as_utc(now or datetime.now(UTC))
    # A review taken on a simulated clock (a rehearsal, a test) says so in the chain, as the retention
    # run's events do: it must never be read as a decision a person took at that date.
    clock = {"simulated_now": moment.isoformat()} if now is not None else {}
    outcomes = for_each_item(
        ids,
        lambda evidence_id: _review_one(
            vault, catalog, evidence_id, keep_for, stated, actor, policy, moment, clock
        ),
        doing="review",
    )
    return ReviewReport("dispose" if dispose else "keep", outcomes)


def _review_one(
    vault: Vault,
    catalog: Catalog | None,
    evidence_id: str,
    keep_for: Period | None,
    reason: str,
    actor: Actor,
    policy: RetentionPolicy,
    now: datetime,
    clock: dict[str, str],
) -> ItemOutcome:
    state = chain_state(vault, evidence_id)
    if state.disposed_at is not None:
        return ItemOutcome(evidence_id, "disposed before", f"disposed of {_shown(state.disposed_at)}")
    decision = decide(state.facts, policy, now)
    if decision.action != "review":
        return ItemOutcome(evidence_id, "not due", decision.reason)
    details: dict[str, object] = {
        "decision": "keep" if keep_for is not None else "dispose",
        "review_due": decision.keep_until.astimezone(UTC).isoformat(),
        "keep_until": None,
        "category": decision.category,
        "rule": decision.rule,
        "policy": policy.label,
        "reason": reason,
    }
    if keep_for is not None:
        details["keep_until"] = as_utc(keep_for.after(now)).isoformat()
    details |= clock
    record(vault, catalog, evidence_id, "review", actor=actor.user_id, role=actor.role, details=details)
    if keep_for is not None:
        return ItemOutcome(evidence_id, "kept", f"until {details['keep_until']}, then reviewed again")
    return ItemOutcome(
        evidence_id,
        "disposal decided",
        "the next `retention run --apply` disposes of it unless a hold stops it",
    )


def _shown(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")
