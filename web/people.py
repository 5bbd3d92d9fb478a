"""Who is asking: the signed-in person behind a request, as every router sees them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from evidence.access import Actor

SignInMethod = Literal["password+totp", "password", "oidc"]


@dataclass(frozen=True)
class Person:
    """A person signed in to the portal, for this request."""

    actor: Actor
    """Their id and roles: ``actor.may(action)`` decides, as it does for the CLI."""
    method: SignInMethod
    """How they proved who they are; recorded with every access."""
    session_id: str
    """The session's public id (not the cookie's secret): names the session in custody records."""
    client_address: str
    """Where the request came from (the socket's peer; behind a proxy, see docs/deployment.md)."""
    csrf_token: str
    """Every form that changes state carries it (``csrf_token``); requests without it are refused."""

    @property
    def user_id(self) -> str:
        return self.actor.user_id

    def access_details(self) -> dict[str, str]:
        """What every custody or access event the portal writes says about who and where."""
        return {
            "via": "portal",
            "sign_in": self.method,
            "session": self.session_id,
            "client": self.client_address,
        }
