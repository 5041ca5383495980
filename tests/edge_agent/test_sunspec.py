"""SunSpec over Modbus TCP against a real pymodbus server serving register maps built here."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from attest_core.reading import Status
from edge_agent.config import SunSpecConfig
from edge_agent.meters.base import MeterUnavailable
from edge_agent.meters.sunspec import SunSpecMeter, to_mwh
from tests.services import free_port

UNIT = 3


def text_regs(text: str, count: int) -> list[int]:
    raw = text.encode().ljust(2 * count, b"\0")
    return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, 2 * count, 2)]


def common_model(length: int = 66) -> list[int]:
    body = text_regs("TestCo", 16) + text_regs("Inverter 9000", 16) + [0] * (length - 32)
    return [1, length, *body]


def u32(value: int) -> list[int]:
    return [value >> 16, value & 0xFFFF]


def s16(value: int) -> int:
    return value & 0xFFFF


def inverter_model(wh: int, wh_sf: int, w: int = 4321, w_sf: int = 0, model_id: int = 103) -> list[int]:
    body = [0] * 50
    body[14 - 2] = s16(w)  # W at model offset 14 (the offsets in edge_agent/meters/sunspec.py count the ID)
    body[15 - 2] = s16(w_sf)
    body[24 - 2 : 26 - 2] = u32(wh)
    body[26 - 2] = s16(wh_sf)
    return [model_id, 50, *body]


def meter_model(exp: int, imp: int, sf: int, model_id: int = 203) -> list[int]:
    body = [0] * 105
    body[18 - 2] = s16(-1500)  # W (negative: exporting)
    body[22 - 2] = s16(1)  # W_SF
    body[38 - 2 : 40 - 2] = u32(exp)
    body[46 - 2 : 48 - 2] = u32(imp)
    body[54 - 2] = s16(sf)
    return [model_id, 105, *body]


END = [0xFFFF, 0]
SUNS = [0x5375, 0x6E53]

Action = Callable[[int, int, int, int, list[int], Any], Awaitable[Any]]


async def serve(base: int, registers: list[int], action: Action | None = None) -> tuple[ModbusTcpServer, int]:
    port = free_port()
    device = SimDevice(
        id=UNIT, simdata=[SimData(address=base, values=registers, datatype=DataType.REGISTERS)], action=action
    )
    server = ModbusTcpServer(device, address=("127.0.0.1", port))
    await server.serve_forever(background=True)
    return server, port


@pytest.fixture(autouse=True)
def _quiet_pymodbus() -> None:
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


def config(port: int, **kw: Any) -> SunSpecConfig:
    return SunSpecConfig(host="127.0.0.1", port=port, unit_id=UNIT, timeout_s=1.0, **kw)


def test_inverter_103_at_40000_with_energy_changing_between_reads() -> None:
    registers = SUNS + common_model() + inverter_model(wh=1_234_567, wh_sf=0) + END
    wh_at = 40000 + len(SUNS) + len(common_model()) + 24
    reads = 0

    async def bump(fc: int, start: int, address: int, count: int, regs: list[int], values: Any) -> None:
        nonlocal reads
        if fc == 3 and address <= wh_at < address + count:
            reads += 1
            value = ((regs[wh_at - start] << 16) | regs[wh_at + 1 - start]) + 250
            regs[wh_at - start], regs[wh_at + 1 - start] = value >> 16, value & 0xFFFF

    async def scenario() -> None:
        server, port = await serve(40000, registers, bump)
        meter = SunSpecMeter(config(port))
        try:
            await meter.start()
            assert meter.base == 40000
            assert [m.model_id for m in meter.models] == [1, 103]
            assert meter.source is not None
            assert meter.source.address == 40000 + 2 + 68
            first = await meter.read(0)
            second = await meter.read(0)
            assert first.status == Status.OK
            assert first.energy_mwh == (1_234_567 + 250) * 1000
            assert second.energy_mwh == first.energy_mwh + 250 * 1000
            assert first.power_mw == 4_321_000
        finally:
            await meter.close()
            await server.shutdown()

    asyncio.run(scenario())
    assert reads == 2


def test_vendor_map_at_base_0_with_a_meter_model() -> None:
    # No 'SunS' at 40000 (the read is refused), found at 0; a short common model; meter 203.
    registers = SUNS + common_model(65) + meter_model(exp=98_765, imp=4_321, sf=-2) + END

    async def scenario() -> None:
        server, port = await serve(0, registers)
        try:
            exported = SunSpecMeter(config(port))
            sample = await exported.read(0)
            assert exported.base == 0
            assert exported.point == "TotWhExp"
            assert sample.energy_mwh == 98_765 * 10  # 98765 x 10^-2 Wh = 987.65 Wh = 987650 mWh
            assert sample.power_mw == -15_000_000
            await exported.close()
            imported = SunSpecMeter(config(port, register="TotWhImp"))
            assert (await imported.read(0)).energy_mwh == 4_321 * 10
            await imported.close()
            wrong = SunSpecMeter(config(port, register="WH"))
            with pytest.raises(MeterUnavailable, match=r"models present \[1, 203\]"):
                await wrong.read(0)
            await wrong.close()
        finally:
            await server.shutdown()

    asyncio.run(scenario())


def test_not_implemented_markers_are_a_meter_error() -> None:
    registers = SUNS + common_model() + inverter_model(wh=0xFFFFFFFF, wh_sf=0) + END
    nan_sf = SUNS + common_model() + inverter_model(wh=5, wh_sf=-0x8000) + END

    async def scenario() -> None:
        for regs in (registers, nan_sf):
            server, port = await serve(50000, regs)
            meter = SunSpecMeter(config(port))
            try:
                sample = await meter.read(0)
                assert meter.base == 50000
                assert sample.status == Status.METER_ERROR
                assert sample.power_mw is None
            finally:
                await meter.close()
                await server.shutdown()

    asyncio.run(scenario())


def test_no_sunspec_device_and_no_connection() -> None:
    async def scenario() -> None:
        server, port = await serve(40000, [0x1234, 0x5678, 0, 0])
        meter = SunSpecMeter(config(port))
        try:
            with pytest.raises(MeterUnavailable, match="no SunSpec 'SunS' marker"):
                await meter.read(0)
        finally:
            await meter.close()
            await server.shutdown()
        closed = SunSpecMeter(config(free_port()))
        with pytest.raises(MeterUnavailable, match="cannot connect to Modbus TCP"):
            await closed.read(0)
        await closed.close()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("value", "sf", "mwh"),
    [(1, 0, 1000), (12345, -3, 12345), (12345, -4, 1234), (7, 3, 7_000_000), (0, -10, 0), (999, -1, 99900)],
)
def test_scale_factors_are_exact(value: int, sf: int, mwh: int) -> None:
    assert to_mwh(value, sf) == mwh
