#!/bin/sh
# A hot-standby streaming replica of the `postgres` service. The first start clones the primary
# with pg_basebackup (-R writes standby.signal and primary_conninfo); later starts just resume.
set -eu
PGDATA="${PGDATA:-/var/lib/postgresql/data}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  echo "replica: cloning ${PRIMARY_HOST} with pg_basebackup"
  until pg_basebackup --host="$PRIMARY_HOST" --username=replicator --pgdata="$PGDATA" \
    --write-recovery-conf --wal-method=stream --checkpoint=fast; do
    echo "replica: primary not ready, retrying in 2 s"
    rm -rf "${PGDATA:?}"/*
    sleep 2
  done
  chmod 0700 "$PGDATA"
fi
exec postgres -c hot_standby=on -c hot_standby_feedback=on
