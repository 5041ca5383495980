"""docker-compose.yml and the Dockerfile, checked against the repository and the code.

No Docker engine here: the files are parsed, and every file, directory, port,
command and environment variable they name is checked against what exists and
what the code reads.  Variables are resolved as Compose does, once with nothing
set (the demo defaults) and once with every variable set to its own value (an
operator's `.env`), so that the services agree with each other either way.  The
health checks run against a real PostgreSQL and gateway; the mosquitto service
runs for real in test_mosquitto.py, the images' install steps in test_images.py.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

import edge_agent.cli
import edge_agent.config
from gateway.__main__ import build_parser as gateway_parser
from gateway.config import Settings, load_settings
from tests.deploy.deployfiles import (
    COMPOSE_FILE,
    REPO,
    command,
    dockerfile_instructions,
    dockerignore_patterns,
    dockerignored,
    env_pairs,
    environment,
    host_file,
    load_compose,
    mounts,
    on_named_volume,
    port_mappings,
    raw_compose,
    stage_chain,
    variables,
)
from tests.gateway.apiworld import api_gateway
from tests.services import Broker, Postgres, free_port

SERVICES = {"postgres", "mosquitto", "gateway", "simulator"}


def _all_variables() -> set[str]:
    return {name for name, _ in variables(COMPOSE_FILE.read_text(encoding="utf-8"))}


ENVS = {
    "defaults": {},
    "overridden": {name: f"custom-{name.lower().replace('_', '-')}" for name in _all_variables()},
}


@pytest.fixture(params=sorted(ENVS), scope="module")
def compose(request: pytest.FixtureRequest) -> dict[str, Any]:
    return load_compose(ENVS[request.param])


def service(compose: Mapping[str, Any], name: str) -> dict[str, Any]:
    services = compose["services"]
    assert name in services, f"docker-compose.yml has no service {name!r}"
    result: dict[str, Any] = services[name]
    return result


# ---------------------------------------------------------------------------- names the code reads


def gateway_env_names() -> set[str]:
    """The environment variables gateway.config.load_settings reads, found by trying them."""
    names = {f"GATEWAY_{name.upper()}" for name in Settings.model_fields}
    base = {"DATABASE_URL": "postgresql://probe@db.invalid/probe"}
    assert load_settings(None, env=base).database_url == base["DATABASE_URL"]
    names.add("DATABASE_URL")
    assert load_settings(None, env={**base, "MQTT_URL": "mqtt://probe.invalid:1"}).mqtt_url.startswith(
        "mqtt://probe.invalid"
    )
    names.add("MQTT_URL")
    return names


def edge_agent_env_names() -> set[str]:
    """Environment variables the edge agent reads: literal os.environ / environ
    lookups in its sources, plus its *_ENV name constants."""
    names: set[str] = set()
    lookup = re.compile(r"""(?:environ(?:\.get)?\(|environ\[|getenv\()\s*["']([A-Z][A-Z0-9_]*)["']""")
    for path in (REPO / "edge_agent").rglob("*.py"):
        names.update(lookup.findall(path.read_text(encoding="utf-8")))
    for module in (edge_agent.cli, edge_agent.config):
        names.update(
            value for key, value in vars(module).items() if key.endswith("_ENV") and isinstance(value, str)
        )
    return names


def api_routes() -> set[str]:
    """The paths of the gateway's GET routes (FastAPI decorators in its sources)."""
    route = re.compile(r"""@\w+\.get\(\s*["'](/[^"']*)["']""")
    return {
        path for file in (REPO / "gateway").rglob("*.py") for path in route.findall(file.read_text("utf-8"))
    }


def script_env_names(script: Path) -> set[str]:
    return set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", script.read_text(encoding="utf-8")))


# The variables the official postgres image documents.
POSTGRES_IMAGE_ENV = {
    "POSTGRES_PASSWORD",
    "POSTGRES_USER",
    "POSTGRES_DB",
    "POSTGRES_INITDB_ARGS",
    "POSTGRES_INITDB_WALDIR",
    "POSTGRES_HOST_AUTH_METHOD",
    "PGDATA",
}


def test_the_edge_agent_env_scan_finds_what_the_agent_documents() -> None:
    # the scan is not vacuous: the names the agent's --help lists are found
    assert {"MQTT_URL", "IOT_ATTEST_GATEWAY_URL", "IOT_ATTEST_CONFIG", "IOT_ATTEST_INSTALLER_TOKEN"} <= (
        edge_agent_env_names()
    )


# ---------------------------------------------------------------------------- the file as a whole


def test_services_and_volumes() -> None:
    raw = raw_compose()
    assert set(raw["services"]) == SERVICES
    declared = set(raw.get("volumes") or {})
    used = {m.source for s in raw["services"].values() for m in mounts(s) if not m.is_bind}
    assert used == declared, "every named volume must be declared, every declared one used"


def test_every_variable_has_a_default() -> None:
    """`docker compose up` works with no .env file."""
    for name, op in variables(COMPOSE_FILE.read_text(encoding="utf-8")):
        assert op in (":-", "-"), f"${{{name}}} has no default"


def test_bind_mounts_exist_in_the_repository(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        for mount in mounts(svc):
            if mount.is_bind:
                path = mount.host_path()
                assert path.exists(), f"{name}: {mount.source} does not exist"
                assert REPO in path.parents, f"{name}: {mount.source} is outside the repository"
                assert mount.read_only, f"{name}: mount the repository's {mount.source} read-only"


def test_build_targets_exist_in_the_dockerfile(compose: dict[str, Any]) -> None:
    stages = {i.stage for i in dockerfile_instructions()}
    for name in ("gateway", "simulator"):
        build = service(compose, name)["build"]
        assert (REPO / build["context"]).resolve() == REPO
        assert (REPO / build["context"] / build.get("dockerfile", "Dockerfile")).is_file()
        assert build["target"] in stages


def test_dependencies_name_services(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        for dep in svc.get("depends_on") or {}:
            assert dep in compose["services"], f"{name} depends on unknown service {dep}"


# ---------------------------------------------------------------------------- postgres


def test_postgres(compose: dict[str, Any], postgres: Postgres) -> None:
    pg = service(compose, "postgres")
    assert set(environment(pg)) <= POSTGRES_IMAGE_ENV
    assert environment(pg)["POSTGRES_PASSWORD"], "the postgres image refuses to start without a password"
    assert on_named_volume(pg, "/var/lib/postgresql/data")
    # the health check, run against a real server (here instead of the service's address)
    check = command({"command": pg["healthcheck"]["test"][1:]})
    server = urlsplit(postgres.admin_dsn)
    host = server.hostname or parse_qs(server.query)["host"][0]  # TCP, or the embedded server's socket
    ready = subprocess.run([*check, "-h", host, "-p", str(server.port or 5432)],
                           capture_output=True, text=True, timeout=30)  # fmt: skip
    assert ready.returncode == 0, ready.stdout + ready.stderr
    closed = subprocess.run([*check, "-h", "127.0.0.1", "-p", str(free_port()), "-t", "2"],
                            capture_output=True, text=True, timeout=30)  # fmt: skip
    assert closed.returncode != 0, "the health check passes with no server"


# ---------------------------------------------------------------------------- gateway


def gateway_settings(compose: Mapping[str, Any]) -> tuple[Settings, dict[str, str]]:
    gw = service(compose, "gateway")
    args = gateway_parser().parse_args(command(gw)[3:])
    env = environment(gw)
    config = host_file(gw, args.config) if args.config else None
    return load_settings(config, env=env), env


def test_gateway_command_and_env(compose: dict[str, Any]) -> None:
    gw = service(compose, "gateway")
    cmd = command(gw)
    assert cmd[:3] == ["python", "-m", "gateway"]
    args = gateway_parser().parse_args(cmd[3:])
    assert args.command == "run"
    env = environment(gw)
    unknown = set(env) - gateway_env_names()
    assert not unknown, f"variables the gateway does not read: {unknown}"
    assert {"DATABASE_URL", "MQTT_URL"} <= set(env)


def test_gateway_settings_load_and_match_the_other_services(compose: dict[str, Any]) -> None:
    settings, _ = gateway_settings(compose)  # load_settings validates every value
    # PostgreSQL: the postgres service, with its user, password and database
    pg_env = environment(service(compose, "postgres"))
    db = urlsplit(settings.database_url)
    assert db.scheme in ("postgresql", "postgres")
    assert db.hostname == "postgres"
    assert (db.port or 5432) == 5432
    assert db.username == pg_env["POSTGRES_USER"]
    assert db.password == pg_env["POSTGRES_PASSWORD"]
    assert db.path.lstrip("/") == pg_env.get("POSTGRES_DB", pg_env["POSTGRES_USER"])
    # MQTT: the password compose-users.sh gives the user `gateway`, whatever the operator sets
    # (that the broker takes it: tests/deploy/test_mosquitto.py, live)
    mqtt = settings.mqtt
    assert (mqtt.host, mqtt.username, mqtt.tls) == ("mosquitto", "gateway", False)
    assert mqtt.password == environment(service(compose, "mosquitto"))["MQTT_GATEWAY_PASSWORD"]


def test_gateway_api_port_health_check_and_key_volume(compose: dict[str, Any]) -> None:
    gw = service(compose, "gateway")
    settings, _ = gateway_settings(compose)
    assert settings.api_host == "0.0.0.0", "inside a container the API must listen on every interface"
    assert settings.api_port in [container for _, container in port_mappings(gw)]
    probe = " ".join(gw["healthcheck"]["test"])
    url = re.search(r"https?://[^\s'\"]+", probe)
    assert url is not None, f"no URL in the health check {probe!r}"
    parts = urlsplit(url.group())
    assert parts.port == settings.api_port
    assert parts.path == "/readyz"
    assert "/readyz" in api_routes(), "the gateway serves no /readyz"
    # the log key is created on first start, on a volume, where the image's user may write
    assert PurePosixPath(settings.key_file).is_absolute()
    assert on_named_volume(gw, settings.key_file), "the log key must survive the container"
    volume_dir = str(PurePosixPath(settings.key_file).parent)
    assert any(
        i.keyword == "RUN" and volume_dir in i.args and "iot-attest" in i.args
        for i in stage_chain(dockerfile_instructions(), gw["build"]["target"])
    ), f"the image must create {volume_dir} for its user (a new volume takes its owner from the image)"


def test_gateway_tokens_include_the_simulators_installer_token(compose: dict[str, Any]) -> None:
    settings, _ = gateway_settings(compose)
    token = environment(service(compose, "simulator"))[edge_agent.cli.TOKEN_ENV]
    digest = hashlib.sha256(token.encode()).hexdigest()
    roles = {t["sha256"]: t["role"] for t in settings.tokens.values()}
    assert roles.get(digest) == "installer", "the simulated fleet's token is not an installer token"
    assert set(roles.values()) <= {"installer", "issuer", "auditor"}


# ---------------------------------------------------------------------------- simulator


def test_simulator_command_and_env(compose: dict[str, Any]) -> None:
    sim = service(compose, "simulator")
    cmd = command(sim)
    assert cmd[:3] == ["python", "-m", "edge_agent"]
    args = edge_agent.cli.build_parser().parse_args(cmd[3:])
    assert args.command == "simulate"
    env = environment(sim)
    unknown = set(env) - edge_agent_env_names()
    assert not unknown, f"variables the edge agent does not read: {unknown}"
    assert args.token or env.get(edge_agent.cli.TOKEN_ENV), "simulate needs an installer token"
    # the gateway service's API
    settings, _ = gateway_settings(compose)
    gateway = urlsplit(args.gateway)
    assert (gateway.scheme, gateway.hostname, gateway.port) == ("http", "gateway", settings.api_port)
    assert sim["depends_on"]["gateway"]["condition"] == "service_healthy"
    # the broker, as the demo user `simulator` with the password compose-users.sh gives it
    broker = urlsplit(args.mqtt or env["MQTT_URL"])
    assert (broker.scheme, broker.hostname, broker.username) == ("mqtt", "mosquitto", "simulator")
    assert broker.password == environment(service(compose, "mosquitto"))["MQTT_SIMULATOR_PASSWORD"]
    # the fleet's keys and state persist
    assert on_named_volume(sim, str(args.state)), "the fleet's state must be on a volume"


# ---------------------------------------------------------------------------- Dockerfile


def test_the_gateway_image_settings_load_and_expose_the_api() -> None:
    """The gateway stage's ENV are settings the gateway reads, and its API port is the exposed one
    (how the image installs and runs: tests/deploy/test_images.py)."""
    chain = stage_chain(dockerfile_instructions(), "gateway")
    env: dict[str, str] = {}
    for ins in chain:
        if ins.keyword == "ENV":
            env.update(env_pairs(ins.args))
    gateway_vars = {k: v for k, v in env.items() if k.startswith(("GATEWAY_", "DATABASE_", "MQTT_"))}
    assert set(gateway_vars) <= gateway_env_names()
    settings = load_settings(None, env={**gateway_vars, "DATABASE_URL": "postgresql://x@db/x"})
    exposed = {int(p.split("/")[0]) for i in chain if i.keyword == "EXPOSE" for p in i.args.split()}
    assert settings.api_port in exposed


def test_dockerignore_keeps_secrets_and_state_out() -> None:
    patterns = dockerignore_patterns()
    for path in (".git/config", ".venv/bin/python", "gateway-log.key", ".env", "demo-output/bundle.json"):
        assert dockerignored(path, patterns), f"{path} would be sent to the Docker daemon"
    for path in ("README.md", "pyproject.toml", "gateway/sql"):
        assert not dockerignored(path, patterns)


def test_the_gateway_health_check_passes_only_on_a_ready_gateway(
    postgres: Postgres, broker: Broker, tmp_path: Path
) -> None:
    probe = command({"command": service(load_compose(), "gateway")["healthcheck"]["test"][1:]})
    assert probe[0] == "python"
    url = re.search(r"https?://[^\s'\"]+", probe[-1])
    assert url is not None
    port = urlsplit(url.group()).port

    def run_probe(at: int) -> int:
        script = probe[-1].replace(f":{port}/", f":{at}/")
        return subprocess.run(
            [sys.executable, *probe[1:-1], script], capture_output=True, timeout=30
        ).returncode

    assert run_probe(free_port()) != 0, "the health check passes with no gateway"
    with api_gateway(postgres, broker, tmp_path) as api:
        assert run_probe(api.gw.settings.api_port) == 0
