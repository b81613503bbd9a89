#!/usr/bin/env bash
# PgBouncer for real: Debian's pgbouncer in transaction pooling mode, run as a
# non-root user in front of an embedded PostgreSQL, then tests/test_pgbouncer.py
# (2 `ctxgraph serve` processes, 50 concurrent clients) through it.
#
#   bash .ci/pgbouncer.sh            # from the repository root; PYTHON=.venv/bin/python
#
# Clients authenticate to PgBouncer with md5 (a generated password in a generated
# userlist); PgBouncer reaches PostgreSQL over its unix socket. Everything listens
# on 127.0.0.1 only and is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
PYTEST=${PYTEST:-"$(dirname "$PYTHON")/pytest"}

if ! command -v pgbouncer >/dev/null 2>&1 && [ ! -x /usr/sbin/pgbouncer ]; then
    echo "pgbouncer.sh: installing Debian's pgbouncer"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends pgbouncer >/dev/null
fi
PGBOUNCER=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
"$PGBOUNCER" --version | head -1

# The embedded server makes its data directory private to the `pgserver` user;
# PgBouncer runs as that user too (it refuses to run as root) to reach the socket.
RUN_AS=pgserver
WORK=$(mktemp -d /tmp/ctxgraph-pgbouncer.XXXXXX)
PG_PID=""
cleanup() {
    if [ -f "$WORK/pgbouncer.pid" ]; then
        kill "$(cat "$WORK/pgbouncer.pid")" 2>/dev/null || true
    fi
    if [ -n "$PG_PID" ]; then
        kill "$PG_PID" 2>/dev/null || true
        wait "$PG_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# 1. The embedded PostgreSQL, held by a small process until we signal it.
"$PYTHON" - "$WORK" >"$WORK/pg.out" 2>"$WORK/pg.err" <<'PY' &
import signal, sys
from pathlib import Path
from api.db import EmbeddedPostgres
from api.migrate import upgrade_to_head

server = EmbeddedPostgres(Path(sys.argv[1]) / "pg" / "pgdata")
url = server.start()
upgrade_to_head(url)
print(url, flush=True)
signal.sigwait({signal.SIGTERM, signal.SIGINT})
server.stop()
PY
PG_PID=$!
for _ in $(seq 1 600); do
    [ -s "$WORK/pg.out" ] && break
    kill -0 "$PG_PID" 2>/dev/null || { cat "$WORK/pg.err"; exit 1; }
    sleep 0.1
done
DIRECT_URL=$(head -1 "$WORK/pg.out")
PGDATA_DIR="$WORK/pg/pgdata"
[ -S "$PGDATA_DIR/.s.PGSQL.5432" ] || { echo "no PostgreSQL socket in $PGDATA_DIR"; exit 1; }

# 2. PgBouncer: transaction pooling, md5 auth with a generated password.
PORT=$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
PASSWORD=$("$PYTHON" -c 'import secrets; print(secrets.token_hex(16))')
MD5=$("$PYTHON" -c 'import hashlib, sys; print("md5" + hashlib.md5((sys.argv[1] + "ctxgraph").encode()).hexdigest())' "$PASSWORD")
echo "\"ctxgraph\" \"$MD5\"" >"$WORK/userlist.txt"
cat >"$WORK/pgbouncer.ini" <<INI
[databases]
ctxgraph = host=$PGDATA_DIR port=5432 dbname=postgres user=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PORT
unix_socket_dir =
auth_type = md5
auth_file = $WORK/userlist.txt
pool_mode = transaction
default_pool_size = 10
max_client_conn = 500
max_db_connections = 20
server_reset_query =
ignore_startup_parameters = extra_float_digits
logfile = $WORK/pgbouncer.log
pidfile = $WORK/pgbouncer.pid
admin_users =
INI
chown -R "$RUN_AS" "$WORK/pgbouncer.ini" "$WORK/userlist.txt"
chown "$RUN_AS" "$WORK"
chmod 600 "$WORK/userlist.txt"
# -d daemonizes and writes the pidfile; -u drops root for the user.
"$PGBOUNCER" -d -u "$RUN_AS" "$WORK/pgbouncer.ini"
for _ in $(seq 1 100); do
    "$PYTHON" -c "import socket,sys; socket.create_connection(('127.0.0.1', $PORT), 1)" 2>/dev/null && break
    sleep 0.1
done
ps -o user=,comm= -p "$(cat "$WORK/pgbouncer.pid")"

# 3. The suite, through PgBouncer.
export CTXGRAPH_PGBOUNCER_URL="postgresql://ctxgraph:$PASSWORD@127.0.0.1:$PORT/ctxgraph"
export CTXGRAPH_PGBOUNCER_DIRECT_URL="$DIRECT_URL"
status=0
"$PYTEST" tests/test_pgbouncer.py -q -p no:cacheprovider "$@" || status=$?
if [ "$status" -ne 0 ]; then
    echo "--- pgbouncer.log"; tail -50 "$WORK/pgbouncer.log" || true
fi
exit "$status"
