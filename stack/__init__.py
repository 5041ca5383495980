"""The whole system on one machine: embedded services, the demo and `make up`.

Run from the repository: ``python -m stack demo`` or ``python -m stack up``.
"""
