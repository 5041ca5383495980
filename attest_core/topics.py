"""MQTT topic layout: one subtree per device, so the broker can confine each device.

A device publishes readings to ``attest/v1/<device_id>/readings`` and its
status (including its last will) to ``attest/v1/<device_id>/status``; it
subscribes to ``attest/v1/<device_id>/receipts``.  A Mosquitto ACL with
``pattern write attest/v1/%u/readings`` and ``pattern read attest/v1/%u/receipts``
(the device id as user name) keeps each device to its own topics.

Readings and receipts are QoS 1, not retained; status (``online`` / ``offline``, the
device's last will) is QoS 1 and retained.  Protocol v2 keeps this layout: payloads carry
their own version byte.  docs/protocol.md section 11 is the full description.
"""

from __future__ import annotations

from attest_core.codec import ID_RE

PREFIX = "attest/v1"
READINGS_FILTER = f"{PREFIX}/+/readings"
"""What the gateway subscribes to (as ``$share/<group>/`` + this to share the load)."""


def readings_topic(device_id: str) -> str:
    return f"{PREFIX}/{device_id}/readings"


def receipts_topic(device_id: str) -> str:
    return f"{PREFIX}/{device_id}/receipts"


def status_topic(device_id: str) -> str:
    return f"{PREFIX}/{device_id}/status"


def device_of_readings_topic(topic: str) -> str | None:
    """The device id in a readings topic, or None if the topic is not one."""
    parts = topic.split("/")
    if len(parts) != 4 or f"{parts[0]}/{parts[1]}" != PREFIX or parts[3] != "readings":
        return None
    return parts[2] if ID_RE.fullmatch(parts[2]) else None
