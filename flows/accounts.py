"""Local accounts as use cases, for ``evidence users`` and the portal's sign-in alike: enrol a person,
reset their password, and sign them in (password, then TOTP code), with failures counted, accounts
locked and every outcome recorded in the accounts store."""

from __future__ import annotations

from dataclasses import dataclass

from evidence.access import Role
from evidence.accounts import (
    REFUSED,
    SignInRefused,
    SignInThrottled,
    hash_password,
    matching_totp_step,
    needs_rehash,
    new_totp_secret,
    password_matches,
    require_acceptable_password,
    require_totp_choice,
    spend_password_check_time,
    totp_required,
    totp_uri,
)
from evidence.devices import require_identifier
from evidence.errors import InvalidInput
from storage.accounts import Accounts, NewSession


@dataclass(frozen=True)
class Enrolment:
    user_id: str
    roles: frozenset[Role]
    totp_uri: str | None
    """``otpauth://`` URI to load into an authenticator app; shown once, never again."""


def enrol(
    accounts: Accounts, user_id: str, roles: frozenset[Role], password: str, *, with_totp: bool
) -> Enrolment:
    require_identifier(user_id, "user id")
    require_totp_choice(roles, with_totp)
    require_acceptable_password(password, user_id)
    secret = new_totp_secret() if with_totp else None
    accounts.add(user_id, roles, hash_password(password), secret)
    return Enrolment(user_id, roles, totp_uri(secret, user_id) if secret else None)


def reset_credentials(accounts: Accounts, user_id: str, password: str, *, with_totp: bool) -> Enrolment:
    """A new password and, with TOTP, a new secret (a lost phone); the lock is lifted and their
    sessions end."""
    require_identifier(user_id, "user id")
    account = accounts.account(user_id)
    if account is None:
        raise InvalidInput(f"there is no account {user_id!r}; add it with `evidence users add`")
    require_totp_choice(account.roles, with_totp)
    require_acceptable_password(password, user_id)
    secret = new_totp_secret() if with_totp else None
    accounts.reset_credentials(user_id, hash_password(password), secret)
    return Enrolment(user_id, account.roles, totp_uri(secret, user_id) if secret else None)


def sign_in(
    accounts: Accounts,
    user_id: str,
    password: str,
    code: str,
    client_address: str,
) -> NewSession:
    """Check the password and, where the account has one, the TOTP code; start a session. Every refusal
    raises :class:`SignInRefused` with the same message, whatever was wrong (the record says what).
    Failures count under the store's lock-out policy (``accounts.lockout``)."""
    policy = accounts.lockout
    if policy.address_throttled(accounts.failures_from(client_address, policy)):
        accounts.record("throttled", user_id=None, client_address=client_address, detail="too many failures")
        minutes = int(policy.window.total_seconds() // 60)
        raise SignInThrottled(
            f"Too many failed sign-ins from this address; wait {minutes} minutes and try again."
        )
    try:
        require_identifier(user_id, "user id")
        account = accounts.account(user_id)
    except InvalidInput:
        account = None
    if account is None:
        spend_password_check_time(password)
        # the typed id is not kept: people type their password into the wrong field
        accounts.record("failure", user_id=None, client_address=client_address, detail="no such account")
        raise SignInRefused(REFUSED)
    method = "password+totp" if account.has_totp else "password"

    def refuse(detail: str) -> SignInRefused:
        accounts.record_failure(user_id, policy, client_address=client_address, method=method, detail=detail)
        return SignInRefused(REFUSED)

    if account.locked_at(accounts.now()):
        spend_password_check_time(password)
        accounts.record(
            "failure", user_id=user_id, method=method, client_address=client_address, detail="locked"
        )
        raise SignInRefused(REFUSED)
    if not password_matches(account.password_hash, password):
        raise refuse("wrong password")
    if account.totp_secret is not None:
        step = matching_totp_step(account.totp_secret, code, accounts.now())
        if step is None:
            raise refuse("wrong code")
        if not accounts.spend_totp_step(user_id, step):
            raise refuse("code already used")
    elif totp_required(account.roles):
        raise refuse("no second factor enrolled, which the role needs")
    accounts.clear_failures(user_id)
    if needs_rehash(account.password_hash):
        accounts.set_password_hash(user_id, hash_password(password))
    return accounts.start_session(user_id, account.roles, method, client_address)
