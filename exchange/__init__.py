"""Government data exchange: shared core (events, stores, config, CLI)."""
