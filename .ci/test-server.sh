# Sourced by the CI scripts that drive a real server from outside (schemathesis, tus
# interop): starts `target/debug/cairn serve` on a free loopback port with a fresh SQLite
# data directory in a temporary folder, stopped and removed on exit, and signs in as its
# administrator. Sets `work` (the folder), `server` (its PID), `base` (its URL) and
# `token` (a bearer token of `admin`).
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

# Prints the end of the server's log (after a failure).
server_log() {
  echo "--- server log (last 50 lines)" >&2
  tail -n 50 "$work/server.log" >&2
}
