"""``python -m verifier``: the auditor's command-line verifier."""

from verifier.cli import main

raise SystemExit(main())
