"""A dock starts an ingest in a couple of seconds: the command pays only for what it uses, and a flow
run started the quick way is still recorded in full (the storage admin watches runs in Prefect's UI).

No timing here (bench/ measures speed); these tests check what makes it fast, and what must not be
given up for it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest

from tests.factories import make_device
from tests.station import make_station

PROJECT_ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("prefect", "boto3", "botocore", "PIL", "sqlalchemy", "av", "fastapi")

_IMPORTED_BY_COMMAND = """
import json, sys
sys.argv = ["evidence", *sys.argv[1:]]
import cli.main
try:
    cli.main.main()
except SystemExit:
    pass
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {heavy})))
"""


@pytest.mark.parametrize("command", [["--help"], ["ingest", "--help"], ["dock", "watch", "--help"]])
def test_help_imports_no_heavy_library(command: list[str]) -> None:
    """Asking the command for help must not pay for Prefect, boto3, Pillow, PyAV or SQLAlchemy."""
    script = _IMPORTED_BY_COMMAND.format(heavy=set(HEAVY))
    result = subprocess.run(
        [sys.executable, "-c", script, *command],
        env=os.environ | {"PYTHONPATH": str(PROJECT_ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "Usage" in result.stdout
    assert json.loads(result.stdout.splitlines()[-1]) == []


def test_plain_parameters_are_recorded_as_prefect_would_record_them() -> None:
    """The ingest flow skips FastAPI's encoder for parameters that are JSON already; whatever they
    are, the server is sent what Prefect's own conversion gives."""
    from prefect import Flow

    from flows.plain_flow import PlainParametersFlow

    def fn(**kwargs: object) -> None:
        pass

    ours, theirs = PlainParametersFlow(fn=fn, name="plain"), Flow(fn=fn, name="plain")
    plain = {"device_dir": "/dock/BWC-1", "wipe": False, "incidents": ["KNT-2026-000001"], "none": None}
    assert ours.serialize_parameters(plain) == theirs.serialize_parameters(plain) == plain
    mixed = {"device_dir": Path("/dock/BWC-1"), "when": date(2026, 1, 2), "n": 3}
    assert ours.serialize_parameters(mixed) == theirs.serialize_parameters(mixed)
    assert ours.serialize_parameters(mixed)["device_dir"] == "/dock/BWC-1"


def test_a_quick_ingest_run_is_recorded_with_its_state_and_task_runs(
    prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One warm client, no heartbeats: the run, its final state and a task run per file are still in
    Prefect's database, and the run sent no heartbeat (nothing reads one on a dock)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from flows.run import run_ingest

    monkeypatch.setenv("EVIDENCE_DATA_DIR", str(tmp_path / "station"))
    monkeypatch.setenv("EVIDENCE_SETTLE_SECONDS", "0")
    make_station(tmp_path / "station")
    device = make_device(tmp_path / "BWC-QUICK1", photos=2, videos=0)
    seen_heartbeats: list[object] = []
    import prefect.flow_engine

    emit = prefect.flow_engine.FlowRunEngine._emit_flow_run_heartbeat
    monkeypatch.setattr(
        prefect.flow_engine.FlowRunEngine,
        "_emit_flow_run_heartbeat",
        lambda engine, *a: (seen_heartbeats.append(a), emit(engine, *a))[1],
    )

    report = run_ingest(device, device_serial="BWC-QUICK1", officer_id="PC-1", wipe=False, quiet=True)
    assert report.counts == {"ingested": 2}

    async def recorded() -> tuple[list[object], list[object]]:
        async with get_client() as client:
            [run] = [
                r
                for r in await client.read_flow_runs(sort="START_TIME_DESC", limit=20)
                if r.parameters.get("device_serial") == "BWC-QUICK1"
            ]
            task_runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))
            )
            return [run], task_runs

    [run], task_runs = asyncio.run(recorded())
    assert run.state is not None and run.state.is_completed()  # type: ignore[attr-defined]
    assert run.parameters["device_dir"] == str(device)  # type: ignore[attr-defined]
    assert seen_heartbeats == []
    # task runs reach the server through Prefect's events: give them a moment, then count them
    for _ in range(50):
        if len(task_runs) >= 2:  # two files, one batch each: the flow spreads a few files over its workers
            break
        time.sleep(0.2)
        _, task_runs = asyncio.run(recorded())
    assert sorted(t.name for t in task_runs) == ["ingest-files-0-0", "ingest-files-1-1"]  # type: ignore[attr-defined]
