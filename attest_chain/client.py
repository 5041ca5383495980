"""A client of the LogAnchor contract (contracts/LogAnchor.vy) over any EVM JSON-RPC endpoint.

Conventions of the values it returns, the same as attest_core.anchor's: addresses are lowercase
"0x" + 40 hex, transaction and block hashes "0x" + 64 hex; root, note and origin hashes are the
32 raw bytes (as attest_core.merkle uses them). Inputs accept addresses in any case.

Every web3 failure leaves this module as a :class:`~attest_chain.errors.ChainError`: the endpoint
away or timing out is :class:`ChainUnavailable` (retry later), a refusal by the contract is
:class:`ContractReverted` with its revert string, another JSON-RPC error is :class:`RpcError`.

Transactions are built here and signed by the caller's key (eth-account), never by the node:
:meth:`AnchorContract.build_anchor` returns the unsigned transaction, :func:`send_transaction`
signs and sends it. Building one estimates its gas, so a transaction the contract would refuse
(a rollback, a bad proof) fails before it is sent, as :class:`ContractReverted`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import requests
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import (
    BlockNotFound,
    ContractLogicError,
    ProviderConnectionError,
    TimeExhausted,
    TransactionNotFound,
    Web3RPCError,
)
from web3.logs import DISCARD
from web3.middleware import ExtraDataToPOAMiddleware
from web3.providers.rpc import HTTPProvider

from attest_chain.artifact import load_artifact
from attest_chain.errors import ChainError, ChainUnavailable, ContractReverted, NoContract, NotFound, RpcError

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount
    from web3.contract import Contract
    from web3.types import BlockIdentifier, TxParams

MAX_PROOF = 65
"""The longest consistency proof the contract takes (trees of up to 2**64 - 1 leaves)."""


def connect(url: str, timeout: float = 10.0) -> Web3:
    """A Web3 on the HTTP JSON-RPC endpoint ``url``. Nothing is sent until it is used.

    web3's own retries are off: a caller that retries (the gateway's anchor role) decides
    when, and one that does not (the verifier) learns at once that the endpoint is away.
    """
    provider = HTTPProvider(url, request_kwargs={"timeout": timeout}, exception_retry_configuration=None)
    w3 = Web3(provider)
    # PoA and some L2 chains put more than 32 bytes in a block's extraData, which web3 otherwise
    # refuses to format; the finality checks read whole blocks on any chain.
    w3.middleware_onion.inject(ExtraDataToPOAMiddleware, layer=0)
    return w3


@contextmanager
def rpc_errors(what: str) -> Iterator[None]:
    """Turn web3's and requests' exceptions raised inside into :class:`ChainError`\\ s."""
    try:
        yield
    except ChainError:
        raise
    except ContractLogicError as exc:
        reason = _revert_reason(exc)
        raise ContractReverted(f"{what}: the contract refused: {reason or exc}", reason) from exc
    except (TransactionNotFound, BlockNotFound) as exc:
        raise NotFound(f"{what}: {exc}") from exc
    except (requests.RequestException, ProviderConnectionError, TimeExhausted, OSError) as exc:
        raise ChainUnavailable(f"{what}: the JSON-RPC endpoint is unavailable: {exc}") from exc
    except Web3RPCError as exc:
        raise RpcError(f"{what}: {exc.message}", _rpc_code(exc)) from exc
    except (ValueError, TypeError) as exc:
        # web3 reports a malformed answer (or an argument it cannot encode) this way
        raise ChainError(f"{what}: {exc}") from exc


def _revert_reason(exc: ContractLogicError) -> str:
    message = str(exc.message or "")
    prefix = "execution reverted: "
    return message[len(prefix) :] if message.startswith(prefix) else ""


def _rpc_code(exc: Web3RPCError) -> int | None:
    response = exc.rpc_response or {}
    error = response.get("error")
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, int) else None


def address(value: str) -> str:
    """``value`` as a lowercase "0x" + 40 hex address; ChainError if it is not an address."""
    try:
        return to_checksum_address(value).lower()
    except (ValueError, TypeError) as exc:
        raise ChainError(f"not an address: {value!r}") from exc


def hex32(value: bytes | str) -> str:
    """A 32-byte hash as "0x" + 64 lowercase hex."""
    raw = HexBytes(value)
    if len(raw) != 32:
        raise ChainError(f"not a 32-byte hash: {value!r}")
    return "0x" + raw.hex().removeprefix("0x")


def origin_hash(origin: str) -> bytes:
    """keccak256 of the origin's UTF-8 bytes: the contract's key for a log, and its events' topic."""
    return keccak(origin.encode("utf-8"))


@dataclass(frozen=True)
class LatestAnchor:
    """What :meth:`AnchorContract.latest` returns; all zero while the log has no anchor."""

    count: int
    tree_size: int
    root_hash: bytes
    note_hash: bytes


@dataclass(frozen=True)
class StoredAnchor:
    """One anchored checkpoint as the contract stores it (:meth:`AnchorContract.anchor_at`)."""

    tree_size: int
    root_hash: bytes
    note_hash: bytes
    block_number: int


@dataclass(frozen=True)
class AnchorEvent:
    """An ``Anchored`` event, with where it is on the chain."""

    operator: str
    origin_hash: bytes
    number: int
    tree_size: int
    root_hash: bytes
    note_hash: bytes
    previous_size: int
    block_number: int
    block_hash: str
    tx_hash: str


@dataclass(frozen=True)
class LogKeyEvent:
    """A ``LogKeySet`` event: a log key set (``previous == ""``) or changed."""

    operator: str
    origin_hash: bytes
    origin: str
    key: str
    previous: str
    block_number: int
    block_hash: str
    tx_hash: str


@dataclass(frozen=True)
class Deployment:
    """Where :func:`deploy` put the contract."""

    tx_hash: str
    block_number: int
    block_hash: str


class AnchorContract:
    """The LogAnchor contract at ``contract_address`` on the chain behind ``w3``."""

    deployment: Deployment | None
    """Set by :func:`deploy`; None for a contract deployed elsewhere."""

    def __init__(self, w3: Web3, contract_address: str) -> None:
        self.w3 = w3
        self.address = address(contract_address)
        self.deployment = None
        self._contract: Contract = w3.eth.contract(
            address=to_checksum_address(self.address), abi=load_artifact().abi
        )

    def __repr__(self) -> str:
        return f"AnchorContract({self.address})"

    @property
    def web3_contract(self) -> Contract:
        """web3's contract object, for what this class does not wrap (encoding calldata, ...)."""
        return self._contract

    # ------------------------------------------------------------------ views

    def check_code(self) -> None:
        """Raise :class:`NoContract` unless the code at the address is exactly this artifact's."""
        with rpc_errors("reading the contract's code"):
            code = bytes(self.w3.eth.get_code(to_checksum_address(self.address)))
        if not code:
            raise NoContract(f"no contract at {self.address}")
        if code != bytes.fromhex(load_artifact().runtime_bytecode[2:]):
            raise NoContract(f"the code at {self.address} is not this LogAnchor contract's")

    def log_key(self, operator: str, origin: str, block: BlockIdentifier = "latest") -> str:
        """The verifier key ``operator`` set for its log ``origin``; "" if none."""
        with rpc_errors("reading the log key"):
            key = self._contract.functions.logKey(_cs(operator), origin).call(block_identifier=block)
        return cast(str, key)

    def latest(self, operator: str, origin: str, block: BlockIdentifier = "latest") -> LatestAnchor:
        """The latest anchor of ``operator``'s log ``origin``."""
        with rpc_errors("reading the latest anchor"):
            count, size, root, note = self._contract.functions.latest(_cs(operator), origin).call(
                block_identifier=block
            )
        return LatestAnchor(int(count), int(size), bytes(root), bytes(note))

    def anchor_at(
        self, operator: str, origin: str, number: int, block: BlockIdentifier = "latest"
    ) -> StoredAnchor:
        """Anchor ``number`` (from 0) of ``operator``'s log ``origin``; NotFound past the last."""
        try:
            with rpc_errors(f"reading anchor {number}"):
                size, root, note, block_number = self._contract.functions.anchorAt(
                    _cs(operator), origin, number
                ).call(block_identifier=block)
        except ContractReverted as exc:
            if exc.reason == "no such anchor":
                raise NotFound(f"{operator} has no anchor {number} of {origin!r}") from exc
            raise
        return StoredAnchor(int(size), bytes(root), bytes(note), int(block_number))

    # ------------------------------------------------------------------ events

    def anchor_event(self, tx_hash: str | bytes) -> AnchorEvent:
        """The ``Anchored`` event of this contract in the receipt of ``tx_hash``.

        NotFound while the transaction is unknown or unmined, or if it emitted none;
        ContractReverted if it was mined but reverted.
        """
        receipt = self._receipt(tx_hash)
        events = self._contract.events.Anchored().process_receipt(receipt, errors=DISCARD)
        events = [e for e in events if address(e["address"]) == self.address]
        if not events:
            raise NotFound(f"transaction {hex32(tx_hash)} emitted no Anchored event of {self.address}")
        return _anchor_event(events[0])

    def log_key_event(self, tx_hash: str | bytes) -> LogKeyEvent:
        """The ``LogKeySet`` event of this contract in the receipt of ``tx_hash``."""
        receipt = self._receipt(tx_hash)
        events = self._contract.events.LogKeySet().process_receipt(receipt, errors=DISCARD)
        events = [e for e in events if address(e["address"]) == self.address]
        if not events:
            raise NotFound(f"transaction {hex32(tx_hash)} emitted no LogKeySet event of {self.address}")
        return _log_key_event(events[0])

    def anchored_events(
        self,
        operator: str,
        origin: str,
        from_block: int = 0,
        to_block: BlockIdentifier = "latest",
        *,
        step: int | None = None,
    ) -> list[AnchorEvent]:
        """Every ``Anchored`` event of ``operator``'s log ``origin`` in the block range, in chain
        order. ``step``: ask in ranges of at most that many blocks, for endpoints that limit a
        range's length (Conflux eSpace: 1,000)."""
        logs = self._logs("Anchored", operator, origin, from_block, to_block, step)
        return [_anchor_event(e) for e in logs]

    def log_key_events(
        self,
        operator: str,
        origin: str,
        from_block: int = 0,
        to_block: BlockIdentifier = "latest",
        *,
        step: int | None = None,
    ) -> list[LogKeyEvent]:
        """Every ``LogKeySet`` event of ``operator``'s log ``origin`` in the range, in chain order."""
        logs = self._logs("LogKeySet", operator, origin, from_block, to_block, step)
        return [_log_key_event(e) for e in logs]

    def _logs(
        self,
        event: str,
        operator: str,
        origin: str,
        from_block: int,
        to_block: BlockIdentifier,
        step: int | None,
    ) -> list[Any]:
        if step is not None and step < 1:
            raise ChainError(f"a block range step must be at least 1, not {step}")
        filters = {"operator": _cs(operator), "origin_hash": origin_hash(origin)}
        with rpc_errors(f"reading {event} events"):
            if step is None:
                ranges: list[tuple[int, BlockIdentifier]] = [(from_block, to_block)]
            else:
                last = (
                    to_block if isinstance(to_block, int) else int(self.w3.eth.get_block(to_block)["number"])
                )
                ranges = [(start, min(start + step - 1, last)) for start in range(from_block, last + 1, step)]
            found: list[Any] = []
            for start, end in ranges:
                found += self._contract.events[event]().get_logs(
                    from_block=start, to_block=end, argument_filters=filters
                )
        return _in_order(found)

    # ------------------------------------------------------------------ transactions

    def build_set_log_key(
        self,
        sender: str,
        origin: str,
        key: str,
        *,
        nonce: int | None = None,
        gas: int | None = None,
        max_fee_per_gas: int | None = None,
        max_priority_fee_per_gas: int | None = None,
    ) -> TxParams:
        """The unsigned transaction by which ``sender`` sets the key of its log ``origin``."""
        call = self._contract.functions.setLogKey(origin, key)
        return _build(self.w3, call, sender, nonce, gas, max_fee_per_gas, max_priority_fee_per_gas)

    def build_anchor(
        self,
        sender: str,
        origin: str,
        tree_size: int,
        root_hash: bytes,
        note_hash: bytes,
        proof: Sequence[bytes],
        *,
        nonce: int | None = None,
        gas: int | None = None,
        max_fee_per_gas: int | None = None,
        max_priority_fee_per_gas: int | None = None,
    ) -> TxParams:
        """The unsigned transaction by which ``sender`` anchors a checkpoint of its log ``origin``
        (``proof``: the consistency proof from the latest anchored tree; empty for the first)."""
        call = self._anchor_call(origin, tree_size, root_hash, note_hash, proof)
        return _build(self.w3, call, sender, nonce, gas, max_fee_per_gas, max_priority_fee_per_gas)

    def simulate_anchor(
        self,
        sender: str,
        origin: str,
        tree_size: int,
        root_hash: bytes,
        note_hash: bytes,
        proof: Sequence[bytes],
        block: BlockIdentifier = "latest",
    ) -> None:
        """Run the anchor call against the state at ``block`` without a transaction: returns if
        the contract would accept it, raises :class:`ContractReverted` with its reason if not."""
        call = self._anchor_call(origin, tree_size, root_hash, note_hash, proof)
        with rpc_errors("simulating an anchor"):
            call.call({"from": _cs(sender)}, block_identifier=block)

    def _anchor_call(
        self, origin: str, tree_size: int, root_hash: bytes, note_hash: bytes, proof: Sequence[bytes]
    ) -> Any:
        if len(proof) > MAX_PROOF:
            raise ChainError(f"a consistency proof has at most {MAX_PROOF} hashes, not {len(proof)}")
        hashes = [bytes(h) for h in (root_hash, note_hash, *proof)]
        if any(len(h) != 32 for h in hashes):
            raise ChainError("root hash, note hash and proof hashes must be 32 bytes each")
        if not 0 <= tree_size < 2**256:
            raise ChainError(f"tree size {tree_size} is not a uint256")
        return self._contract.functions.anchor(origin, tree_size, hashes[0], hashes[1], hashes[2:])

    # ------------------------------------------------------------------ helpers

    def _receipt(self, tx_hash: str | bytes) -> Any:
        with rpc_errors(f"reading the receipt of {hex32(tx_hash)}"):
            receipt = self.w3.eth.get_transaction_receipt(HexBytes(tx_hash))
        if receipt["status"] != 1:
            raise ContractReverted(f"transaction {hex32(tx_hash)} reverted")
        return receipt


def _cs(value: str) -> Any:
    return to_checksum_address(address(value))


def _in_order(logs: Any) -> list[Any]:
    return sorted(logs, key=lambda e: (e["blockNumber"], e["logIndex"]))


def _anchor_event(event: Any) -> AnchorEvent:
    args = event["args"]
    return AnchorEvent(
        operator=address(args["operator"]),
        origin_hash=bytes(args["origin_hash"]),
        number=int(args["number"]),
        tree_size=int(args["tree_size"]),
        root_hash=bytes(args["root_hash"]),
        note_hash=bytes(args["note_hash"]),
        previous_size=int(args["previous_size"]),
        block_number=int(event["blockNumber"]),
        block_hash=hex32(event["blockHash"]),
        tx_hash=hex32(event["transactionHash"]),
    )


def _log_key_event(event: Any) -> LogKeyEvent:
    args = event["args"]
    return LogKeyEvent(
        operator=address(args["operator"]),
        origin_hash=bytes(args["origin_hash"]),
        origin=str(args["origin"]),
        key=str(args["key"]),
        previous=str(args["previous"]),
        block_number=int(event["blockNumber"]),
        block_hash=hex32(event["blockHash"]),
        tx_hash=hex32(event["transactionHash"]),
    )


def _build(
    w3: Web3,
    call: Any,
    sender: str,
    nonce: int | None,
    gas: int | None,
    max_fee_per_gas: int | None,
    max_priority_fee_per_gas: int | None,
) -> TxParams:
    """An EIP-1559 transaction of ``call`` from ``sender``; what is not given is asked of the
    node (nonce: the pending count; gas: an estimate, which is where a refusal shows; fees:
    web3's defaults, twice the base fee plus the node's priority fee)."""
    params: dict[str, Any] = {"from": _cs(sender)}
    with rpc_errors("building a transaction"):
        params["nonce"] = nonce if nonce is not None else w3.eth.get_transaction_count(_cs(sender), "pending")
        if gas is not None:
            params["gas"] = gas
        if max_priority_fee_per_gas is not None:
            params["maxPriorityFeePerGas"] = max_priority_fee_per_gas
        if max_fee_per_gas is not None:
            params["maxFeePerGas"] = max_fee_per_gas
        if "maxFeePerGas" in params and "maxPriorityFeePerGas" not in params:
            params["maxPriorityFeePerGas"] = w3.eth.max_priority_fee
        tx = call.build_transaction(params)
    return cast("TxParams", tx)


def send_transaction(w3: Web3, account: LocalAccount, tx: TxParams) -> str:
    """Sign ``tx`` with ``account``'s key and send it; its hash ("0x" + 64 hex)."""
    signed = account.sign_transaction(cast(Any, tx))
    with rpc_errors("sending a transaction"):
        sent = w3.eth.send_raw_transaction(signed.raw_transaction)
    return hex32(sent)


def wait_for_receipt(w3: Web3, tx_hash: str, timeout: float = 120.0, poll: float = 0.1) -> Any:
    """The receipt of ``tx_hash`` once mined (ChainUnavailable after ``timeout`` seconds)."""
    with rpc_errors(f"waiting for {tx_hash}"):
        return w3.eth.wait_for_transaction_receipt(HexBytes(tx_hash), timeout=timeout, poll_latency=poll)


def deploy(w3: Web3, account: LocalAccount, timeout: float = 120.0) -> AnchorContract:
    """Deploy the LogAnchor artifact from ``account`` and wait for it to be mined."""
    artifact = load_artifact()
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    with rpc_errors("building the deployment"):
        nonce = w3.eth.get_transaction_count(account.address, "pending")
        tx = factory.constructor().build_transaction({"from": account.address, "nonce": nonce})
    receipt = wait_for_receipt(w3, send_transaction(w3, account, tx), timeout)
    if receipt["status"] != 1 or not receipt.get("contractAddress"):
        raise ChainError(f"the deployment {hex32(receipt['transactionHash'])} failed")
    contract = AnchorContract(w3, receipt["contractAddress"])
    contract.check_code()
    contract.deployment = Deployment(
        hex32(receipt["transactionHash"]), int(receipt["blockNumber"]), hex32(receipt["blockHash"])
    )
    return contract
