"""Playing evidence through the portal: ``python -m bench.portal_playback [--stores local,rgw]``.

For each store, a 1 GiB video (a real MP4 grown by a ``free`` box of random bytes) is ingested into a
fresh station (a local vault, or a bucket on Ceph RGW over HTTPS started for the run, ``tests.rgw``),
investigators' accounts are enrolled, and ``evidence serve`` is started as its own process on
127.0.0.1 (plain HTTP: TLS is the proxy's or uvicorn's cost, not the portal's). Each investigator signs
in through the real form (password and TOTP code) and gives a purpose on the item page's form, as a
person does. Then, against the warm service:

- **first play**: ``Range: bytes=0-`` from a session that has not played the item (a fresh
  verification of the chain and the ``play`` event are on this path), time to the first body byte;
- **replay**: ``bytes=0-`` again in a session that has (the verification reused);
- **seek to 90 %**: ``bytes=<90 %>-`` in that session;
- **concurrent players**: ``--players`` sessions, each reading the video sequentially from its own
  starting point in 1 and 2 MiB Range requests (alternately) for ``--seconds``, as fast as the
  service answers: each player's sustained rate, and its longest stall (the longest time without a
  byte arriving, requests included);
- the service's peak RSS (``VmHWM`` of the ``evidence serve`` process) over all of it;
- what a fresh verification costs (``flows.retrieval.verify_for_release``, measured in this process
  against the same store) for chains of 1, 10 and 100 events: why a session reuses its verification
  for 30 s between seeks (docs/access.md, "Portal playback, downloads and thumbnails").

Targets (the issue's): first byte under 300 ms for a play and a seek, every player above 16 Mbit/s
(twice an 8 Mbit/s body-worn camera's bitrate) with no stall over 1 s, peak RSS at most 512 MiB.
Results: stdout and ``bench/results/portal_playback.{json,md}`` (``--quick``:
``portal_playback-quick.*``). Exit status: 0 targets met, 1 a target missed, 2 the run failed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.concurrent_docks import make_padded_video
from bench.run_all import (
    _base_environment,
    check_resources,
    format_size,
    machine_description,
    parse_size,
    wait_for_quiet,
)
from bench.servers import BenchmarkError, CephRgwServer, ServerProcess

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024
GiB = 1024 * MiB
DEFAULT_SIZE = 1 * GiB
DEFAULT_PLAYERS = 20
DEFAULT_SECONDS = 25.0
SAMPLES = 10
FIRST_PLAYS = 3
PASSWORD = "lantern orchard 7 quietly bench"  # noqa: S105 (the benchmark's own throwaway accounts)
PURPOSE = "benchmark: playback of a long recording"
TARGET_FIRST_BYTE_MS = 300.0
TARGET_PLAYER_MBIT_S = 16.0
TARGET_STALL_S = 1.0
TARGET_RSS_MIB = 512.0
CHAIN_LENGTHS = (1, 10, 100)


# -- the service --------------------------------------------------------------------------------


class PortalServer(ServerProcess):
    """``evidence serve`` on 127.0.0.1, over plain HTTP (so its cookie must not be Secure-only)."""

    name = "evidence-serve"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)]

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/sign-in", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False


@dataclass
class Investigator:
    user_id: str
    totp_secret: str


def enrol_investigators(accounts: Any, count: int) -> list[Investigator]:
    """Accounts as ``evidence users add`` makes them (password and TOTP)."""
    from flows.accounts import enrol

    people = []
    for number in range(count):
        user_id = f"dc-{number:03d}"
        enrol(accounts, user_id, frozenset({"investigator"}), PASSWORD, with_totp=True)
        account = accounts.account(user_id)
        assert account is not None and account.totp_secret is not None
        people.append(Investigator(user_id, account.totp_secret))
    return people


def form_token(page: httpx.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    if found is None:
        raise BenchmarkError(f"{page.url} has no form token (status {page.status_code}):\n{page.text[:500]}")
    return found.group(1)


def signed_in_client(base_url: str, person: Investigator, evidence_id: str) -> httpx.Client:
    """A browser-like client, as a person: signed in through the form (password and TOTP code), then
    the purpose given on the item page."""
    from evidence.accounts import totp_code

    client = httpx.Client(base_url=base_url, follow_redirects=False, timeout=60)
    token = form_token(client.get("/sign-in"))
    answer = client.post(
        "/sign-in",
        data={
            "user": person.user_id,
            "password": PASSWORD,
            "totp": totp_code(person.totp_secret, datetime.now(UTC)),
            "csrf_token": token,
            "next": "",
        },
    )
    if answer.status_code != 303:
        raise BenchmarkError(
            f"sign-in of {person.user_id} answered {answer.status_code}: {answer.text[:300]}"
        )
    token = form_token(client.get(f"/items/{evidence_id}"))
    answer = client.post(f"/items/{evidence_id}/purpose", data={"purpose": PURPOSE, "csrf_token": token})
    if answer.status_code != 303:
        raise BenchmarkError(f"giving a purpose answered {answer.status_code}: {answer.text[:300]}")
    return client


# -- measuring ----------------------------------------------------------------------------------


def first_byte_ms(client: httpx.Client, url: str, start: int) -> float:
    """Milliseconds from sending ``Range: bytes=START-`` to the first body byte; the rest is not read
    (the connection is dropped, as a player does when it seeks)."""
    began = time.perf_counter()
    with client.stream("GET", url, headers={"Range": f"bytes={start}-"}) as answer:
        if answer.status_code != 206:
            raise BenchmarkError(f"bytes={start}- answered {answer.status_code}")
        for piece in answer.iter_raw(64 * 1024):
            if piece:
                return (time.perf_counter() - began) * 1000
    raise BenchmarkError(f"bytes={start}- sent no body")


@dataclass
class PlayerRun:
    player: int
    start: int
    bytes_read: int = 0
    requests: int = 0
    seconds: float = 0.0
    longest_stall_s: float = 0.0
    longest_stall_ended_s: float = 0.0
    """When the longest stall ended, in seconds from the start: a stall all players share is the service's."""
    stalls_over_1s: int = 0
    error: str | None = None

    @property
    def mbit_s(self) -> float:
        return self.bytes_read * 8 / self.seconds / 1e6 if self.seconds else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "player": self.player,
            "start_mib": round(self.start / MiB, 1),
            "bytes_read": self.bytes_read,
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "mbit_s": round(self.mbit_s, 1),
            "longest_stall_s": round(self.longest_stall_s, 3),
            "longest_stall_ended_s": round(self.longest_stall_ended_s, 2),
            "stalls_over_1s": self.stalls_over_1s,
            "error": self.error,
        }


def play_sequentially(
    client: httpx.Client, url: str, run: PlayerRun, size: int, seconds: float, go: threading.Event
) -> None:
    """Read from ``run.start`` in 1 and 2 MiB ranges, wrapping at the end, checking each answer's
    length, until ``seconds`` have passed."""
    go.wait()
    began = last_byte = time.perf_counter()
    position = run.start
    try:
        while time.perf_counter() - began < seconds:
            length = (1 if run.requests % 2 == 0 else 2) * MiB
            stop = min(position + length, size)
            with client.stream("GET", url, headers={"Range": f"bytes={position}-{stop - 1}"}) as answer:
                if answer.status_code != 206:
                    raise BenchmarkError(f"bytes={position}-{stop - 1} answered {answer.status_code}")
                received = 0
                for piece in answer.iter_raw(256 * 1024):
                    now = time.perf_counter()
                    if now - last_byte > run.longest_stall_s:
                        run.longest_stall_s, run.longest_stall_ended_s = now - last_byte, now - began
                    run.stalls_over_1s += now - last_byte > TARGET_STALL_S
                    last_byte = now
                    received += len(piece)
            if received != stop - position:
                raise BenchmarkError(f"bytes={position}-{stop - 1} gave {received} bytes")
            run.bytes_read += received
            run.requests += 1
            position = 0 if stop >= size else stop
    except Exception as err:  # reported in the results, not raised from a thread
        run.error = f"{type(err).__name__}: {err}"
    run.seconds = time.perf_counter() - began


def concurrent_players(
    clients: Sequence[httpx.Client], url: str, size: int, seconds: float
) -> list[PlayerRun]:
    go = threading.Event()
    runs = [PlayerRun(n, (n * size // len(clients)) // MiB * MiB) for n in range(len(clients))]
    threads = [
        threading.Thread(target=play_sequentially, args=(client, url, run, size, seconds, go), daemon=True)
        for client, run in zip(clients, runs, strict=True)
    ]
    for thread in threads:
        thread.start()
    go.set()
    for thread in threads:
        thread.join(timeout=seconds + 120)
    return runs


def verification_costs(station: Any, workdir: Path) -> dict[str, float]:
    """Milliseconds for a fresh ``verify_for_release`` of an item whose chain holds 1, 10, 100 events
    (the median of 5), on the station's own store."""
    from flows.records import record
    from flows.retrieval import verify_for_release
    from flows.simulate import DEVICE_FOLDER, random_file

    device = workdir / "verification-device"
    random_file(device / DEVICE_FOLDER / "VID_0002.MP4", 2 * MiB, seed=7)
    [outcome] = station.ingest(device).by_status("ingested")
    evidence_id = str(outcome.evidence_id)
    costs = {}
    for length in CHAIN_LENGTHS:
        while len(station.vault.custody.events(evidence_id)) < length:
            record(
                station.vault,
                station.catalog,
                evidence_id,
                "access",
                actor="bench",
                role="investigator",
                details={"action": "play", "purpose": PURPOSE},
            )
        times = []
        for _ in range(5):
            began = time.perf_counter()
            verify_for_release(station.vault, evidence_id, expected_length=length)
            times.append((time.perf_counter() - began) * 1000)
        costs[str(length)] = round(statistics.median(times), 1)
    return costs


@dataclass
class StoreResult:
    store: str
    size: int
    evidence_id: str
    ingest_seconds: float
    first_play_ms: list[float] = field(default_factory=list)
    first_play_chain: list[int] = field(default_factory=list)
    """Events in the item's custody chain when each first play began (its fresh verification reads all)."""
    late_first_play_ms: float = 0.0
    late_first_play_chain: int = 0
    replay_ms: list[float] = field(default_factory=list)
    seek_90_ms: list[float] = field(default_factory=list)
    players: list[PlayerRun] = field(default_factory=list)
    server_peak_rss_mib: float = 0.0
    server_cpu_seconds: float = 0.0
    verify_ms_by_chain_length: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def targets(self) -> dict[str, bool]:
        rates = [run.mbit_s for run in self.players]
        return {
            "first play < 300 ms (every sample)": max(self.first_play_ms) < TARGET_FIRST_BYTE_MS,
            f"first play after the players (chain of {self.late_first_play_chain}) < 300 ms": (
                self.late_first_play_ms < TARGET_FIRST_BYTE_MS
            ),
            "replay < 300 ms (every sample)": max(self.replay_ms) < TARGET_FIRST_BYTE_MS,
            "seek to 90 % < 300 ms (every sample)": max(self.seek_90_ms) < TARGET_FIRST_BYTE_MS,
            "every player > 16 Mbit/s": bool(rates) and min(rates) > TARGET_PLAYER_MBIT_S,
            "no stall > 1 s": all(run.longest_stall_s <= TARGET_STALL_S for run in self.players),
            "no player failed": all(run.error is None for run in self.players),
            "peak RSS <= 512 MiB": self.server_peak_rss_mib <= TARGET_RSS_MIB,
        }

    def to_json(self) -> dict[str, Any]:
        rates = [run.mbit_s for run in self.players]

        def summary(values: Sequence[float]) -> dict[str, float]:
            return {
                "median": round(statistics.median(values), 1),
                "max": round(max(values), 1),
                "min": round(min(values), 1),
            }

        return {
            "store": self.store,
            "size": format_size(self.size),
            "evidence_id": self.evidence_id,
            "ingest_seconds": round(self.ingest_seconds, 1),
            "first_byte_ms": {
                "first_play": summary(self.first_play_ms),
                "replay": summary(self.replay_ms),
                "seek_90": summary(self.seek_90_ms),
            },
            "first_play_after_players_ms": round(self.late_first_play_ms, 1),
            "first_play_chain_lengths": self.first_play_chain,
            "first_play_after_players_chain_length": self.late_first_play_chain,
            "first_byte_samples_ms": {
                "first_play": [round(v, 1) for v in self.first_play_ms],
                "replay": [round(v, 1) for v in self.replay_ms],
                "seek_90": [round(v, 1) for v in self.seek_90_ms],
            },
            "players": {
                "count": len(self.players),
                "mbit_s": summary(rates) if rates else {},
                "total_mbit_s": round(sum(rates), 1),
                "longest_stall_s": round(max((r.longest_stall_s for r in self.players), default=0.0), 3),
                "runs": [run.to_json() for run in self.players],
            },
            "server_peak_rss_mib": round(self.server_peak_rss_mib, 1),
            "server_cpu_seconds": round(self.server_cpu_seconds, 1),
            "verify_ms_by_chain_length": self.verify_ms_by_chain_length,
            "targets": self.targets(),
            "notes": self.notes,
        }


# -- one store ----------------------------------------------------------------------------------


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """This process's environment for an in-process station (boto3 reads its endpoint from it)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def measure_store(
    store: str,
    workdir: Path,
    size: int,
    players: int,
    seconds: float,
    *,
    rgw: CephRgwServer | None,
    quiet_wait: float,
    log: Any = print,
) -> StoreResult:
    from tests.station import make_station

    data_dir = workdir / f"station-{store}"
    env = _base_environment(workdir) | {
        "EVIDENCE_DATA_DIR": str(data_dir),
        "EVIDENCE_COOKIE_SECURE": "false",  # plain HTTP on loopback
    }
    bucket = None
    if rgw is not None:
        bucket = rgw.new_bucket()
        env |= rgw.environment() | {
            "AWS_ENDPOINT_URL": rgw.endpoint,
            "EVIDENCE_VAULT_URL": f"s3://{bucket}/portal",
        }
    try:
        with environment(env):
            settings_overrides: dict[str, Any] = {"cookie_secure": False}
            if bucket is not None:
                settings_overrides["vault_url"] = f"s3://{bucket}/portal"
            station = make_station(data_dir, **settings_overrides)
            device = workdir / f"device-{store}"
            log(f"[{store}] writing a {format_size(size)} video ...")
            make_padded_video(device / "DCIM" / "100BWC01" / "VID_0001.MP4", size, seed=1)
            log(f"[{store}] ingesting it ...")
            began = time.perf_counter()
            [outcome] = station.ingest(device).by_status("ingested")
            ingest_seconds = time.perf_counter() - began
            evidence_id = str(outcome.evidence_id)
            for path in device.rglob("*"):
                if path.is_file():
                    path.unlink()
            log(
                f"[{store}] {evidence_id} ingested in {ingest_seconds:.1f} s; enrolling {players} investigators"
            )
            from storage.accounts import Accounts

            accounts = Accounts.open(station.settings)
            people = enrol_investigators(accounts, 1 + FIRST_PLAYS + players + 1)
            result = StoreResult(store, size, evidence_id, ingest_seconds)
            result.verify_ms_by_chain_length = verification_costs(station, workdir)
            log(f"[{store}] fresh verification, ms by chain length: {result.verify_ms_by_chain_length}")
        with PortalServer(workdir, env) as server:
            assert isinstance(server, PortalServer)
            _measure_against(server, result, people, station.catalog, size, players, seconds, quiet_wait, log)
            result.server_peak_rss_mib = server.peak_rss_kib() / 1024
            result.server_cpu_seconds = server.cpu_seconds()
        return result
    finally:
        if rgw is not None and bucket is not None:
            rgw.remove_bucket(bucket)


def _measure_against(
    server: PortalServer,
    result: StoreResult,
    people: Sequence[Investigator],
    catalog: Any,
    size: int,
    players: int,
    seconds: float,
    quiet_wait: float,
    log: Any,
) -> None:
    url = f"/items/{result.evidence_id}/content"
    warm = signed_in_client(server.url, people[0], result.evidence_id)
    first_byte_ms(warm, url, 0)  # the service's first play: imports, store clients, caches
    clients: list[httpx.Client] = [warm]
    try:
        if quiet_wait:
            wait_for_quiet(quiet_wait, log)
        for person in people[1 : 1 + FIRST_PLAYS]:
            client = signed_in_client(server.url, person, result.evidence_id)
            clients.append(client)
            result.first_play_chain.append(chain_length(catalog, result.evidence_id))
            result.first_play_ms.append(first_byte_ms(client, url, 0))
        for sample in range(SAMPLES):
            result.replay_ms.append(first_byte_ms(warm, url, 0))
            result.seek_90_ms.append(first_byte_ms(warm, url, (size * 9 // 10) + sample * MiB))
        log(
            f"[{result.store}] first byte: first play {_ms(result.first_play_ms)}, replay "
            f"{_ms(result.replay_ms)}, seek to 90 % {_ms(result.seek_90_ms)} (median / max ms)"
        )
        playing = [signed_in_client(server.url, person, result.evidence_id) for person in people[-players:]]
        clients += playing
        for client in playing:  # each session's first play recorded before the clock starts
            first_byte_ms(client, url, 0)
        if quiet_wait:
            wait_for_quiet(quiet_wait, log)
        log(f"[{result.store}] {players} players for {seconds:.0f} s ...")
        result.players = concurrent_players(playing, url, size, seconds)
        late = signed_in_client(server.url, people[-1], result.evidence_id)
        clients.append(late)
        result.late_first_play_chain = chain_length(catalog, result.evidence_id)
        result.late_first_play_ms = first_byte_ms(late, url, 0)
        rates = [run.mbit_s for run in result.players]
        log(
            f"[{result.store}] players: min {min(rates):.1f}, median {statistics.median(rates):.1f} Mbit/s; "
            f"longest stall {max(r.longest_stall_s for r in result.players):.2f} s; "
            f"errors {sum(r.error is not None for r in result.players)}; then a first play with a chain of "
            f"{result.late_first_play_chain} events: {result.late_first_play_ms:.0f} ms"
        )
    finally:
        for client in clients:
            client.close()


def chain_length(catalog: Any, evidence_id: str) -> int:
    """Events in the item's chain, as the catalog the service keeps in step has them."""
    return int(catalog.custody_lengths([evidence_id]).get(evidence_id, 0))


def _ms(values: Sequence[float]) -> str:
    return f"{statistics.median(values):.0f} / {max(values):.0f}"


# -- report -------------------------------------------------------------------------------------


def build_report(results: Sequence[StoreResult], *, players: int, seconds: float) -> dict[str, Any]:
    from evidence.settings import Settings

    return {
        "benchmark": "portal playback",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_description(("fastapi", "starlette", "uvicorn", "httpx", "boto3", "cryptography")),
        "segment_size": Settings.model_fields["segment_size"].default,
        "players": players,
        "player_seconds": seconds,
        "stores": [result.to_json() for result in results],
        "all_targets_met": all(all(result.targets().values()) for result in results),
    }


def render_markdown(report: Mapping[str, Any]) -> str:
    machine = report["machine"]
    packages = ", ".join(f"{name} {version}" for name, version in machine["packages"].items())
    lines = [
        "# Portal playback benchmark",
        "",
        f"Run {report['date']} by `python -m bench.portal_playback`; what each figure means: the module's "
        "docstring and `bench/README.md`.",
        "",
        f"Machine: {machine['nproc']} CPUs ({machine['cpu']}), {machine['memory_gib']} GiB memory, Python "
        f"{machine['python']}; {packages}. The service (`evidence serve`, one process), the players (threads "
        "of the benchmark process) and, for `rgw`, Ceph RGW all share these CPUs.",
        "",
        "## Time to first byte (ms: median / max)",
        "",
        "| store | size | ingest s | first play in a session | replay in the session | seek to 90 % | "
        "first play after the players |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for store in report["stores"]:
        fb = store["first_byte_ms"]
        lines.append(
            f"| {store['store']} | {store['size']} | {store['ingest_seconds']} | "
            + " | ".join(f"{fb[k]['median']} / {fb[k]['max']}" for k in ("first_play", "replay", "seek_90"))
            + f" | {store['first_play_after_players_ms']} (chain of {store['first_play_after_players_chain_length']}"
            " events) |"
        )
    lines += [
        "",
        "A first play in a session verifies the item afresh (its custody chain holds "
        + ", ".join(
            f"{store['store']}: {', '.join(map(str, store['first_play_chain_lengths']))}"
            for store in report["stores"]
        )
        + " events at the first plays) and records the session's `play` event; a replay and a seek reuse "
        "the session's verification (relied on for 30 s, renewed in the background from 20 s).",
    ]
    lines += [
        "",
        f"## {report['players']} concurrent players, {report['player_seconds']:.0f} s each "
        "(sequential 1 and 2 MiB Range requests)",
        "",
        "| store | min Mbit/s | median Mbit/s | max Mbit/s | total Mbit/s | longest stall s | "
        "service peak RSS MiB | service CPU s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for store in report["stores"]:
        p = store["players"]
        lines.append(
            f"| {store['store']} | {p['mbit_s']['min']} | {p['mbit_s']['median']} | {p['mbit_s']['max']} | "
            f"{p['total_mbit_s']} | {p['longest_stall_s']} | {store['server_peak_rss_mib']} | "
            f"{store['server_cpu_seconds']} |"
        )
    lines += [
        "",
        "## A fresh verification (`verify_for_release`), ms by custody chain length",
        "",
        "| store | " + " | ".join(f"{n} events" for n in CHAIN_LENGTHS) + " |",
        "| --- | " + " | ".join("---" for _ in CHAIN_LENGTHS) + " |",
    ]
    for store in report["stores"]:
        costs = store["verify_ms_by_chain_length"]
        lines.append(f"| {store['store']} | " + " | ".join(str(costs[str(n)]) for n in CHAIN_LENGTHS) + " |")
    lines += ["", "## Targets", "", "| store | target | met |", "| --- | --- | --- |"]
    for store in report["stores"]:
        for target, met in store["targets"].items():
            lines.append(f"| {store['store']} | {target} | {'yes' if met else '**no**'} |")
        for note in store["notes"]:
            lines.append(f"\nNote ({store['store']}): {note}")
    return "\n".join(lines) + "\n"


def write_report(report: Mapping[str, Any], stem: str) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    path = RESULTS_DIR / f"{stem}.md"
    path.write_text(render_markdown(report))
    return path


# -- command line -------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.portal_playback", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--stores", default="local,rgw", help="comma-separated: local, rgw")
    parser.add_argument("--size", type=parse_size, default=DEFAULT_SIZE, help="video size (default 1GiB)")
    parser.add_argument("--players", type=int, default=DEFAULT_PLAYERS)
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="how long the players play")
    parser.add_argument("--quick", action="store_true", help="256 MiB, 5 players, 5 s: a smoke run")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch space (default: a temp dir)")
    parser.add_argument("--quiet-wait", type=float, default=60.0, help="seconds to wait for a quiet machine")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.players, args.seconds = 256 * MiB, 5, 5.0
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    if not stores or set(stores) - {"local", "rgw"}:
        parser.error("--stores takes local and/or rgw")
    import tempfile

    with ExitStack() as stack:
        workdir = args.workdir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="portal-bench-"))
        )
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            check_resources(workdir, [args.size], "rgw" if "rgw" in stores else "moto")
            results = []
            for store in stores:
                rgw = None
                if store == "rgw":
                    print("starting Ceph RGW ...")
                    rgw = stack.enter_context(CephRgwServer(workdir, 2 * args.size + 2 * GiB))
                results.append(
                    measure_store(
                        store,
                        workdir,
                        args.size,
                        args.players,
                        args.seconds,
                        rgw=rgw,
                        quiet_wait=args.quiet_wait,
                    )
                )
        except BenchmarkError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    report = build_report(results, players=args.players, seconds=args.seconds)
    path = write_report(report, "portal_playback-quick" if args.quick else "portal_playback")
    print(f"\nresults: {path}")
    for store in report["stores"]:
        for target, met in store["targets"].items():
            print(f"  {store['store']:<6} {'met   ' if met else 'MISSED'} {target}")
    return 0 if report["all_targets_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
