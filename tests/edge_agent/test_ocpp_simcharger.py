"""The agent (local backend) with the project's simulated certified charger (edge_agent/simcharger):
boot, the agent's configuration requests, a charging session with signed begin, periodic and end
values, both OCPP versions; every record the meter signed is carried, exactly once, by a reading
whose register is the record's value."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from attest_core.meterproof import verify_record_signature
from attest_core.ocmf import parse_ocmf
from attest_core.power import exceeds_rated_power
from attest_core.reading import Status, Trigger
from edge_agent.clock import Clock
from edge_agent.simcharger.chargepoint import DEFAULT_ID_TAG, SimulatedChargePoint
from edge_agent.simcharger.meter import OcmfMeter
from tests.edge_agent.conftest import Cli
from tests.edge_agent.fakes import FakeGateway
from tests.edge_agent.test_ocpp_agent import CP, PASSWORD, make_site, running
from tests.edge_agent.test_ocpp_support import until


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_a_simulated_certified_charger_session(
    tmp_path: Path, cli: Cli, gateway: FakeGateway, version: str
) -> None:
    meter = OcmfMeter(f"simcharger-{version}")
    site = make_site(tmp_path, cli, gateway, meter_key=meter.public_key_hex())
    text = site.config.path.read_text().replace('id_tags = ["04A2B3C4D5"]', f'id_tags = ["{DEFAULT_ID_TAG}"]')
    # values 1 s apart on the real clock: the meter's signed times stay within the gateway's 120 s of
    # the readings' times (a faster simulated clock would put them minutes ahead, and be refused)
    text = text.replace("sample_interval_s = 60", "sample_interval_s = 1")
    site.config.path.write_text(text)
    from edge_agent.config import load_config

    site.config = load_config(site.config.path, environ={})
    sign_key = "SampledDataSignReadings" if version == "1.6" else "SampledDataCtrlr.SignReadings"

    async def scenario() -> None:
        async with running(site), SimulatedChargePoint(
            site.url, charge_point_id=CP, version=version, meter=meter, password=PASSWORD,  # type: ignore[arg-type]
            clock=Clock(), register_wh=250_000,
        ) as cp:  # fmt: skip
            await cp.boot()
            await until(lambda: sign_key in site.status()["chargers"][CP].get("config", {}), 20, "configured")
            await until(lambda: bool(site.status()["chargers"][CP].get("meter_key_reported")), 20, "the key")
            result = await cp.session(energy_wh=7_400, meter_values=3)
        records = result.records
        assert len(records) >= 2
        signed = site.signed()
        carried = [r.meter_record for r in signed if r.meter_record is not None]
        assert {c.record for c in carried} == set(records)
        assert len({(c.record, c.value_index) for c in carried}) == len(carried)  # each value once
        key = meter.meter_key()
        for reading in signed:
            record = reading.meter_record
            assert record is not None
            parsed = parse_ocmf(record.record)
            verify_record_signature(parsed, key)
            assert reading.energy_mwh == parsed.readings[record.value_index].energy_mwh()
        assert signed[0].energy_mwh == 250_000_000
        assert signed[-1].energy_mwh == 257_400_000
        assert signed[-1].trigger is Trigger.SESSION_END
        readings = site.readings()
        assert all(not r.status & Status.METER_ERROR for r in readings)
        energies = [r.energy_mwh for r in readings]
        assert energies == sorted(energies)
        status = site.status()["chargers"][CP]
        assert status["config"][sign_key] == "Accepted"
        assert status["meter_key_reported"] == meter.public_key_hex().upper()
        assert not status.get("key_mismatch")
        assert not status.get("warning")

    asyncio.run(scenario())


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_readings_in_a_session_follow_the_chargers_reports_and_stay_within_rated_power(
    tmp_path: Path, cli: Cli, gateway: FakeGateway, version: str
) -> None:
    """About 20 kW on a 22 kW charger, values 3 s apart (17 Wh each), the agent's own interval 0.2 s: were
    the agent to restate the last reported register at its own clock during the session, the next report's
    energy would fall into 0.2 s or less, beyond what the rated power allows even with the verifier's 2 s of
    clock slack (over_rated_power: every claim on the charger not backed)."""
    meter = OcmfMeter(f"simcharger-power-{version}")
    site = make_site(tmp_path, cli, gateway, meter_key=meter.public_key_hex())
    text = site.config.path.read_text().replace('id_tags = ["04A2B3C4D5"]', f'id_tags = ["{DEFAULT_ID_TAG}"]')
    site.config.path.write_text(text.replace("sample_interval_s = 60", "sample_interval_s = 3"))
    from edge_agent.config import load_config

    site.config = load_config(site.config.path, environ={})

    async def scenario() -> None:
        async with running(site), SimulatedChargePoint(
            site.url, charge_point_id=CP, version=version, meter=meter, password=PASSWORD,  # type: ignore[arg-type]
            clock=Clock(), register_wh=100_000,
        ) as cp:  # fmt: skip
            await cp.boot()
            sign_key = "SampledDataSignReadings" if version == "1.6" else "SampledDataCtrlr.SignReadings"
            await until(lambda: sign_key in site.status()["chargers"][CP].get("config", {}), 20, "configured")
            # the key is asked for last, after the sample interval is set
            await until(lambda: bool(site.status()["chargers"][CP].get("meter_key_reported")), 20, "the key")
            await cp.session(energy_wh=34, meter_values=1)  # 17 Wh in each of two 3 s steps
            await asyncio.sleep(1.0)  # clock-driven readings resume after the session

    asyncio.run(scenario())
    readings = site.readings()
    assert readings[-1].energy_mwh == 100_034_000
    moving = 0
    for a, b in itertools.pairwise(readings):
        assert not exceeds_rated_power(22_000, b.time_ms - a.time_ms, b.energy_mwh - a.energy_mwh), (a, b)
        moving += b.energy_mwh > a.energy_mwh
    assert moving >= 2  # the energy came in the charger's reports, not in one step
    assert readings[-1].trigger is Trigger.PERIODIC  # and the agent's own readings came back after
