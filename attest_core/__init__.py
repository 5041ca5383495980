"""The pure protocol core shared by the edge agent, the gateway and the verifier.

Nothing in this package performs I/O: it encodes and decodes records, signs and
verifies, does the Merkle log maths, handles checkpoints and evaluates claims.
"""

__all__: list[str] = []
