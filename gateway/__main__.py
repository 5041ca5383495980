"""python -m gateway: run the gateway, create its log key, apply migrations."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import asyncpg

from gateway import logkey, logs
from gateway.config import load_settings
from gateway.errors import GatewayError
from gateway.migrations import migrate


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
    return parser


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
