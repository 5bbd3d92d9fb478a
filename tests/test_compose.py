"""infra/compose.yaml, checked for structure (Docker is not available where the tests run, so the
stack itself is never started here; docs/deployment.md says how to run it).

What is checked: the services and their start order, MinIO with Object Lock on a named volume,
healthchecks, pinned images, every `${VAR}` documented in infra/.env.example with no secret given a
default, each role's credentials reaching only its own services, and that the policies, init script
and Prefect work pools the file names exist. The PostgreSQL init script is also run against a real
PostgreSQL when the binaries are installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

PROJECT = Path(__file__).resolve().parent.parent
INFRA = PROJECT / "infra"

REQUIRED_SERVICES = {"minio", "minio-init", "postgres", "prefect-server", "prefect-worker"}
ONE_SHOT = "no"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|AUTH_STRING")
# ${NAME}, ${NAME:?message}, ${NAME:-default}; not $${...}, which compose passes on as a literal $
INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
SHELL_VARIABLE = re.compile(r"\$\$\{?([A-Za-z_][A-Za-z0-9_]*)")
PINNED_TAG = re.compile(r"^[^:@\s]+(:(?!latest$)[\w.][\w.-]*\d[\w.-]*|@sha256:[0-9a-f]{64})$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((INFRA / "compose.yaml").read_text())
    return doc


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def env_example() -> dict[str, str]:
    values = {}
    for line in (INFRA / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def words(command: Any) -> str:
    return " ".join(command) if isinstance(command, list) else str(command)


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def test_every_service_of_a_single_site_deployment_is_there(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) >= REQUIRED_SERVICES


def test_minio_keeps_its_data_on_a_named_volume_and_the_bucket_is_locked(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    minio = services["minio"]
    assert words(minio["command"]).split() == ["server", "/data", "--console-address", ":9001"]
    data = [v for v in minio["volumes"] if v.split(":")[1] == "/data"]
    assert len(data) == 1, "MinIO's /data must be a volume, or evidence is lost with the container"
    assert data[0].split(":")[0] in compose["volumes"], "a named volume, declared at the top level"

    script = words(services["minio-init"]["command"])
    assert re.search(r"mc mb (--ignore-existing )?--with-lock vault/evidence-vault", script)
    assert "mc version enable vault/evidence-vault" in script
    # nothing reaches the bucket unlocked, even a writer that forgot the lock headers
    assert "mc retention set --default GOVERNANCE 31d vault/evidence-vault" in script


def test_minio_init_loads_each_roles_policy_for_its_own_user(services: dict[str, dict[str, Any]]) -> None:
    init = services["minio-init"]
    script = words(init["command"])
    assert "./policies:/policies:ro" in init["volumes"]
    roles = {"ingest-station": "STATION", "investigator": "INVESTIGATOR", "storage-admin": "ADMIN"}
    for policy, user in roles.items():
        assert f"mc admin policy create vault evidence-{policy} /policies/{policy}.json" in script
        assert (INFRA / "policies" / f"{policy}.json").is_file()
        json.loads((INFRA / "policies" / f"{policy}.json").read_text())
        assert f'mc admin user add vault "$${user}_ACCESS_KEY" "$${user}_SECRET_KEY"' in script
        assert f'mc admin policy attach vault evidence-{policy} --user "$${user}_ACCESS_KEY"' in script
    # AWS-only documents would be refused by MinIO (tests/test_infra_policies.py)
    for aws_only in ("storage-admin-aws.json", "bucket-policy.json", "kms-key-policy.json"):
        assert aws_only not in script


def test_images_are_pinned(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        build = service.get("build")
        if build is not None:
            dockerfile = build["dockerfile_inline"]
            bases = re.findall(r"^FROM\s+(\S+)", dockerfile, re.MULTILINE)
            assert bases and all(PINNED_TAG.match(b) for b in bases), f"{name}: unpinned base image {bases}"
            for source in re.findall(r"^COPY\s+(.+?)\s+\S+$", dockerfile, re.MULTILINE):
                for path in source.split():
                    assert (INFRA / build["context"] / path).exists(), f"{name}: COPY {path} is missing"
            for requirement in re.findall(r'"([A-Za-z0-9_.\[\]-]+[=<>~!]=?[^"]*)"', dockerfile):
                assert "==" in requirement, f"{name}: pin {requirement} exactly"
            continue
        assert PINNED_TAG.match(service["image"]), f"{name}: image {service['image']} is not pinned"
    local = {s["image"] for s in services.values() if "build" in s}
    for name, service in services.items():
        if service.get("image") in local:
            assert "build" in service, (
                f"{name} uses the local image, so it must build it (else compose pulls it)"
            )


def test_long_running_services_have_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if service.get("restart") == ONE_SHOT:
            continue
        check = service.get("healthcheck")
        assert check and check.get("test"), f"{name} has no healthcheck"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name


def test_services_start_in_order(services: dict[str, dict[str, Any]]) -> None:
    def waits_for(name: str, other: str) -> str:
        return str(services[name]["depends_on"][other]["condition"])

    assert waits_for("prefect-worker", "prefect-server") == "service_healthy"
    assert waits_for("prefect-worker", "postgres") == "service_healthy"
    assert waits_for("prefect-worker", "minio-init") == "service_completed_successfully"
    assert waits_for("prefect-server", "postgres") == "service_healthy"
    assert waits_for("minio-init", "minio") == "service_healthy"
    for name, service in services.items():
        for other, how in service.get("depends_on", {}).items():
            assert other in services, f"{name} depends on a service that does not exist: {other}"
            if how["condition"] == "service_healthy":
                assert "healthcheck" in services[other], (
                    f"{name} waits for {other} to be healthy; it has no check"
                )
            if how["condition"] == "service_completed_successfully":
                assert services[other].get("restart") == ONE_SHOT, f"{other} must be a one-shot"


def strings(node: Any) -> Iterator[str]:
    """Every string value in the parsed file (comments are not values, so they are not scanned)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


def test_every_variable_is_documented_and_no_secret_has_a_default(compose: dict[str, Any]) -> None:
    example = env_example()
    used = set()
    for name, operator, _ in (found for text in strings(compose) for found in INTERPOLATION.findall(text)):
        used.add(name)
        assert name in example, f"${{{name}}} is not in infra/.env.example"
        if SECRET_NAME.search(name):
            assert operator == ":?", f"${{{name}}} is a secret: it must be required (:?), never defaulted"
            assert example[name] == "", f"infra/.env.example must not suggest a value for {name}"
    assert used, "the pattern found no variables at all"
    assert set(example) <= used, (
        f"infra/.env.example has variables compose does not use: {set(example) - used}"
    )


def test_no_secret_is_written_into_the_file(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for key, value in environment(service).items():
            if SECRET_NAME.search(key):
                assert INTERPOLATION.fullmatch(value), f"{name}: {key} must come from infra/.env"
            for _user, password in re.findall(r"://([^:/@$]+):([^@]+)@", value):
                assert INTERPOLATION.fullmatch(password), f"{name}: {key} has a password written into it"


def test_shell_variables_in_commands_come_from_the_service_environment(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        defined = set(environment(service))
        for variable in SHELL_VARIABLE.findall(words(service.get("command", ""))):
            assert variable in defined, f"{name} uses $${variable} but does not set it"


def test_each_role_credential_reaches_only_its_own_services(services: dict[str, dict[str, Any]]) -> None:
    """The station's S3 user may not delete; the admin's may. A worker given the wrong one would either
    fail or hold more power than its flows need (docs/deployment.md, "Roles and credentials")."""
    owners = {
        "STATION": {"prefect-worker", "dock-watch"},
        "ADMIN": {"prefect-admin-worker"},
        # the portal decrypts for investigators: it reads everything and appends custody records
        "INVESTIGATOR": {"portal"},
    }
    for name, service in services.items():
        env = environment(service)
        key = env.get("AWS_ACCESS_KEY_ID", "")
        role = next((r for r in owners if f"${{{r}_ACCESS_KEY" in key), None)
        if name in ("minio", "minio-init"):
            continue
        assert not any("MINIO_ROOT" in v for v in env.values()), f"{name} must not hold MinIO's root user"
        expected = next((r for r, names in owners.items() if name in names), None)
        assert role == expected, f"{name} holds the {role} credentials, expected {expected}"
        if role is not None:
            assert f"${{{role}_SECRET_KEY" in env["AWS_SECRET_ACCESS_KEY"], name
    for name in owners["STATION"] | owners["INVESTIGATOR"]:
        keys = [v for v in services[name]["volumes"] if ":/run/evidence/keys" in v]
        assert keys and keys[0].endswith(":ro"), f"{name}: its key bundle is mounted read-only"


def test_the_application_side_is_configured_for_any_s3_endpoint(services: dict[str, dict[str, Any]]) -> None:
    """boto3's own variables name the endpoint (docs/storage.md); the vault URL names only the bucket."""
    for name in ("prefect-worker", "dock-watch", "prefect-admin-worker"):
        env = environment(services[name])
        assert env["EVIDENCE_VAULT_URL"] == "s3://evidence-vault", name
        assert env["AWS_ENDPOINT_URL_S3"] == "http://minio:9000", name
        assert env["AWS_DEFAULT_REGION"], name


def test_settings_agree_with_the_policies_that_bound_them(services: dict[str, dict[str, Any]]) -> None:
    """The station's policy refuses locks longer than a new object's and COMPLIANCE locks: the
    retention the compose file configures must fit inside that, or every ingest would be refused."""
    station = json.loads((INFRA / "policies" / "ingest-station.json").read_text())
    caps = [
        int(s["Condition"]["NumericGreaterThan"]["s3:object-lock-remaining-retention-days"])
        for s in station["Statement"]
        if "NumericGreaterThan" in s.get("Condition", {})
    ]
    refused_modes = [
        s["Condition"]["StringEquals"]["s3:object-lock-mode"]
        for s in station["Statement"]
        if "StringEquals" in s.get("Condition", {})
    ]
    env = environment(services["prefect-worker"])
    days = int(env["EVIDENCE_RETENTION_DAYS"])
    assert caps and days + 1 <= min(caps)
    assert env["EVIDENCE_LOCK_MODE"] not in refused_modes
    assert f"--default {env['EVIDENCE_LOCK_MODE']} {days}d" in words(services["minio-init"]["command"])


def test_prefect_and_the_catalog_each_have_their_postgres_database(
    services: dict[str, dict[str, Any]],
) -> None:
    server = environment(services["prefect-server"])
    assert re.fullmatch(
        r"postgresql\+asyncpg://prefect:\$\{PREFECT_DB_PASSWORD:\?[^}]*\}@postgres:5432/prefect",
        server["PREFECT_API_DATABASE_CONNECTION_URL"],
    )
    assert words(services["prefect-server"]["command"]) == "prefect server start --host 0.0.0.0"
    catalog = environment(services["prefect-worker"])["EVIDENCE_CATALOG_URL"]
    assert re.fullmatch(
        r"postgresql\+psycopg://catalog:\$\{CATALOG_DB_PASSWORD:\?[^}]*\}@postgres:5432/catalog", catalog
    )
    mounted = [v for v in services["postgres"]["volumes"] if "/docker-entrypoint-initdb.d/" in v]
    assert mounted, "the init script must be mounted where the postgres image runs it"
    script = INFRA / mounted[0].split(":")[0]
    assert script.is_file() and os.access(script, os.X_OK)
    text = script.read_text()
    assert "CREATE DATABASE prefect" in text and "CREATE DATABASE catalog" in text
    subprocess.run(["bash", "-n", str(script)], check=True)


def test_workers_poll_pools_that_prefect_yaml_deploys_to(services: dict[str, dict[str, Any]]) -> None:
    deployments = yaml.safe_load((INFRA / "prefect.yaml").read_text())["deployments"]
    pools = {d["work_pool"]["name"] for d in deployments}
    polled = {}
    for name, service in services.items():
        found = re.search(
            r"prefect worker start --pool (\S+) --type process", words(service.get("command", ""))
        )
        if found:
            polled[name] = found.group(1)
            assert "--with-healthcheck" in words(service["command"]), name
    assert polled.get("prefect-worker") == "dock-station"
    for name, pool in polled.items():
        assert pool in pools, f"{name} polls {pool}, which no deployment in infra/prefect.yaml uses"


def test_deployment_parameters_from_the_environment_are_set_where_they_are_deployed(
    services: dict[str, dict[str, Any]],
) -> None:
    """`prefect deploy` fills `{{ $VAR }}` from its own environment: an unset one deploys an empty value."""
    text = (INFRA / "prefect.yaml").read_text()
    wanted = set(re.findall(r"\{\{\s*\$(\w+)\s*\}\}", text))
    assert wanted, "no parameters from the environment"
    assert wanted <= set(environment(services["prefect-deploy"])), wanted - set(
        environment(services["prefect-deploy"])
    )


def test_scheduled_feed_linking_acts_as_a_user_who_may_link_and_record_closures(
    services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """The admin pool runs as the storage-admin account, which may not link: the feed names its own."""
    from evidence.access import UserDirectory

    feed = next(
        d
        for d in yaml.safe_load((INFRA / "prefect.yaml").read_text())["deployments"]
        if d["name"] == "feed-linking"
    )
    assert feed["parameters"]["linked_by"] == "{{ $EVIDENCE_FEED_SERVICE_USER }}"
    example = env_example()
    users = tmp_path / "users.toml"
    users.write_text(
        f'[users.{example["EVIDENCE_ADMIN_SERVICE_USER"]}]\nrole = "storage-admin"\n'
        f'[users.{example["EVIDENCE_FEED_SERVICE_USER"]}]\nrole = "investigator"\n'
    )
    directory = UserDirectory.load(users)
    feed_user = directory.resolve(example["EVIDENCE_FEED_SERVICE_USER"])
    feed_user.require("link")
    feed_user.require("close")
    directory.resolve(example["EVIDENCE_ADMIN_SERVICE_USER"]).require("retention")
    deployment_doc = (Path(__file__).resolve().parent.parent / "docs" / "deployment.md").read_text()
    assert f'[users.{example["EVIDENCE_FEED_SERVICE_USER"]}] role = "investigator"' in deployment_doc


def test_bind_mounts_name_files_that_exist(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./") and source != "./minio-certs":  # created empty; holds the site's certs
                assert (INFRA / source).exists(), f"{name} mounts {source}, which is not in infra/"


# -- the PostgreSQL init script, run for real where PostgreSQL is installed ------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def postgres_server() -> Iterator[dict[str, str]]:
    """A throwaway PostgreSQL on 127.0.0.1 (password auth over TCP), run as the postgres user."""
    if not (shutil.which("initdb") and shutil.which("pg_ctl") and shutil.which("psql")):
        pytest.skip("PostgreSQL binaries are not installed")
    if os.geteuid() != 0 or not shutil.which("runuser"):
        pytest.skip("needs root to run PostgreSQL as the postgres user")
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("no postgres user")
    base = Path(tempfile.mkdtemp(prefix="evidence-pg-"))
    base.chmod(0o755)
    data, socket_dir = base / "data", base / "socket"
    socket_dir.mkdir()
    shutil.chown(base, "postgres")
    shutil.chown(socket_dir, "postgres")
    port = str(_free_port())

    def as_postgres(*command: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *command], check=True, capture_output=True, timeout=60
        )

    try:
        as_postgres(
            "initdb", "-D", str(data), "-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256"
        )
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {socket_dir}"
        as_postgres("pg_ctl", "-D", str(data), "-o", options, "-w", "-l", str(base / "log"), "start")
        yield {"PGHOST": str(socket_dir), "PGPORT": port}
    finally:
        if data.exists():
            subprocess.run(
                ["runuser", "-u", "postgres", "--", "pg_ctl", "-D", str(data), "-m", "fast", "stop"],
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(base, ignore_errors=True)


def test_postgres_init_script_creates_each_database_with_its_password(
    postgres_server: dict[str, str],
) -> None:
    # quotes and a semicolon: the script must pass passwords as data, never as SQL
    prefect_password, catalog_password, accounts_password = "pre'fect;--pw", 'cata"log pw', "acc$(ounts)"
    env = (
        os.environ
        | postgres_server
        | {
            "POSTGRES_USER": "postgres",
            "POSTGRES_DB": "postgres",
            "PREFECT_DB_PASSWORD": prefect_password,
            "CATALOG_DB_PASSWORD": catalog_password,
            "ACCOUNTS_DB_PASSWORD": accounts_password,
        }
    )
    subprocess.run(["bash", str(INFRA / "postgres" / "init-databases.sh")], env=env, check=True, timeout=60)

    def connect(user: str, password: str, database: str) -> subprocess.CompletedProcess[str]:
        tcp = {"PGHOST": "127.0.0.1", "PGPORT": postgres_server["PGPORT"], "PGPASSWORD": password}
        return subprocess.run(
            ["psql", "-U", user, "-d", database, "-tAc", "select current_user, current_database()"],
            env=os.environ | tcp,
            capture_output=True,
            text=True,
            timeout=30,
        )

    assert connect("prefect", prefect_password, "prefect").stdout.strip() == "prefect|prefect"
    assert connect("catalog", catalog_password, "catalog").stdout.strip() == "catalog|catalog"
    assert connect("catalog", "wrong", "catalog").returncode != 0
    # each role is kept out of the other's database
    assert connect("catalog", catalog_password, "prefect").returncode != 0
    assert connect("prefect", prefect_password, "catalog").returncode != 0
    # people's password hashes: the catalog's credentials, held by every worker, never reach them
    assert connect("accounts", accounts_password, "accounts").stdout.strip() == "accounts|accounts"
    assert connect("catalog", catalog_password, "accounts").returncode != 0
    assert connect("accounts", accounts_password, "catalog").returncode != 0
