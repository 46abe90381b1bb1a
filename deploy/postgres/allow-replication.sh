#!/bin/sh
# Run once, when the primary's data directory is created (docker-entrypoint-initdb.d):
# lets the standby of compose profile "ha" stream WAL as the store's user.
set -e
echo "host replication $POSTGRES_USER all scram-sha-256" >> "$PGDATA/pg_hba.conf"
