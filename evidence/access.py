"""Who may do what. The application enforces these roles; storage credentials enforce the rest
(``docs/access.md``): a role check here stops honest mistakes and records intent, while only IAM
policies stop someone who bypasses this program and talks to the bucket directly.

Users file (``Settings.users_file``)::

    [users.alice]
    role = "investigator"          # or roles = ["officer", "investigator"]: one of the two

Any other key, table or value is refused with the file named (``ConfigError``, exit code 2).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

from evidence.config_tables import read_tables
from evidence.devices import require_identifier
from evidence.errors import AccessDenied, ConfigError, InvalidInput

Role = Literal["officer", "investigator", "storage-admin"]
ROLES: tuple[Role, ...] = ("officer", "investigator", "storage-admin")

Action = Literal[
    "show",
    "get",
    "export",
    "thumbs",
    "list",
    "link",
    "unlink",
    "close",
    "reopen",
    "hold",
    "release",
    "review",
    "retention",
    "fixity",
    "audit",
]

PERMITTED: Mapping[Action, frozenset[Role]] = {
    # an item's clear manifest, as a listing shows it; its sealed details need "get" as well
    "show": frozenset({"officer", "investigator", "storage-admin"}),
    "get": frozenset({"investigator"}),
    "export": frozenset({"investigator"}),
    "thumbs": frozenset({"investigator"}),
    "list": frozenset({"officer", "investigator", "storage-admin"}),
    "link": frozenset({"officer", "investigator"}),
    "unlink": frozenset({"officer", "investigator"}),
    # a case's closure starts the clock of rules counted from closure: the people who know the case
    # (or the admin, from the records system) record it; each record names who did
    "close": frozenset({"investigator", "storage-admin"}),
    "reopen": frozenset({"investigator", "storage-admin"}),
    "hold": frozenset({"investigator", "storage-admin"}),
    # releasing a legal hold lets evidence become disposable: a storage admin's act alone, as the
    # storage policy also enforces (infra/policies: investigators may place holds, never lift them)
    "release": frozenset({"storage-admin"}),
    # a review decides the fate of evidence the policy will not decide alone: the admin who runs
    # retention (the force's information-management reviewer), recorded by name
    "review": frozenset({"storage-admin"}),
    "retention": frozenset({"storage-admin"}),
    "fixity": frozenset({"storage-admin"}),
    # who read, played, downloaded or exported what, and what each person searched for: the people
    # who answer for the store's use (access reviews, complaints), not those whose reads are in it
    "audit": frozenset({"storage-admin"}),
}


@dataclass(frozen=True)
class Actor:
    user_id: str
    roles: frozenset[Role]

    @property
    def role(self) -> str:
        """The roles as one field for records (``investigator`` or ``officer+investigator``)."""
        return "+".join(sorted(self.roles))

    def may(self, action: Action) -> bool:
        return bool(self.roles & PERMITTED[action])

    def require(self, action: Action) -> None:
        allowed = PERMITTED[action]
        if not self.may(action):
            raise AccessDenied(
                f"user {self.user_id} ({self.role}) may not {action}: that needs the "
                f"{' or '.join(sorted(allowed))} role"
            )


class UserDirectory:
    def __init__(self, users: Mapping[str, frozenset[Role]]) -> None:
        self._users = dict(users)

    @classmethod
    def load(cls, path: Path | None) -> UserDirectory:
        """Read the users file. It decides who may read evidence, so every mistake in it is a
        ``ConfigError`` naming the file and what to fix: a misspelt key or a second ``role`` line is
        never ignored, because the person it was meant for would silently get other rights."""
        if path is None or not path.exists():
            return cls({})
        entries, problem = read_tables(
            path, what="users file", section="users", shape="[users.<id>] tables", each="person"
        )
        users: dict[str, frozenset[Role]] = {}
        for user_id, entry in entries.items():
            try:
                require_identifier(user_id, "user id")
            except InvalidInput as err:
                raise problem(str(err)) from None
            users[user_id] = _roles_of(user_id, entry, problem)
        return cls(users)

    def resolve(self, user_id: str | None) -> Actor:
        if not user_id:
            raise AccessDenied("no user given: pass --user or set EVIDENCE_USER")
        try:
            require_identifier(user_id, "user id")
        except InvalidInput as err:
            raise AccessDenied(str(err)) from None
        roles = self._users.get(user_id)
        if roles is None:
            raise AccessDenied(f"user {user_id!r} is not in the users file; ask a storage admin to add them")
        return Actor(user_id, roles)


def _roles_of(user_id: str, entry: object, problem: Callable[[str], ConfigError]) -> frozenset[Role]:
    example = 'role = "investigator", or roles = ["officer", "investigator"]'
    if not isinstance(entry, dict):
        raise problem(f"[users.{user_id}] must be a table ({example}), not {entry!r}")
    unknown = sorted(set(entry) - {"role", "roles"})
    if unknown:
        raise problem(f"[users.{user_id}] has unknown key(s) {', '.join(unknown)}; give {example}")
    if "role" in entry and "roles" in entry:
        raise problem(f"[users.{user_id}] gives both role and roles: keep one ({example})")
    if "role" in entry:
        if not isinstance(entry["role"], str):
            raise problem(
                f"[users.{user_id}] role = {entry['role']!r} must be one role in quotes ({example})"
            )
        named = [entry["role"]]
    elif "roles" in entry:
        named = entry["roles"]
        if not isinstance(named, list) or not named or not all(isinstance(r, str) for r in named):
            raise problem(
                f"[users.{user_id}] roles = {named!r} must be a non-empty list of roles ({example})"
            )
    else:
        raise problem(f"[users.{user_id}] names no role: give {example}")
    unknown_roles = [r for r in named if r not in ROLES]
    if unknown_roles:
        raise problem(
            f"[users.{user_id}] unknown role(s) {', '.join(map(repr, unknown_roles))}; "
            f"roles are {', '.join(ROLES)}"
        )
    return frozenset(cast(list[Role], named))
