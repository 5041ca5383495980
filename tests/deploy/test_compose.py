"""docker-compose.yml and the Dockerfile, checked against the repository and the code.

No Docker engine here: the files are parsed, and every file, directory, port,
command and environment variable they name is checked against what exists and
what the code reads.  Variables are resolved as Compose does, once with nothing
set (the demo defaults) and once with every variable set to its own value (an
operator's `.env`), so that the services agree with each other either way.
"""

from __future__ import annotations

import ast
import hashlib
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest

import edge_agent.cli
import edge_agent.config
from gateway.__main__ import build_parser as gateway_parser
from gateway.config import Settings, load_settings
from tests.deploy.deployfiles import (
    COMPOSE_FILE,
    MOSQUITTO_DIR,
    REPO,
    command,
    conf_value,
    dockerfile_instructions,
    dockerignore_patterns,
    dockerignored,
    env_pairs,
    environment,
    exec_form,
    host_file,
    load_compose,
    mounts,
    on_named_volume,
    parse_acl,
    port_mappings,
    raw_compose,
    stage_chain,
    variables,
)

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


def mosquitto_conf() -> str:
    return (MOSQUITTO_DIR / "mosquitto.conf").read_text(encoding="utf-8")


def listener_port() -> int:
    return int(conf_value(mosquitto_conf(), "listener").split()[0])


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


def test_postgres(compose: dict[str, Any]) -> None:
    pg = service(compose, "postgres")
    assert pg["image"].startswith("postgres:")
    assert set(environment(pg)) <= POSTGRES_IMAGE_ENV
    assert environment(pg)["POSTGRES_PASSWORD"], "the postgres image refuses to start without a password"
    assert on_named_volume(pg, "/var/lib/postgresql/data")
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])


# ---------------------------------------------------------------------------- mosquitto


def test_mosquitto_files_and_env(compose: dict[str, Any]) -> None:
    mq = service(compose, "mosquitto")
    assert mq["image"] == "eclipse-mosquitto:2"
    cmd = command(mq)
    # the script and the config the command names are the repository's
    scripts = [c for c in cmd if c.endswith(".sh")]
    assert scripts, "the mosquitto command should run compose-users.sh"
    for script in scripts:
        assert host_file(mq, script) == MOSQUITTO_DIR / "compose-users.sh"
    conf_path = cmd[cmd.index("-c") + 1]
    assert host_file(mq, conf_path) == MOSQUITTO_DIR / "mosquitto.conf"
    # every file mosquitto.conf names is on one of the service's volumes
    conf = mosquitto_conf()
    assert host_file(mq, conf_value(conf, "acl_file")) == MOSQUITTO_DIR / "acl"
    include = host_file(mq, conf_value(conf, "include_dir"))
    assert include == MOSQUITTO_DIR / "conf.d"
    assert (include / "queues.conf").is_file()
    assert on_named_volume(mq, conf_value(conf, "persistence_location")), "persistence must be on a volume"
    password_file = conf_value(conf, "password_file")
    assert on_named_volume(mq, password_file), "the password file must be on a volume (it changes)"
    # the scripts write the password file mosquitto.conf reads
    env = environment(mq)
    assert env["MOSQUITTO_PASSWORD_FILE"] == password_file
    readable = script_env_names(MOSQUITTO_DIR / "compose-users.sh")
    assert set(env) <= readable, f"variables no script reads: {set(env) - readable}"
    assert "MOSQUITTO_PASSWORD_FILE" in script_env_names(MOSQUITTO_DIR / "add-device.sh")
    # the published port is the listener's
    assert listener_port() in [container for _, container in port_mappings(mq)]


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
    # MQTT: the mosquitto service's listener, as the ACL's user `gateway` with the password
    # compose-users.sh gives it
    mqtt = settings.mqtt
    assert (mqtt.host, mqtt.port, mqtt.tls) == ("mosquitto", listener_port(), False)
    assert mqtt.username == "gateway"
    assert mqtt.password == environment(service(compose, "mosquitto"))["MQTT_GATEWAY_PASSWORD"]
    assert "gateway" in parse_acl((MOSQUITTO_DIR / "acl").read_text(encoding="utf-8")).users


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
    # the broker, as the ACL's demo user `simulator` with the password compose-users.sh gives it
    broker = urlsplit(args.mqtt or env["MQTT_URL"])
    assert (broker.scheme, broker.hostname, broker.port) == ("mqtt", "mosquitto", listener_port())
    assert broker.username == "simulator"
    assert broker.password == environment(service(compose, "mosquitto"))["MQTT_SIMULATOR_PASSWORD"]
    assert "simulator" in parse_acl((MOSQUITTO_DIR / "acl").read_text(encoding="utf-8")).users
    # the fleet's keys and state persist
    assert on_named_volume(sim, str(args.state)), "the fleet's state must be on a volume"


# ---------------------------------------------------------------------------- Dockerfile


def pyproject() -> dict[str, Any]:
    with open(REPO / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)


def test_dockerfile_base_user_and_copies() -> None:
    instructions = dockerfile_instructions()
    froms = [i for i in instructions if i.keyword == "FROM"]
    assert froms[0].args.split()[0] == "python:3.11-slim"
    patterns = dockerignore_patterns()
    copied: set[str] = set()
    for ins in instructions:
        if ins.keyword in ("COPY", "ADD"):
            words = [w for w in ins.args.split() if not w.startswith("--")]
            for source in words[:-1]:
                assert (REPO / source).exists(), f"COPY source {source} does not exist"
                assert not dockerignored(source, patterns), f"COPY source {source} is in .dockerignore"
                copied.add(source.rstrip("/"))
    # what `pip install .` needs: pyproject.toml, its readme, every package it installs
    project = pyproject()
    needed = {"pyproject.toml", project["project"]["readme"]}
    for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]:
        needed.add(pattern.rstrip("*"))
    assert needed <= copied, f"not copied into the image: {needed - copied}"
    for package in needed - {"pyproject.toml", project["project"]["readme"]}:
        assert (REPO / package / "__init__.py").is_file()


@pytest.mark.parametrize("target", ["gateway", "simulator"])
def test_dockerfile_targets(target: str) -> None:
    chain = stage_chain(dockerfile_instructions(), target)
    # a non-root user
    users = [i.args for i in chain if i.keyword == "USER"]
    assert users, f"stage {target} runs as root"
    assert users[-1] not in ("root", "0")
    assert any("useradd" in i.args and users[-1] in i.args for i in chain if i.keyword == "RUN")
    # pip installs extras that exist
    extras = set(pyproject()["project"]["optional-dependencies"])
    installed: set[str] = set()
    for ins in chain:
        if ins.keyword == "RUN" and "pip install" in ins.args:
            for group in re.findall(r"\.\[([a-z0-9_,-]+)\]", ins.args):
                installed.update(group.split(","))
    assert installed, f"stage {target} installs no extra"
    assert installed <= extras, f"unknown extras {installed - extras}"
    # the command
    cmd = exec_form([i for i in chain if i.keyword == "CMD"][-1].args)
    if target == "gateway":
        assert "gateway" in installed
        assert cmd == ["python", "-m", "gateway", "run"]
        env: dict[str, str] = {}
        for ins in chain:
            if ins.keyword == "ENV":
                env.update(env_pairs(ins.args))
        gateway_vars = {k: v for k, v in env.items() if k.startswith(("GATEWAY_", "DATABASE_", "MQTT_"))}
        assert set(gateway_vars) <= gateway_env_names()
        settings = load_settings(None, env={**gateway_vars, "DATABASE_URL": "postgresql://x@db/x"})
        exposed = {int(p.split("/")[0]) for i in chain if i.keyword == "EXPOSE" for p in i.args.split()}
        assert settings.api_port in exposed
    else:
        assert "edge" in installed
        assert cmd[:3] == ["python", "-m", "edge_agent"]
        assert edge_agent.cli.build_parser().parse_args(cmd[3:]).command == "simulate"
    for module in ("gateway", "edge_agent"):
        assert (REPO / module / "__main__.py").is_file()


def test_dockerignore_keeps_secrets_and_state_out() -> None:
    patterns = dockerignore_patterns()
    for path in (".git/config", ".venv/bin/python", "gateway-log.key", ".env", "demo-output/bundle.json"):
        assert dockerignored(path, patterns), f"{path} would be sent to the Docker daemon"
    for path in ("README.md", "pyproject.toml", "gateway/sql"):
        assert not dockerignored(path, patterns)


def test_python_health_checks_parse(compose: dict[str, Any]) -> None:
    """Health checks that run Python must be valid Python."""
    for svc in compose["services"].values():
        test = (svc.get("healthcheck") or {}).get("test") or []
        if len(test) > 3 and test[1] == "python" and test[2] == "-c":
            ast.parse(test[3])
    for name in ("postgres", "gateway"):
        assert compose["services"][name]["healthcheck"]["test"], f"{name} needs a health check"
