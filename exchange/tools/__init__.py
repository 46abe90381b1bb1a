"""Operator tools over stores and databases: replay, verify, the certificate authority, catalog drafting."""
