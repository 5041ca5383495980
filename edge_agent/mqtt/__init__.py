"""One device's MQTT link: publish readings from the outbox, receive receipts.

``link`` (connection, session, reconnects), ``outbox`` (what is published when),
``paho_asyncio`` (paho's socket hooks on the asyncio loop), ``connecting`` (the
broker's address, the backoff, what a failed connect means).
"""

from edge_agent.mqtt.connecting import BrokerAddress, backoff_delay, parse_mqtt_url
from edge_agent.mqtt.link import MqttLink

__all__ = ["BrokerAddress", "MqttLink", "backoff_delay", "parse_mqtt_url"]
