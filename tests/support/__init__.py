"""Helpers the tests share beyond fixtures (e.g. a private PostgreSQL cluster)."""
