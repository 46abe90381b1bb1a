"""Offline exchange: signed bundles of events, acknowledgement files, SFTP transfer."""
