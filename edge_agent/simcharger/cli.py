"""``python -m edge_agent.simcharger``: a simulated certified charger, to test a Pi before the
real charger is wired.

It prints its meter's public key first (enrol the device with it, as with a real meter's label),
then boots at the given OCPP endpoint and runs charging sessions, printing every request it
sends and every OCMF record its meter signs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge_agent.clock import Clock
from edge_agent.errors import AgentError, Exit
from edge_agent.simcharger.chargepoint import SimulatedChargePoint
from edge_agent.simcharger.meter import OcmfMeter
from edge_agent.simcharger.state import MeterState, default_state_path, load_state, save_state


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m edge_agent.simcharger",
        description="A simulated certified (Eichrecht) charger: OCPP over a websocket, a meter "
        "that signs OCMF records. Prints the meter's public key first, then what it sends.",
    )
    parser.add_argument(
        "--url", required=True, help="the OCPP endpoint, e.g. ws://pi:9000/ocpp (the id is appended)"
    )
    parser.add_argument("--id", required=True, dest="charge_point_id", help="the charge point id")
    parser.add_argument(
        "--version", choices=("1.6", "2.0.1"), default="1.6", help="OCPP version (default 1.6)"
    )
    parser.add_argument("--password", help="HTTP Basic auth password (username = the id); none: no auth")
    parser.add_argument("--ca", type=Path, help="CA certificate file for a wss:// endpoint")
    parser.add_argument("--sessions", type=int, default=1, help="charging sessions to run (default 1)")
    parser.add_argument("--energy-wh", type=int, default=7_400, help="energy per session, Wh (default 7400)")
    parser.add_argument("--meter-values", type=int, default=2, help="periodic values per session (default 2)")
    parser.add_argument(
        "--interval", type=int, default=60, help="seconds between periodic values (default 60; "
        "the backend may change it: MeterValueSampleInterval / TxUpdatedInterval)",
    )  # fmt: skip
    parser.add_argument(
        "--speed", type=float, default=1.0, help="simulated time runs this many times faster (default 1; "
        "for tests: a Pi's agent wants the meter's time within 120 s of its own clock)",
    )  # fmt: skip
    parser.add_argument(
        "--register-wh",
        type=int,
        default=0,
        help="the meter's register, Wh, when it has no state yet (default 0)",
    )
    parser.add_argument("--no-signing", action="store_true", help="behave like a charger that cannot sign")
    parser.add_argument("--seed", help="the meter key's seed (default: the charge point id)")
    parser.add_argument(
        "--state", type=Path, help="where the meter keeps its register and next record number between runs "
        "(default: $XDG_STATE_HOME/iot-attest-simcharger/<id>-<seed digest>.json); a Pi's agent refuses a "
        "register that goes back or a record number that does not rise",
    )  # fmt: skip
    return parser


def _show(action: str, payload: dict[str, Any]) -> None:
    print(f"-> {action} {json.dumps(payload, separators=(',', ':'), default=str)}", flush=True)


async def run(args: argparse.Namespace) -> None:
    seed = args.seed or args.charge_point_id
    meter = OcmfMeter(seed)
    print(f"meter public key (secp256r1, DER hex): {meter.public_key_hex()}", flush=True)
    state_path = args.state or default_state_path(args.charge_point_id, seed)
    state = load_state(state_path) or MeterState(next_page=1, register_wh=args.register_wh)
    meter.next_page = state.next_page
    print(
        f"meter state: {state_path} (register {state.register_wh} Wh, next record T{state.next_page})",
        flush=True,
    )
    clock = Clock(speed=args.speed) if args.speed != 1.0 else Clock()
    async with SimulatedChargePoint(
        args.url,
        charge_point_id=args.charge_point_id,
        version=args.version,
        meter=meter,
        password=args.password,
        signing=not args.no_signing,
        clock=clock,
        ca_file=args.ca,
        register_wh=state.register_wh,
        sent=_show,
    ) as cp:
        cp.settings.interval_s = args.interval
        print(f"boot: {await cp.boot()}", flush=True)
        try:
            for n in range(args.sessions):
                result = await cp.session(args.energy_wh, args.meter_values)
                print(
                    f"session {n + 1}: transaction {result.transaction_id}, register "
                    f"{result.register_start_wh} -> {result.register_stop_wh} Wh",
                    flush=True,
                )
                for record in result.records:
                    print(f"   OCMF record: {record.decode('utf-8')}", flush=True)
                save_state(state_path, MeterState(meter.next_page, cp.register_wh))
        finally:  # also when interrupted: the records already sent used their numbers
            save_state(state_path, MeterState(meter.next_page, cp.register_wh))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if (
        args.sessions < 0
        or args.energy_wh < 0
        or args.meter_values < 0
        or args.interval < 0
        or args.speed <= 0
    ):
        print("error: counts, energy and interval are never negative; speed is positive", file=sys.stderr)
        return int(Exit.USAGE)
    try:
        asyncio.run(run(args))
    except AgentError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return int(exc.code)
    except KeyboardInterrupt:
        return int(Exit.FAILED)
    return int(Exit.OK)
