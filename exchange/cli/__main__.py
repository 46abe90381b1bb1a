"""``python -m exchange.cli``: the same as the ``exchange`` command."""

from exchange.cli.main import main

raise SystemExit(main())
