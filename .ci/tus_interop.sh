#!/usr/bin/env bash
# Interoperability of the tus endpoints with a real tus client: tuspy (PyPI, pinned)
# uploads a file through a `cairn serve` on loopback with a fresh SQLite data directory,
# stops after part of it, resumes from the offset the server reports (a new client, as
# after a restart), and the downloaded bytes must equal the file's (.ci/tus_interop.py).
# Usage: .ci/tus_interop.sh   (needs `cargo build --workspace --bins`)
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=1.1.0
VENV=${TUS_VENV:-target/tus-venv}
if ! "$VENV/bin/python" -c "import tusclient, importlib.metadata as m; assert m.version('tuspy') == '$VERSION'" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet "tuspy==$VERSION"
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
"$VENV/bin/python" .ci/tus_interop.py "$base" "$token" "$work" || status=$?
if [ "$status" -ne 0 ]; then
  echo "--- server log (last 50 lines)" >&2
  tail -n 50 "$work/server.log" >&2
fi
exit "$status"
