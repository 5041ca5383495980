"""The auditor's command-line verifier: ``python -m verifier --help``.

It checks evidence bundles offline (``bundle``), the pieces a step-by-step
auditor works with (``checkpoint``, ``inclusion``, ``consistency``), and follows a
live log (``monitor``, ``witness``).  All protocol rules live in
:mod:`attest_core`; this package reads files, talks HTTP and shows results.
"""
