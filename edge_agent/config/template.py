"""The text ``init`` writes: a complete config file, commented for installers."""

from __future__ import annotations

import json


def toml_value(value: str | int | float | bool | list[int]) -> str:
    """A TOML literal for a simple value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    # A JSON string of printable text is a valid TOML basic string.
    return json.dumps(value, ensure_ascii=True)


def render_config(
    *,
    device_id: str,
    key_path: str,
    state_dir: str,
    meter_type: str = "s0",
    mqtt_url: str = "",
    gateway_url: str = "",
) -> str:
    """The text of a new config file, commented for installers."""
    v = toml_value
    return f"""\
# iot-attest edge agent configuration (written by `python -m edge_agent init`).
# Environment variables MQTT_URL and IOT_ATTEST_GATEWAY_URL override the file.

[device]
id = {v(device_id)}
state_dir = {v(state_dir)}          # chain state, outbox, pulse count (SQLite)

[key]
type = "file"                       # signer backend: "file" (secure elements later)
path = {v(key_path)}

[meter]
type = {v(meter_type)}                  # s0 | sunspec | ocpp | simulated-charger | simulated-solar
interval_s = 60                     # one signed reading per interval (plus session start/end)

[meter.s0]                          # S0 pulse output (DIN 43864): open collector, <= 27 V / 27 mA
pin = 17                            # BCM GPIO number (GPIO17 = header pin 11); S0- to GND (pin 9)
pull_up = true                      # internal pull-up: the pulse pulls the line low
bounce_time_ms = 10
impulses_per_kwh = 1000             # from the meter's label ("1000 imp/kWh")
persist_interval_s = 1.0            # pulse count written to disk at least this often
register_offset_mwh = 0             # optional: meter display at installation, in mWh

[meter.sunspec]                     # SunSpec inverter or meter over Modbus TCP
host = ""                           # the inverter's IP address (Modbus TCP enabled on it)
port = 502
unit_id = 1
bases = [40000, 0, 50000]           # where to look for the 'SunS' marker
register = "auto"                   # auto | WH | TotWhExp | TotWhImp
timeout_s = 3.0

[meter.ocpp]                        # an OCPP-J charger (1.6 / 2.0.1) connects here (docs/installers.md)
mode = "local"                      # local: the agent is its backend | proxy: relay to upstream_url
listen_host = "0.0.0.0"             # the charger's backend URL: ws://<this Pi>:9000/ocpp/<charge point id>
listen_port = 9000
path = "/ocpp"
chargers = {{}}                       # allow list: {{ "CP-1" = "its Basic-auth password (16-40 chars)" }}
id_tags = []                        # local mode: RFID tags that may charge, e.g. ["04A2B3C4D5"]
cert_file = ""                      # TLS (wss://, security profile 2): certificate chain and key
key_file = ""
max_frame_bytes = 65536             # a bigger frame closes that charger's connection
sample_interval_s = 60              # meter values asked of the charger during a session
heartbeat_interval_s = 300
stale_after_s = 900                 # no register for this long from a disconnected charger: no reading
upstream_url = ""                   # proxy: the real backend, wss://backend.example.org/ocpp
upstream_username = ""              # proxy: empty = the charge point id
upstream_password = ""
upstream_ca_file = ""               # proxy: CA of the backend (empty: system trust store)
upstream_cert_file = ""             # proxy: client certificate (security profile 3)
upstream_key_file = ""

[meter.simulated]                   # simulated-charger / simulated-solar
seed = 1
speed = 1.0                         # simulated time runs this many times faster
rated_power_w = 0                   # 0: the rated power given at enrolment

[mqtt]
url = {v(mqtt_url)}                            # mqtt://host:1883 or mqtts://host:8883
username = ""                       # empty + password set: the device id is the user name
password = ""
ca_file = ""                        # CA for mqtts:// (empty: system trust store)
cert_file = ""
key_file = ""
keepalive_s = 60
reconnect_min_s = 1.0
reconnect_max_s = 120.0
resend_after_s = 600.0              # publish unreceipted readings again after this long
max_inflight = 100

[gateway]
url = {v(gateway_url)}                            # set by enrol
log_key = ""                        # set by enrol: the log's verifier key; receipts must verify with it
ca_file = ""

[outbox]
max_readings = 500000               # warn at 80 % and when full; readings are never dropped

[receipts]
keep_days = 90                      # keep proven (and refused) receipts this long; the newest proven one always stays

[clock]
check_sync = true                   # flag readings taken while the clock is not NTP-synchronised
"""
