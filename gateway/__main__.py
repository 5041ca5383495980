"""python -m gateway: run the gateway, create its log key, apply migrations, make API tokens."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import asyncpg

from attest_core.codec import ID_RE
from gateway import logkey, logs
from gateway.config import load_settings
from gateway.errors import GatewayError
from gateway.migrations import migrate
from gateway.tokens import ROLES, config_snippet, generate_token, hash_token


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gateway",
        description="The iot-attest gateway: verifies device-signed readings from MQTT, logs them in a "
        "Merkle log in PostgreSQL, signs checkpoints and serves the REST API.",
    )
    parser.add_argument("--config", help="TOML config file (environment variables override it)")
    parser.add_argument("--log-format", choices=["auto", "json", "text"], default="auto")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="run the gateway (the default)")
    sub.add_parser("migrate", help="create or upgrade the database schema, then exit")
    keygen = sub.add_parser("keygen", help="create the log's signing key (once) and print its verifier key")
    keygen.add_argument("--key-file", help="where to write it (default: key_file of the config)")
    keygen.add_argument("--origin", help="the log's name (default: origin of the config)")
    sub.add_parser("key", help="print the log's verifier key string")
    token = sub.add_parser(
        "token",
        help="make an API token: prints it once, and the config lines that enable it (only its hash)",
        description="Make a random API token for an installer, operator, issuer or auditor. The token is "
        "printed once (hand it over, keep no copy); the gateway's config gets only its SHA-256. The name is "
        "the identity written into log entries (installer of an enrolment, revoker of a device, issuer of a "
        "claim). An installer acts on the devices it enrolled; an operator on any device.",
    )
    token.add_argument("--name", required=True, help="who holds it (an identifier, e.g. installer-berlin-1)")
    token.add_argument("--role", required=True, choices=list(ROLES), help="what it may do")
    return parser


def make_token(name: str, role: str) -> int:
    if ID_RE.fullmatch(name) is None:
        print(
            f"gateway: --name {name!r} is not an identifier (1-64 characters from A-Z a-z 0-9 . _ -, "
            "starting with a letter or digit)",
            file=sys.stderr,
        )
        return 2
    secret = generate_token()
    print(f"token for {name} ({role}); shown once, hand it over and keep no copy:")
    print()
    print(f"    {secret}")
    print()
    print("add to the gateway's config file, then restart the gateway:")
    print()
    print(config_snippet(name, role, hash_token(secret)), end="")
    return 0


async def _migrate(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        return await migrate(conn)
    finally:
        await conn.close()


async def _run(settings: object) -> None:
    from gateway.service import Gateway

    gateway = Gateway(settings)  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, gateway.stopping.set)
    await gateway.start()
    await gateway.wait()
    await gateway.stop()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.setup(args.log_format)
    command = args.command or "run"
    if command == "token":
        return make_token(args.name, args.role)
    try:
        if command == "keygen":
            env_only = load_settings(args.config, env=None) if args.config else None
            key_file = args.key_file or (env_only.key_file if env_only else "gateway-log.key")
            origin = args.origin or (env_only.origin if env_only else "iot-attest.example/log")
            signer = logkey.generate_key_file(key_file, origin)
            print(signer.verifier_key().to_string())
            return 0
        settings = load_settings(args.config)
        if command == "key":
            print(logkey.load_key_file(settings.key_file).verifier_key().to_string())
        elif command == "migrate":
            applied = asyncio.run(_migrate(settings.database_url))
            print("applied: " + ", ".join(applied) if applied else "the schema is up to date")
        else:
            asyncio.run(_run(settings))
    except GatewayError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
