"""Shared fixtures: the real-camera corpus, fake AWS (moto in-process and over HTTP), a Prefect harness."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CORPUS = PROJECT_ROOT.parent / "shared" / "corpus"
REGION = "eu-west-2"


def pytest_configure(config: pytest.Config) -> None:
    from tests import moto_speed

    moto_speed.apply()


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not (CORPUS / "MANIFEST.tsv").exists():
        pytest.skip("../shared/corpus is not present")
    return CORPUS


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test touches the real home directory, real AWS credentials or a real endpoint."""
    for name in list(os.environ):
        if name.startswith(("EVIDENCE_", "AWS_")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("EVIDENCE_DATA_DIR", str(tmp_path / "station"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


@pytest.fixture
def moto_aws() -> Iterator[None]:
    """In-process fake S3 and KMS for one test."""
    from moto import mock_aws

    with mock_aws():
        yield


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """One real HTTP endpoint (moto's server) for the session; tests reset it via ``moto_endpoint``."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def moto_endpoint(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A clean moto server, with boto3 pointed at it through its standard variables."""
    import requests

    requests.post(f"{moto_server}/moto-api/reset", timeout=10)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    return moto_server


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL for the catalog and accounts-store tests: ``CATALOG_TEST_POSTGRES_URL`` (e.g.
    ``postgresql+psycopg://postgres@/catalog_test?host=/tmp/pgtest&port=55432``), else a throwaway
    cluster started here where PostgreSQL's binaries and a ``postgres`` user exist (as on the machines
    this project is built on), else the PostgreSQL cases are skipped with the reason."""
    given = os.environ.get("CATALOG_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    from bench.small_photos import postgres_unavailable, throwaway_postgres

    reason = postgres_unavailable()
    if reason is not None:
        pytest.skip(
            f"no PostgreSQL for the catalog and accounts-store tests: {reason}; or set CATALOG_TEST_POSTGRES_URL"
        )
    with throwaway_postgres() as (url, _):
        yield url.replace("postgresql+asyncpg://", "postgresql+psycopg://")


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect API for the whole session (start-up costs ~20 s; the 30 s default
    timeout is flaky on 2 cores: prefect#15075)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def cli_env(prefect_harness: None, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Environment for running ``python -m cli`` in a child process against the session's
    Prefect API and a station under ``tmp_path / "station"``."""
    from prefect.settings import PREFECT_API_URL

    yield os.environ | {
        "EVIDENCE_DATA_DIR": str(tmp_path / "station"),
        "EVIDENCE_SETTLE_SECONDS": "0",
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PYTHONPATH": str(PROJECT_ROOT),
    }


# -- long tests first, one after another per worker ---------------------------------------------------


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist, each worker starts with a contiguous share of the collection and idle workers
    steal from the end of the others' shares. A test marked ``slow`` met late in a share made the
    whole run wait for it on a worker left alone; so the slow tests are dealt out first, one to each
    share in turn, and each share then fills up with quick ones (longest first, as a scheduler would
    want). Every worker computes the same order, as xdist requires."""
    workers = int(getattr(config, "workerinput", {}).get("workercount", 1))
    if workers < 2:
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    quick = [item for item in items if not item.get_closest_marker("slow")]
    shares: list[list[pytest.Item]] = [[] for _ in range(workers)]
    for n, item in enumerate(slow):
        shares[n % workers].append(item)
    # xdist's first split: len(pending) // workers left, for each worker in turn
    remaining, sizes = len(items), []
    for left in range(workers, 0, -1):
        sizes.append(remaining // left)
        remaining -= sizes[-1]
    for share, size in zip(shares, sizes, strict=True):
        while len(share) < size and quick:
            share.append(quick.pop(0))
    items[:] = [item for share in shares for item in share] + quick


# -- figures from pytest-xdist workers ----------------------------------------------------------------

_worker_figures: list[str] = []


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """A worker finished: keep the figures its tests reported (``tests.faults.report_figures``)."""
    _worker_figures.extend(getattr(node, "workeroutput", {}).get("figures", []))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for block in _worker_figures:
        terminalreporter.write_line("\n" + block)


# -- a real S3 server ---------------------------------------------------------------------------------


def _run_root(config: pytest.Config) -> Path:
    """The temp root every process of this run shares: the controller's basetemp, whose children are
    the xdist workers' basetemps."""
    basetemp = config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]
    return Path(basetemp).parent if hasattr(config, "workerinput") else Path(basetemp)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """Tell each xdist worker which process owns the run: the RGW it may start is stopped when that
    process goes, even if it is killed before it can stop it itself."""
    node.workerinput["rgw_owner_pid"] = os.getpid()


def pytest_unconfigure(config: pytest.Config) -> None:
    """The controller (the only process when xdist is off) stops the RGW a worker started, after every
    worker has finished: at the end of the run, after a failure and after an interrupt alike."""
    factory = getattr(config, "_tmp_path_factory", None)
    if hasattr(config, "workerinput") or factory is None or getattr(factory, "_basetemp", 0) is None:
        return  # a worker, or a run that made no temp directory and so started nothing
    from tests.rgw import RgwUnavailable, stop_session_rgw

    try:
        stop_session_rgw(_run_root(config))
    except RgwUnavailable as err:  # said, not raised: the run's own result stands
        sys.stderr.write(f"\nwarning: {err}\n")


@pytest.fixture(scope="session")
def rgw(request: pytest.FixtureRequest) -> Any:
    """Ceph RGW for the run (``tests.rgw``), started by the first test that needs it and shared by all
    the run's workers. Where it cannot be installed or started, its tests are skipped with the reason;
    on CI (``CI=true``) they fail instead, with the tail of its logs."""
    from tests.rgw import RgwUnavailable, rgw_for_session

    config = request.config
    owner_pid = getattr(config, "workerinput", {}).get("rgw_owner_pid", os.getpid())
    try:
        return rgw_for_session(_run_root(config), owner_pid)
    except RgwUnavailable as err:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"Ceph RGW is required on CI: {err}", pytrace=False)
        pytest.skip(f"no Ceph RGW: {err}")


@pytest.fixture
def rgw_env(rgw: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """boto3 pointed at RGW over HTTPS, as the bucket owner, through its standard variables."""
    for name, value in rgw.environment().items():
        monkeypatch.setenv(name, value)
    return rgw
