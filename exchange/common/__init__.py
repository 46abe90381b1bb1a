"""Plumbing every process uses: configuration (TOML + environment), logging, key files, shared metrics."""
