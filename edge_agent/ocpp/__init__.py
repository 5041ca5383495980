"""OCPP chargers: the agent's websocket endpoint, local backend and proxy."""
