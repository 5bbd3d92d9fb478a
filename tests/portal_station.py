"""The portal as an investigator meets it, for the browser tests and the screenshots: a station holding
one incident's evidence (a real H.264 video, two photos, and a photo whose device name is markup),
people's accounts made with ``evidence users add``, and a real ``evidence serve`` process on loopback.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import cast

import av
import pyotp
from PIL import Image, ImageDraw

from tests.factories import DEFAULT_TAKEN, DEFAULT_VIDEO_TIME, DEVICE_FOLDER, make_jpeg
from tests.station import Station, make_station

PROJECT_ROOT = Path(__file__).resolve().parent.parent
INCIDENT = "KNT-2026-000123"
HOSTILE_NAME = "<img src=x onerror=alert(1)>.jpg"
"""A file name a tampered device could carry: markup that runs script if a page ever renders it as HTML."""
DEVICE_SERIAL = "BWC-000142"
DOCKING_OFFICER = "pc-4471"
PASSWORD = "lantern orchard 7 quietly"
"""Every account's password: one the password policy accepts."""
VIDEO_SECONDS = 10
VIDEO_FPS = 25
NOISE_ROWS = 40
START_TIMEOUT = 60.0
STOP_GRACE = 10.0

PEOPLE: Mapping[str, str] = {
    # one account per story, so that no story shares another's session, purposes or TOTP code
    "ian": "investigator",  # signs in with password and code
    "wes": "investigator",  # gets the code wrong
    "olly": "officer",  # may not open evidence
    "ivy": "investigator",  # searches, opens the incident and sees its thumbnails
    "vic": "investigator",  # plays and seeks the video
    "hal": "investigator",  # opens the photo named as markup
    "iris": "investigator",  # her session expires
    "cyd": "investigator",  # posts without the CSRF token, then signs out
    "tom": "investigator",  # leaves the trail: thumbnails, view, play, download
    "sam": "storage-admin",  # reads the trail
}


@dataclass(frozen=True)
class Account:
    user: str
    role: str
    password: str
    otpauth_uri: str
    """What ``evidence users add`` printed, for the person's authenticator app."""

    def code(self, steps_ahead: int = 0) -> str:
        """The authenticator's six digits now, or ``steps_ahead`` 30-second steps later: a code is
        spent once used, and the service also takes the next step's (for clocks that drift), so a
        second sign-in within the same step uses that."""
        totp = pyotp.parse_uri(self.otpauth_uri)
        return str(totp.at(time.time() + steps_ahead * totp.interval))

    def wrong_code(self) -> str:
        """Six digits that are no code of this account's for a minute either side of now (the service
        takes the step before and after now's, for clocks that drift)."""
        totp = pyotp.parse_uri(self.otpauth_uri)
        now = time.time()
        near = {totp.at(now + steps * totp.interval) for steps in range(-2, 3)}
        return next(code for code in (f"{n:06d}" for n in range(1_000_000)) if code not in near)


@dataclass(frozen=True)
class StoredFile:
    evidence_id: str
    name: str
    sha256: str
    """The SHA-256 the ingest took of the original."""
    size: int
    media_type: str


@dataclass(frozen=True)
class PreparedStation:
    data_dir: Path
    incident: str
    video: StoredFile
    photos: tuple[StoredFile, ...]
    hostile: StoredFile
    """The photo whose device name is :data:`HOSTILE_NAME`."""
    accounts: Mapping[str, Account]

    @property
    def items(self) -> tuple[StoredFile, ...]:
        return (self.video, *self.photos, self.hostile)


def make_h264_video(path: Path, *, seconds: int = VIDEO_SECONDS, fps: int = VIDEO_FPS) -> Path:
    """A real H.264 MP4 a browser can seek: 320x240, a keyframe every second, and the movie header
    first (``+faststart``), so a player needs no more than the file's start before it plays."""
    width, height = 320, 240
    noise = random.Random("portal video")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        container.metadata["creation_time"] = DEFAULT_VIDEO_TIME.strftime("%Y-%m-%dT%H:%M:%S.000000Z")
        stream = container.add_stream("libx264", rate=fps)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "x264-params": f"keyint={fps}:min-keyint={fps}:scenecut=0"}
        for number in range(seconds * fps):
            picture = _picture(number, fps, (width, height), noise)
            frame = av.VideoFrame.from_image(picture)  # type: ignore[no-untyped-call]
            frame.pts = number
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def _picture(number: int, fps: int, size: tuple[int, int], noise: random.Random) -> Image.Image:
    """Frame ``number``: its time written on it, a bar moving across, and a band of noise at the foot
    that gives the file about 2 MB, so a seek can land where the player has not read yet."""
    width, height = size
    picture = Image.new("RGB", size, (20, 40 + number % 100, 90))
    draw = ImageDraw.Draw(picture)
    left = (number * 4) % width
    draw.rectangle((left, 80, left + 40, 160), fill=(230, 200, 40))
    draw.text((10, 10), f"frame {number:04d}  t={number / fps:5.2f}s", fill=(255, 255, 255))
    band = Image.frombytes("RGB", (width, NOISE_ROWS), noise.randbytes(width * NOISE_ROWS * 3))
    picture.paste(band, (0, height - NOISE_ROWS))
    return picture


def _evidence(arguments: list[str], data_dir: Path, stdin: str = "") -> subprocess.Popen[str]:
    """Start ``evidence <arguments>`` as a person would run it, against the station at ``data_dir``."""
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", *arguments],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_environment(data_dir),
        cwd=PROJECT_ROOT,
    )
    assert process.stdin is not None
    process.stdin.write(stdin)
    process.stdin.close()
    return process


def _printed(process: subprocess.Popen[str]) -> str:
    """What a command started by :func:`_evidence` printed, once it has succeeded."""
    assert process.stdout is not None and process.stderr is not None
    printed, problem = process.stdout.read(), process.stderr.read()
    if process.wait(timeout=60) != 0:
        raise RuntimeError(
            f"{' '.join(map(str, process.args))} failed ({process.returncode}): {problem.strip()}"
        )
    return printed


def _environment(data_dir: Path) -> dict[str, str]:
    """This process's environment without any station or AWS settings of the person running the tests."""
    kept = {name: value for name, value in os.environ.items() if not name.startswith(("EVIDENCE_", "AWS_"))}
    return kept | {"EVIDENCE_DATA_DIR": str(data_dir), "PYTHONPATH": str(PROJECT_ROOT)}


def enrol_accounts(data_dir: Path, people: Mapping[str, str]) -> dict[str, Account]:
    """The first person of each role added as a storage admin adds one, with ``evidence users add``
    (which prints the TOTP enrolment URI for the person's authenticator app); the rest in this process
    through the use case that command calls (``flows.accounts.enrol``): each command costs a second of
    CPU to start, and one account per story makes ten."""
    from evidence.access import Role
    from evidence.settings import Settings
    from flows.accounts import enrol
    from storage.accounts import Accounts

    first_of_role = {role: user for user, role in reversed(people.items())}
    adding = {
        user: _evidence(["users", "add", user, "--role", role, "--password-stdin"], data_dir, PASSWORD + "\n")
        for role, user in first_of_role.items()
    }
    made: dict[str, Account] = {}
    for user, command in adding.items():
        printed = _printed(command)
        found = re.search(r"otpauth://\S+", printed)
        if found is None:
            raise RuntimeError(f"evidence users add printed no otpauth URI: {printed!r}")
        made[user] = Account(user, people[user], PASSWORD, found.group(0))
    accounts = Accounts.open(Settings(data_dir=data_dir))
    try:
        for user, role in people.items():
            if user not in made:
                enrolment = enrol(accounts, user, frozenset({cast(Role, role)}), PASSWORD, with_totp=True)
                assert enrolment.totp_uri is not None
                made[user] = Account(user, role, PASSWORD, enrolment.totp_uri)
    finally:
        accounts.close()
    return made


def stock_station(station: Station, people: Mapping[str, str] = PEOPLE) -> PreparedStation:
    """One incident's evidence ingested into ``station`` and linked, and an account for each person."""
    data_dir = station.settings.data_dir
    device = data_dir.parent / "device"
    folder = device / DEVICE_FOLDER
    make_h264_video(folder / "VID_0001.MP4")
    make_jpeg(folder / "IMG_0001.JPG", size=(640, 480), seed=1)
    make_jpeg(folder / "IMG_0002.JPG", size=(480, 640), seed=2, taken=DEFAULT_TAKEN + timedelta(minutes=1))
    make_jpeg(folder / HOSTILE_NAME, size=(320, 240), seed=3, taken=DEFAULT_TAKEN + timedelta(minutes=2))
    # a registered camera, and its officer naming the incident at the dock, as the users file allows
    settings = station.settings
    assert settings.device_registry is not None and settings.users_file is not None
    settings.device_registry.write_text(
        f'[devices."{DEVICE_SERIAL}"]\nofficer = "{DOCKING_OFFICER}"\ntype = "body-worn"\n', encoding="utf-8"
    )
    settings.users_file.write_text(f'[users.{DOCKING_OFFICER}]\nrole = "officer"\n', encoding="utf-8")
    report = station.ingest(
        device, serial=DEVICE_SERIAL, officer=None, incidents=(INCIDENT,), user=DOCKING_OFFICER
    )
    stored = {
        Path(outcome.source_path).name: StoredFile(
            evidence_id=str(outcome.evidence_id),
            name=Path(outcome.source_path).name,
            sha256=str(outcome.sha256),
            size=int(outcome.size or 0),
            media_type=str(outcome.media_type),
        )
        for outcome in report.outcomes
        if outcome.evidence_id is not None
    }
    if len(stored) != 4:
        raise RuntimeError(f"the ingest stored {sorted(stored)}, not the four device files")
    for name, entry in stored.items():
        if entry.sha256 != hashlib.sha256((folder / name).read_bytes()).hexdigest():
            raise RuntimeError(f"{name}: the ingest's SHA-256 is not the file's")
    return PreparedStation(
        data_dir=data_dir,
        incident=INCIDENT,
        video=stored["VID_0001.MP4"],
        photos=(stored["IMG_0001.JPG"], stored["IMG_0002.JPG"]),
        hostile=stored[HOSTILE_NAME],
        accounts=enrol_accounts(data_dir, people),
    )


@contextlib.contextmanager
def serving_portal(
    root: Path, people: Mapping[str, str] = PEOPLE
) -> Iterator[tuple[PreparedStation, PortalServer]]:
    """A stocked station under ``root`` and ``evidence serve`` over it, stopped on leaving. The service
    starts as soon as the station has its keys and vault, and loads while the evidence is ingested."""
    station = make_station(root / "station")
    server = launch_portal(station.settings.data_dir, root / "serve.log")
    try:
        stocked = stock_station(station, people)
        server.wait_until_serving()
        yield stocked, server
    finally:
        server.stop()


# -- the service ---------------------------------------------------------------------------------------


@dataclass
class PortalServer:
    """A running ``evidence serve``; ``stop()`` ends exactly that process."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def wait_until_serving(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not _answers(f"{self.url}/sign-in"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])
                raise RuntimeError(f"evidence serve did not start on {self.url}:\n{tail}")
            time.sleep(0.1)  # waiting for start-up only; no test result depends on it


_LIBC = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _end_with_parent() -> None:
    """In the service's process before it starts: the kernel ends it if the test process dies without
    stopping it (a killed run), so no service outlives its tests."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def launch_portal(
    data_dir: Path,
    log: Path,
    *,
    port: int | None = None,
    host_name: str = "127.0.0.1",
    settings: Mapping[str, str] | None = None,
) -> PortalServer:
    """Start ``evidence serve`` on a free loopback port (or ``port``), over plain HTTP: browsers keep a
    ``Secure`` cookie for ``127.0.0.1`` and ``localhost`` as for HTTPS, so the service's default cookie
    settings stand. ``host_name`` is how the browser is to address it; ``settings`` are ``EVIDENCE_*``
    variables for the service."""
    port = port or free_port()
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=_environment(data_dir) | dict(settings or {}),
            cwd=PROJECT_ROOT,
            preexec_fn=_end_with_parent,
        )
    return PortalServer(f"http://{host_name}:{port}", process, log)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as answer:  # noqa: S310 (our own loopback URL)
            return bool(answer.status == 200)
    except OSError:
        return False
