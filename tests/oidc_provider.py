"""A real OpenID Connect provider for the portal's sign-in tests: node-oidc-provider, pinned in
``tests/oidc/package.json`` and ``package-lock.json``, run by ``tests/oidc/provider.mjs``.

``start_provider(directory, ...)`` installs the package into ``tests/oidc/node_modules`` with ``npm ci``
when it is missing (one installer at a time, whichever test run or worker asks), writes the provider's
configuration (its one client, the roles claim's name, the test people) under ``directory``, starts
it on a free loopback port and waits until ``/.well-known/openid-configuration`` answers. ``stop()``
ends exactly the process it started, by its recorded pid. The provider also exits by itself when its
standard input closes, so a test run killed before it could stop it leaves nothing behind.

Failing to install or start raises :class:`ProviderUnavailable` with the reason and the tail of the
provider's log; the tests' fixture skips on it, or fails when ``CI=true``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import selectors
import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

PROVIDER_DIR = Path(__file__).resolve().with_name("oidc")
PROVIDER_SCRIPT = PROVIDER_DIR / "provider.mjs"
INSTALLED_MARK = PROVIDER_DIR / "node_modules" / "oidc-provider" / "package.json"
INSTALL_LOCK = PROVIDER_DIR / ".install.lock"
START_TIMEOUT = 60.0
INSTALL_TIMEOUT = 300.0
STOP_GRACE = 10.0


class ProviderUnavailable(Exception):
    """The provider could not be installed or started; the message says why."""


@dataclass(frozen=True)
class ProviderAccount:
    """Someone the provider knows: what they type on its login page and what their ID token says."""

    username: str
    password: str
    sub: str
    name: str
    roles: str | list[str] | None
    """The roles claim's value as the provider sends it: a list, one string, or absent."""


@dataclass
class OidcProvider:
    issuer: str
    client_id: str
    client_secret: str
    roles_claim: str
    log: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        """End the provider this object started (its own pid, never a name)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_GRACE)
        if self.process.stdin is not None:
            self.process.stdin.close()
        if self.process.stdout is not None:
            self.process.stdout.close()

    def log_tail(self, lines: int = 20) -> str:
        return _tail(self.log, lines)


def install_provider() -> None:
    """``npm ci`` into tests/oidc/node_modules from the committed lock file, unless already there."""
    if INSTALLED_MARK.exists():
        return
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise ProviderUnavailable("node and npm are needed for the test OIDC provider and are not on PATH")
    with INSTALL_LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another worker may be installing: wait for it
        if INSTALLED_MARK.exists():
            return
        try:
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=PROVIDER_DIR,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as err:
            raise ProviderUnavailable(f"npm ci in {PROVIDER_DIR} took over {INSTALL_TIMEOUT:.0f} s") from err
        if done.returncode != 0 or not INSTALLED_MARK.exists():
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
            raise ProviderUnavailable(f"npm ci in {PROVIDER_DIR} failed ({done.returncode}):\n{tail}")


def start_provider(
    directory: Path,
    *,
    client_id: str,
    client_secret: str,
    redirect_uris: list[str],
    people: list[ProviderAccount],
    roles_claim: str = "roles",
) -> OidcProvider:
    install_provider()
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "provider.json"
    config.write_text(
        json.dumps(
            {
                "client": {
                    "client_id": client_id,
                    "client_secret": client_secret,
                    "redirect_uris": redirect_uris,
                },
                "roles_claim": roles_claim,
                "users": [person.__dict__ for person in people],
            }
        )
    )
    config.chmod(0o600)
    log = directory / "provider.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [shutil.which("node") or "node", str(PROVIDER_SCRIPT), str(config)],
            cwd=PROVIDER_DIR,
            stdin=subprocess.PIPE,  # never written: its closing tells the provider its owner is gone
            stdout=subprocess.PIPE,
            stderr=log_file,
            env={"PATH": os.environ.get("PATH", ""), "NODE_ENV": "test"},
        )
    provider = None
    try:
        issuer = _announced_issuer(process, log)
        provider = OidcProvider(issuer, client_id, client_secret, roles_claim, log, process)
        _wait_for_discovery(provider)
        return provider
    except BaseException:
        if provider is None:
            provider = OidcProvider("", client_id, client_secret, roles_claim, log, process)
        provider.stop()
        raise


def _announced_issuer(process: subprocess.Popen[bytes], log: Path) -> str:
    """The provider's first line on stdout: ``{"issuer": ...}`` once it listens."""
    assert process.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT
    line = b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ProviderUnavailable(f"the OIDC provider did not start in {START_TIMEOUT:.0f} s")
            if not selector.select(timeout=remaining):
                continue
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                process.wait(timeout=STOP_GRACE)
                raise ProviderUnavailable(
                    f"the OIDC provider exited ({process.returncode}) before it listened:\n{_tail(log)}"
                )
            line += chunk
    try:
        issuer = json.loads(line.split(b"\n", 1)[0])["issuer"]
    except (ValueError, KeyError) as err:
        raise ProviderUnavailable(f"the OIDC provider said {line!r}, not its issuer") from err
    return str(issuer)


def _wait_for_discovery(provider: OidcProvider) -> None:
    url = f"{provider.issuer}/.well-known/openid-configuration"
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 (our own http:// URL)
                if json.load(answer).get("issuer") == provider.issuer:
                    return
        except OSError as err:
            problem = str(err)
        else:
            problem = "its discovery document names another issuer"
        if provider.process.poll() is not None or time.monotonic() > deadline:
            raise ProviderUnavailable(
                f"the OIDC provider does not answer {url}: {problem}\n{provider.log_tail()}"
            )
        time.sleep(0.1)  # polling a server that is starting; no result depends on the pause


def _tail(path: Path, lines: int = 20) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""
