"""Helpers of the OCPP tests (no tests here): a simulated meter that signs OCMF records with a P-256
key, and small charge points built with the ocpp package (1.6 and 2.0.1) that talk to the agent's
endpoint over a real websocket."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from ocpp.routing import on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call_result as result16
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call_result as result201
from websockets.asyncio.client import ClientConnection, connect


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def ocmf_time(when: datetime | None = None) -> str:
    when = when or datetime.now(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S,") + f"{when.microsecond // 1000:03d}+0000 S"


@dataclass
class SimulatedMeter:
    """An Eichrecht meter: signs OCMF records with its own P-256 key."""

    private_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    page: int = 0

    @property
    def public_der(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @property
    def public_hex(self) -> str:
        return self.public_der.hex().upper()

    @property
    def oca_base64(self) -> str:
        """``publicKey`` as OCPP sends it: base64 of ``oca:base16:asn1:<hex>``."""
        return base64.b64encode(f"oca:base16:asn1:{self.public_der.hex()}".encode()).decode()

    def record(
        self, values: list[tuple[str, Decimal]], status: str = "G", when: datetime | None = None
    ) -> str:
        """An OCMF record of (TX, kWh) values, signed at ``when`` (now)."""
        self.page += 1
        payload = {
            "FV": "1.0",
            "GI": "TEST METER",
            "GS": "0001",
            "GV": "1.0",
            "PG": f"T{self.page}",
            "MV": "Test",
            "MS": "0001",
            "IS": True,
            "IT": "ISO14443",
            "ID": "04A2B3C4D5",
            "RD": [
                {
                    "TM": ocmf_time(when),
                    "TX": tx,
                    "RV": "__RV__",
                    "RI": "1-b:1.8.0",
                    "RU": "kWh",
                    "ST": status,
                }
                for tx, _ in values
            ],
        }
        text = json.dumps(payload, separators=(",", ":"))
        for _, kwh in values:  # exact decimals as written, never floats
            text = text.replace('"__RV__"', str(kwh), 1)
        signature = self.private_key.sign(text.encode(), ec.ECDSA(hashes.SHA256()))
        return f'OCMF|{text}|{{"SA":"ECDSA-secp256r1-SHA256","SD":"{signature.hex().upper()}"}}'

    def signed_meter_value(self, record: str, with_key: bool = True) -> dict[str, str]:
        """SignedMeterValueType (camelCase, as sent)."""
        return {
            "signedMeterData": base64.b64encode(record.encode()).decode(),
            "signingMethod": "",
            "encodingMethod": "OCMF",
            "publicKey": self.oca_base64 if with_key else "",
        }


def basic_auth(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


# --------------------------------------------------------------------------- charge points


class ChargePoint16Client(ChargePoint16):  # type: ignore[misc]
    """A 1.6 charge point: answers the backend's configuration requests (or NotSupported)."""

    def __init__(
        self, cp_id: str, connection: ClientConnection, *, meter_key: str = "", refuse: bool = False
    ):
        super().__init__(cp_id, connection, response_timeout=30)
        self.meter_key = meter_key
        self.refuse = refuse
        self.configured: dict[str, str] = {}
        self.got_configuration = asyncio.Event()

    @on("ChangeConfiguration")  # type: ignore[misc]
    def on_change_configuration(self, key: str, value: str) -> Any:
        self.configured[key] = value
        if self.refuse and "Sign" in key:
            return result16.ChangeConfiguration(status="NotSupported")
        return result16.ChangeConfiguration(status="Accepted")

    @on("GetConfiguration")  # type: ignore[misc]
    def on_get_configuration(self, **kwargs: Any) -> Any:
        self.got_configuration.set()
        keys = (
            [{"key": "MeterPublicKey[1]", "readonly": True, "value": self.meter_key}]
            if self.meter_key
            else []
        )
        return result16.GetConfiguration(configuration_key=keys)


class ChargePoint201Client(ChargePoint201):  # type: ignore[misc]
    def __init__(
        self, cp_id: str, connection: ClientConnection, *, meter_key: str = "", refuse: bool = False
    ):
        super().__init__(cp_id, connection, response_timeout=30)
        self.meter_key = meter_key
        self.refuse = refuse
        self.configured: dict[str, str] = {}
        self.got_configuration = asyncio.Event()

    @on("SetVariables")  # type: ignore[misc]
    def on_set_variables(self, set_variable_data: list[dict[str, Any]]) -> Any:
        results = []
        for item in set_variable_data:
            name = f"{item['component']['name']}.{item['variable']['name']}"
            self.configured[name] = item["attribute_value"]
            status = "NotSupportedAttributeType" if self.refuse and "Sign" in name else "Accepted"
            results.append(
                {"attribute_status": status, "component": item["component"], "variable": item["variable"]}
            )
        return result201.SetVariables(set_variable_result=results)

    @on("GetVariables")  # type: ignore[misc]
    def on_get_variables(self, get_variable_data: list[dict[str, Any]]) -> Any:
        self.got_configuration.set()
        results = []
        for item in get_variable_data:
            found = self.meter_key and item["variable"]["name"] == "PublicKey"
            results.append(
                {
                    "attribute_status": "Accepted" if found else "UnknownVariable",
                    "component": item["component"],
                    "variable": item["variable"],
                    **({"attribute_value": self.meter_key} if found else {}),
                }
            )
        return result201.GetVariables(get_variable_result=results)


@contextlib.asynccontextmanager
async def charge_point(
    url: str,
    cp_id: str,
    password: str,
    version: str,
    *,
    meter_key: str = "",
    refuse: bool = False,
    max_size: int | None = 1 << 20,
) -> AsyncIterator[Any]:
    """A connected charge point of ``version`` ("1.6" / "2.0.1"), its receive loop running."""
    subprotocol = "ocpp1.6" if version == "1.6" else "ocpp2.0.1"
    async with connect(
        f"{url}{cp_id}",
        subprotocols=[subprotocol],  # type: ignore[list-item]
        additional_headers=basic_auth(cp_id, password),
        max_size=max_size,
        open_timeout=20,
    ) as ws:
        cls = ChargePoint16Client if version == "1.6" else ChargePoint201Client
        cp = cls(cp_id, ws, meter_key=meter_key, refuse=refuse)
        task = asyncio.get_running_loop().create_task(cp.start())
        try:
            yield cp
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def until(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def raw_exchange(ws: ClientConnection, frame: str, seconds: float = 20) -> list[Any]:
    """Send one raw frame, return the next frame answered (JSON)."""
    await ws.send(frame)
    answer = await asyncio.wait_for(ws.recv(), seconds)
    parsed: list[Any] = json.loads(answer)
    return parsed
