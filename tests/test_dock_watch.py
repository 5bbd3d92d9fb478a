"""An officer docks a camera and walks away: the dock notices it and ingests it without being asked."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import pytest

from evidence.layout import ITEMS_PREFIX
from tests.factories import make_device
from tests.station import make_station


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT (Ctrl-C)"])
def test_docked_device_is_ingested_and_a_stop_signal_stops_cleanly(
    cli_env: dict[str, str], tmp_path: Path, stop: signal.Signals
) -> None:
    """A service manager stops the dock with SIGTERM, a person at the console with Ctrl-C (SIGINT):
    either way the watcher finishes what it started and exits 0, not with a traceback or 130."""
    station = make_station(tmp_path / "station")
    dock = tmp_path / "dock"
    dock.mkdir()
    watcher = subprocess.Popen(
        [sys.executable, "-m", "flows", "dock", "watch", str(dock), "--poll-seconds", "0.2"],
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        staging = tmp_path / "staging" / "BWC-DOCK01"
        make_device(staging, photos=2, videos=1)
        staging.rename(dock / "BWC-DOCK01")  # a device appears at once, as a mount does
        (dock / "not-a-device").symlink_to(tmp_path / "staging")

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(list(station.vault.store.list(ITEMS_PREFIX))) < 3:
            assert watcher.poll() is None, watcher.communicate()[1]
            time.sleep(0.2)
        assert len(list(station.vault.store.list(ITEMS_PREFIX))) == 3
    finally:
        watcher.send_signal(stop)
        _, stderr = watcher.communicate(timeout=60)
    assert watcher.returncode == 0, stderr
    assert "device docked: BWC-DOCK01" in stderr
    assert "not-a-device" not in stderr, "a link under the dock root is not a device"
    assert "stopping: finishing devices in progress" in stderr  # the watcher's handler, not a default
    assert "dock watcher stopped" in stderr
    assert "Traceback" not in stderr and "interrupted" not in stderr


def test_dock_watch_messages_show_control_and_bidi_characters_in_device_names_escaped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The dock's folder names come from whatever mounted there: its console lines show them with
    escape sequences, bidi controls and newlines made visible (the ingest itself is not the point)."""
    from evidence.errors import InvalidInput
    from flows import run
    from flows.console import err
    from flows.dock import watch_dock

    dock = tmp_path / "dock"
    (dock / "BWC\x1b[2J\u202e\nforged").mkdir(parents=True)

    def unreadable(device_dir: Path, **options: object) -> None:
        raise InvalidInput(f"{device_dir} cannot be read")

    monkeypatch.setattr(run, "run_ingest", unreadable)
    watch_dock(dock, wipe=False, poll_seconds=0, once=True, console=err)
    shown = capsys.readouterr().err

    assert not {c for c in shown if c != "\n" and unicodedata.category(c) in {"Cc", "Cf", "Zl", "Zp"}}
    lines = " ".join(shown.split())  # rich wraps long lines at spaces
    assert "device docked: BWC\\x1b[2J\\u202e\\nforged; ingesting" in lines, shown
    assert "device BWC\\x1b[2J\\u202e\\nforged: failed: " in lines, shown
    assert "BWC\\x1b[2J\\u202e\\nforged cannot be read;" in lines, shown  # the error names it too
