"""Names of the positions a node tracks in its event store."""

# Source position of the latest change stored at the node.
SOURCE_TRACKING = "source"
# Node notification id up to which the hub has acknowledged the events.
HUB_TRACKING = "hub"
# Hub notification id up to which a restore from the hub has copied events.
RESTORE_TRACKING = "restore"
