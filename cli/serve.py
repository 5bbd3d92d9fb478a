"""``evidence serve``: the investigators' portal, served by uvicorn.

The portal holds the vault identity key, which decrypts every item, so it refuses to start while that
file is readable by anyone but its owner. It binds to loopback unless told otherwise, and warns when it
would take passwords over plain HTTP from the network. uvicorn and FastAPI are imported only here, so
other commands do not pay for them.
"""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path
from typing import Annotated

import typer

from cli.app import app, settings_now
from evidence.errors import ConfigError, InvalidInput
from evidence.keyring import IDENTITY_FILE_NAME
from evidence.settings import Settings
from flows.console import err, styled, visible


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=1, max=65535)] = 8000,
    ssl_certfile: Annotated[Path | None, typer.Option(help="TLS certificate chain (PEM).")] = None,
    ssl_keyfile: Annotated[Path | None, typer.Option(help="TLS private key (PEM).")] = None,
    trusted_proxy: Annotated[
        str | None,
        typer.Option(
            help="Address of the TLS reverse proxy in front: its X-Forwarded-For names the client "
            "recorded with each access. Without it such headers are ignored."
        ),
    ] = None,
) -> None:
    """Serve the investigators' portal (sign in at /sign-in)."""
    settings = settings_now()
    require_private_identity_key(settings)
    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise InvalidInput("give both --ssl-certfile and --ssl-keyfile, or neither")
    for path in (ssl_certfile, ssl_keyfile):
        if path is not None and not path.is_file():
            raise InvalidInput(f"{path} is not a readable file")
    if trusted_proxy is not None:
        try:
            ipaddress.ip_address(trusted_proxy)
        except ValueError:
            raise InvalidInput(
                f"--trusted-proxy {visible(trusted_proxy)} is not an IP address; give the proxy's address"
            ) from None
    if ssl_certfile is None and trusted_proxy is None and not is_loopback(host):
        err.print(
            styled("warning:", "yellow", f" serving on {visible(host)} without TLS: passwords and evidence ")
            + "cross the network in clear; give --ssl-certfile and --ssl-keyfile, or put a TLS proxy in front"
        )

    import uvicorn

    from web.app import create_app, open_portal

    portal = open_portal(settings)
    config = uvicorn.Config(
        create_app(portal),
        host=host,
        port=port,
        ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
        ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None,
        # the client address recorded with every access is the socket's peer: a header a client sends
        # must not be able to change it, unless that peer is the one proxy named (docs/deployment.md)
        proxy_headers=trusted_proxy is not None,
        forwarded_allow_ips=trusted_proxy or "",
        server_header=False,
        date_header=True,
        log_level="info",
    )
    uvicorn.Server(config).run()


def require_private_identity_key(settings: Settings) -> Path:
    """The vault identity key file, if it exists and only its owner can read it; else ConfigError."""
    path = settings.keys_path / IDENTITY_FILE_NAME
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(
            f"the portal decrypts evidence and needs the vault identity key {path}, which does not exist; "
            "set keys_dir (EVIDENCE_KEYS_DIR) to the folder holding it"
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"the vault identity key {path} is readable by group or others (mode {stat.filemode(mode)}); "
            f"run: chmod 600 {path}"
        )
    return path


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
