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

. .ci/test-server.sh

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
if [ "$status" -ne 0 ]; then server_log; fi
exit "$status"
