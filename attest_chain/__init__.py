"""Access to the LogAnchor contract on EVM chains (issue 16): the compiled contract, a client for
its calls, transactions and events, the finality rules, and the embedded dev chain.

Imports web3, which only the chain and gateway extras install: nothing in attest_core or the
verifier's base install imports this package.
"""
