"""``python -m edge_agent.simcharger``: see :mod:`edge_agent.simcharger.cli`."""

from edge_agent.simcharger.cli import main

if __name__ == "__main__":  # guarded: the package walk in tests imports this module
    raise SystemExit(main())
