"""The shared ``evidence`` Typer app and what every command module needs.

Command modules (those listed in ``cli/commands.py``) register on ``app`` here;
keeping the app in its own module means ``python -m cli`` cannot end up with two copies of it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import typer

from evidence.access import Actor, UserDirectory
from evidence.devices import require_identifier
from evidence.errors import InvalidInput
from evidence.settings import Settings, load_settings

if TYPE_CHECKING:
    from flows.outcomes import ItemReport

EXIT_SOME_FAILED = 9
"""Some items failed and the others were done; running the same command again finishes the job."""

app = typer.Typer(
    name="evidence",
    help="Body-worn video and scene photos into encrypted, WORM-locked, verified evidence storage.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
keys_app = typer.Typer(help="Key pairs and the vault id key.", no_args_is_help=True)
vault_app = typer.Typer(help="Create and check the vault (bucket or directory).", no_args_is_help=True)
dock_app = typer.Typer(help="Docking-station automation.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(vault_app, name="vault")
app.add_typer(dock_app, name="dock")


JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document for machines.")]


@dataclass
class Invocation:
    user: str | None = None


invocation = Invocation()


@app.callback()
def _global_options(
    user: Annotated[
        str | None,
        typer.Option(
            "--user", help="Who is acting (default: EVIDENCE_USER); roles come from the users file."
        ),
    ] = None,
) -> None:
    invocation.user = user


def settings_now() -> Settings:
    return load_settings()


def acting_user(settings: Settings) -> Actor:
    """The person running this command, with their roles; unknown users are refused. A person with a
    portal account (``evidence users add``) has the roles stored there; others those of the users file."""
    from storage.accounts import stored_roles

    user_id = invocation.user or settings.user
    if user_id and _is_identifier(user_id):
        roles = stored_roles(settings, user_id)
        if roles:
            return Actor(user_id, roles)
    return UserDirectory.load(settings.users_file).resolve(user_id)


def _is_identifier(value: str) -> bool:
    try:
        require_identifier(value, "user id")
    except InvalidInput:
        return False
    return True


def print_json(doc: object) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n")


def finish_item_report(report: ItemReport, title: str, as_json: bool) -> None:
    """Print a per-item report (JSON, or a table of evidence id, status and note); when items failed,
    say so and exit 9, so a script knows to run the same command again."""
    from rich.table import Table

    from flows.console import err, out, visible, visible_message

    if as_json:
        print_json(report.as_json())
    else:
        table = Table(title=visible(title))
        table.add_column("evidence id", no_wrap=True, min_width=29)  # people copy these: never cut one
        table.add_column("status")
        table.add_column("note", overflow="fold")
        for outcome in report.outcomes:
            table.add_row(visible(outcome.evidence_id), outcome.status, visible_message(outcome.note))
        out.print(table)
    if report.failed:
        err.print(f"{len(report.failed)} item(s) failed; run the same command again to finish them")
        raise typer.Exit(EXIT_SOME_FAILED)
