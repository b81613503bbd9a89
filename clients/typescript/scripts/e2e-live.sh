#!/usr/bin/env bash
# Start a throwaway `ctxgraph serve` (embedded PostgreSQL in a temporary data
# directory, or DATABASE_URL when set), run the TypeScript end-to-end script
# against it, stop the server. Extra arguments go to src/e2e.ts, e.g.
#   bash clients/typescript/scripts/e2e-live.sh --persisted automatic
# CTXGRAPH_BIN overrides the ctxgraph executable (default: the repo's .venv).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
repo="$(cd "$here/../.." && pwd)"
ctxgraph="${CTXGRAPH_BIN:-$repo/.venv/bin/ctxgraph}"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
work="$(mktemp -d)"
log="$work/server.log"

CTXGRAPH_DATA_DIR="$work/data" "$ctxgraph" serve --port "$port" >"$log" 2>&1 &
server=$!
cleanup() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  # The embedded PostgreSQL normally stops with the server; make sure of it
  # before its data directory goes away.
  pidfile="$work/data/pgdata/postmaster.pid"
  if [ -f "$pidfile" ]; then
    kill "$(head -n 1 "$pidfile")" 2>/dev/null || true
    for _ in $(seq 1 100); do [ -f "$pidfile" ] || break; sleep 0.1; done
  fi
  rm -rf "$work"
}
trap cleanup EXIT

ready() {
  python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
    "http://127.0.0.1:$port/readyz" >/dev/null 2>&1
}
for _ in $(seq 1 300); do
  if ready; then break; fi
  if ! kill -0 "$server" 2>/dev/null; then cat "$log"; echo "e2e-live: the server exited" >&2; exit 1; fi
  sleep 0.2
done
ready || { cat "$log"; echo "e2e-live: the server did not become ready" >&2; exit 1; }

cd "$here"
node node_modules/.bin/tsx src/e2e.ts --url "http://127.0.0.1:$port/graphql" "$@"
