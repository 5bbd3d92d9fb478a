"""Retention policy and retention decisions (``docs/retention.md``). Pure: no I/O but reading the policy.

Two failures matter and they pull opposite ways: evidence deleted before its time cannot be brought
back, and footage kept past its time is personal data held without a reason (Data Protection Act 2018,
Part 3). So every rule here errs towards keeping, but only by a bounded, stated amount, and nothing is
ever kept "indefinitely" without a date on which a person must look at it again:

- an item with a legal hold is kept, whatever its dates;
- an item linked to any incident is disposed of automatically only if *every* rule that applies to it
  says ``dispose``; otherwise its date is a review date, listed for a person;
- an item linked to an incident whose category the policy does not know gets the policy's category
  for unclassified evidential material;
- a recording's time never counts from later than its ingest (a camera clock set in the future would
  otherwise keep footage for decades), and nothing is disposed of sooner than
  ``minimum_after_ingest`` after it reached the vault (a camera clock set in the past, or a device
  docked weeks late, would otherwise lose footage before anyone could link it);
- a rule counted from a case's closure treats a case with no recorded closure as open: its items come
  up for review a period after their link, never for disposal;
- a person's review decision (keep for longer, or dispose) settles only the review date that was due:
  it never brings a date forward, and a hold still stops everything.

:func:`decide` is what the retention flow runs for every catalogued item; :func:`fold_chain` is the
one fold of an item's custody events, which the catalog indexes and :func:`facts_from_events` turns
into the same facts when the flow re-reads the chain before it changes anything in storage (the
catalog is an index and may lag behind the vault).
"""

from __future__ import annotations

import calendar
import hashlib
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import MAXYEAR, UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

from evidence.errors import ConfigError
from evidence.times import in_utc

Action = Literal["keep", "dispose", "review"]
Anchor = Literal["recording", "link", "closure"]
EndAction = Literal["dispose", "review"]

ANCHORS: tuple[Anchor, ...] = ("recording", "link", "closure")
END_ACTIONS: tuple[EndAction, ...] = ("dispose", "review")

LONGEST_PERIOD_YEARS = 100
"""The longest period a policy or a review may give. The longest any rule asks is MoPI's "until the
subject is 100", which no recording outlasts by more than 100 years; "9999 years" is a typing mistake,
and the storage lock it would lead to could never be shortened (compliance mode)."""

_CATEGORY_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
_PERIOD_PART = re.compile(r"\s*([0-9]{1,4})\s*(day|week|month|year)s?\s*(?:,|and)?", re.IGNORECASE)
_POLICY_KEYS = frozenset(
    {
        "name",
        "version",
        "default_category",
        "unclassified_category",
        "minimum_after_ingest",
        "records_after_disposal",
        "categories",
        "incident_categories",
    }
)
_CATEGORY_KEYS = frozenset({"period", "from", "action", "description"})


# -- periods --------------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Period:
    """A calendar period: "31 days", "7 years", "1 year 6 months", "2 weeks"."""

    years: int = 0
    months: int = 0
    days: int = 0

    @classmethod
    def parse(cls, text: str) -> Period:
        if not isinstance(text, str):
            raise ConfigError(f'a period is text such as "31 days" or "7 years", not {text!r}')
        position, years, months, days = 0, 0, 0, 0
        stripped = text.strip()
        while position < len(stripped):
            match = _PERIOD_PART.match(stripped, position)
            if match is None or match.end() == position:
                raise ConfigError(
                    f"period {text!r} is not understood: write a number and days, weeks, months or years, "
                    'for example "31 days", "7 years" or "1 year 6 months"'
                )
            amount, unit = int(match.group(1)), match.group(2).lower()
            if unit == "day":
                days += amount
            elif unit == "week":
                days += 7 * amount
            elif unit == "month":
                months += amount
            else:
                years += amount
            position = match.end()
        period = cls(years, months, days)
        if period == cls():
            raise ConfigError(f"period {text!r} is empty: a retention period must be longer than nothing")
        if period.longer_than(LONGEST_PERIOD):
            raise ConfigError(
                f"period {text!r} is longer than {LONGEST_PERIOD}: no retention rule or review keeps "
                "evidence that long; check the number"
            )
        return period

    def longer_than(self, other: Period) -> bool:
        """Whether this period, counted from the same day, ends after ``other`` does (one too long for
        the calendar ends at its last moment: :meth:`after`)."""
        start = datetime(2000, 1, 1, tzinfo=UTC)
        return self.after(start) > other.after(start)

    def after(self, moment: datetime) -> datetime:
        """``moment`` plus this period, by the calendar. A day that does not exist in the target month
        (31 January + 1 month) moves forward to the 1st of the next month, never back: a period is
        never shorter than it says. Past the year 9999 (a rehearsal clock near it, a forged date): the
        calendar's last moment, which keeps the evidence, never an overflow."""
        month_index = moment.month - 1 + self.months + 12 * self.years
        year, month = moment.year + month_index // 12, month_index % 12 + 1
        if year > MAXYEAR:
            return datetime.max.replace(tzinfo=moment.tzinfo)
        if moment.day <= calendar.monthrange(year, month)[1]:
            shifted = moment.replace(year=year, month=month)
        elif (year, month) == (MAXYEAR, 12):
            return datetime.max.replace(tzinfo=moment.tzinfo)
        else:
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
            shifted = moment.replace(year=year, month=month, day=1)
        try:
            return shifted + timedelta(days=self.days)
        except OverflowError:
            return datetime.max.replace(tzinfo=moment.tzinfo)

    def __str__(self) -> str:
        parts = [
            f"{amount} {unit}{'' if amount == 1 else 's'}"
            for amount, unit in ((self.years, "year"), (self.months, "month"), (self.days, "day"))
            if amount
        ]
        return " ".join(parts)


LONGEST_PERIOD = Period(years=LONGEST_PERIOD_YEARS)


# -- the policy -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetentionRule:
    """One category: how long, counted from what, and what happens when the time is up."""

    category: str
    period: Period
    anchor: Anchor
    action: EndAction
    description: str = ""

    def describe(self) -> str:
        return f"{self.category}: {self.period} from {self.anchor}, then {self.action}"


@dataclass(frozen=True)
class RetentionPolicy:
    name: str
    version: int
    default_category: str
    """Category of every item not linked to any incident (counted from recording)."""
    unclassified_category: str
    """Category of an item linked to an incident whose category is missing or unknown to the policy."""
    minimum_after_ingest: Period
    records_after_disposal: Period
    """How long a disposed item's custody chain (the record of the disposal) stays locked."""
    categories: Mapping[str, RetentionRule]
    incident_categories: Mapping[str, str]
    """Incident (link, feed) category -> retention category."""
    digest: str = ""
    """SHA-256 of the policy file's bytes: which exact policy a disposal ran under."""
    source: str = ""

    @property
    def label(self) -> str:
        """How records name this policy: name, version and the first 16 hex of its file's SHA-256."""
        return f"{self.name} v{self.version} sha256:{self.digest[:16]}"

    def rule(self, category: str) -> RetentionRule:
        return self.categories[category]

    def category_for_incident(self, incident_category: str | None) -> str:
        """A link's category, mapped; a link category that already names a retention category is
        taken as it is; anything else is unclassified evidential material."""
        if incident_category is None:
            return self.unclassified_category
        wanted = incident_category.strip().lower()
        if wanted in self.incident_categories:
            return self.incident_categories[wanted]
        if wanted in self.categories:
            return wanted
        return self.unclassified_category


def load_policy(path: Path) -> RetentionPolicy:
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ConfigError(
            f"retention policy {path} cannot be read: {err.strerror or err}; set EVIDENCE_RETENTION_POLICY "
            "to the policy file, or leave it unset for the shipped default"
        ) from err
    return parse_policy(data, source=str(path))


def parse_policy(data: bytes, *, source: str = "<policy>") -> RetentionPolicy:
    """Read and check a policy document. Every mistake is a ``ConfigError`` naming the file and the
    entry: a misspelt key must never fall back silently to a default and delete evidence."""

    def problem(message: str) -> ConfigError:
        return ConfigError(f"retention policy {source}: {message}")

    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise problem(f"not valid TOML: {err}") from err
    unknown = sorted(set(doc) - _POLICY_KEYS)
    if unknown:
        raise problem(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(_POLICY_KEYS))}")
    categories_doc = doc.get("categories")
    if not isinstance(categories_doc, dict) or not categories_doc:
        raise problem("no [categories.<name>] tables: a policy needs at least one category")
    rules = {name: _parse_rule(name, entry, problem) for name, entry in categories_doc.items()}

    def category_setting(key: str) -> str:
        value = doc.get(key)
        if not isinstance(value, str) or value not in rules:
            raise problem(f"{key} = {value!r} must name one of the categories ({', '.join(sorted(rules))})")
        return value

    default_category = category_setting("default_category")
    if rules[default_category].anchor != "recording":
        # an item that is not linked has no link time to count from
        raise problem(f'default category {default_category!r} must count from "recording"')
    unclassified = category_setting("unclassified_category")
    if rules[unclassified].action != "review":
        # evidential material of an unknown kind is never destroyed without a person deciding
        raise problem(f'unclassified category {unclassified!r} must end in action = "review"')
    mapping_doc = doc.get("incident_categories", {})
    if not isinstance(mapping_doc, dict):
        raise problem("[incident_categories] must be a table of incident category = retention category")
    mapping: dict[str, str] = {}
    for incident_category, category in mapping_doc.items():
        if category not in rules:
            raise problem(
                f"incident category {incident_category!r} maps to {category!r}, which is not a category"
            )
        mapping[str(incident_category).strip().lower()] = category
    name = doc.get("name", "unnamed")
    version = doc.get("version", 1)
    if not isinstance(name, str) or not isinstance(version, int) or isinstance(version, bool):
        raise problem("name must be text and version a whole number")
    return RetentionPolicy(
        name=name,
        version=version,
        default_category=default_category,
        unclassified_category=unclassified,
        minimum_after_ingest=_period_setting(doc, "minimum_after_ingest", "7 days", problem),
        records_after_disposal=_period_setting(doc, "records_after_disposal", "7 years", problem),
        categories=rules,
        incident_categories=mapping,
        digest=hashlib.sha256(data).hexdigest(),
        source=source,
    )


class _Problem(Protocol):
    def __call__(self, message: str) -> ConfigError: ...


def _period_setting(doc: Mapping[str, Any], key: str, default: str, problem: _Problem) -> Period:
    try:
        return Period.parse(doc.get(key, default))
    except ConfigError as err:
        raise problem(f"{key}: {err}") from None


def _parse_rule(name: str, entry: object, problem: _Problem) -> RetentionRule:
    if not _CATEGORY_NAME.fullmatch(name):
        raise problem(f"category name {name!r} must be lower-case letters, digits and '-'")
    if not isinstance(entry, dict):
        raise problem(f"[categories.{name}] must be a table")
    unknown = sorted(set(entry) - _CATEGORY_KEYS)
    if unknown:
        raise problem(f"[categories.{name}] has unknown key(s) {', '.join(unknown)}")
    if "period" not in entry:
        raise problem(f'[categories.{name}] needs a period, e.g. period = "31 days"')
    try:
        period = Period.parse(entry["period"])
    except ConfigError as err:
        raise problem(f"[categories.{name}]: {err}") from None
    anchor = entry.get("from", "recording")
    if anchor not in ANCHORS:
        raise problem(f"[categories.{name}] from = {anchor!r}; use one of {', '.join(ANCHORS)}")
    action = entry.get("action", "review")
    if action not in END_ACTIONS:
        raise problem(f"[categories.{name}] action = {action!r}; use one of {', '.join(END_ACTIONS)}")
    description = entry.get("description", "")
    if not isinstance(description, str):
        raise problem(f"[categories.{name}] description must be text")
    return RetentionRule(name, period, anchor, action, description)


# -- what is known about an item ------------------------------------------------------------------


@dataclass(frozen=True)
class LinkFact:
    incident: str
    category: str | None
    """The incident's category as the link recorded it (e.g. ``domestic-abuse``), if any."""
    linked_at: datetime
    closed_at: datetime | None = None
    """When the incident's case closed, as the item's chain records it; None while it is open."""


@dataclass(frozen=True)
class RetentionFacts:
    """Everything a retention decision depends on. Built from the catalog for the nightly pass and
    from the item's custody chain before anything in storage changes."""

    evidence_id: str
    ingested_at: datetime
    recorded_at: datetime | None
    links: tuple[LinkFact, ...] = ()
    holds: tuple[str, ...] = ()
    reviewed_keep_until: datetime | None = None
    """The latest date a person's review kept the item until (``evidence retention review --keep-for``)."""
    reviewed_dispose_at: datetime | None = None
    """The latest review date a person settled as a disposal (``evidence retention review --dispose``)."""


@dataclass(frozen=True)
class Decision:
    evidence_id: str
    action: Action
    keep_until: datetime
    """Until when the policy keeps the item (the review date for ``review`` rules)."""
    category: str
    rule: str
    """The rule that set ``keep_until`` (``RetentionRule.describe()``)."""
    reason: str
    held: bool = False


def as_utc(moment: datetime) -> datetime:
    """Times without a zone are taken as UTC (device clocks often carry none; see docs/retention.md).
    A device's ``9999-12-31T23:59:59-14:00`` is pinned to the calendar's end, not an overflow
    (``evidence.times.in_utc``)."""
    return in_utc(moment)


def parse_recorded_at(text: str | None) -> datetime | None:
    """A manifest's ``recorded_at`` (ISO 8601, offset when the device gave one) as UTC, or None."""
    if not text:
        return None
    try:
        return as_utc(datetime.fromisoformat(text))
    except ValueError:
        return None


def recording_anchor(facts: RetentionFacts) -> tuple[datetime, str]:
    """When "from recording" counts from, and why. Nothing is recorded after it was ingested, so a
    later capture time is a wrong camera clock and the ingest time is used instead."""
    ingested = as_utc(facts.ingested_at)
    if facts.recorded_at is None:
        return ingested, f"no capture time; counted from ingest {_day(ingested)}"
    recorded = as_utc(facts.recorded_at)
    if recorded > ingested:
        return (
            ingested,
            f"capture time {_day(recorded)} is after ingest; counted from ingest {_day(ingested)}",
        )
    return recorded, f"recorded {_day(recorded)}"


def decide(facts: RetentionFacts, policy: RetentionPolicy, now: datetime) -> Decision:
    """Keep until a date, dispose, or hand to a person for review; with the rule and the reason."""
    now = as_utc(now)
    candidates = _candidate_dates(facts, policy)
    # the latest date wins; on a tie, a review rule wins over a dispose rule (a person looks first)
    chosen = max(candidates, key=_precedence)
    until, why = chosen.until, chosen.why
    category, rule = chosen.category, chosen.rule
    end: EndAction = "dispose" if all(c.action == "dispose" for c in candidates) else "review"
    floor = as_utc(policy.minimum_after_ingest.after(as_utc(facts.ingested_at)))
    if floor > until:
        until = floor
        why += f"; kept at least {policy.minimum_after_ingest} after ingest"
    reason = f"{rule} ({why}) -> {_day(until)}"
    if facts.holds:
        return Decision(
            facts.evidence_id,
            "keep",
            until,
            category,
            rule,
            f"legal hold {', '.join(sorted(facts.holds))}: kept whatever its dates; policy: {reason}",
            held=True,
        )
    if now < until:
        return Decision(facts.evidence_id, "keep", until, category, rule, reason)
    if end == "review":
        return Decision(facts.evidence_id, "review", until, category, rule, f"review due: {reason}")
    return Decision(facts.evidence_id, "dispose", until, category, rule, f"elapsed: {reason}")


@dataclass(frozen=True)
class _Candidate:
    """One rule's date for an item, and what it asks for when the date passes."""

    until: datetime
    category: str
    rule: str
    """``RetentionRule.describe()``, or the review that set the date."""
    why: str
    action: EndAction

    @classmethod
    def of(cls, until: datetime, rule: RetentionRule, why: str, action: EndAction) -> _Candidate:
        return cls(as_utc(until), rule.category, rule.describe(), why, action)


def _precedence(candidate: _Candidate) -> tuple[datetime, bool, str, str, str]:
    """The latest date first, then a review over a disposal; the rest only makes a full tie (two cases
    closed the same day) come out the same whatever order the links are given in: the chain's order
    or the catalog's, which must give the same decision and the same reason."""
    return (candidate.until, candidate.action == "review", candidate.category, candidate.rule, candidate.why)


def _candidate_dates(facts: RetentionFacts, policy: RetentionPolicy) -> list[_Candidate]:
    candidates = _policy_dates(facts, policy)
    if facts.reviewed_keep_until is not None:
        # a person kept it longer: a date of its own, and another review when it comes
        kept = as_utc(facts.reviewed_keep_until)
        latest = max(candidates, key=_precedence)
        candidates.append(
            _Candidate(
                kept, latest.category, "kept by review", f"a review kept it until {_day(kept)}", "review"
            )
        )
    if facts.reviewed_dispose_at is not None:
        # A person reviewed it and decided it may go: every date that had come by then is settled
        # as a disposal. A date still to come (a later link, a later keep) is not: it gets its own
        # review, and a hold still stops everything.
        decided = as_utc(facts.reviewed_dispose_at)
        candidates = [
            replace(c, action="dispose", why=f"{c.why}; review due {_day(decided)} decided disposal")
            if c.until <= decided and c.action == "review"
            else c
            for c in candidates
        ]
    return candidates


def _policy_dates(facts: RetentionFacts, policy: RetentionPolicy) -> list[_Candidate]:
    recorded, recorded_why = recording_anchor(facts)
    default = policy.rule(policy.default_category)
    # the unlinked default is a floor for linked items too: linking never shortens retention
    candidates = [_Candidate.of(default.period.after(recorded), default, recorded_why, default.action)]
    for link in facts.links:
        category = policy.category_for_incident(link.category)
        rule = policy.rule(category)
        action = rule.action
        linked = as_utc(link.linked_at)
        if rule.anchor == "link":
            start, why = linked, f"linked to {link.incident} {_day(linked)}"
        elif rule.anchor == "closure" and link.closed_at is not None:
            # a link made after the case closed counts from the link: never shorter than it says
            closed = as_utc(link.closed_at)
            start = max(closed, linked)
            why = f"case {link.incident} closed {_day(closed)}"
            if linked > closed:
                why += f", linked after closure {_day(linked)}"
        elif rule.anchor == "closure":
            # A case still open has no date to count from. The closure can come no earlier than the
            # link, so the period from the link is the earliest the rule could end: a person then
            # checks whether the case is still open, rather than the item being kept by neglect.
            start, action = linked, "review"
            why = f"case {link.incident} not recorded as closed; linked {_day(linked)}"
        else:
            start, why = recorded, f"{recorded_why}; linked to {link.incident}"
        if link.category is None:
            why += ", incident category unknown"
        elif category == policy.unclassified_category and link.category != category:
            why += f", incident category {link.category!r} not in the policy"
        candidates.append(_Candidate.of(rule.period.after(start), rule, why, action))
    return candidates


def _day(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d")


# -- facts from a custody chain -------------------------------------------------------------------


class EventLike(Protocol):
    @property
    def type(self) -> str: ...

    @property
    def at(self) -> datetime: ...

    @property
    def details(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class ChainState:
    """An item's retention-relevant state folded from its custody chain (``docs/custody.md`` §4)."""

    facts: RetentionFacts
    hold_incidents: Mapping[str, str | None] = field(default_factory=dict)
    """Hold id -> incident (if the hold named one), for holds in force."""
    retain_until: datetime | None = None
    """From the latest ``retention`` event: the lock the item's objects were last extended to."""
    disposed_at: datetime | None = None
    disposal_rule: str | None = None


@dataclass(frozen=True)
class ChainFold:
    """What an item's custody chain says now. The one fold of state-changing events: the chain's
    readers and the catalog (``storage.catalog``) both use it, so the nightly pass, which reads the
    catalog, and the action it leads to, which re-reads the chain, cannot disagree."""

    links: Mapping[str, LinkFact] = field(default_factory=dict)
    """Incident -> its link in force, with the case's closure if one is in force."""
    holds: Mapping[str, str | None] = field(default_factory=dict)
    """Hold id -> incident (if the hold named one), for holds in force."""
    reviewed_keep_until: datetime | None = None
    reviewed_dispose_at: datetime | None = None
    retain_until: datetime | None = None
    """From the latest ``retention`` event: the lock the item's objects were last extended to."""
    retention_category: str | None = None
    disposed_at: datetime | None = None
    """When the (first) ``disposal`` event was written: the disposal began then."""
    disposal_rule: str | None = None

    @property
    def linked_at(self) -> datetime | None:
        """The earliest link in force (for people; decisions use each link's own time)."""
        return min((link.linked_at for link in self.links.values()), default=None)


def fold_chain(events: Iterable[EventLike]) -> ChainFold:
    """Fold link/unlink, closure/reopen, review, hold/release, retention and disposal events, given
    in chain order. A re-link of an incident counts from the latest link (longer, never shorter) and
    keeps its category unless the new link names one. A case's closure is the latest one not reopened
    since; it is a fact about the incident, so it outlives an unlink and a re-link of it. An event
    without the field it acts on (an incident, a hold id, a readable date) changes nothing."""
    links: dict[str, LinkFact] = {}
    closures: dict[str, datetime] = {}
    holds: dict[str, str | None] = {}
    kept_until: datetime | None = None
    dispose_at: datetime | None = None
    retain_until: datetime | None = None
    retention_category: str | None = None
    disposed_at: datetime | None = None
    disposal_rule: str | None = None
    for event in events:
        details = event.details
        incident = _text_or_none(details.get("incident"))
        if event.type == "link" and incident:
            category = _text_or_none(details.get("category"))
            earlier = links.get(incident)
            if category is None and earlier is not None:
                category = earlier.category
            links[incident] = LinkFact(incident, category, as_utc(event.at))
        elif event.type == "unlink" and incident:
            links.pop(incident, None)
        elif event.type == "closure" and incident:
            closed_at = _moment_or_none(details.get("closed_at"))
            if closed_at is not None:  # a closure without a readable date leaves the case open
                closures[incident] = closed_at
        elif event.type == "reopen" and incident:
            closures.pop(incident, None)
        elif event.type == "review":
            kept_until, dispose_at = fold_review(details, kept_until, dispose_at)
        elif event.type == "hold":
            hold_id = _text_or_none(details.get("hold_id"))
            if hold_id:
                holds[hold_id] = incident
        elif event.type == "release":
            holds.pop(_text_or_none(details.get("hold_id")) or "", None)
        elif event.type == "retention":
            until = _moment_or_none(details.get("retain_until"))
            if until is not None:
                retain_until = until
                retention_category = _text_or_none(details.get("category"))
        elif event.type == "disposal" and disposed_at is None:
            disposed_at = as_utc(event.at)
            disposal_rule = _text_or_none(details.get("rule")) or ""
    return ChainFold(
        {ref: replace(link, closed_at=closures.get(ref)) for ref, link in links.items()},
        holds,
        kept_until,
        dispose_at,
        retain_until,
        retention_category,
        disposed_at,
        disposal_rule,
    )


def facts_from_events(
    evidence_id: str, ingested_at: datetime, recorded_at: datetime | None, events: Iterable[EventLike]
) -> ChainState:
    """The retention facts of one item from its custody chain (events in chain order)."""
    fold = fold_chain(events)
    facts = RetentionFacts(
        evidence_id=evidence_id,
        ingested_at=as_utc(ingested_at),
        recorded_at=None if recorded_at is None else as_utc(recorded_at),
        links=tuple(fold.links.values()),
        holds=tuple(sorted(fold.holds)),
        reviewed_keep_until=fold.reviewed_keep_until,
        reviewed_dispose_at=fold.reviewed_dispose_at,
    )
    return ChainState(facts, dict(fold.holds), fold.retain_until, fold.disposed_at, fold.disposal_rule)


def fold_review(
    details: Mapping[str, Any], keep_until: datetime | None, dispose_at: datetime | None
) -> tuple[datetime | None, datetime | None]:
    """One ``review`` event folded into (latest date kept until, latest review date settled as a
    disposal). The catalog folds reviews with this same function, so the nightly pass and the chain
    agree. A disposal decision settles the review date that was due (``review_due``), not the moment
    it was written: it can never make anything due sooner than the policy made it."""
    decision = details.get("decision")
    if decision == "keep":
        until = _moment_or_none(details.get("keep_until"))
        if until is not None:  # a keep without a readable date changes nothing
            keep_until = until if keep_until is None else max(keep_until, until)
    elif decision == "dispose":
        due = _moment_or_none(details.get("review_due"))
        if due is not None:
            dispose_at = due if dispose_at is None else max(dispose_at, due)
    return keep_until, dispose_at


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _moment_or_none(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return as_utc(datetime.fromisoformat(value))
    except ValueError:
        return None


def lock_extension(decision: Decision, locked_until: datetime | None, now: datetime) -> datetime | None:
    """The retain-until the item's objects must be extended to, or None when their lock already
    reaches the policy date (or the date has passed). Storage locks only ever move later."""
    target = as_utc(decision.keep_until)
    if target <= as_utc(now):
        return None
    if locked_until is not None and as_utc(locked_until) >= target:
        return None
    return target
