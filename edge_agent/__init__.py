"""The iot-attest edge agent: signs, chains, stores and publishes meter readings.

Runs next to a meter (an S0 pulse output, a SunSpec inverter or meter over
Modbus TCP, or a simulated charger / solar panel).  ``python -m edge_agent
--help`` lists the commands: ``init``, ``enrol``, ``run``, ``status`` and the
fleet simulator ``simulate``.
"""

__version__ = "0.1.0"
