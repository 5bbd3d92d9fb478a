"""Ceph RGW, a real S3 server, for the tests that need one (issue 9).

INTERFACE STUB: ``rgw_for_session`` reuses an already-running server described by the JSON file that
``RGW_TEST_SERVER`` names (keys: https_url, http_url, ca_bundle, access_key, secret_key, region,
ceph_conf). The session fixture that installs, starts and stops RGW replaces it, keeping the
``RgwServer`` interface.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import botocore.config


@dataclass(frozen=True)
class RgwServer:
    https_url: str
    http_url: str
    ca_bundle: Path
    access_key: str
    """The owner of every bucket the tests create (an RGW user with full rights on them)."""
    secret_key: str
    region: str
    ceph_conf: Path

    def environment(self, https: bool = True) -> dict[str, str]:
        """boto3's own variables pointing at this server as its bucket owner."""
        return {
            "AWS_ENDPOINT_URL_S3": self.https_url if https else self.http_url,
            "AWS_CA_BUNDLE": str(self.ca_bundle),
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
        }

    def client(self, access_key: str | None = None, secret_key: str | None = None, **config: Any) -> Any:
        """A plain boto3 client over HTTPS, as the owner or as another RGW user."""
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.https_url,
            verify=str(self.ca_bundle),
            region_name=self.region,
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            config=botocore.config.Config(**config) if config else None,
        )

    def create_user(self, uid: str) -> tuple[str, str]:
        """A new RGW user (``radosgw-admin user create``): its access key and secret key."""
        answer = subprocess.run(
            [
                "radosgw-admin",
                "-c",
                str(self.ceph_conf),
                "user",
                "create",
                f"--uid={uid}",
                f"--display-name={uid}",
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        key = json.loads(answer.stdout)["keys"][0]
        return str(key["access_key"]), str(key["secret_key"])


def unique_bucket(prefix: str = "evidence") -> str:
    """A bucket name no other test uses: RGW, unlike moto's server, is not reset between tests."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def rgw_for_session() -> RgwServer | None:
    described = os.environ.get("RGW_TEST_SERVER")
    if not described:
        return None
    data = json.loads(Path(described).read_text())
    return RgwServer(
        https_url=data["https_url"],
        http_url=data["http_url"],
        ca_bundle=Path(data["ca_bundle"]),
        access_key=data["access_key"],
        secret_key=data["secret_key"],
        region=data["region"],
        ceph_conf=Path(data["ceph_conf"]),
    )
