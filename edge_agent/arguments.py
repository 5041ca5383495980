"""The command line of ``python -m edge_agent``: its commands, options, exit codes and environment."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge_agent import __version__
from edge_agent.config import METER_TYPES
from edge_agent.errors import Exit

TOKEN_ENV = "IOT_ATTEST_INSTALLER_TOKEN"  # noqa: S105 - the variable's name, not a token

EPILOG = """\
exit codes: 0 ok, 1 failed, 2 bad arguments / config / state, 3 gateway or broker
unreachable, 4 installer token refused (401/403), 5 device already enrolled (409)

environment: IOT_ATTEST_CONFIG (config path, default /etc/iot-attest/agent.toml),
MQTT_URL and IOT_ATTEST_GATEWAY_URL (override the config file),
IOT_ATTEST_INSTALLER_TOKEN (instead of --token)
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(Exit.USAGE)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m edge_agent",
        description="iot-attest edge agent: signs, chains and publishes meter readings.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"edge_agent {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    config_help = "config file (default: $IOT_ATTEST_CONFIG or /etc/iot-attest/agent.toml)"

    p = sub.add_parser("init", help="generate the device key and write the config file", epilog=EPILOG)
    p.add_argument("--config", type=Path, help=config_help + "; with --dir: DIR/agent.toml")
    p.add_argument("--device-id", help="device id (default: dev-<16 base32 chars of SHA-256(public key)>)")
    p.add_argument(
        "--dir",
        type=Path,
        help="keep everything under DIR: DIR/agent.toml, DIR/device.key, DIR/state "
        "(default: key beside the config, state in /var/lib/iot-attest)",
    )
    p.add_argument("--state-dir", type=Path, help="state directory (overrides --dir's)")
    p.add_argument("--meter", choices=METER_TYPES, default="s0", help="meter source (default: s0)")
    p.add_argument("--mqtt", default="", help="broker URL, mqtt://host:1883 or mqtts://host:8883")
    p.add_argument("--gateway", default="", help="gateway URL (can also be given to enrol)")

    p = sub.add_parser("enrol", help="enrol this device with the gateway (installer)", epilog=EPILOG)
    p.add_argument("--config", type=Path, help=config_help)
    p.add_argument("--gateway", help="gateway URL, e.g. https://gateway.example.org (default: the config's)")
    p.add_argument("--token", help=f"installer token from the operator (or ${TOKEN_ENV})")
    p.add_argument(
        "--log-key",
        metavar="KEY",
        help="the log's verifier key string as the operator published it (<name>+<key id>+<base64>): "
        "enrol stops, signing nothing, unless the gateway serves exactly this key. Without it, enrol "
        "shows the key and its SHA-256 fingerprint for you to compare",
    )
    p.add_argument("--asset", required=True, help="the asset id the operator assigned, e.g. charger-0017")
    p.add_argument("--kind", required=True, choices=("charger", "solar"), help="asset kind")
    p.add_argument(
        "--rated-power", required=True, type=_positive_int, metavar="W", help="rated power in watts"
    )
    p.add_argument("--lat", help="latitude in degrees (solar: needed for night checks)")
    p.add_argument("--lon", help="longitude in degrees")
    p.add_argument(
        "--meter-key",
        metavar="TEXT",
        help="a certified (Eichrecht) charger's meter public key, from the meter's display or label (hex, "
        "or oca:base16:asn1:<hex>): signed with the enrolment, it is the only key whose signed values "
        "the agent carries",
    )
    p.add_argument(
        "--meter-curve",
        metavar="NAME",
        help="the meter key's curve, e.g. secp256r1 or brainpoolP256r1 (default: read from the key)",
    )
    p.add_argument("--timeout", type=_positive_float, default=15.0, help="HTTP timeout in seconds (15)")
    p.add_argument(
        "--new",
        action="store_true",
        help="discard an enrolment request that was sent earlier but never confirmed by the gateway, "
        "and make a new one from these arguments (by default enrol resends the stored request "
        "byte for byte, so that a lost answer cannot leave the device half enrolled)",
    )

    p = sub.add_parser("run", help="the service: take, sign, store and publish readings", epilog=EPILOG)
    p.add_argument("--config", type=Path, help=config_help)

    p = sub.add_parser(
        "status",
        help="outbox depth, last seq, last proven receipt, refused receipts, broker connection",
        epilog=EPILOG,
    )
    p.add_argument("--config", type=Path, help=config_help)
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser(
        "simulate", help="a fleet of simulated devices in one process (demo, benchmarks)", epilog=EPILOG
    )
    p.add_argument("--devices", type=_positive_int, required=True, help="number of devices")
    p.add_argument("--kind", choices=("charger", "solar", "mixed"), default="mixed")
    p.add_argument(
        "--interval", type=_positive_float, default=60.0, help="simulated seconds between readings (60)"
    )
    p.add_argument("--speed", type=_positive_float, default=1.0, help="simulated seconds per wall second (1)")
    p.add_argument(
        "--duration",
        type=_positive_float,
        help="wall seconds to simulate at --speed: the simulated period is duration x speed "
        "(default: until Ctrl-C)",
    )
    p.add_argument("--gateway", required=True, help="gateway URL (devices enrol through its REST API)")
    p.add_argument("--token", help=f"installer token (or ${TOKEN_ENV})")
    p.add_argument("--mqtt", help="broker URL (default: $MQTT_URL or mqtt://127.0.0.1:1883)")
    p.add_argument("--state", type=Path, default=Path("sim-state"), help="state directory (./sim-state)")
    p.add_argument("--seed", type=int, default=1, help="seed of the simulated meters (1)")
    p.add_argument(
        "--start",
        help="simulated start, ISO 8601 UTC (default: so that the period ends now; with no --duration: now)",
    )
    p.add_argument("--lat", type=float, default=52.52, help="latitude of the solar panels (52.52)")
    p.add_argument("--lon", type=float, default=13.405, help="longitude of the solar panels (13.405)")
    p.add_argument(
        "--drain",
        type=float,
        default=30.0,
        help="at the end, wait up to this many seconds for publishing and receipts (30)",
    )
    p.add_argument(
        "--resend-after",
        type=_positive_float,
        default=None,
        help="publish a device's unreceipted readings again after this many seconds without a receipt "
        "(default: 600, or 10 x --drain if longer)",
    )
    p.add_argument("--progress", type=_positive_float, default=5.0, help="seconds between progress lines (5)")
    p.add_argument(
        "--meter-signed",
        action="store_true",
        help="new chargers are certified chargers: a simulated meter (its own P-256 key, enrolled) "
        "signs OCMF at each session start and end",
    )
    p.add_argument(
        "--max-inflight", type=_positive_int, default=1000, help="unacknowledged publishes per device"
    )
    return parser
