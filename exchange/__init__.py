"""Government data exchange: the shared layers (contracts, common, store, transport), tools, demos and the CLI."""
