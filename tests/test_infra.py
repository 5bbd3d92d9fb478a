"""Deployment files stay in step with the code they point at."""

from __future__ import annotations

import asyncio
import importlib
from datetime import date, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

INFRA = Path(__file__).resolve().parent.parent / "infra"


def test_every_deployment_entrypoint_is_a_prefect_flow() -> None:
    from prefect import Flow

    doc = yaml.safe_load((INFRA / "prefect.yaml").read_text())
    assert doc["deployments"], "no deployments"
    for deployment in doc["deployments"]:
        module_path, name = deployment["entrypoint"].split(":")
        module = importlib.import_module(module_path.removesuffix(".py").replace("/", "."))
        flow = getattr(module, name)
        assert isinstance(flow, Flow), deployment["name"]
        assert set(deployment.get("parameters", {})) <= set(flow.parameters.properties), deployment["name"]
        assert deployment["work_pool"]["name"]


def _deployments() -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load((INFRA / "prefect.yaml").read_text())
    return {deployment["name"]: deployment for deployment in doc["deployments"]}


def _runs_in(deployment: dict[str, Any], year: int = 2026) -> list[datetime]:
    """When Prefect's own scheduler would start the deployment over one calendar year (in the
    schedule's time zone, so daylight-saving changes are part of the test), from every active schedule."""
    from prefect.server.schemas.schedules import CronSchedule, IntervalSchedule

    start = datetime(year, 1, 1, tzinfo=ZoneInfo("Europe/London"))
    end = datetime(year + 1, 1, 1, tzinfo=ZoneInfo("Europe/London"))
    runs: list[datetime] = []
    for entry in deployment.get("schedules") or []:
        assert entry.get("active", True) is True, (deployment["name"], entry)
        if "cron" in entry:
            schedule: Any = CronSchedule(cron=entry["cron"], timezone=entry.get("timezone"))
        else:
            schedule = IntervalSchedule(
                interval=timedelta(seconds=entry["interval"]), timezone=entry.get("timezone")
            )
        runs.extend(asyncio.run(schedule.get_dates(n=10_000, start=start, end=end)))
    return sorted(runs)


def test_retention_runs_every_night_extending_locks_and_disposing_of_nothing() -> None:
    deployment = _deployments()["retention-nightly"]
    runs = [run.astimezone(ZoneInfo("Europe/London")) for run in _runs_in(deployment)]
    assert [run.date() for run in runs] == [date(2026, 1, 1) + timedelta(days=n) for n in range(365)]
    assert all(0 <= run.hour < 6 for run in runs), "nightly: outside working hours, local time"
    # unattended disposal is a decision the force takes by editing this file, never a default
    assert deployment["parameters"]["apply"] is False
    # while storage locks keep up with links every night: a longer lock only ever protects
    assert deployment["parameters"]["extend_locks"] is True
    from flows.retention import retention

    assert retention.parameters.properties["apply"]["default"] is False


def test_fixity_runs_every_week() -> None:
    runs = [run.astimezone(ZoneInfo("Europe/London")) for run in _runs_in(_deployments()["fixity-weekly"])]
    assert len(runs) in (52, 53)
    assert {run.weekday() for run in runs} == {runs[0].weekday()}
    assert all(later.date() - earlier.date() == timedelta(days=7) for earlier, later in pairwise(runs))
    assert runs[0].date() - date(2026, 1, 1) < timedelta(days=7)


def test_feed_linking_runs_on_a_schedule_at_least_daily() -> None:
    runs = _runs_in(_deployments()["feed-linking"])
    assert runs, "feed-linking has no active schedule"
    assert runs[0] - datetime(2026, 1, 1, tzinfo=ZoneInfo("Europe/London")) <= timedelta(days=1)
    assert max(later - earlier for earlier, later in pairwise(runs)) <= timedelta(days=1)
