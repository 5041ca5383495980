"""The exceptions of attest_chain: one hierarchy under :class:`ChainError`."""

from __future__ import annotations


class ChainError(Exception):
    """Something about the chain or the contract went wrong."""


class ChainUnavailable(ChainError):
    """The JSON-RPC endpoint could not be reached, timed out, or answered with an error that is
    about the node rather than the contract. Worth retrying later."""


class ContractReverted(ChainError):
    """A call or transaction was refused by the contract; :attr:`reason` is its revert string
    (e.g. "consistency proof does not verify"), or "" when the node gave none."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


class NotFound(ChainError):
    """A transaction, receipt, block, event or anchor that was asked for does not exist (yet)."""


class NoContract(ChainError):
    """There is no LogAnchor contract at the address (no code, or other code)."""


class ArtifactError(ChainError):
    """The compiled contract (LogAnchor.json) is missing, malformed or does not match its source."""


class FinalityRuleError(ChainError, ValueError):
    """A finality rule that cannot be parsed, or that the node does not support (e.g. a node
    without the 'finalized' block tag)."""


class RpcError(ChainError):
    """The node answered a JSON-RPC request with an error other than a revert (e.g. "nonce too
    low", "replacement transaction underpriced"); :attr:`code` is the JSON-RPC error code."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code
