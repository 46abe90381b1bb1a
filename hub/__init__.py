"""The hub: stores every agency's events exactly once and serves them."""
