"""Local accounts for the portal, as rules with no storage behind them: what a password must be, who
needs a second factor, when failures lock an account, when a session ends, and the two proofs
(an Argon2id password hash and a TOTP code) checked at sign-in.

The rules follow NIST SP 800-63B: length and a deny-list of known passwords rather than composition
rules, no forced periodic change, a limit on failed attempts. Investigators and storage admins can
read or release evidence, so their accounts always need a second factor; officers may have one.
"""

from __future__ import annotations

import hmac
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pyotp import TOTP, random_base32

from evidence.access import ROLES, Role
from evidence.errors import AccessDenied, InvalidInput

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 128
"""Longer than any passphrase a person types (ASVS 2.1.2: at least 64 allowed, more than 128 refused); a
megabyte "password" would only make the server hash it."""
COMMON_PASSWORDS_FILE = Path(__file__).with_name("common_passwords.txt")

TOTP_REQUIRED_FOR: frozenset[Role] = frozenset({"investigator", "storage-admin"})
"""Roles that can read, export or release evidence: a stolen password alone must not be enough."""
TOTP_ISSUER = "Evidence portal"
TOTP_STEP_SECONDS = 30
TOTP_VALID_WINDOW = 1
"""Codes of the step before and after now are accepted too: phones' clocks drift."""

SignInMethod = Literal["password+totp", "password", "oidc"]

REFUSED = (
    "Sign-in refused: the user id, password or code is not right, or the account is locked for a while "
    "after repeated failures. Check them and try again."
)
"""The one message for every refused sign-in: saying which part was wrong, or that an account is locked,
would tell someone guessing that they found a real user id."""


class SignInRefused(AccessDenied):
    """A sign-in was refused (wrong user id, password or code, or a locked account)."""


class SignInThrottled(SignInRefused):
    """Too many failed sign-ins came from one client address: it must wait."""


# -- passwords --------------------------------------------------------------------------------------

_HASHER = PasswordHasher()
"""Argon2id with argon2-cffi's defaults (RFC 9106's second recommended profile: 3 passes over 64 MiB,
4 lanes); ``needs_rehash`` tells when stored hashes were made with weaker parameters."""

_SEQUENCES = (
    "abcdefghijklmnopqrstuvwxyz",
    "01234567890123456789",
    "qwertyuiopasdfghjklzxcvbnm",
    "qwertzuiopasdfghjklyxcvbnm",
    "azertyuiopqsdfghjklmwxcvbn",
    "1q2w3e4r5t6y7u8i9o0p",
    "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p",
    "zaq1xsw2cde3vfr4bgt5nhy6mju7",
)
_LEET = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i"}
)
_EDGE_NON_LETTERS = re.compile(r"^[\W\d_]+|[\W\d_]+$")


def _normalised(password: str) -> str:
    # NFKC: the same passphrase typed on another keyboard or system must hash the same (SP 800-63B 5.1.1.2)
    return unicodedata.normalize("NFKC", password)


@cache
def common_passwords() -> frozenset[str]:
    """The shipped deny-list, lower-cased (``#`` lines are its header)."""
    lines = COMMON_PASSWORDS_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().lower() for line in lines if line.strip() and not line.startswith("#"))


def password_problem(password: str, user_id: str) -> str | None:
    """Why ``password`` may not be used by ``user_id``, or None when it may."""
    password = _normalised(password)
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"a password needs at least {MIN_PASSWORD_LENGTH} characters"
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"a password may have at most {MAX_PASSWORD_LENGTH} characters"
    lowered = password.lower()
    if user_id and user_id.lower() in lowered:
        return "a password may not contain the user id"
    if len(set(lowered)) < 5:
        return "that password repeats too few characters; use a longer passphrase"
    # "P@ssw0rd2026!" is "password" with decorations: guessers try exactly these first
    core = _EDGE_NON_LETTERS.sub("", lowered)
    if {lowered, lowered.translate(_LEET), core, core.translate(_LEET)} & common_passwords():
        return "that password is too common (it is on lists of leaked passwords); choose another"
    if _repeats(lowered) or _is_sequence(lowered) or _is_sequence(core):
        return "that password is a keyboard or alphabet sequence or a repetition; choose another"
    return None


def require_acceptable_password(password: str, user_id: str) -> None:
    problem = password_problem(password, user_id)
    if problem is not None:
        raise InvalidInput(problem)


def _repeats(text: str) -> bool:
    """``abcabcabcabc``, ``passwordpassword``: one short piece said again."""
    return any(
        len(text) % size == 0 and text == text[:size] * (len(text) // size)
        for size in range(1, len(text) // 2 + 1)
    )


def _is_sequence(text: str) -> bool:
    return len(text) >= 4 and any(text in row or text in row[::-1] for row in _SEQUENCES)


def hash_password(password: str) -> str:
    return _HASHER.hash(_normalised(password))


def password_matches(stored_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(stored_hash, _normalised(password))
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    try:
        return _HASHER.check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True


@cache
def _stand_in_hash() -> str:
    return _HASHER.hash("no account has this password: it only makes a refusal take as long")


def spend_password_check_time(password: str) -> None:
    """Do the work of a password check for a user id with no account (or a locked one), so the time a
    refusal takes does not tell which user ids exist."""
    password_matches(_stand_in_hash(), password)


# -- roles and the second factor ----------------------------------------------------------------------


def require_roles(named: list[str] | tuple[str, ...]) -> frozenset[Role]:
    if not named:
        raise InvalidInput(f"give at least one role ({', '.join(ROLES)})")
    unknown = [name for name in named if name not in ROLES]
    if unknown:
        raise InvalidInput(f"unknown role(s) {', '.join(map(repr, unknown))}; roles are {', '.join(ROLES)}")
    return frozenset(role for role in ROLES if role in named)


def totp_required(roles: frozenset[Role]) -> bool:
    return bool(roles & TOTP_REQUIRED_FOR)


def require_totp_choice(roles: frozenset[Role], with_totp: bool) -> None:
    if not with_totp and totp_required(roles):
        raise InvalidInput(
            f"{' and '.join(sorted(roles & TOTP_REQUIRED_FOR))} accounts need a second factor (TOTP); "
            "--no-totp is only for officer-only accounts"
        )


def new_totp_secret() -> str:
    return random_base32()


def totp_uri(secret: str, user_id: str) -> str:
    """The ``otpauth://`` URI an authenticator app reads (as a QR code or typed in)."""
    return _totp(secret).provisioning_uri(name=user_id, issuer_name=TOTP_ISSUER)


def totp_code(secret: str, at: datetime) -> str:
    """The code an authenticator shows at ``at`` (for the demo, and for tests)."""
    return _totp(secret).at(at)


def totp_step(at: datetime) -> int:
    return int(at.timestamp()) // TOTP_STEP_SECONDS


def matching_totp_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step whose code ``code`` is (now, or one step either side), or None. The caller refuses
    a step at or before the last one used, so a code seen over a shoulder or in a proxy log is spent."""
    code = code.strip().replace(" ", "")
    if not re.fullmatch(r"[0-9]{6}", code):
        return None
    totp = _totp(secret)
    current = totp_step(now)
    for step in range(current - TOTP_VALID_WINDOW, current + TOTP_VALID_WINDOW + 1):
        if hmac.compare_digest(totp.generate_otp(step).encode(), code.encode()):
            return step
    return None


def _totp(secret: str) -> TOTP:
    return TOTP(secret, digits=6, interval=TOTP_STEP_SECONDS)


# -- failed attempts and sessions -------------------------------------------------------------------


@dataclass(frozen=True)
class LockoutPolicy:
    """How many failures an account and a client address may have before they must wait.

    Per account: ``max_failures`` failures, each within ``window`` of the one before, lock the account
    for ``lock_for`` (an online guesser gets a handful of tries an hour, not thousands). Per client
    address: ``address_max_failures`` failures within ``window`` refuse further attempts from it until
    older ones fall out of the window: one address trying many user ids (password spraying) is slowed
    without locking every account it touches."""

    max_failures: int = 5
    window: timedelta = timedelta(minutes=15)
    lock_for: timedelta = timedelta(minutes=15)
    address_max_failures: int = 20

    def failures_counting_this(self, earlier: int, last_failure_at: datetime | None, now: datetime) -> int:
        if last_failure_at is None or now - last_failure_at > self.window:
            return 1
        return earlier + 1

    def locks(self, failures: int) -> bool:
        return failures >= self.max_failures

    def address_throttled(self, recent_failures: int) -> bool:
        return recent_failures >= self.address_max_failures


LOCKOUT = LockoutPolicy()

SessionEnd = Literal["idle", "absolute"]


def session_end_reason(
    created_at: datetime, last_seen_at: datetime, now: datetime, *, idle: timedelta, absolute: timedelta
) -> SessionEnd | None:
    """Why a session has ended by now, or None while it is live. Both limits bound what a stolen or
    forgotten signed-in browser can do: idle for a screen left unlocked, absolute for a stolen cookie."""
    if now - created_at >= absolute:
        return "absolute"
    if now - last_seen_at >= idle:
        return "idle"
    return None
