"""``python -m edge_agent``: the edge agent's command line."""

from edge_agent.cli import main

raise SystemExit(main())
