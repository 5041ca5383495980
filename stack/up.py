"""make up: the whole stack in the foreground for exploring, until Ctrl-C.

The gateway's API is on http://127.0.0.1:8000 (its page at /docs); a live
simulated fleet sends readings in real time. The tokens are printed at start.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time

from rich.console import Console

from stack.processes import REPO, stop_process
from stack.system import System

console = Console(highlight=False)


def say(message: str) -> None:
    console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {message}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack up", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--port", type=int, default=8000, help="the API's port (8000)")
    parser.add_argument("--devices", type=int, default=10, help="simulated devices, half chargers (10)")
    parser.add_argument("--interval", type=int, default=15, help="seconds between readings (15)")
    args = parser.parse_args(argv)
    system = System(say, api_port=args.port)
    fleet: subprocess.Popen[bytes] | None = None
    try:
        system.start()
        console.rule("[bold]The stack is up")
        console.print(f"  API and its page:   {system.gateway_url}/docs")
        console.print(f"  log key:            {system.gateway_url}/v1/log/key")
        console.print(f"  MQTT broker:        {system.mqtt_url}")
        console.print(f"  installer token:    {system.tokens.installer}")
        console.print(f"  issuer token:       {system.tokens.issuer}")
        console.print(f"  auditor token:      {system.tokens.auditor}")
        console.print(f"  gateway log:        {system.gateway_log}")
        console.print(
            '  try:  curl -s -H "Authorization: Bearer <issuer token>" ' + system.gateway_url + "/v1/assets"
        )
        console.print("  Ctrl-C stops everything.")
        console.rule()
        fleet = subprocess.Popen(
            [
                sys.executable, "-m", "edge_agent", "simulate", "--devices", str(args.devices), "--kind", "mixed",
                "--interval", str(args.interval), "--speed", "1", "--gateway", system.gateway_url,
                "--token", system.tokens.installer, "--mqtt", system.mqtt_url,
                "--state", str(system.workdir / "fleet"), "--progress", "30",
            ],
            cwd=REPO,
        )  # fmt: skip
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        while fleet.poll() is None:
            time.sleep(0.5)
        say(f"the simulated fleet stopped (exit {fleet.returncode})")
        return 1
    except KeyboardInterrupt:
        say("stopping")
        return 0
    except RuntimeError as exc:
        console.print(f"[red]{exc}[/red]")
        return 1
    finally:
        if fleet is not None:
            stop_process(fleet, 20, sig=signal.SIGINT)
        system.stop()
