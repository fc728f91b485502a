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

. .ci/test-server.sh

status=0
"$VENV/bin/python" .ci/tus_interop.py "$base" "$token" "$work" || status=$?
if [ "$status" -ne 0 ]; then server_log; fi
exit "$status"
