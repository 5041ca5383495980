"""Access to the LogAnchor contract on EVM chains (issue 16): the compiled contract, a client for
its calls, transactions and events, the finality rules, and the embedded dev chain.

Imports web3, which only the chain and gateway extras install: nothing in attest_core or the
verifier's base install imports this package.
"""

import contextlib
import importlib
import sys

# web3 (through py_ecc) and py-evm raise the interpreter's recursion limit to 100,000 when they are
# imported, for deep EVM call stacks this package never makes. That limit is process-wide: with it,
# json's C parser recurses past the C stack on deeply nested input and the process dies of a
# segmentation fault instead of raising RecursionError. A gateway or verifier that anchors would
# then be killed by one request or bundle nesting "[" a hundred thousand times. Import them once
# here, under the default limit restored afterwards (later imports are cached: no second raise).
_limit = sys.getrecursionlimit()
try:
    for _module in ("web3", "py_ecc", "eth"):
        with contextlib.suppress(ImportError):  # py-evm (eth) only with the demo and dev extras
            importlib.import_module(_module)
finally:
    sys.setrecursionlimit(_limit)
