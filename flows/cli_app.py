"""The shared ``evidence`` Typer app and what every command module needs.

Command modules (``flows/cli.py`` and those listed in ``flows/commands.py``) register on ``app`` here;
keeping the app in its own module means ``python -m flows.cli`` cannot end up with two copies of it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Annotated

import typer

from evidence.access import Actor, UserDirectory
from evidence.settings import Settings, load_settings

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
    """The person running this command, with their roles; unknown users are refused."""
    return UserDirectory.load(settings.users_file).resolve(invocation.user or settings.user)


def print_json(doc: object) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n")
