"""The per-agency node: capture, local event store, shipper to the hub."""
