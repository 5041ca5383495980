"""Meter values in OCPP CALLs (edge_agent/ocpp/values.py): registers exact to the mWh, signed
records (1.6 SignedData, 2.0.1 signedMeterValue) with the right value index, on real records
(tests/data/ocmf) and records signed in the test."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from pathlib import Path

from attest_core.meterproof import MeterKey, verify_record_signature
from edge_agent.ocpp.values import extract
from tests.edge_agent.test_ocpp_support import SimulatedMeter

DATA = Path(__file__).resolve().parents[1] / "data" / "ocmf"


def real(name: str) -> tuple[bytes, str]:
    record = (DATA / f"{name}.ocmf").read_bytes().rstrip(b"\n")  # the trailing newline is not the record's
    key = (DATA / f"{name}.pubkey.hex").read_text().strip()
    return record, key


def test_16_register_values_exact_and_refused_when_not() -> None:
    payload = {
        "connectorId": 1,
        "meterValue": [
            {
                "timestamp": "2026-12-03T10:00:00Z",
                "sampledValue": [
                    {"value": "1234.5", "unit": "Wh"},
                    {"value": "12.345678", "unit": "kWh", "measurand": "Energy.Active.Import.Register"},
                    {"value": "100", "measurand": "Energy.Active.Import.Register", "phase": "L1"},
                    {"value": "7.4", "measurand": "Power.Active.Import", "unit": "kW"},
                    {"value": "0.0001", "unit": "Wh"},
                    {"value": "abc"},
                ],
            }
        ],
    }
    values = extract("1.6", "MeterValues", payload)
    assert [r.energy_mwh for r in values.registers] == [1_234_500, 12_345_678]
    assert len(values.problems) == 2
    assert "not exact" in values.problems[0]
    assert values.session is None


def test_16_start_and_stop_registers() -> None:
    start = extract(
        "1.6", "StartTransaction", {"connectorId": 1, "idTag": "x", "meterStart": 1500, "timestamp": "t"}
    )
    assert start.session == "start"
    assert [r.energy_mwh for r in start.registers] == [1_500_000]
    stop = extract("1.6", "StopTransaction", {"meterStop": 2500, "timestamp": "t", "transactionId": 1})
    assert stop.session == "end"
    assert [r.energy_mwh for r in stop.registers] == [2_500_000]


def test_16_bare_ocmf_string_of_a_real_record_begin_and_end_sent_once() -> None:
    record, key = real("01_keba_kcp30_secp256r1")
    payload = {
        "meterStop": 260,
        "timestamp": "t",
        "transactionId": 1,
        "transactionData": [
            {
                "timestamp": "t",
                "sampledValue": [
                    {"value": record.decode(), "format": "SignedData", "context": "Transaction.End"}
                ],
            }
        ],
    }
    values = extract("1.6", "StopTransaction", payload)
    assert [(s.value_index, s.energy_mwh) for s in values.signed] == [(0, 259_600), (1, 259_700)]
    assert all(s.record == record for s in values.signed)
    assert values.registers == []  # meterStop is not taken when the meter signed the values
    verify_record_signature(values.signed[0].ocmf, MeterKey.from_text(key))


def test_16_begin_and_end_sent_separately_pick_one_value_each() -> None:
    meter = SimulatedMeter()
    record = meter.record([("B", Decimal("1.5")), ("E", Decimal("2.25"))])
    signed = json.dumps(meter.signed_meter_value(record))
    sampled = [
        {"value": signed, "format": "SignedData", "context": "Transaction.Begin"},
        {"value": signed, "format": "SignedData", "context": "Transaction.End"},
    ]
    values = extract(
        "1.6", "MeterValues", {"connectorId": 1, "meterValue": [{"timestamp": "t", "sampledValue": sampled}]}
    )
    assert [(s.value_index, s.energy_mwh) for s in values.signed] == [(0, 1_500_000), (1, 2_250_000)]
    assert values.public_keys == [meter.oca_base64, meter.oca_base64]
    assert MeterKey.from_text(values.public_keys[0]).public_key == meter.public_der


def test_201_signed_meter_value_matched_by_value_and_multiplier() -> None:
    meter = SimulatedMeter()
    record = meter.record([("C", Decimal("3.000")), ("C", Decimal("3.125"))])
    signed = meter.signed_meter_value(record)
    payload = {
        "eventType": "Updated",
        "timestamp": "t",
        "triggerReason": "MeterValuePeriodic",
        "seqNo": 1,
        "transactionInfo": {"transactionId": "t1"},
        "meterValue": [
            {
                "timestamp": "t",
                "sampledValue": [
                    {"value": Decimal("3125"), "context": "Sample.Periodic", "signedMeterValue": signed},
                    {"value": Decimal("3.2"), "unitOfMeasure": {"unit": "Wh", "multiplier": 3}},
                ],
            }
        ],
    }
    values = extract("2.0.1", "TransactionEvent", payload)
    assert [(s.value_index, s.energy_mwh) for s in values.signed] == [(1, 3_125_000)]
    assert [r.energy_mwh for r in values.registers] == [3_200_000]
    assert values.session is None


def test_201_real_record_and_refusals() -> None:
    record, _ = real("03_ebee_dzg_secp256r1_end")
    data = base64.b64encode(record).decode()
    good = {"signedMeterData": data, "signingMethod": "", "encodingMethod": "OCMF", "publicKey": ""}
    other = {"signedMeterData": data, "signingMethod": "", "encodingMethod": "EDL", "publicKey": ""}
    broken = {"signedMeterData": base64.b64encode(b"OCMF|{}|{}").decode(), "encodingMethod": "OCMF"}
    payload = {
        "eventType": "Ended",
        "meterValue": [
            {
                "timestamp": "t",
                "sampledValue": [
                    {"value": 0, "context": "Transaction.End", "signedMeterValue": good},
                    {"value": 0, "context": "Transaction.End", "signedMeterValue": other},
                    {"value": 0, "context": "Transaction.End", "signedMeterValue": broken},
                ],
            }
        ],
    }
    values = extract("2.0.1", "TransactionEvent", payload)
    assert values.session == "end"
    assert len(values.signed) == 1
    assert values.signed[0].record == record
    assert values.signed[0].ocmf.readings[values.signed[0].value_index].transaction == "E"
    assert len(values.problems) == 2
