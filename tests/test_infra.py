"""Deployment files stay in step with the code they point at."""

from __future__ import annotations

import importlib
from pathlib import Path

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
