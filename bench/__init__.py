"""``make bench``: what the system carries on this machine (issue 8).

Run from the repository root as ``python -m bench`` (``--help`` for the sizes).
It uses a database of its own on the machine's PostgreSQL (created and dropped),
a Mosquitto of its own with the project's queue settings, and the gateway as
real subprocesses; it writes ``bench-results.json``.
"""
