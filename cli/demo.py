"""``evidence demo``: a simulated dock, ingested into the embedded vault, and what ended up where.

Everything happens under the settings' data directory (``make demo`` uses ``./demo-data``): keys, the
local vault, a device registry and a dock folder with one body-worn camera on it. Running it again
shows re-ingest storing nothing new.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.table import Table

from evidence.access import UserDirectory
from evidence.settings import Settings
from flows.console import styled, visible, visible_message
from flows.ingest import IngestReport
from flows.keys import init_keys, open_vault_for_init
from flows.retrieval import describe_item, get_original
from flows.run import run_ingest
from flows.simulate import make_device, make_jpeg
from storage.vault import Vault

DEMO_DEVICE = "BWC-DEMO01"
DEMO_OFFICER = "PC-4471"
DEMO_INVESTIGATOR = "DC-2093"
DEMO_INCIDENT = "KNT-2026-000123"
DEMO_PORTAL_USER = "demo-investigator"
RECORDED_BEFORE_DOCKING = timedelta(hours=1)


def build_dock(data_dir: Path) -> Path:
    """One docked camera: photos with EXIF and GPS, a short video, and two awkward files."""
    device = data_dir / "dock" / DEMO_DEVICE
    if device.exists():
        return device
    make_device(device, photos=3, videos=1, seed=2026)
    broken = make_jpeg(device / "DCIM" / "100BWC01" / "IMG_0099.JPG", seed=99)
    broken.write_bytes(broken.read_bytes()[:1500])  # a photo cut short when the battery died
    (device / "SYSTEM.LOG").write_bytes(b"camera event log\n" * 64)
    # A docked camera's files were written while it was out on patrol. Files modified within the
    # settle time are deferred as still being written, so files made a moment ago would be deferred
    # whenever the ingest starts quickly (a configured Prefect server, a fast machine).
    written = time.time() - RECORDED_BEFORE_DOCKING.total_seconds()
    for path in device.rglob("*"):
        if path.is_file():
            os.utime(path, (written, written))
    return device


def write_registry(settings: Settings) -> None:
    """The device registry and the users file a force would maintain, with one of each."""
    registry, users = settings.device_registry, settings.users_file
    assert registry is not None and users is not None
    registry.parent.mkdir(parents=True, exist_ok=True)
    if not registry.exists():
        registry.write_text(f'[devices."{DEMO_DEVICE}"]\nofficer = "{DEMO_OFFICER}"\ntype = "body-worn"\n')
    if not users.exists():
        users.write_text(
            f'[users.{DEMO_OFFICER}]\nrole = "officer"\n\n[users.{DEMO_INVESTIGATOR}]\nrole = "investigator"\n'
        )


def run_demo(settings: Settings, console: Console) -> IngestReport:
    console.rule(styled("evidence-pipeline demo", "bold"))
    for path in init_keys(settings):
        console.print(f"created key file {path}")
    vault = open_vault_for_init(settings)
    vault.initialise()
    console.print(f"vault: {visible(vault.store.url)}")
    write_registry(settings)
    device = build_dock(settings.data_dir)
    console.print(f"docked device: {visible(str(device))}\n")

    report = run_ingest(
        device,
        device_serial=None,
        officer_id=None,
        wipe=False,
        incidents=[DEMO_INCIDENT],
        linked_by=DEMO_OFFICER,
    )
    vault = Vault.open(settings)
    _show_items(console, vault, report)
    _show_read_back(console, vault, report, device, settings.data_dir / "readback")
    portal_account = demo_portal_account(settings)
    if report.by_status("ingested"):
        again = "run again: nothing new"
    elif report.by_status("deferred", "failed"):
        again = "some files were not stored; run again to finish"
    else:
        again = "re-running stored nothing new"
    console.print(
        f"\n{', '.join(f'{n} {s}' for s, n in sorted(report.counts.items()))} ({again}), "
        f"all linked to incident {DEMO_INCIDENT}. Try, with EVIDENCE_DATA_DIR={settings.data_dir}:\n"
        f"  evidence --user {DEMO_INVESTIGATOR} incident show {DEMO_INCIDENT}\n"
        f"  evidence --user {DEMO_INVESTIGATOR} export --incident {DEMO_INCIDENT} --purpose 'file review' "
        f"--out {settings.data_dir / 'bag'}\n"
        f"  evidence custody EVIDENCE_ID"
    )
    _show_portal(console, settings, portal_account)
    return report


@dataclass(frozen=True)
class DemoAccount:
    user_id: str
    password: str
    totp_uri: str
    totp_secret: str


def demo_portal_account(settings: Settings) -> DemoAccount:
    """An investigator's portal account with a new strong password and TOTP secret each run: the demo
    prints them, and a password shown once cannot be shown again."""
    from flows.accounts import enrol, reset_credentials
    from storage.accounts import Accounts

    password = "-".join(secrets.token_urlsafe(6) for _ in range(4))
    accounts = Accounts.open(settings)
    try:
        if accounts.account(DEMO_PORTAL_USER) is None:
            enrolment = enrol(
                accounts, DEMO_PORTAL_USER, frozenset({"investigator"}), password, with_totp=True
            )
        else:
            enrolment = reset_credentials(accounts, DEMO_PORTAL_USER, password, with_totp=True)
        account = accounts.account(DEMO_PORTAL_USER)
    finally:
        accounts.close()
    assert enrolment.totp_uri is not None and account is not None and account.totp_secret is not None
    return DemoAccount(DEMO_PORTAL_USER, password, enrolment.totp_uri, account.totp_secret)


def _show_portal(console: Console, settings: Settings, account: DemoAccount) -> None:
    from evidence.accounts import totp_code

    code = totp_code(account.totp_secret, datetime.now(UTC))
    console.print(
        f"\nThe investigators' portal on this demo data:\n"
        f"  make portal (or: EVIDENCE_DATA_DIR={settings.data_dir} evidence serve)\n"
        f"  then open http://localhost:8000/sign-in and sign in as {account.user_id}\n"
        f"  password: {account.password}\n"
        f"  TOTP: add this to an authenticator app (it is not shown again; the next demo run makes new ones):\n"
        f"  {account.totp_uri}\n"
        f"  code right now: {code} (a code works once, for about a minute)",
        soft_wrap=True,
    )


def _show_items(console: Console, vault: Vault, report: IngestReport) -> None:
    table = Table(title="What was stored where (object keys reveal nothing of the content)")
    for column in ("file on device", "status", "evidence id", "type", "stored as", "locked until", "flags"):
        table.add_column(column, overflow="fold")
    for outcome in report.outcomes:
        if outcome.evidence_id is None:
            table.add_row(
                visible(outcome.source_path),
                outcome.status,
                "",
                "",
                "",
                "",
                visible_message(outcome.reason or ""),
            )
            continue
        manifest = vault.manifest(outcome.evidence_id)
        info = vault.store.head(manifest.content.key, version_id=manifest.content.version_id)
        until = info.retention.retain_until.date().isoformat() if info.retention else "-"
        table.add_row(
            visible(outcome.source_path),
            outcome.status,
            outcome.evidence_id,
            visible(manifest.media_type),
            manifest.content.key[:24] + "…",
            until,
            ", ".join(map(visible, manifest.flags)),
        )
    console.print(table)


def _show_read_back(
    console: Console, vault: Vault, report: IngestReport, device: Path, out_dir: Path
) -> None:
    videos = [
        o for o in report.by_status("ingested", "duplicate") if (o.media_type or "").startswith("video/")
    ]
    if not videos:
        return
    outcome = videos[0]
    target = out_dir / f"{outcome.evidence_id}.mp4"
    target.unlink(missing_ok=True)
    investigator = UserDirectory.load(vault.settings.users_file).resolve(DEMO_INVESTIGATOR)
    get_original(vault, str(outcome.evidence_id), investigator, target, purpose="demo read-back")
    shown = describe_item(vault, str(outcome.evidence_id), investigator)
    same = (
        hashlib.sha256(target.read_bytes()).hexdigest()
        == hashlib.sha256((device / outcome.source_path).read_bytes()).hexdigest()
    )
    console.print(
        f"\nread back {outcome.evidence_id} as investigator {DEMO_INVESTIGATOR} -> {visible(str(target))}: "
        f"SHA-256 {str(shown['sha256'])[:16]}... "
        f"{'byte-identical to the device file' if same else 'DIFFERENT'}"
    )
    chain = vault.custody.verify(str(outcome.evidence_id))
    console.print(
        f"custody chain: {' -> '.join(e.type for e in chain.events)} "
        f"({'intact' if chain.intact else 'BROKEN'}; signed by {', '.join(chain.signers)})"
    )
    media = shown["metadata"]
    assert isinstance(media, dict)
    console.print(
        "sealed details (only key holders see these): "
        + visible(
            f"name '{shown['original_name']}', recorded {media.get('recorded_at')}, "
            f"{media.get('video_codec')} {media.get('width')}x{media.get('height')}, "
            f"{media.get('duration_seconds')} s"
        )
    )
