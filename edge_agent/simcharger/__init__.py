"""A simulated certified (Eichrecht) charger: a meter that signs OCMF records, driven through a
simulated OCPP 1.6 / 2.0.1 charge point over a real websocket.

* :mod:`edge_agent.simcharger.meter` — the meter: its own P-256 key from a seed, OCMF records.
* :mod:`edge_agent.simcharger.chargepoint` — the charge point (mobilityhouse ``ocpp``): boot,
  heartbeats, configuration answers, charging sessions with signed begin/end values.
* ``python -m edge_agent.simcharger`` — for installers, to test a Pi before the real charger is wired.
"""
