"""make demo's certified chargers: a simulated Eichrecht charger speaks OCPP to a real edge agent.

Each charger is the project's simulated certified charger (``python -m edge_agent.simcharger``:
a meter with its own P-256 key signing OCMF records, an OCPP charge point built with the
``ocpp`` package) connecting over a real websocket to a real agent (``python -m edge_agent
run``, ``[meter] type = "ocpp"`` in local-backend mode), enrolled like any device by the
installer's ``enrol``, with the meter's public key as the installer reads it off the meter.
One charger speaks OCPP 1.6, the next 2.0.1.  The agents run on the real clock (a meter's
signed time must lie within two minutes of the reading's), beside the simulated month.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_agent.config.editing import update_config
from edge_agent.simcharger.chargepoint import DEFAULT_ID_TAG
from edge_agent.simcharger.meter import OcmfMeter
from stack.embedded import free_port
from stack.processes import REPO, stop_process

VERSIONS = ("1.6", "2.0.1")
RATED_POWER_W = 22_000


@dataclass
class CertifiedCharger:
    """One certified charger and the agent beside it."""

    index: int
    workdir: Path
    version: str = field(init=False)
    charge_point_id: str = field(init=False)
    asset_id: str = field(init=False)
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    port: int = field(default_factory=free_port)
    agent: subprocess.Popen[bytes] | None = None
    charger: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.version = VERSIONS[self.index % len(VERSIONS)]
        self.charge_point_id = f"CP-{self.index + 1:02d}"
        self.asset_id = f"certified-charger-{self.index + 1:02d}"

    @property
    def dir(self) -> Path:
        return self.workdir / f"certified-{self.index + 1:02d}"

    @property
    def config(self) -> Path:
        return self.dir / "agent.toml"

    @property
    def meter(self) -> OcmfMeter:
        """The meter's key, as the installer reads it off the meter's label (same seed as the charger's)."""
        return OcmfMeter(self.charge_point_id)

    def _agent_cli(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "edge_agent", *args],
            cwd=REPO,
            capture_output=True,
            check=False,
            timeout=120,
        )

    def install(self, gateway_url: str, mqtt_url: str, installer_token: str) -> None:
        """init, configure the OCPP endpoint, enrol with the meter key, as an installer would."""
        self.dir.mkdir(parents=True, exist_ok=True)
        steps = [
            (
                "init",
                [
                    "init",
                    "--dir",
                    str(self.dir),
                    "--meter",
                    "ocpp",
                    "--mqtt",
                    mqtt_url,
                    "--gateway",
                    gateway_url,
                ],
            ),
        ]
        for name, argv in steps:
            done = self._agent_cli(*argv)
            if done.returncode != 0:
                raise RuntimeError(
                    f"edge_agent {name} for {self.charge_point_id}: {done.stderr.decode()[-800:]}"
                )
        update_config(self.config, "meter", {"interval_s": 5})
        update_config(
            self.config,
            "meter.ocpp",
            {"listen_host": "127.0.0.1", "listen_port": self.port, "sample_interval_s": 5},
        )
        update_config(self.config, "meter.ocpp.chargers", {self.charge_point_id: self.password})
        # The RFID card the simulated charger authorises with (local mode answers others Invalid).
        ids: Any = [DEFAULT_ID_TAG]
        update_config(self.config, "meter.ocpp", {"id_tags": ids})
        # A demo machine's clock may not be NTP-synchronised; a Pi's is.
        update_config(self.config, "clock", {"check_sync": False})
        done = self._agent_cli(
            "enrol", "--config", str(self.config), "--token", installer_token, "--asset", self.asset_id,
            "--kind", "charger", "--rated-power", str(RATED_POWER_W), "--meter-key", self.meter.public_key_hex(),
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"edge_agent enrol for {self.charge_point_id}: {done.stderr.decode()[-800:]}")

    def start_agent(self) -> None:
        log = (self.dir / "agent.log").open("wb")
        self.agent = subprocess.Popen(
            [sys.executable, "-m", "edge_agent", "run", "--config", str(self.config)],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def start_charger(self, sessions: int, energy_wh: int) -> None:
        log = (self.dir / "charger.log").open("wb")
        self.charger = subprocess.Popen(
            [
                sys.executable, "-m", "edge_agent.simcharger", "--url", f"ws://127.0.0.1:{self.port}/ocpp",
                "--id", self.charge_point_id, "--version", self.version, "--password", self.password,
                "--sessions", str(sessions), "--energy-wh", str(energy_wh), "--meter-values", "2",
                "--interval", "3", "--seed", self.charge_point_id, "--state", str(self.dir / "meter.json"),
                "--register-wh", str(1_000_000 + 37_000 * self.index),
            ],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def stop(self) -> None:
        for proc in (self.charger, self.agent):
            if proc is not None:
                stop_process(proc, 20)


def start(
    count: int,
    workdir: Path,
    gateway_url: str,
    mqtt_url: str,
    installer_token: str,
    say: Callable[[str], None],
    sessions: int = 2,
) -> list[CertifiedCharger]:
    chargers = [CertifiedCharger(i, workdir) for i in range(count)]
    for c in chargers:
        c.install(gateway_url, mqtt_url, installer_token)
        say(
            f"{c.asset_id}: OCPP {c.version} charger {c.charge_point_id}, meter key "
            f"{c.meter.public_key_hex()[:26]}…{c.meter.public_key_hex()[-8:]} enrolled by the installer"
        )
        c.start_agent()
    for c in chargers:
        if not _wait_port(c.port, 60):
            raise RuntimeError(
                f"the agent of {c.charge_point_id} did not open its OCPP endpoint: see {c.dir}/agent.log"
            )
        # 60-70 Wh in a 15 s session (three 5 s steps): about 15 kW on a 22 kW charger
        c.start_charger(sessions=sessions, energy_wh=60 + 10 * c.index)
    return chargers


def wait_sessions(chargers: list[CertifiedCharger], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for c in chargers:
        assert c.charger is not None
        try:
            code = c.charger.wait(max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise RuntimeError(
                f"charger {c.charge_point_id} did not finish its sessions: see {c.dir}/charger.log"
            ) from None
        if code != 0:
            raise RuntimeError(f"charger {c.charge_point_id} failed (exit {code}): see {c.dir}/charger.log")


def _wait_port(port: int, seconds: float) -> bool:
    from stack.processes import port_open, wait_for

    return wait_for(lambda: port_open("127.0.0.1", port), seconds)
