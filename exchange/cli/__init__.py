"""The `exchange` command: one parser assembled from one module per command group."""
