"""The embedded dev chain: eth-tester with py-evm, served as HTTP JSON-RPC on 127.0.0.1.

    python -m attest_chain.devchain --port 8545   # prints its URL and the funded accounts' keys

For ``make demo`` and the tests: a real EVM (py-evm executes the contract's bytecode) behind the
same JSON-RPC interface as any node, so the gateway and the verifier use it exactly as they use
Ethereum or anvil, with nothing installed beyond the demo extra. In the same process:

    chain = start_devchain()      # serves in a thread; chain.url, chain.accounts
    ...
    chain.stop()

Every transaction is mined at once into a block of its own (automine), and the blocks are final
as soon as they are mined: the "safe" and "finalized" tags name the latest block, as on a chain
with instant finality. The accounts are eth-tester's well-known dev keys, funded at genesis:
never send real value to them.

The server translates JSON-RPC to eth-tester through web3's EthereumTesterProvider formatters
(hex quantities in, Python values out), and back: integers as hex quantities, reverts as the
error code 3 with the ABI-encoded Error(string) in ``data``, as geth and anvil answer them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from eth_abi import abi
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_tester import EthereumTester, PyEVMBackend
from eth_tester.exceptions import TransactionFailed
from web3 import Web3
from web3.providers.eth_tester import EthereumTesterProvider

CHAIN_ID = 131277322940537
"""eth-tester's chain id (its py-evm chain and web3's eth_chainId answer agree on it)."""
MAX_BODY = 8 * 1024 * 1024
_ERROR_SELECTOR = bytes.fromhex("08c379a0")  # Error(string)


def _jsonable(value: Any) -> Any:
    """A value of eth-tester's answer as JSON-RPC writes it: integers as hex quantities, bytes as
    hex data; strings (already hex), booleans, floats (feeHistory's ratios) and None as they are."""
    if isinstance(value, bool) or value is None or isinstance(value, str | float):
        return value
    if isinstance(value, int):
        return hex(value)
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    raise TypeError(f"cannot write a {type(value).__name__} as JSON-RPC")


def _revert_error(exc: TransactionFailed) -> dict[str, Any]:
    message = str(exc.args[0]) if exc.args else "execution reverted"
    prefix = "execution reverted: "
    reason = message[len(prefix) :] if message.startswith(prefix) else message
    if reason in ("", "b''", "None"):
        return {"code": 3, "message": "execution reverted", "data": "0x"}
    data = _ERROR_SELECTOR + abi.encode(["string"], [reason])
    return {"code": 3, "message": f"execution reverted: {reason}", "data": "0x" + data.hex()}


class _Chain:
    """eth-tester behind one lock (it is not thread-safe), answering JSON-RPC request objects."""

    def __init__(self, accounts: int) -> None:
        self.backend = PyEVMBackend(genesis_state=PyEVMBackend.generate_genesis_state(num_accounts=accounts))
        self.tester = EthereumTester(self.backend)
        provider = EthereumTesterProvider(self.tester)
        # a Web3 with no middleware of its own: only the provider's eth-tester formatters apply
        w3 = Web3(provider, middleware=[])
        self._request: Callable[[str, Any], Any] = provider.request_func(w3, w3.middleware_onion)
        self._lock = threading.Lock()

    def private_keys(self) -> list[str]:
        return ["0x" + key.to_bytes().hex() for key in self.backend.account_keys]

    def answer(self, request: Any) -> dict[str, Any] | None:
        """The response to one request object (None for a notification)."""
        if not isinstance(request, dict) or not isinstance(request.get("method"), str):
            return _error(None, -32600, "invalid request")
        rid = request.get("id")
        params = request.get("params", [])
        if not isinstance(params, list):
            return _error(rid, -32602, "params must be an array")
        try:
            with self._lock:
                response = self._request(request["method"], params)
        except TransactionFailed as exc:
            return {"jsonrpc": "2.0", "id": rid, "error": _revert_error(exc)}
        except Exception as exc:  # eth-tester's validation errors (nonce, funds, malformed input)
            return _error(rid, -32000, f"{type(exc).__name__}: {exc}")
        if "id" not in request:
            return None
        if "error" in response:
            return {"jsonrpc": "2.0", "id": rid, "error": dict(response["error"])}
        try:
            result = _jsonable(response.get("result"))
        except TypeError as exc:
            return _error(rid, -32603, str(exc))
        return {"jsonrpc": "2.0", "id": rid, "result": result}


def _error(rid: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}}


def _handler(chain: _Chain) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: web3's session reuses its connection
        # headers and body go out in two writes: without this, Nagle's algorithm holds the body
        # back until the client's delayed ACK, 40 ms per call
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 < length <= MAX_BODY:
                self._send(HTTPStatus.BAD_REQUEST, _error(None, -32600, "body missing or too large"))
                return
            try:
                body = json.loads(self.rfile.read(length))
            except ValueError:
                self._send(HTTPStatus.OK, _error(None, -32700, "parse error"))
                return
            if isinstance(body, list):
                answers = [a for a in map(chain.answer, body) if a is not None]
                self._send(HTTPStatus.OK, answers if body else _error(None, -32600, "empty batch"))
            else:
                answer = chain.answer(body)
                self._send(HTTPStatus.OK, answer if answer is not None else [])

        def do_GET(self) -> None:
            self._send(HTTPStatus.METHOD_NOT_ALLOWED, _error(None, -32600, "JSON-RPC takes POST"))

        def _send(self, status: HTTPStatus, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # a request log per call would drown the demo's output

    return Handler


class _Server(ThreadingHTTPServer):
    """Tracks its open connections, so that stopping it also drops the keep-alive connections
    clients hold: a stopped chain must look like a chain that went away, not keep answering."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@dataclass
class DevChain:
    """A running dev chain (:func:`start_devchain`)."""

    url: str
    chain_id: int
    private_keys: list[str]
    """The funded accounts' keys, "0x" + 64 hex."""
    _server: _Server = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    @property
    def accounts(self) -> list[LocalAccount]:
        return [Account.from_key(key) for key in self.private_keys]

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()
        self._server.drop_connections()

    def __enter__(self) -> DevChain:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _server(host: str, port: int, accounts: int) -> tuple[_Server, _Chain]:
    chain = _Chain(accounts)
    return _Server((host, port), _handler(chain)), chain


def start_devchain(host: str = "127.0.0.1", port: int = 0, accounts: int = 10) -> DevChain:
    """Serve a fresh dev chain from a daemon thread; port 0 takes a free port."""
    server, chain = _server(host, port, accounts)
    bound_host, bound_port = server.server_address[:2]
    thread = threading.Thread(target=server.serve_forever, name="devchain", daemon=True)
    thread.start()
    url = f"http://{bound_host!s}:{bound_port}"
    return DevChain(url, CHAIN_ID, chain.private_keys(), server, thread)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m attest_chain.devchain", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8545, help="port (default 8545; 0: any free port)")
    parser.add_argument("--accounts", type=int, default=10, help="funded accounts (default 10)")
    args = parser.parse_args(argv)
    server, chain = _server(args.host, args.port, args.accounts)
    host, port = server.server_address[:2]
    print(f"dev chain (eth-tester + py-evm), chain id {CHAIN_ID}: http://{host!s}:{port}")
    print("funded dev accounts (well-known keys: never use them on a real chain):")
    for key in chain.private_keys():
        print(f"  {Account.from_key(key).address} {key}")
    sys.stdout.flush()
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
