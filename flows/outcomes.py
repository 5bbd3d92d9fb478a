"""What a command acting on many items reports for each (closures, reviews): a status and a note,
and which failed, so that running the same command again finishes the job."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from evidence.errors import EvidenceError

log = logging.getLogger(__name__)

FAILED = "failed"


@dataclass(frozen=True)
class ItemOutcome:
    evidence_id: str
    status: str
    note: str = ""

    def as_json(self) -> dict[str, object]:
        return {"evidence_id": self.evidence_id, "status": self.status, "note": self.note}


def failures(outcomes: Iterable[ItemOutcome]) -> list[ItemOutcome]:
    return [outcome for outcome in outcomes if outcome.status == FAILED]


def for_each_item(
    evidence_ids: Iterable[str], act: Callable[[str], ItemOutcome], *, doing: str
) -> list[ItemOutcome]:
    """``act`` on every item in turn. One item's failure (a storage error, a broken chain) is its
    ``failed`` outcome, with the error as the note; it never stops the others."""
    outcomes = []
    for evidence_id in evidence_ids:
        try:
            outcomes.append(act(evidence_id))
        except EvidenceError as err:
            log.warning("%s failed", doing, extra={"evidence_id": evidence_id, "error": str(err)})
            outcomes.append(ItemOutcome(evidence_id, FAILED, str(err)))
    return outcomes


class ItemReport(Protocol):
    @property
    def outcomes(self) -> Sequence[ItemOutcome]: ...

    @property
    def failed(self) -> list[ItemOutcome]: ...

    def as_json(self) -> dict[str, object]: ...
