"""Commands for legal holds, retention, custody and fixity (``docs/retention.md``, ``docs/custody.md``).

``hold set``/``hold release`` (investigators, storage admins), ``retention run`` and ``fixity``
(storage admins; Prefect flows), ``custody`` (anyone in the users file; verification needs only public
keys, and ``--trust`` restricts it to keys the verifier brought).
"""

from __future__ import annotations

from datetime import UTC
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cli.app import (
    EXIT_SOME_FAILED,
    JsonOption,
    acting_user,
    app,
    finish_item_report,
    invocation,
    print_json,
    settings_now,
)
from evidence.errors import EvidenceError, IntegrityError, NotFound
from flows.console import err, out, styled, visible, visible_message, visible_value

hold_app = typer.Typer(help="Legal holds on the evidence of an incident.", no_args_is_help=True)
retention_app = typer.Typer(help="Retention policy: lawful disposal and storage locks.", no_args_is_help=True)
app.add_typer(hold_app, name="hold")
app.add_typer(retention_app, name="retention")

IncidentOption = Annotated[str, typer.Option("--incident", help="Incident reference, e.g. KNT-2026-000123.")]
ReasonOption = Annotated[
    str, typer.Option("--reason", help="Why (court case, request); recorded in every item's custody chain.")
]


# -- holds ----------------------------------------------------------------------------------------


@hold_app.command("set")
def hold_set(incident: IncidentOption, reason: ReasonOption, as_json: JsonOption = False) -> None:
    """Put a legal hold on every item linked to an incident: never disposed of while it stands."""
    from flows.holds import set_hold

    _run_hold(set_hold, incident, reason, as_json)


@hold_app.command("release")
def hold_release(incident: IncidentOption, reason: ReasonOption, as_json: JsonOption = False) -> None:
    """Release an incident's legal hold; items under no other hold return to the retention policy."""
    from flows.holds import release_hold

    _run_hold(release_hold, incident, reason, as_json)


def _run_hold(action: Any, incident: str, reason: str, as_json: bool) -> None:
    from evidence.incident import parse_incident_ref
    from flows.holds import clean_reason
    from flows.records import open_catalog
    from storage.vault import Vault

    settings = settings_now()
    ref = parse_incident_ref(incident, settings.incident_ref_pattern)
    clean_reason(reason)
    actor = acting_user(settings)
    report = action(Vault.open(settings), open_catalog(settings), ref, reason, actor)
    if as_json:
        print_json(report.as_json())
    else:
        table = Table(title=f"Hold {report.hold_id}: {report.action}")
        table.add_column("evidence id", no_wrap=True, min_width=29)
        table.add_column("status")
        table.add_column("versions changed", justify="right")
        table.add_column("note", overflow="fold")
        for outcome in report.outcomes:
            table.add_row(
                outcome.evidence_id,
                outcome.status,
                str(outcome.versions_changed),
                visible_message(outcome.note),
            )
        out.print(table)
    if report.failed:
        err.print(f"{len(report.failed)} item(s) failed; run the same command again to finish")
        raise typer.Exit(EXIT_SOME_FAILED)


# -- retention --------------------------------------------------------------------------------------


@retention_app.command("run")
def retention_run(
    apply: Annotated[
        bool, typer.Option("--apply", help="Dispose of elapsed items and extend locks (default: dry run).")
    ] = False,
    extend_locks: Annotated[
        bool,
        typer.Option(
            "--extend-locks",
            help="Extend storage locks to the policy's dates now; without --apply nothing is disposed of.",
        ),
    ] = False,
    now: Annotated[
        str | None,
        typer.Option(
            "--now",
            help="Rehearse as if it were this time (ISO 8601). With --apply, nothing is disposed of that "
            "the real date or a storage lock still protects, and every event records the simulated time.",
        ),
    ] = None,
    csv_path: Annotated[
        Path | None, typer.Option("--csv", help="Where to write the full report (default: data dir/reports).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Apply the retention policy: what is disposed of, kept, extended or due for review, and why."""
    from evidence.retention import load_policy
    from flows.retention import parse_now, policy_path, resolve_actor
    from flows.run import prefect_api_errors, prepare_prefect
    from storage.vault import Vault

    settings = settings_now()
    parse_now(now)  # a bad time is reported before a flow starts
    actor = resolve_actor(settings, invocation.user)
    actor.require("retention")
    # so are a missing or broken policy file and missing keys: one line, not a failed run's traceback
    load_policy(policy_path(settings))
    Vault.open(settings)
    prepare_prefect(as_json)
    from flows.retention import retention

    with prefect_api_errors():
        report = retention(
            apply=apply,
            now=now,
            user=actor.user_id,
            csv_path=None if csv_path is None else str(csv_path),
            extend_locks=extend_locks,
        )
    if as_json:
        print_json(report.as_json())
    else:
        if report.applied:
            kind = "applied"
        elif report.locks_extended:
            kind = "storage locks extended, nothing disposed of (--apply to dispose)"
        else:
            kind = "dry run (nothing changed; --apply to act)"
        when = report.now.astimezone(UTC).isoformat()
        if report.simulated and report.real_now is not None:
            when = f"SIMULATED {when} (real time {report.real_now.astimezone(UTC).isoformat(timespec='seconds')})"
        table = Table(title=f"Retention at {when}: {kind}")
        table.add_column("evidence id", no_wrap=True, min_width=29)
        table.add_column("action")
        table.add_column("until", no_wrap=True)
        table.add_column("rule", overflow="fold")
        table.add_column("outcome", overflow="fold")
        for line in report.lines:
            if line.outcome == "disposal complete":
                continue  # checked for leftovers of an interrupted disposal: none; counted, not listed
            table.add_row(
                line.evidence_id,
                line.action,
                line.keep_until[:10],
                visible(line.category),
                visible_message(line.outcome),
            )
        out.print(table)
        out.print(", ".join(f"{n} {name}" for name, n in report.counts.items()) or "the catalog is empty")
        out.print(f"policy {visible(report.policy)}; full report: {visible(str(report.csv_path))}")
        if report.simulated:
            out.print(
                "simulated clock: "
                + (
                    "nothing was disposed of that the policy at the real date or a storage lock still "
                    "protects; every event written records the simulated time"
                    if report.applied
                    else "a rehearsal of a run at that time; --apply would dispose of nothing that the "
                    "policy at the real date or a storage lock still protects"
                )
            )
    if report.failures:
        err.print(f"{len(report.failures)} item(s) failed; the next run retries them")
        raise typer.Exit(EXIT_SOME_FAILED)


@retention_app.command("review")
def retention_review(
    evidence_ids: Annotated[list[str], typer.Argument(help="Evidence ids due for review (ev-...).")],
    reason: Annotated[
        str, typer.Option("--reason", help="The reviewer's grounds; recorded in each item's custody chain.")
    ],
    keep_for: Annotated[
        str | None,
        typer.Option("--keep-for", help="Keep for a further period ('2 years'), then review again."),
    ] = None,
    dispose: Annotated[
        bool,
        typer.Option("--dispose", help="Settle the review as a disposal: the next --apply run disposes."),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Record a review decision on items the retention run lists as due for review."""
    from evidence.retention import Period, load_policy
    from flows.records import open_catalog
    from flows.retention import policy_path
    from flows.review import review_items
    from storage.vault import Vault

    settings = settings_now()
    period = Period.parse(keep_for) if keep_for is not None else None
    actor = acting_user(settings)
    actor.require("review")
    report = review_items(
        Vault.open(settings),
        open_catalog(settings),
        evidence_ids,
        keep_for=period,
        dispose=dispose,
        reason=reason,
        actor=actor,
        policy=load_policy(policy_path(settings)),
    )
    finish_item_report(report, f"Review: {report.decision}", as_json)


# -- custody ----------------------------------------------------------------------------------------


@app.command()
def custody(
    evidence_id: Annotated[str, typer.Argument(help="The item's evidence id (ev-...).")],
    trust: Annotated[
        Path | None,
        typer.Option(
            "--trust",
            help="Folder of the force's published .pub signing keys: only these are trusted, not the "
            "keys the vault itself lists.",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Print an item's chain of custody and verify it: every removed, reordered or altered event is
    named. Works for disposed items too: the chain outlives the evidence."""
    from evidence.ids import require_evidence_id
    from flows.custody_report import lost_race_document
    from flows.records import open_catalog
    from storage.custody import open_for_verification

    require_evidence_id(evidence_id)
    settings = settings_now()
    acting_user(settings).require("list")
    trusted = _trusted_keys(trust) if trust is not None else None
    chains = open_for_verification(settings)  # public keys only: a third party holds nothing secret
    expected = None
    try:
        known = open_catalog(settings).item(evidence_id)
        expected = known.custody_length if known is not None else None
    except EvidenceError:
        expected = None  # the catalog only adds the length check; the chain stands on its own
    if not chains.has_chain(evidence_id):
        raise NotFound(f"no custody records for {evidence_id} in {chains.store.url}")
    verification = chains.verify(
        evidence_id, trusted=trusted, trusted_only=trusted is not None, expected_length=expected
    )
    if as_json:
        print_json(
            {
                "evidence_id": evidence_id,
                "intact": verification.intact,
                "trusted_only": trusted is not None,
                "expected_length": expected,
                "signers": list(verification.signers),
                "problems": [{"position": p.position, "message": p.message} for p in verification.problems],
                "events": [event.to_document() for event in verification.events],
                "lost_races": [lost_race_document(race) for race in verification.lost_races],
            }
        )
    else:
        _render_chain(verification, trusted is not None)
    if not verification.intact:
        raise typer.Exit(IntegrityError.exit_code)


def _trusted_keys(folder: Path) -> dict[str, Any]:
    from evidence.errors import InvalidInput
    from evidence.signing import VerifyingKey

    if not folder.is_dir():
        raise InvalidInput(f"--trust {folder} is not a folder of .pub signing keys")
    keys = {}
    for path in sorted(folder.glob("*.pub")):
        key = VerifyingKey.from_file(path)
        keys[key.key_id] = key
    if not keys:
        raise InvalidInput(f"--trust {folder} holds no .pub signing keys")
    return keys


def _render_chain(verification: Any, trusted_only: bool) -> None:
    table = Table(title=f"Chain of custody: {verification.evidence_id}")
    table.add_column("#", justify="right")
    table.add_column("at (UTC)", no_wrap=True)
    table.add_column("event")
    table.add_column("by", overflow="fold")
    table.add_column("station", overflow="fold")
    table.add_column("details", overflow="fold")
    table.add_column("signer", no_wrap=True)
    for event in verification.events:
        # reasons, purposes and names in a chain were typed by people or came from devices
        details = visible_value({k: v for k, v in sorted(event.details.items()) if v is not None})
        table.add_row(
            str(event.seq),
            event.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            visible(event.type),
            f"{visible(event.actor)} ({visible(event.role)})",
            visible(event.station),
            details,
            visible(event.signer),
        )
    out.print(table)
    for race in verification.lost_races:
        # not a problem: a later version at a position that lost the race for it (docs/custody.md §5)
        out.print(styled(f"event {race.position}", "cyan", f": {visible_message(race.describe())}"))
    keys = "the keys given with --trust" if trusted_only else "the keys published in the vault"
    if verification.intact:
        out.print(
            styled(
                "intact",
                "green",
                f": {len(verification.events)} event(s), each signed and chained; "
                f"signers {', '.join(map(visible, verification.signers))} checked against {keys}",
            )
        )
        return
    for problem in verification.problems:
        err.print(styled(f"event {problem.position}", "red", f": {visible_message(problem.message)}"))
    err.print(
        styled("BROKEN", "red", f": {len(verification.problems)} problem(s) found checking against {keys}")
    )


# -- fixity -----------------------------------------------------------------------------------------


@app.command()
def fixity(
    sample: Annotated[
        int | None, typer.Option("--sample", help="Check this many items chosen at random (default 25).")
    ] = None,
    all_items: Annotated[bool, typer.Option("--all", help="Check every item.")] = False,
    seed: Annotated[int | None, typer.Option("--seed", help="Repeat an earlier sample.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Re-read stored objects and verify them against what was recorded at ingest (storage admins).
    Each result is a custody event; any failure exits 3."""
    from evidence.errors import InvalidInput
    from flows.fixity import DEFAULT_SAMPLE
    from flows.retention import resolve_actor
    from flows.run import prefect_api_errors, prepare_prefect
    from storage.vault import Vault

    if all_items and sample is not None:
        raise InvalidInput("give either --sample N or --all, not both")
    settings = settings_now()
    actor = resolve_actor(settings, invocation.user)
    actor.require("fixity")
    Vault.open(settings)  # missing keys are one line before a flow starts, not every item "not checked"
    prepare_prefect(as_json)
    from flows.fixity import fixity as fixity_flow

    with prefect_api_errors():
        report = fixity_flow(
            sample=None if all_items else (sample or DEFAULT_SAMPLE),
            all_items=all_items,
            seed=seed,
            user=actor.user_id,
        )
    if as_json:
        print_json(report.as_json())
    else:
        table = Table(
            title=f"Fixity: {report.chosen} item(s)" + (f", seed {report.seed}" if report.seed else "")
        )
        table.add_column("evidence id", no_wrap=True, min_width=29)
        table.add_column("result")
        table.add_column("level")
        table.add_column("problem", overflow="fold")
        for result in report.results:
            colour = "green" if result.result == "ok" else "red"
            table.add_row(
                result.evidence_id,
                styled(result.result, colour),
                result.level,
                visible_message(result.problem or ""),
            )
        out.print(table)
        out.print(", ".join(f"{n} {name}" for name, n in report.counts.items()) or "nothing to check")
    if report.failed:
        raise typer.Exit(IntegrityError.exit_code)
