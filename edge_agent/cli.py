"""``python -m edge_agent``: init, enrol, run, status, simulate.

Every expected failure prints ``error: <what went wrong and what to do>`` and
exits with a non-zero code (see ``--help``); nothing prints a traceback except a
genuine bug.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from attest_core.codec import ID_RE
from attest_core.device import log_key_hash
from attest_core.keys import fingerprint
from edge_agent.arguments import TOKEN_ENV, build_parser
from edge_agent.config import (
    DEFAULT_STATE_DIR,
    Config,
    default_config_path,
    load_config,
    render_config,
    update_config,
)
from edge_agent.errors import AgentError, Exit
from edge_agent.files import write_private_file


def _load(path: Path | None) -> Config:
    """The config, refusing root on another user's installation (root would leave files
    in the state directory that the service user cannot write)."""
    config = load_config(path)
    if os.geteuid() == 0:
        owner = config.path.stat().st_uid
        if owner != 0:
            import pwd

            try:
                name = pwd.getpwuid(owner).pw_name
            except KeyError:
                name = str(owner)
            raise AgentError(
                f"{config.path} belongs to user {name}: run this as that user "
                f"(`iot-attest-agent ...` on a Pi, or `sudo -u {name} ...`), not as root",
                Exit.USAGE,
            )
    return config


def cmd_init(args: argparse.Namespace) -> int:
    from edge_agent.signer import create_key_file, derive_device_id, ensure_private_dir

    if args.dir is not None:
        base = args.dir.absolute()
        config_path = (args.config or base / "agent.toml").absolute()
        key_path = base / "device.key"
        state_dir = (args.state_dir or base / "state").absolute()
    else:
        config_path = (args.config or default_config_path()).absolute()
        key_path = config_path.parent / "device.key"
        state_dir = (args.state_dir or DEFAULT_STATE_DIR).absolute()
    if config_path.exists():
        raise AgentError(
            f"{config_path} already exists: this device is already initialised. "
            "`python -m edge_agent status` shows it; delete the file only to start over with a new identity",
            Exit.USAGE,
        )
    if args.device_id is not None and ID_RE.fullmatch(args.device_id) is None:
        raise AgentError(
            f"--device-id {args.device_id!r} is not an identifier "
            "(1-64 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit)",
            Exit.USAGE,
        )
    if args.mqtt and not args.mqtt.startswith(("mqtt://", "mqtts://")):
        raise AgentError(f"--mqtt {args.mqtt!r} must start with mqtt:// or mqtts://", Exit.USAGE)
    if args.gateway:
        from edge_agent.enrol import check_gateway_url

        args.gateway = check_gateway_url(args.gateway)
    try:
        ensure_private_dir(config_path.parent)
        ensure_private_dir(state_dir)
    except OSError as exc:
        raise AgentError(f"cannot create directory {exc.filename}: {exc.strerror}", Exit.USAGE) from None
    signer = create_key_file(key_path)
    device_id = args.device_id or derive_device_id(signer.public_key)
    text = render_config(
        device_id=device_id,
        key_path=str(key_path),
        state_dir=str(state_dir),
        meter_type=args.meter,
        mqtt_url=args.mqtt,
        gateway_url=args.gateway,
    )
    try:
        write_private_file(config_path, text.encode("utf-8"), exclusive=True)
    except OSError as exc:
        raise AgentError(f"cannot write {config_path}: {exc.strerror}", Exit.USAGE) from None
    print(f"device id:        {device_id}")
    print(f"key fingerprint:  {fingerprint(signer.public_key)}")
    print(f"key file:         {key_path} (mode 0600)")
    print(f"config:           {config_path}")
    print(f"state:            {state_dir}")
    return Exit.OK


def cmd_enrol(args: argparse.Namespace) -> int:
    from attest_core.keys import fingerprint as fp
    from edge_agent.enrol import (
        bind_to_log,
        build_statement,
        check_gateway_url,
        fetch_log_key,
        http_client,
        key_fingerprint,
        load_enrolment,
        parse_meter_key,
        parse_pinned_key,
        pin_log_key,
        save_enrolment,
        send_request,
    )
    from edge_agent.enrolment_request import choose_request, discarded_path, request_path, save_request
    from edge_agent.signer import ensure_private_dir, load_signer
    from edge_agent.store import Store

    config = _load(args.config)
    gateway_url = args.gateway or config.gateway.url
    if not gateway_url:
        raise AgentError(
            "no gateway URL: give --gateway https://... (the operator tells you which)", Exit.USAGE
        )
    gateway = check_gateway_url(gateway_url)
    token = args.token or os.environ.get(TOKEN_ENV, "")
    if not token:
        raise AgentError(f"no installer token: give --token (or set {TOKEN_ENV})", Exit.USAGE)
    pinned = parse_pinned_key(args.log_key, "--log-key") if args.log_key else None
    if args.meter_curve and not args.meter_key:
        raise AgentError("--meter-curve needs --meter-key", Exit.USAGE)
    meter_key = parse_meter_key(args.meter_key, args.meter_curve) if args.meter_key else None
    if meter_key is not None and args.kind != "charger":
        raise AgentError("--meter-key is a charger's meter key: use it with --kind charger", Exit.USAGE)
    signer = load_signer(config)
    ensure_private_dir(config.state_dir)
    unbound = build_statement(
        signer,
        device_id=config.device_id,
        asset_id=args.asset,
        kind=args.kind,
        rated_power_w=args.rated_power,
        lat=args.lat,
        lon=args.lon,
    )
    if gateway.startswith("http://") and not gateway.startswith(("http://127.", "http://localhost")):
        print(f"warning: {gateway} is plain HTTP: the installer token travels unencrypted", file=sys.stderr)
    confirmed = load_enrolment(config.state_dir)
    with http_client(config.gateway.ca_file, args.timeout) as client:
        # The log key first: the statement names its log, so nothing is signed before it is pinned.
        key = fetch_log_key(client, gateway)
        pin_log_key(key, pinned, config.gateway.log_key)
        key_string = key.to_string()
        print(f"log key:          {key_string}")
        print(f"log fingerprint:  {key_fingerprint(key_string)}")
        if pinned is not None:
            print("                  (the key given with --log-key: it matches)")
        else:
            print("                  ^ compare all of it with the fingerprint the operator published")
            print("                    (or pin the key: enrol --log-key KEY)")
        if confirmed is not None and (
            confirmed.log_origin not in (None, key.name)
            or confirmed.log_key_hash not in (None, log_key_hash(key))
        ):
            raise AgentError(
                f"this device is enrolled in the log {confirmed.log_origin!r} (key SHA-256 "
                f"{(confirmed.log_key_hash or b'').hex()}), but the gateway at {gateway} serves another key, "
                f"of the log {key.name!r}: not enrolling it there. Check the gateway URL",
                Exit.FAILED,
            )
        wanted = bind_to_log(unbound, key, meter_key)
        request, stored = choose_request(config.state_dir, wanted, signer, confirmed=confirmed, new=args.new)
        statement = request.statement
        if not stored:
            # Kept before it is sent: if the answer is lost, the next run resends exactly these bytes.
            save_request(config.state_dir, request, gateway)
        elif confirmed is None:
            print(
                f"resending the enrolment request stored in {request_path(config.state_dir)} "
                "(an earlier enrol sent it but got no answer)"
            )
        try:
            result = send_request(client, gateway, token, request)
        except AgentError as exc:
            if exc.code == Exit.ALREADY_ENROLLED and args.new and discarded_path(config.state_dir).exists():
                raise AgentError(
                    f"{exc.message}. The request set aside by --new probably reached the gateway after all: "
                    f"it is kept as {discarded_path(config.state_dir)}; to finish it, move it back to "
                    f"{request_path(config.state_dir)} and run enrol with its arguments",
                    exc.code,
                ) from None
            raise
        where = f" at log index {result.log_index}" if result.log_index is not None else ""
        if confirmed is None:
            summary = {
                "device_id": statement.device_id,
                "asset_id": statement.asset_id,
                "kind": statement.asset_kind.label,
                "rated_power_w": statement.rated_power_w,
                "time_ms": statement.time_ms,
                "log_origin": statement.log_origin,
                "log_key_hash": None if statement.log_key_hash is None else statement.log_key_hash.hex(),
                "gateway": gateway,
                "log_index": result.log_index,
                "chain_anchor": statement.chain_anchor().hex(),
            }
            save_enrolment(config.state_dir, result.statement_bytes, summary)
            store = Store(config.db_path)
            try:
                store.init_chain(statement.device_id, statement.chain_anchor())
            finally:
                store.close()
            print(f"enrolled: device {statement.device_id} for asset {statement.asset_id}{where}")
            print(f"key fingerprint:  {fp(signer.public_key)}")
            if statement.meter_key is not None:
                print(f"meter key:        {statement.meter_key.hex()} ({statement.meter_key.curve})")
        else:
            print(
                f"already enrolled: device {statement.device_id} for asset {statement.asset_id}{where} "
                "(confirmed by the gateway again)"
            )
    update_config(config.path, "gateway", {"url": gateway, "log_key": key_string})
    print(f"log:              {key.name} (the key is stored in {config.path})")
    if result.answer is None:
        raise AgentError(
            "the gateway answered 200/201, but its answer was not the expected JSON object; the "
            "enrolment was kept and the log key stored. Tell the operator (the gateway may be misconfigured)",
            Exit.FAILED,
        )
    return Exit.OK


def cmd_run(args: argparse.Namespace) -> int:
    from edge_agent.agent import run_agent

    config = _load(args.config)
    return asyncio.run(run_agent(config))


def cmd_status(args: argparse.Namespace) -> int:
    from edge_agent.agent import collect_status, format_status, status_json

    config = _load(args.config)
    info = collect_status(config)
    print(status_json(info) if args.json else format_status(info))
    return Exit.OK


def cmd_simulate(args: argparse.Namespace) -> int:
    from edge_agent.fleet import run_fleet

    token = args.token or os.environ.get(TOKEN_ENV, "")
    if not token:
        raise AgentError(f"no installer token: give --token (or set {TOKEN_ENV})", Exit.USAGE)
    args.token = token
    return asyncio.run(run_fleet(args))


COMMANDS = {
    "init": cmd_init,
    "enrol": cmd_enrol,
    "run": cmd_run,
    "status": cmd_status,
    "simulate": cmd_simulate,
}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (already printed)
        return exc.code if isinstance(exc.code, int) else Exit.USAGE
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose:
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
        logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        return int(COMMANDS[args.command](args))
    except AgentError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return int(exc.code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
