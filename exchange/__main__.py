"""``python -m exchange``: the same as the ``exchange`` command."""

from exchange.cli.main import main

raise SystemExit(main())
