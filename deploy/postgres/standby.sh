#!/bin/sh
# The streaming standby of compose profile "ha" (docs/scaling.md §3). On its first start it
# clones the primary, names itself standby1 and makes the primary wait for it at every commit
# (synchronous_standby_names), so nothing a hub acknowledged is missing after a promotion.
# While it is down the primary's commits wait: run a second standby ('ANY 1 (standby1, standby2)').
set -e
export PGPASSWORD="$POSTGRES_PASSWORD"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    until pg_isready -q -h postgres -U "$POSTGRES_USER"; do sleep 1; done
    pg_basebackup -h postgres -U "$POSTGRES_USER" -D "$PGDATA" -X stream -R
    echo "primary_conninfo = 'host=postgres user=$POSTGRES_USER password=$POSTGRES_PASSWORD application_name=standby1'" \
        >> "$PGDATA/postgresql.auto.conf"
    chmod 700 "$PGDATA"
    psql -h postgres -U "$POSTGRES_USER" -d postgres \
        -c "ALTER SYSTEM SET synchronous_standby_names = 'FIRST 1 (standby1)'" -c "SELECT pg_reload_conf()"
fi
exec postgres
