#!/usr/bin/env bash
# Fuzzes the API against its own OpenAPI document: schemathesis (PyPI, pinned) with all
# checks, against a `cairn serve` on loopback with a fresh SQLite data directory and an
# administrator's bearer token. Every operation of the document is fuzzed except those
# that hold a connection open or would end the run's session (a wrong old password to
# POST /account/password is fuzzed: it is answered 403, then 429 once throttled):
#   - GET /notify/ws, /notify/sse, /notify/poll: a WebSocket, an event stream and a
#     long-poll never answer within a request timeout;
#   - POST /auth/logout and DELETE /auth/session: revoke the token the run uses;
#   - POST /admin/users/{name}/password: on `admin` it signs out every session, the
#     run's included.
# Rules a schema cannot state (a block must hash to its name, an expiry must be in the
# future, a cursor belongs to one account) are listed, with why, in schemathesis.toml.
# Usage: .ci/schemathesis.sh [MAX_EXAMPLES]   (needs `cargo build --workspace --bins`)
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=4.32.5
MAX_EXAMPLES=${1:-50}
VENV=${SCHEMATHESIS_VENV:-target/schemathesis-venv}
if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$VERSION"; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet "schemathesis==$VERSION"
fi

work=$(mktemp -d)
server=
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
password=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
CAIRN_ADMIN_PASSWORD=$password target/debug/cairn serve --listen "127.0.0.1:$port" \
  --data-dir "$work/data" >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 1 100); do curl -sf "$base/healthz" >/dev/null && break; sleep 0.1; done
token=$(curl -sf "$base/api/v1/auth/login" -H 'content-type: application/json' \
  -d "{\"username\":\"admin\",\"password\":\"$password\"}" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')

status=0
"$VENV/bin/schemathesis" --config-file .ci/schemathesis.toml run "$base/api/v1/openapi.json" \
  --header "Authorization: Bearer $token" \
  --max-examples "$MAX_EXAMPLES" \
  --seed 1 \
  --exclude-path-regex '^/api/v1/notify/' \
  --exclude-path /api/v1/auth/logout \
  --exclude-operation-id auth_session_end \
  --exclude-path '/api/v1/admin/users/{name}/password' \
  --request-timeout 30 || status=$?
if [ "$status" -ne 0 ]; then
  echo "--- server log (last 50 lines)" >&2
  tail -n 50 "$work/server.log" >&2
fi
exit "$status"
