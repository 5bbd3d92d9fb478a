"""``make demo`` (``evidence demo``) does what it says: the simulated dock is stored, read back
byte-identical, and a second run stores nothing new."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from cli.demo import DEMO_DEVICE, DEMO_INCIDENT, DEMO_PORTAL_USER
from evidence.layout import ITEMS_PREFIX, OBJECTS_PREFIX
from evidence.settings import Settings
from storage.vault import Vault


def evidence_demo(env: dict[str, str]) -> str:
    """``evidence demo`` as ``make demo`` runs it: a process of its own, data under EVIDENCE_DATA_DIR."""
    done = subprocess.run(
        [sys.executable, "-m", "cli", "demo"], env=env, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return " ".join(done.stdout.split())  # rich wraps long lines at 160 columns


def stored_objects(vault: Vault) -> list[tuple[str, str]]:
    """Every version of every content object and manifest (custody records are listed separately)."""
    return sorted(
        (info.key, info.version_id)
        for prefix in (OBJECTS_PREFIX, ITEMS_PREFIX)
        for info in vault.store.list_versions(prefix)
    )


@pytest.mark.slow
def test_demo_stores_the_dock_reads_it_back_identical_and_a_second_run_stores_nothing_new(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    data_dir = tmp_path / "demo-data"
    env = cli_env | {"EVIDENCE_DATA_DIR": str(data_dir)}
    # make demo sets nothing but the data dir, and the ingest defers files modified within the settle
    # time (2 s by default) as still being written. How soon after the demo makes its files the ingest
    # looks at them depends on the machine and the Prefect server; a settle time far longer than the
    # run makes the test independent of that: the demo's dock must hold files written before docking.
    env["EVIDENCE_SETTLE_SECONDS"] = "60"
    first = evidence_demo(env)

    device = data_dir / "dock" / DEMO_DEVICE
    on_device = {str(p.relative_to(device)): p.read_bytes() for p in device.rglob("*") if p.is_file()}
    assert len(on_device) == 6  # 3 photos, a video, a cut-short photo, a log file
    assert f"{len(on_device)} ingested" in first, first

    vault = Vault.open(Settings(data_dir=data_dir))
    items = sorted(vault.list_items())
    stored: dict[str, str] = {}  # source path on the device -> evidence id
    for evidence_id in items:
        manifest = vault.manifest(evidence_id)
        source = vault.details(manifest).source_path
        # every file, whatever it is, read back through decryption and the SHA-256 check
        assert b"".join(vault.read_original(manifest)) == on_device[source], source
        stored[source] = evidence_id
        chain = vault.custody.verify(evidence_id)
        assert chain.intact, chain.problems
        assert [e.details["incident"] for e in chain.events if e.type == "link"] == [DEMO_INCIDENT]
    assert sorted(stored) == sorted(on_device)  # each file once, nothing else

    # what the demo says it read back is what the device holds
    [video] = [source for source in stored if source.endswith(".MP4")]
    read_back = data_dir / "readback" / f"{stored[video]}.mp4"
    assert read_back.read_bytes() == on_device[video]
    assert "byte-identical to the device file" in first and "DIFFERENT" not in first
    # the read-back and the look at its sealed details are both recorded, before they are shown
    assert "custody chain: ingest -> link -> access -> access (intact;" in first

    objects = stored_objects(vault)
    second = evidence_demo(env)
    assert f"{len(on_device)} duplicate (re-running stored nothing new)" in second, second
    assert "ingested" not in second.split("What was stored where")[1]
    assert stored_objects(vault) == objects  # no new content, thumbnail or manifest version
    assert sorted(vault.list_items()) == items
    for source, evidence_id in stored.items():
        types = [e.type for e in vault.custody.verify(evidence_id).events]
        # each run reads the video back and shows its sealed details: two accesses a run, recorded
        expected = ["ingest", "link", *["access"] * 4] if source == video else ["ingest", "link"]
        assert types == expected, source
    assert read_back.read_bytes() == on_device[video]
    assert "byte-identical to the device file" in second

    # the portal account the demo prints signs in through the app; each run gives it new credentials
    assert f"EVIDENCE_DATA_DIR={data_dir} evidence serve" in second
    assert signs_in(data_dir, second) == 303
    assert signs_in(data_dir, first) == 401


def signs_in(data_dir: Path, demo_output: str) -> int:
    """Sign in to the portal on the demo data with the account a demo run printed; the answer's status."""
    from datetime import UTC, datetime

    from fastapi.testclient import TestClient

    from evidence.accounts import totp_code
    from tests.signing_in import form_token
    from web.app import create_app, open_portal

    user = re.search(r"sign in as (\S+)", demo_output)
    password = re.search(r"password: (\S+)", demo_output)
    secret = re.search(r"otpauth://totp/\S+[?&]secret=([A-Z2-7]+)", demo_output)
    assert user and password and secret, demo_output
    assert user.group(1) == DEMO_PORTAL_USER
    client = TestClient(create_app(open_portal(Settings(data_dir=data_dir))), base_url="https://testserver")
    token = form_token(client.get("/sign-in"))
    form = {
        "user": user.group(1),
        "password": password.group(1),
        "totp": totp_code(secret.group(1), datetime.now(UTC)),
        "csrf_token": token,
    }
    return client.post("/sign-in", data=form, follow_redirects=False).status_code
