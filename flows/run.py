"""Running flows from the command line, with the one piece of advice an officer's dock needs.

A configured Prefect server (``PREFECT_API_URL``) that is down, answers 5xx or times out is one line
and exit code 8 (:class:`ServiceUnavailable`), said before a flow starts when it can be, never a
traceback: :func:`check_prefect_server` asks the server first, and :func:`prefect_api_errors`
translates the failures of its API met during a run, and only those. An ingest runs in a
:func:`prefect_session`: one client for the check and the run (for a dock watcher, for all its devices).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from evidence.errors import ConfigError, InvalidInput, ServiceUnavailable
from evidence.settings import load_settings
from flows.console import err, styled, visible
from flows.device_lock import ensure_device_free
from flows.ingest import IngestReport, resolve_device
from storage.vault import Vault


def quiet_prefect() -> None:
    """A dock has no business phoning home, and on a closed network the attempt logs an ERROR."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def prefect_server_configured() -> bool:
    from prefect.settings import PREFECT_API_URL

    return bool(PREFECT_API_URL.value())


def advise_on_prefect(quiet: bool) -> None:
    if not prefect_server_configured() and not quiet:
        err.print(
            styled(
                "No Prefect server configured: starting a temporary one (about 20 s). For a dock, set "
                "PREFECT_API_URL to a Prefect server running on PostgreSQL (see infra/compose.yaml).",
                "dim",
            ),
            highlight=False,
        )


SERVER_CHECK_SECONDS = 10.0
"""How long the check before a run waits for the server's health answer (a healthy one answers in
milliseconds)."""

# besides every 5xx (the server's own failure): a request timeout and throttling also pass
_PASSING_STATUS = frozenset({408, 429})


def prepare_prefect(quiet: bool) -> None:
    """Before a flow run from the command line: no analytics, advice when no server is configured,
    and a configured server checked, so one that is down is one line now rather than a traceback
    after Prefect's client has backed off five times (about two minutes)."""
    quiet_prefect()
    advise_on_prefect(quiet)
    check_prefect_server()


def check_prefect_server() -> None:
    """Ask the configured server's health endpoint once, through Prefect's own client (its
    credentials and TLS settings; the open session's client when there is one), with no retries and
    a short timeout; then, once per process, its version (Prefect's own check)."""
    if not prefect_server_configured():
        return
    from prefect.client.orchestration import get_client
    from prefect.context import SettingsContext, SyncClientContext, get_settings_context

    current = get_settings_context()
    with SettingsContext(profile=current.profile, settings=_without_retries(current.settings)):
        session = SyncClientContext.get()
        if session is not None:
            _ask_server(session.client)  # shared by a watcher's device threads: not entered again
        else:
            with get_client(sync_client=True) as client:
                _ask_server(client)


def _ask_server(client: Any) -> None:
    try:
        client.request("GET", "/health", timeout=SERVER_CHECK_SECONDS)
    except Exception as problem:
        unavailable = _unavailable(problem)
        if unavailable is not None:
            raise unavailable from problem
        if isinstance(problem, httpx.HTTPStatusError):
            raise ConfigError(
                f"the Prefect server at {_server()} answered {_status(problem)} to a health check: check "
                "PREFECT_API_URL (the server's address, ending in /api) and its credentials"
            ) from problem
        raise
    with prefect_api_errors():  # a server that is healthy but cannot answer this is unavailable too
        client.raise_for_api_version_mismatch_once()


def _without_retries(settings: Any) -> Any:
    """The current Prefect settings with the client's retries off (a copy, not a re-read of the
    environment: that costs a tenth of a second, paid by every device a watcher ingests)."""
    return settings.model_copy(update={"client": settings.client.model_copy(update={"max_retries": 0})})


def _station_settings(settings: Any) -> Any:
    """The Prefect settings for a station's flow runs.

    No flow-run heartbeats, unless the station's Prefect settings ask for them
    (``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``): heartbeats only serve an automation that marks a silent
    run crashed, and none is set up for docks, while every run waits up to a second at its end for
    the heartbeat thread's sleep (prefect/flow_engine.py, ``_send_heartbeats``). No version check when
    a client starts: :func:`check_prefect_server` makes it, once per process, after the health check.
    """
    updates: dict[str, Any] = {
        "client": settings.client.model_copy(update={"server_version_check_enabled": False})
    }
    if "heartbeat_frequency" not in settings.flows.model_fields_set:
        updates["flows"] = settings.flows.model_copy(update={"heartbeat_frequency": None})
    return settings.model_copy(update=updates)


@contextmanager
def prefect_session() -> Iterator[None]:
    """One Prefect client and the station's settings (:func:`_station_settings`) for the flow runs
    this process starts: the command's one run, or every device of a dock watcher (whose device
    threads run in copies of its context). Opening it does not talk to a configured server; inside an
    open session it is nothing."""
    from prefect.context import SettingsContext, SyncClientContext, get_settings_context

    if SyncClientContext.get() is not None:
        yield
        return
    current = get_settings_context()
    station = SettingsContext(profile=current.profile, settings=_station_settings(current.settings))
    with station, SyncClientContext():
        yield


@contextmanager
def prefect_api_errors() -> Iterator[None]:
    """Around a flow run: the configured Prefect server failing mid-run (after the client's own
    retries) becomes :class:`ServiceUnavailable`. Anything else, from the API or from our code, goes
    on as it is: a bug must not be reported as an unavailable server."""
    try:
        yield
    except (httpx.HTTPError, RuntimeError) as error:
        # Prefect wraps an API it cannot reach in RuntimeError("Failed to reach API ...") from the cause
        cause = error if isinstance(error, httpx.HTTPError) else error.__cause__
        unavailable = _unavailable(cause) if isinstance(cause, httpx.HTTPError) else None
        if unavailable is None:
            raise
        raise unavailable from error


def _unavailable(problem: BaseException) -> ServiceUnavailable | None:
    """The one line for a passing failure of the configured Prefect server's API, else None."""
    if not prefect_server_configured() or not _from_prefect_api(problem):
        return None
    if isinstance(problem, httpx.HTTPStatusError):
        code = problem.response.status_code
        if code < 500 and code not in _PASSING_STATUS:
            return None
        why = f"it answered {_status(problem)}"
    elif isinstance(problem, httpx.TimeoutException):
        why = "it did not answer in time"
    elif isinstance(problem, httpx.TransportError):
        why = f"it cannot be reached: {problem}" if str(problem) else "it cannot be reached"
    else:
        return None
    return ServiceUnavailable(
        f"the Prefect server at {_server()} is unavailable ({why}): try again in a while, check that "
        "the server is running, or unset PREFECT_API_URL to run with a temporary local one"
    )


def _from_prefect_api(problem: BaseException) -> bool:
    """Whether the failed request went to the configured Prefect server (and not somewhere else)."""
    from prefect.settings import PREFECT_API_URL

    if not isinstance(problem, httpx.RequestError | httpx.HTTPStatusError):
        return False
    try:
        sent_to = problem.request.url
    except RuntimeError:  # a RequestError raised without its request
        return False
    api = httpx.URL(str(PREFECT_API_URL.value()))
    return (sent_to.scheme, sent_to.host, sent_to.port) == (api.scheme, api.host, api.port)


def _server() -> str:
    """The configured server's address without credentials (an API URL may carry a user and password)."""
    from prefect.settings import PREFECT_API_URL

    api = httpx.URL(str(PREFECT_API_URL.value()))
    return str(api.copy_with(username=None, password=None))


def _status(problem: httpx.HTTPStatusError) -> str:
    return f"{problem.response.status_code} {problem.response.reason_phrase}".strip()


def preflight(
    device_dir: Path,
    *,
    device_serial: str | None,
    officer_id: str | None,
    incidents: Sequence[str] = (),
    linked_by: str | None = None,
) -> None:
    """Refuse a bad device folder, serial, officer, key set or vault, or a device another run is
    ingesting, before a flow run starts, so the person sees one clear line rather than a failed
    run's log."""
    if not device_dir.is_dir():
        raise InvalidInput(f"{device_dir} is not a directory: give the folder where the device is mounted")
    settings = load_settings()
    context = resolve_device(
        settings,
        device_dir,
        serial=device_serial,
        officer=officer_id,
        incidents=incidents,
        linked_by=linked_by,
    )
    Vault.open(settings)
    ensure_device_free(settings.journal_dir, context.device_serial, device_dir)


def run_ingest(
    device_dir: Path,
    *,
    device_serial: str | None,
    officer_id: str | None,
    wipe: bool,
    quiet: bool = False,
    incidents: Sequence[str] = (),
    linked_by: str | None = None,
) -> IngestReport:
    preflight(
        device_dir,
        device_serial=device_serial,
        officer_id=officer_id,
        incidents=incidents,
        linked_by=linked_by,
    )
    parameters: dict[str, Any] = {
        "device_serial": device_serial,
        "officer_id": officer_id,
        "wipe": wipe,
        "incidents": list(incidents) or None,
        "linked_by": linked_by,
    }
    quiet_prefect()
    advise_on_prefect(quiet)
    with prefect_session():
        check_prefect_server()
        return _run_flow(device_dir, parameters, quiet)


def _run_flow(device_dir: Path, parameters: dict[str, Any], quiet: bool) -> IngestReport:
    from flows.ingest_flow import ingest_device, ingest_progress

    if quiet:
        with prefect_api_errors():
            return ingest_device(str(device_dir), **parameters)
    with Progress(
        TextColumn("ingesting {task.description}", markup=False),  # the folder name is the device's
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task(visible(device_dir.name), total=None)
        token = ingest_progress.set(lambda done, total: bar.update(task, completed=done, total=total))
        try:
            with prefect_api_errors():
                return ingest_device(str(device_dir), **parameters)
        finally:
            ingest_progress.reset(token)
