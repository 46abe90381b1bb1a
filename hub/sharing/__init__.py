"""Sharing at the hub (Arts. 8, 14-17): share requests, entitlements, projection, subscriptions, delivery records."""
