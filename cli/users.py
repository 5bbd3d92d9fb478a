"""``evidence users``: local accounts for the portal (add, list, reset-password, remove).

Passwords are read hidden (twice) or from stdin, never from the command line, where ``ps`` and shell
history would keep them. The TOTP enrolment URI is printed once: it is the second factor itself.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table

from cli.app import JsonOption, app, print_json, settings_now
from evidence.errors import InvalidInput
from flows.console import out, visible

users_app = typer.Typer(help="Local accounts for the investigators' portal.", no_args_is_help=True)
app.add_typer(users_app, name="users")

RoleOption = Annotated[
    list[str],
    typer.Option("--role", help="officer, investigator or storage-admin (repeatable).", show_default=False),
]
PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from the first line of stdin.")
]
NoTotp = Annotated[
    bool, typer.Option("--no-totp", help="No second factor (only for accounts with the officer role alone).")
]


@users_app.command("add")
def users_add(
    user_id: Annotated[
        str, typer.Argument(metavar="ID", help="The person's user id (as in custody records).")
    ],
    role: RoleOption,
    password_stdin: PasswordStdin = False,
    no_totp: NoTotp = False,
) -> None:
    """Create a portal account: a password (Argon2id-hashed) and, for investigators and storage admins
    always, a TOTP second factor."""
    from evidence.accounts import require_roles
    from flows.accounts import enrol
    from storage.accounts import Accounts

    roles = require_roles(tuple(role))
    settings = settings_now()
    accounts = Accounts.open(settings)
    try:
        if accounts.account(user_id) is not None:
            raise InvalidInput(
                f"an account {user_id!r} already exists; use `evidence users reset-password` or "
                "`evidence users remove`"
            )
        enrolment = enrol(accounts, user_id, roles, _read_password(password_stdin), with_totp=not no_totp)
    finally:
        accounts.close()
    out.print(f"added {visible(enrolment.user_id)} ({', '.join(sorted(enrolment.roles))})")
    _show_totp(enrolment.totp_uri)


@users_app.command("reset-password")
def users_reset_password(
    user_id: Annotated[str, typer.Argument(metavar="ID")],
    password_stdin: PasswordStdin = False,
    no_totp: NoTotp = False,
) -> None:
    """A new password and a new TOTP secret (a forgotten password, a lost phone); ends their sessions."""
    from flows.accounts import reset_credentials
    from storage.accounts import Accounts

    accounts = Accounts.open(settings_now())
    try:
        if accounts.account(user_id) is None:
            raise InvalidInput(f"there is no account {user_id!r}; add it with `evidence users add`")
        enrolment = reset_credentials(
            accounts, user_id, _read_password(password_stdin), with_totp=not no_totp
        )
    finally:
        accounts.close()
    out.print(f"reset {visible(enrolment.user_id)}: new password; their sessions are ended")
    _show_totp(enrolment.totp_uri)


@users_app.command("remove")
def users_remove(user_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Remove an account and end its sessions (its sign-in records stay)."""
    from storage.accounts import Accounts

    accounts = Accounts.open(settings_now())
    try:
        accounts.remove(user_id)
    finally:
        accounts.close()
    out.print(f"removed {visible(user_id)}")


@users_app.command("list")
def users_list(as_json: JsonOption = False) -> None:
    """Accounts with their roles, second factor and lock state (no secrets)."""
    from storage.accounts import Accounts

    accounts = Accounts.open(settings_now())
    try:
        everyone, now = accounts.accounts(), accounts.now()
    finally:
        accounts.close()
    rows = [
        {
            "user_id": a.user_id,
            "roles": sorted(a.roles),
            "totp": a.has_totp,
            "locked_until": a.locked_until.isoformat() if a.locked_at(now) and a.locked_until else None,
            "created_at": a.created_at.isoformat(),
        }
        for a in everyone
    ]
    if as_json:
        print_json(rows)
        return
    table = Table(title="Portal accounts")
    for column in ("user id", "roles", "TOTP", "locked until", "created"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            visible(str(row["user_id"])),
            ", ".join(row["roles"]),  # type: ignore[arg-type]
            "yes" if row["totp"] else "no",
            str(row["locked_until"] or ""),
            str(row["created_at"])[:19],
        )
    out.print(table)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        if not password:
            raise InvalidInput("no password on stdin: give it as the first line")
        return password.removesuffix("\r")
    first = typer.prompt("Password", hide_input=True)
    second = typer.prompt("Password again", hide_input=True)
    if first != second:
        raise InvalidInput("the two passwords differ; run the command again")
    return str(first)


def _show_totp(uri: str | None) -> None:
    if uri is None:
        out.print("no second factor (officer-only account)")
        return
    out.print("Load this into the person's authenticator app (type it in, or make a QR code of it):")
    out.print(uri, soft_wrap=True)
    out.print("It is shown only now and will not be shown again.")
