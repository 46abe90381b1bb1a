"""Demonstrations on embedded defaults: `exchange demo` (capture, ship, replay, verify) and `exchange demo-sharing`."""
